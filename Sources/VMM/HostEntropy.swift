// VMM: random bytes from the host for virtio-rng — Swift's
// SystemRandomNumberGenerator, which is getrandom(2) on Linux (the kernel's
// CSPRNG, as QEMU's rng-random and Firecracker's entropy device use).

enum HostEntropy {
    /// `count` random bytes.
    static func bytes(_ count: Int) -> [UInt8]? {
        var generator = SystemRandomNumberGenerator()
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count + 8)
        while bytes.count < count {
            withUnsafeBytes(of: generator.next()) { bytes += $0 }
        }
        return Array(bytes.prefix(count))
    }
}
