import KVMABI
import MSRPolicy

// VMM: the structured record of one reported MSR access (vCPU, RIP, MSR,
// direction, value, the action taken), as a readable line and as JSON.

public struct MSRAccessEvent: Sendable, Equatable, CustomStringConvertible {
    public var vcpu: Int
    public var rip: UInt64
    public var index: UInt32
    public var name: String?
    public var isWrite: Bool
    /// The value written, or the value the read returned (0 when it raised #GP).
    public var value: UInt64
    /// What Deflect did, e.g. "emulated", "default-gp", "denied".
    public var outcome: String
    public var injectedGP: Bool

    public init(vcpu: Int, rip: UInt64, index: UInt32, name: String?, isWrite: Bool, value: UInt64,
                outcome: String, injectedGP: Bool) {
        self.vcpu = vcpu; self.rip = rip; self.index = index; self.name = name
        self.isWrite = isWrite; self.value = value; self.outcome = outcome; self.injectedGP = injectedGP
    }

    public var description: String {
        let msr = hex(index) + (name.map { " (\($0))" } ?? "")
        let what = isWrite ? "wrmsr \(msr) value=0x\(String(value, radix: 16))"
                           : "rdmsr \(msr)" + (injectedGP ? "" : " -> 0x\(String(value, radix: 16))")
        return "vcpu=\(vcpu) rip=0x\(String(rip, radix: 16)) \(what) \(outcome)\(injectedGP ? " #GP" : "")"
    }

    public var json: String {
        var s = #"{"event":"msr","vcpu":\#(vcpu),"rip":"0x\#(String(rip, radix: 16))","msr":"0x\#(String(index, radix: 16))""#
        if let name { s += #","name":\#(JSONText.quote(name))"# }
        s += #","access":"\#(isWrite ? "write" : "read")","value":"0x\#(String(value, radix: 16))","#
        s += #""action":\#(JSONText.quote(outcome)),"gp":\#(injectedGP)}"#
        return s
    }
}

/// JSON text for the event stream, written by hand to stay allocation-light.
enum JSONText {
    static func quote(_ s: String) -> String { QuotedString.quoted(s) }
}

/// One hypercall the guest made: number, arguments and the result it got.
public struct HypercallEvent: Sendable, Equatable, CustomStringConvertible {
    public var vcpu: Int
    public var number: UInt64
    public var arguments: [UInt64]
    public var returnValue: UInt64
    /// Why the call was refused, if it was.
    public var error: String?

    public var description: String {
        let args = arguments.prefix(4).map { hex($0) }.joined(separator: " ")
        let ret = Int64(bitPattern: returnValue)
        return "vcpu=\(vcpu) hypercall nr=\(number) args=[\(args)] ret=\(ret)\(error.map { " (\($0))" } ?? "")"
    }

    public var json: String {
        let args = arguments.map { "\"" + hex($0) + "\"" }.joined(separator: ",")
        var s = #"{"event":"hypercall","vcpu":\#(vcpu),"nr":\#(number),"args":[\#(args)],"ret":\#(Int64(bitPattern: returnValue))"#
        if let error { s += #","error":\#(JSONText.quote(error))"# }
        return s + "}"
    }
}
