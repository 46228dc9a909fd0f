// KVMABI: a segment register and a descriptor-table register as KVM
// describes them (kvm_segment, kvm_dtable): what the loaders produce for a
// vCPU's start and what the KVM layer reads and writes.

/// A segment register's visible selector and hidden descriptor cache (kvm_segment).
public struct Segment: Sendable, Equatable {
    public var base: UInt64
    public var limit: UInt32
    public var selector: UInt16
    public var type: UInt8
    public var present: Bool
    public var dpl: UInt8
    public var db: Bool
    public var s: Bool
    public var l: Bool
    public var g: Bool
    public var avl: Bool
    public var unusable: Bool

    public init(base: UInt64 = 0, limit: UInt32 = 0, selector: UInt16 = 0, type: UInt8 = 0,
                present: Bool = false, dpl: UInt8 = 0, db: Bool = false, s: Bool = false,
                l: Bool = false, g: Bool = false, avl: Bool = false, unusable: Bool = false) {
        self.base = base; self.limit = limit; self.selector = selector; self.type = type
        self.present = present; self.dpl = dpl; self.db = db; self.s = s
        self.l = l; self.g = g; self.avl = avl; self.unusable = unusable
    }
}

/// GDTR / IDTR (kvm_dtable).
public struct DescriptorTableRegister: Sendable, Equatable {
    public var base: UInt64
    public var limit: UInt16
    public init(base: UInt64 = 0, limit: UInt16 = 0) { self.base = base; self.limit = limit }
}
