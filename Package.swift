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
        // Libraries another Swift VMM can depend on (each has a DocC catalogue).
        .library(name: "KVM", targets: ["KVM", "KVMABI"]),
        .library(name: "MSRPolicy", targets: ["MSRPolicy", "KVMABI"]),
        .library(name: "Hypercalls", targets: ["Hypercalls"]),
        .executable(name: "deflect-bench", targets: ["deflect-bench"]),
        // containerd's runtime v2 shim: `--runtime io.containerd.deflect.v1` runs a Deflect VM as a task.
        .executable(name: "containerd-shim-deflect-v1", targets: ["containerd-shim-deflect-v1"]),
        .executable(name: "hypercall-bench", targets: ["hypercall-bench"]),
    ],
    dependencies: [
        // Command-line parsing with subcommands, validation and help text.
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // Latency histograms for exit profiling: fixed-range HdrHistogram buckets, allocation-free recording.
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        // The control API's HTTP/1.1 server on a Unix socket (ControlAPI). Without
        // its default trait ConfigurationSupport, which would build swift-configuration
        // for a config reader Deflect does not use.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        // Prometheus text exposition for `GET /metrics` (names, labels, escaping);
        // its own dependencies (swift-metrics, swift-atomics) are built for Hummingbird anyway.
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // Already in the graph through Hummingbird; named because ControlAPI uses
        // them directly: NIOHTTP1 is the `deflect ctl` client (UnixSocketHTTP) and
        // NIOPosix its Unix-socket connection; NIOHTTPTypes the request-size guard.
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        // HMAC-SHA256 of live-migration frames when the peers share a key (Migration).
        .package(url: "https://github.com/apple/swift-crypto", "3.0.0"..<"5.0.0"),
        // The runtime of the protobuf types of ttrpc and containerd's shim API
        // (generated once by scripts/generate-protos and committed).
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        // Tests only: parses docs/api.yaml to check the server against it.
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // C shim over <linux/kvm.h>: request numbers, ioctl helpers, newer uapi.
        .target(name: "CKVM"),
        // KVM ABI values the KVM layer and the pure modules share (MSR filter, exit reasons).
        .target(name: "KVMABI", swiftSettings: strict),
        // Safe Swift API over /dev/kvm. The only target with unsafe pointer code.
        .target(name: "KVM", dependencies: ["CKVM", "KVMABI"], swiftSettings: strict),
        // Pure ACPI: the AML builder, the system description tables (RSDP, XSDT,
        // FADT, MADT, MCFG, FACS) and the PC platform's DSDT.
        .target(name: "ACPI", swiftSettings: strict),
        // Pure device state machines (UART, debug exit, i8042) and the port bus.
        .target(name: "Devices", dependencies: ["KVMABI", "ACPI"], swiftSettings: strict),
        // Pure PCI: configuration space, bus 0 with mechanism #1 and ECAM, BAR placement and routing, MSI-X.
        .target(name: "PCI", swiftSettings: strict),
        // Pure virtio: guest-memory access, split virtqueues, the virtio-pci modern transport, device cores.
        .target(name: "Virtio", dependencies: ["PCI"], swiftSettings: strict),
        // Pure image loaders and boot CPU state (real mode, long mode, ELF64).
        .target(name: "Loader", dependencies: ["KVMABI"], swiftSettings: strict),
        // Pure MSR knowledge and policy: catalogue, policy model and file format,
        // filter compiler, CPU-model profiles, value providers, runtime decisions.
        .target(name: "MSRPolicy", dependencies: ["KVMABI"], swiftSettings: strict),
        // Pure CPU models: CPUID feature names and dependencies, built-in models,
        // model files, resolving a model against a host's supported CPUID.
        .target(name: "CPUModel", dependencies: ["MSRPolicy"], swiftSettings: strict),
        // Pure hypercall logic: MAP_GPA_RANGE decoding, the shared/private page
        // map, migration-control negotiation.
        .target(name: "Hypercalls", dependencies: ["KVMABI"], swiftSettings: strict),
        // An error as one readable line: Foundation's file errors in strerror's
        // words, never "Error Domain=NSCocoaErrorDomain …" (the CLI and the shim).
        .target(name: "ReadableErrors", swiftSettings: strict),
        // Pure snapshot file format: CRC-64, sectioned state file, atomic write.
        .target(name: "Snapshot", swiftSettings: strict),
        // Pure live-migration protocol: handshake, framed messages with CRC-64
        // and optional HMAC-SHA256, page ranges, limits, addresses.
        .target(name: "Migration", dependencies: ["Snapshot", .product(name: "Crypto", package: "swift-crypto")],
                swiftSettings: strict),
        // Machine assembly, vCPU threads, exit dispatch, exit statistics.
        .target(name: "VMM", dependencies: ["KVM", "KVMABI", "Devices", "ACPI", "PCI", "Virtio", "Loader", "MSRPolicy", "CPUModel", "Hypercalls", "Snapshot", "Migration", "ReadableErrors",
                                            .product(name: "Histogram", package: "hdrhistogram-swift")], swiftSettings: strict),
        // The control API on a Unix socket: the VMControl boundary the VMM
        // implements, its JSON models, the HTTP server and the `deflect ctl` client.
        .target(
            name: "ControlAPI",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                "ReadableErrors",
            ],
            swiftSettings: strict
        ),
        // The VMM's side of the control API: a running Machine as a VMControl.
        .target(name: "MachineControl", dependencies: ["VMM", "KVM", "KVMABI", "MSRPolicy", "CPUModel", "Hypercalls", "ControlAPI", "Migration"], swiftSettings: strict),
        // The command-line tool.
        .executableTarget(
            name: "deflect",
            dependencies: [
                "VMM", "KVM", "KVMABI", "MSRPolicy", "CPUModel", "Hypercalls", "ControlAPI", "MachineControl", "Snapshot", "Devices",
                "Migration", "ReadableErrors", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict,
            // Release builds carry the Swift runtime inside: no loading and
            // binding of 10 shared libraries at every start (containerd starts
            // one deflect per task); BENCHMARKS.md, "Start-up and memory".
            // FoundationEssentials' C helpers are named because the static
            // archive, unlike the shared library, does not bring them.
            linkerSettings: [
                .unsafeFlags(["-static-stdlib"], .when(platforms: [.linux], configuration: .release)),
                .linkedLibrary("_FoundationCShims", .when(platforms: [.linux], configuration: .release)),
                .linkedLibrary("_FoundationCollections", .when(platforms: [.linux], configuration: .release)),
            ]
        ),
        // The exit-path, control-API, pause/resume, policy- and snapshot-fuzz benchmarks (`make bench`), not part of the product.
        .executableTarget(name: "deflect-bench", dependencies: ["VMM", "MSRPolicy", "Loader", "Snapshot", "SeededRandom", "BenchmarkReport",
                                                                "ControlAPI", "MachineControl", "KVM", "Migration"],
                          path: "Sources/DeflectBench", swiftSettings: strict),
        // The page-map benchmark (`make bench`), not part of the product.
        .executableTarget(name: "hypercall-bench", dependencies: ["Hypercalls", "SeededRandom", "BenchmarkReport"],
                          path: "Sources/HypercallBench", swiftSettings: strict),
        // What every benchmark section shares: the host-load gate (refuse a busy
        // host unless --allow-noisy, mark noisy figures) and BENCHMARKS.md's sections.
        .target(name: "BenchmarkReport", swiftSettings: strict),
        // The seeded generator property tests, fuzz tests and benchmarks share.
        .target(name: "SeededRandom", swiftSettings: strict),
        // ttrpc (containerd's RPC over a Unix socket): framing, request/response, a server and a client.
        .target(name: "TTRPC", dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf"),
                                              .product(name: "NIOCore", package: "swift-nio"),
                                              .product(name: "NIOPosix", package: "swift-nio")], swiftSettings: strict),
        // The containerd shim: deflect.json, the task state machine, the containerd.task.v2.Task service.
        .target(name: "ContainerdShim", dependencies: ["TTRPC", "Loader", "KVM", "Virtio", "ReadableErrors", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
                swiftSettings: strict),
        .executableTarget(name: "containerd-shim-deflect-v1", dependencies: ["ContainerdShim", "ReadableErrors"],
                          path: "Sources/ContainerdShimMain", swiftSettings: strict),
        // Shared by the test targets: KVM availability and the built guest images.
        .target(name: "DeflectTestSupport", dependencies: ["KVM"], path: "Tests/Support", swiftSettings: strict),
        .testTarget(name: "ACPITests", dependencies: ["ACPI"], swiftSettings: strict),
        .testTarget(name: "PCITests", dependencies: ["PCI"], swiftSettings: strict),
        .testTarget(name: "VirtioTests", dependencies: ["Virtio", "PCI", "SeededRandom"], swiftSettings: strict),
        .testTarget(name: "DevicesTests", dependencies: ["Devices", "ACPI"], swiftSettings: strict),
        .testTarget(name: "BenchmarkReportTests", dependencies: ["BenchmarkReport"], swiftSettings: strict),
        .testTarget(name: "ReadableErrorsTests", dependencies: ["ReadableErrors", "DeflectTestSupport"], swiftSettings: strict),
        .testTarget(name: "SnapshotTests", dependencies: ["Snapshot", "SeededRandom"], swiftSettings: strict),
        .testTarget(name: "MigrationTests", dependencies: ["Migration", "Snapshot", "SeededRandom"], swiftSettings: strict),
        .testTarget(name: "LoaderTests", dependencies: ["Loader", "SeededRandom"], swiftSettings: strict),
        .testTarget(name: "MSRPolicyTests", dependencies: ["MSRPolicy", "KVMABI", "SeededRandom"], swiftSettings: strict),
        .testTarget(name: "CPUModelTests", dependencies: ["CPUModel", "MSRPolicy"], exclude: ["Data"], swiftSettings: strict),
        .testTarget(name: "HypercallsTests", dependencies: ["Hypercalls", "SeededRandom"], swiftSettings: strict),
        .testTarget(name: "KVMTests", dependencies: ["KVM", "KVMABI", "DeflectTestSupport"], swiftSettings: strict),
        .testTarget(name: "VMMTests", dependencies: ["VMM", "CPUModel", "KVM", "KVMABI", "Snapshot", "Loader", "Devices", "MSRPolicy", "Hypercalls", "Migration", "DeflectTestSupport"], swiftSettings: strict),
        .testTarget(
            name: "ControlAPITests",
            dependencies: [
                "ControlAPI",
                .product(name: "Yams", package: "Yams"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(name: "MachineControlTests", dependencies: ["MachineControl", "ControlAPI", "VMM", "KVM", "MSRPolicy", "CPUModel", "DeflectTestSupport"],
                    swiftSettings: strict),
        .testTarget(name: "TTRPCTests", dependencies: ["TTRPC", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
                    swiftSettings: strict),
        .testTarget(name: "ContainerdShimTests", dependencies: ["ContainerdShim", "TTRPC", "Virtio", "DeflectTestSupport"],
                    exclude: ["cri"], swiftSettings: strict),   // cri/: the CRI test's Python client and proto
        .testTarget(name: "CLITests", dependencies: ["VMM", "Snapshot", "Migration", "ControlAPI", "DeflectTestSupport"], swiftSettings: strict),
    ]
)
