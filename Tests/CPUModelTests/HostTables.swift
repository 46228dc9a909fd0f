// CPUModelTests: the recorded and reconstructed KVM_GET_SUPPORTED_CPUID
// tables in Data/ (each file says where it comes from), loaded once.

import Foundation
@testable import CPUModel

enum HostTables {
    struct HostFile: Decodable {
        var host: String
        var source: String
        var leaves: [CPUIDLeaf]
    }

    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Data")

    static func load(_ name: String) -> [CPUIDLeaf] {
        let url = directory.appendingPathComponent(name)
        guard let data = try? Data(contentsOf: url), let file = try? JSONDecoder().decode(HostFile.self, from: data) else {
            return []
        }
        return file.leaves
    }

    /// This development host: a Zen 3 EPYC under the nested kvm_pvm, recorded.
    static let thisHost = load("this-host-kvm.json")
    /// Xeon Platinum 8380 (Ice Lake-SP) under KVM, reconstructed.
    static let intel = load("intel-icelake-sp-kvm.json")
    /// EPYC 7763 (Milan) under KVM, reconstructed.
    static let amd = load("amd-milan-kvm.json")

    static func noFiles(_ path: String) throws -> String {
        throw HostTableError.noFile(path)
    }

    enum HostTableError: Error, CustomStringConvertible {
        case noFile(String)
        var description: String { if case .noFile(let path) = self { return "no such file: \(path)" }; return "" }
    }

    /// A reader over in-memory files, for model-file tests.
    static func files(_ contents: [String: String]) -> (String) throws -> String {
        { path in
            guard let text = contents[path] else { throw HostTableError.noFile(path) }
            return text
        }
    }

    /// `table` with `bits` cleared in one register.
    static func clearing(_ table: [CPUIDLeaf], _ function: UInt32, _ index: UInt32, _ register: CPUIDRegister,
                         _ bits: UInt32) -> [CPUIDLeaf] {
        table.map { leaf in
            var leaf = leaf
            if leaf.function == function && leaf.index == index { leaf[register] &= ~bits }
            return leaf
        }
    }
}

extension [CPUIDLeaf] {
    /// The register of the entry `function`/`index`, nil if the table has no such entry.
    func testValue(_ function: UInt32, _ index: UInt32, _ register: CPUIDRegister) -> UInt32? {
        first { $0.function == function && $0.index == index }?[register]
    }

    func testValue(_ function: UInt32, register: CPUIDRegister) -> UInt32? { testValue(function, 0, register) }
}
