// KVMABI: how every module writes numbers in hexadecimal for people.

extension BinaryInteger {
    /// "0x" and lowercase hex digits, no padding (0x2474).
    public var hex: String { "0x" + String(self, radix: 16) }
}
