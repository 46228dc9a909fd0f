// swift-tools-version: 6.1
// Deflect: a KVM virtual machine monitor in which user space owns the
// model-specific vCPU state (MSRs, hypercalls, registers).
import PackageDescription

let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
]

let package = Package(
    name: "Deflect",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "deflect", targets: ["deflect"]),
        .executable(name: "deflect-bench", targets: ["deflect-bench"]),
        .executable(name: "hypercall-bench", targets: ["hypercall-bench"]),
    ],
    dependencies: [
        // Command-line parsing with subcommands, validation and help text.
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // C shim over <linux/kvm.h>: request numbers, ioctl helpers, newer uapi.
        .target(name: "CKVM"),
        // Safe Swift API over /dev/kvm. The only target with unsafe pointer code.
        .target(name: "KVM", dependencies: ["CKVM"], swiftSettings: strict),
        // Pure device state machines (UART, debug exit, i8042) and the port bus.
        .target(name: "Devices", swiftSettings: strict),
        // Pure image loaders and boot CPU state (real mode, long mode, ELF64).
        .target(name: "Loader", swiftSettings: strict),
        // Pure MSR knowledge and policy: catalogue, policy model and file format,
        // filter compiler, CPU-model profiles, value providers, runtime decisions.
        .target(name: "MSRPolicy", swiftSettings: strict),
        // Pure hypercall logic: MAP_GPA_RANGE decoding, the shared/private page
        // map, migration-control negotiation.
        .target(name: "Hypercalls", swiftSettings: strict),
        // Machine assembly, vCPU threads, exit dispatch, exit statistics.
        .target(name: "VMM", dependencies: ["KVM", "Devices", "Loader", "MSRPolicy", "Hypercalls"], swiftSettings: strict),
        // The command-line tool.
        .executableTarget(
            name: "deflect",
            dependencies: [
                "VMM", "KVM", "MSRPolicy", "Hypercalls",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        // The exit-path and policy-fuzz benchmarks (`make bench`), not part of the product.
        .executableTarget(name: "deflect-bench", dependencies: ["VMM", "MSRPolicy", "Loader", "SeededRandom"],
                          path: "Sources/DeflectBench", swiftSettings: strict),
        // The page-map benchmark (`make bench`), not part of the product.
        .executableTarget(name: "hypercall-bench", dependencies: ["Hypercalls", "SeededRandom"],
                          path: "Sources/HypercallBench", swiftSettings: strict),
        // The seeded generator property tests, fuzz tests and benchmarks share.
        .target(name: "SeededRandom", swiftSettings: strict),
        // Shared by the test targets: KVM availability and the built guest images.
        .target(name: "DeflectTestSupport", dependencies: ["KVM"], path: "Tests/Support", swiftSettings: strict),
        .testTarget(name: "DevicesTests", dependencies: ["Devices"], swiftSettings: strict),
        .testTarget(name: "LoaderTests", dependencies: ["Loader", "SeededRandom"], swiftSettings: strict),
        .testTarget(name: "MSRPolicyTests", dependencies: ["MSRPolicy", "SeededRandom"], swiftSettings: strict),
        .testTarget(name: "HypercallsTests", dependencies: ["Hypercalls", "SeededRandom"], swiftSettings: strict),
        .testTarget(name: "KVMTests", dependencies: ["KVM", "DeflectTestSupport"], swiftSettings: strict),
        .testTarget(name: "VMMTests", dependencies: ["VMM", "KVM", "Loader", "Devices", "MSRPolicy", "Hypercalls", "DeflectTestSupport"], swiftSettings: strict),
        .testTarget(name: "CLITests", dependencies: ["VMM", "DeflectTestSupport"], swiftSettings: strict),
    ]
)
