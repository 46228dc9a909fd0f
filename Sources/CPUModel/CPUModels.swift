// CPUModel: resolving a model against one host's KVM_GET_SUPPORTED_CPUID —
// the refusals (other vendor, features the host lacks, broken dependency
// chains), the table a vCPU starts from (vendor, family/model/stepping,
// brand, feature words, max leaves, 0xD sizes, 0x7 sub-leaves, 0x14,
// 0x80000008 address sizes) — and the fleet questions asked of resolved
// models: what a host is missing, how two models differ, their baseline.

import MSRPolicy

/// A model resolved against one host's KVM_GET_SUPPORTED_CPUID: the table every vCPU starts from (the VMM then
/// fills in APIC ids/topology and the KVM leaves as today), the MSR profile it carries, the feature names.
public struct ResolvedCPUModel: Codable, Sendable, Hashable {
    /// The spec as given, normalised.
    public var spec: String
    /// "host", "x86-64-v3", "intel-skylake-server", a file's name.
    public var name: String
    /// "GenuineIntel" / "AuthenticAMD".
    public var vendor: String
    /// Sorted by function, then index.
    public var table: [CPUIDLeaf]
    /// MSRPolicy profile the model carries (nil for host and x86-64-v*).
    public var profileName: String?
    /// Sorted.
    public var features: [String]

    public init(spec: String, name: String, vendor: String, table: [CPUIDLeaf], profileName: String?, features: [String]) {
        self.spec = spec; self.name = name; self.vendor = vendor; self.table = table
        self.profileName = profileName; self.features = features
    }
}

public enum CPUModels {
    public static let builtIn: [CPUModelDefinition] = BuiltInModels.all

    /// Built-in model names, sorted (without "host").
    public static var names: [String] { builtIn.map(\.name) }

    public static func definition(named name: String) -> CPUModelDefinition? { builtIn.first { $0.name == name } }

    /// Resolve `spec` against the host's supported table. `readFile` reads a model file (the caller bounds its size).
    /// Refusals: another vendor than the host's; features the host lacks (one error naming every one);
    /// inconsistent dependencies (the chain).
    public static func resolve(_ spec: CPUModelSpec, host: [CPUIDLeaf],
                               readFile: (String) throws -> String) throws(CPUModelError) -> ResolvedCPUModel {
        let (recipe, edits) = try recipe(for: spec, host: host, readFile: readFile)
        return try build(recipe, spec: spec, edits: edits, host: host)
    }

    /// What `spec` asks for on `host`: its base (built-in or file) with the
    /// spec's changes applied, and a file's raw CPUID edits.
    static func recipe(for spec: CPUModelSpec, host: [CPUIDLeaf],
                       readFile: (String) throws -> String) throws(CPUModelError) -> (ModelRecipe, [CPUIDEdit]) {
        var recipe: ModelRecipe
        var edits: [CPUIDEdit] = []
        if spec.isFile {
            let file = try loadFile(spec.base, readFile: readFile)
            recipe = try file.recipe(host: host)
            edits = file.cpuidEdits
        } else {
            recipe = try baseRecipe(spec.base, host: host)
        }
        try recipe.apply(spec)
        return (recipe, edits)
    }

    /// The `[[msr]]` rules of a model file spec (empty for host and built-ins); the profile is `profileName`.
    public static func msrRules(for spec: CPUModelSpec, readFile: (String) throws -> String) throws(CPUModelError) -> [MSRRule] {
        guard spec.isFile else { return [] }
        return try loadFile(spec.base, readFile: readFile).msrRules
    }

    /// Features the model's table has that `host` cannot give (empty = this host can run it). Used again at
    /// restore/receive/migration time with a saved ResolvedCPUModel.
    public static func missingFeatures(_ model: ResolvedCPUModel, host: [CPUIDLeaf]) -> [String] {
        CPUFeatures.present(in: model.table).subtracting(CPUFeatures.present(in: host)).sorted()
    }

    /// The check before a saved model (snapshot, migration) runs on `host`: the same vendor, and every
    /// feature available; the refusal is one line, worded as `resolve`'s.
    public static func checkRunnable(_ model: ResolvedCPUModel, host: [CPUIDLeaf]) throws(CPUModelError) {
        let hostVendor = host.vendor
        if model.vendor != hostVendor { throw vendorError(model.name, model.vendor, hostVendor) }
        let missing = missingFeatures(model, host: host)
        if !missing.isEmpty { throw missingError(model.name, missing) }
    }

    public static func compare(_ a: ResolvedCPUModel, _ b: ResolvedCPUModel) -> (onlyA: [String], onlyB: [String]) {
        let first = Set(a.features), second = Set(b.features)
        return (first.subtracting(second).sorted(), second.subtracting(first).sorted())
    }

    /// The largest model all can run (same vendor required), written as model-file TOML text
    /// named `name`. Features whose requirements are not all there are left out.
    public static func baseline(_ models: [ResolvedCPUModel], name: String = "baseline") throws(CPUModelError) -> String {
        guard let first = models.first else { throw CPUModelError("a baseline needs at least one CPU model") }
        let vendors = Set(models.map(\.vendor))
        guard vendors.count == 1 else {
            let list = models.map { "\($0.name) (\($0.vendor))" }.joined(separator: ", ")
            throw CPUModelError("no baseline across vendors: \(list); KVM emulates vendor-specific instructions by the "
                                + "host's vendor, so a fleet's common model needs hosts of one vendor")
        }
        var features = models.dropFirst().reduce(Set(first.features)) { $0.intersection($1.features) }
        // An intersection of consistent sets is consistent; drop anything that is not, all the same.
        while let chain = CPUFeatures.brokenChain(in: features), let head = chain.first { features.remove(head) }

        let signatures = Set(models.map { CPUSignature(leaf1EAX: $0.table.value(1, 0, .eax)) })
        let brands = Set(models.map { brandString(of: $0.table) })
        let addresses = models.map { $0.table.value(0x8000_0008, 0, .eax) }
        var lines = ["# CPU model baseline of: " + models.map(\.spec).joined(separator: "; "),
                     "# The largest model every one of them can run: the features they share.",
                     "[cpu]", "name = \(quoted(name))", "vendor = \(quoted(first.vendor))"]
        if signatures.count == 1, let signature = signatures.first {
            lines += ["family = \(signature.family)", "model = \(signature.model)", "stepping = \(signature.stepping)"]
        }
        if brands.count == 1, let brand = brands.first, !brand.isEmpty { lines.append("brand = \(quoted(brand))") }
        if let physical = addresses.map({ Int($0 & 0xFF) }).min(), physical > 0 {
            lines.append("physical_address_bits = \(physical)")
        }
        if let linear = addresses.map({ Int($0 >> 8 & 0xFF) }).min(), linear > 0 {
            lines.append("linear_address_bits = \(linear)")
        }
        lines.append("features = [")
        lines += features.sorted().map { "    \(quoted("+" + $0))," }
        lines.append("]")
        return lines.joined(separator: "\n") + "\n"
    }

    // MARK: - Recipes

    static func baseRecipe(_ base: String, host: [CPUIDLeaf]) throws(CPUModelError) -> ModelRecipe {
        if base == "host" {
            return ModelRecipe(name: "host", features: CPUFeatures.present(in: host), startsFromHost: true)
        }
        guard let definition = definition(named: base) else {
            throw CPUModelError("unknown CPU model \"\(base)\"; built-in models: host, \(names.joined(separator: ", "))")
        }
        var recipe = ModelRecipe(name: definition.name, features: Set(definition.features), startsFromHost: false)
        recipe.vendor = definition.vendor
        recipe.family = definition.family; recipe.model = definition.model; recipe.stepping = definition.stepping
        recipe.brand = definition.brand; recipe.profileName = definition.profileName
        recipe.maxBasicLeaf = definition.maxBasicLeaf; recipe.maxExtendedLeaf = definition.maxExtendedLeaf
        recipe.physicalAddressBits = definition.physicalAddressBits; recipe.linearAddressBits = definition.linearAddressBits
        if let chain = CPUFeatures.brokenChain(in: recipe.features) {
            throw CPUModelError("built-in CPU model \(base) is inconsistent: " + CPUFeatures.describeChain(chain, owner: "it"))
        }
        return recipe
    }

    static func loadFile(_ path: String, readFile: (String) throws -> String) throws(CPUModelError) -> CPUModelFile {
        let text: String
        do {
            text = try readFile(path)
        } catch {
            throw CPUModelError("cannot read CPU model file: \(error)", file: path)
        }
        return try CPUModelFile.parse(text, path: path)
    }

    // MARK: - Building the table

    static func build(_ recipe: ModelRecipe, spec: CPUModelSpec, edits: [CPUIDEdit],
                      host: [CPUIDLeaf]) throws(CPUModelError) -> ResolvedCPUModel {
        let hostVendor = host.vendor
        let vendor = recipe.vendor ?? hostVendor
        if vendor != hostVendor { throw vendorError(recipe.name, vendor, hostVendor) }
        let hostFeatures = CPUFeatures.present(in: host)
        let missing = recipe.features.subtracting(hostFeatures).sorted()
        if !missing.isEmpty {
            throw missingError(recipe.name, missing)
        }

        var table = host
        writeFeatureWords(recipe, into: &table)
        if vendor == CPUVendorString.amd { mirrorAMDExtendedEDX(in: &table, host: host) }
        if recipe.family != nil || recipe.model != nil || recipe.stepping != nil {
            var signature = CPUSignature(leaf1EAX: table.value(1, 0, .eax))
            if let family = recipe.family { signature.family = family }
            if let model = recipe.model { signature.model = model }
            if let stepping = recipe.stepping { signature.stepping = stepping }
            writeSignature(signature, into: &table)
        }
        if let forced = recipe.vendor { writeVendor(forced, into: &table) }
        if let brand = recipe.brand { writeBrand(brand, into: &table) }
        limitLeaves(recipe, in: &table)
        // A model built from the host changes the dependent leaves only for what it removed from the
        // host; features the host never had leave the host's leaves as KVM reported them.
        let removedFromHost = recipe.startsFromHost ? hostFeatures.subtracting(recipe.features) : []
        if !recipe.startsFromHost || removedFromHost.contains(where: { xsaveFeatures.contains($0) }) {
            let kept = recipe.startsFromHost ? Set(CPUFeatures.all.map(\.name)).subtracting(removedFromHost) : recipe.features
            shrinkXSAVELeaf(features: kept, in: &table)
        }
        if !recipe.startsFromHost { trimLeaf7(features: recipe.features, in: &table) }
        if recipe.startsFromHost ? removedFromHost.contains("intel_pt") : !recipe.features.contains("intel_pt") {
            table.removeAll { $0.function == 0x14 }
        }
        limitAddressSizes(recipe, in: &table)

        // A model file's raw bit modifiers come last; what they add is checked like everything else.
        let beforeEdits = CPUFeatures.present(in: table)
        for edit in edits {
            guard table.edit(edit.leaf, edit.subleaf, { $0[edit.register] = $0[edit.register] & ~edit.clear | edit.set }) else {
                throw CPUModelError("CPUID leaf \(hex(edit.leaf)) sub-leaf \(edit.subleaf) is not in this host's table; "
                                    + "a [[cpuid]] modifier can only change a leaf KVM supports",
                                    file: edit.location?.file, line: edit.location?.line, column: edit.location?.column)
            }
        }
        let features = CPUFeatures.present(in: table)
        if !edits.isEmpty {
            if let chain = CPUFeatures.brokenChain(in: features, from: features.subtracting(beforeEdits)) {
                throw CPUModelError("after its [[cpuid]] modifiers, CPU model \(recipe.name) is inconsistent: "
                                    + CPUFeatures.describeChain(chain))
            }
            let extra = features.subtracting(hostFeatures).sorted()
            if !extra.isEmpty { throw missingError(recipe.name, extra) }
        }
        return ResolvedCPUModel(spec: spec.description, name: recipe.name, vendor: vendor, table: table.sortedByLeaf,
                                profileName: recipe.profileName, features: features.sorted())
    }

    static func vendorError(_ name: String, _ vendor: String, _ hostVendor: String) -> CPUModelError {
        CPUModelError("CPU model \(name) is \(vendor) but this host is \(hostVendor): KVM emulates "
                      + "vendor-specific instructions (SYSCALL/SYSENTER in compatibility mode, VMCALL/VMMCALL) "
                      + "by the host's vendor, so a guest told it runs on another vendor's CPU misbehaves; "
                      + "choose a \(hostVendor) model or a vendor-neutral one (x86-64-v2/v3/v4, qemu64)")
    }

    static func missingError(_ name: String, _ missing: [String]) -> CPUModelError {
        let noun = missing.count == 1 ? "feature" : "\(missing.count) features"
        return CPUModelError("this host's KVM cannot give CPU model \(name): missing \(noun) \(missing.joined(separator: ", ")) "
                             + "(refused, as QEMU's enforce; drop them with -feature or choose another model)")
    }

    /// Every named feature bit = exactly the recipe's features. A model built from the host keeps the
    /// host's other bits; any other model keeps only the host-owned ones (see `CPUFeatures.hostOwnedBits`).
    static func writeFeatureWords(_ recipe: ModelRecipe, into table: inout [CPUIDLeaf]) {
        for register in CPUFeatures.featureRegisters {
            let named = CPUFeatures.all.filter {
                $0.function == register.function && $0.index == register.index && $0.register == register.register
            }
            let known = named.reduce(UInt32(0)) { $0 | $1.mask }
            let wanted = named.filter { recipe.features.contains($0.name) }.reduce(UInt32(0)) { $0 | $1.mask }
            let kept = recipe.startsFromHost ? ~known : CPUFeatures.hostOwnedBits[register] ?? 0
            table.edit(register.function, register.index) { leaf in
                leaf[register.register] = leaf[register.register] & kept | wanted
            }
        }
    }

    /// AMD repeats leaf 1 EDX bits 0-9, 12-17, 23 and 24 in 0x80000001 EDX: follow leaf 1, never add to the host's.
    static let amdMirroredEDXBits: UInt32 = 0x0183_F3FF

    static func mirrorAMDExtendedEDX(in table: inout [CPUIDLeaf], host: [CPUIDLeaf]) {
        let leaf1 = table.value(1, 0, .edx)
        let hostExtended = host.value(0x8000_0001, 0, .edx)
        table.edit(0x8000_0001) { leaf in
            leaf.edx = leaf.edx & ~amdMirroredEDXBits | hostExtended & leaf1 & amdMirroredEDXBits
        }
    }

    static func writeVendor(_ vendor: String, into table: inout [CPUIDLeaf]) {
        let words = CPUVendorString.encode(vendor)
        for function: UInt32 in [0, 0x8000_0000] {
            table.edit(function) { leaf in leaf.ebx = words.ebx; leaf.edx = words.edx; leaf.ecx = words.ecx }
        }
    }

    /// Leaf 1 EAX, and 0x80000001 EAX where the host fills it (AMD repeats the signature there).
    static func writeSignature(_ signature: CPUSignature, into table: inout [CPUIDLeaf]) {
        table.edit(1) { leaf in leaf.eax = signature.encoded(keeping: leaf.eax) }
        table.edit(0x8000_0001) { leaf in
            if leaf.eax != 0 { leaf.eax = signature.encoded(keeping: leaf.eax) }
        }
    }

    /// 48 bytes, NUL-padded, in 0x80000002-4 EAX..EDX.
    static func writeBrand(_ brand: String, into table: inout [CPUIDLeaf]) {
        let words = CPUVendorString.packWords(Array(brand.utf8.prefix(CPUModelSpec.maxBrandBytes)), count: 12)
        for part in 0..<3 {
            let function = 0x8000_0002 + UInt32(part)
            let value = CPUIDLeaf(function: function, eax: words[part * 4], ebx: words[part * 4 + 1],
                                  ecx: words[part * 4 + 2], edx: words[part * 4 + 3])
            if !table.edit(function, 0, { $0 = value }) { table.append(value) }
        }
    }

    static func brandString(of table: [CPUIDLeaf]) -> String {
        let words = (0..<3).flatMap { part -> [UInt32] in
            let leaf = table.leaf(0x8000_0002 + UInt32(part))
            return [leaf?.eax ?? 0, leaf?.ebx ?? 0, leaf?.ecx ?? 0, leaf?.edx ?? 0]
        }
        let bytes = words.flatMap { word in (0..<4).map { UInt8(truncatingIfNeeded: word >> ($0 * 8)) } }
        return String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self).trimmingSpaces()
    }

    /// The real part's max basic/extended leaf where the host's is higher; leaves above it go.
    static func limitLeaves(_ recipe: ModelRecipe, in table: inout [CPUIDLeaf]) {
        if let limit = recipe.maxBasicLeaf, let hostMax = table.leaf(0)?.eax, limit < hostMax {
            table.edit(0) { $0.eax = limit }
            table.removeAll { $0.function > limit && $0.function < 0x4000_0000 }
        }
        if let limit = recipe.maxExtendedLeaf, let hostMax = table.leaf(0x8000_0000)?.eax, limit < hostMax {
            table.edit(0x8000_0000) { $0.eax = limit }
            table.removeAll { $0.function > limit }
        }
    }

    /// XSAVE state components (SDM Vol. 1 §13.1) and the features that bring them, sorted by component.
    static let xsaveComponents: [(component: UInt32, feature: String)] = [
        (0, "fpu"),          // x87 state
        (1, "sse"),          // XMM registers, MXCSR
        (2, "avx"),          // upper halves of YMM
        (3, "mpx"),          // BNDREGS
        (4, "mpx"),          // BNDCSR
        (5, "avx512f"),      // opmask k0-k7
        (6, "avx512f"),      // ZMM_Hi256
        (7, "avx512f"),      // Hi16_ZMM
        (8, "intel_pt"),     // PT (supervisor, IA32_XSS)
        (9, "pku"),          // PKRU
        (11, "shstk"),       // CET_U (supervisor, IA32_XSS)
        (12, "shstk"),       // CET_S (supervisor, IA32_XSS)
        (15, "arch_lbr"),    // LBR (supervisor, IA32_XSS)
        (17, "amx_tile"),    // TILECFG
        (18, "amx_tile"),    // TILEDATA
    ]

    /// The features leaf 0xD depends on.
    static let xsaveFeatures: Set<String> = Set(xsaveComponents.map(\.feature) + ["ibt", "xsave"])

    /// Leaf 0xD: XCR0/XSS components kept = those whose features remain; sizes from the host's
    /// sub-leaves; sub-leaf 0 EBX/ECX recomputed. Without xsave, the leaf goes.
    static func shrinkXSAVELeaf(features: Set<String>, in table: inout [CPUIDLeaf]) {
        guard features.contains("xsave") else {
            table.removeAll { $0.function == 0xD }
            return
        }
        var allowed: UInt64 = 0
        for (component, feature) in xsaveComponents where features.contains(feature) || (component == 11 && features.contains("ibt")) {
            allowed |= 1 << UInt64(component)
        }
        table.removeAll { $0.function == 0xD && $0.index >= 2 && $0.index < 64 && allowed & (1 << UInt64($0.index)) == 0 }
        let supportedXCR0 = UInt64(table.value(0xD, 0, .edx)) << 32 | UInt64(table.value(0xD, 0, .eax))
        let kept = supportedXCR0 & allowed
        // Standard-format size: the legacy area and header (576 bytes), then each component at its offset.
        var size: UInt32 = 576
        for component in 2..<64 where kept & (1 << UInt64(component)) != 0 {
            guard let leaf = table.leaf(0xD, UInt32(component)) else { continue }
            size = max(size, leaf.ebx &+ leaf.eax)
        }
        table.edit(0xD, 0) { leaf in
            leaf.eax = UInt32(truncatingIfNeeded: kept); leaf.edx = UInt32(truncatingIfNeeded: kept >> 32)
            leaf.ebx = size; leaf.ecx = size
        }
        table.edit(0xD, 1) { leaf in
            leaf.ecx &= UInt32(truncatingIfNeeded: allowed); leaf.edx &= UInt32(truncatingIfNeeded: allowed >> 32)
        }
    }

    /// Leaf 7 sub-leaves beyond 0 that hold none of the model's features go; 7.0 EAX follows.
    static func trimLeaf7(features: Set<String>, in table: inout [CPUIDLeaf]) {
        let used = Set(CPUFeatures.all.filter { $0.function == 7 && features.contains($0.name) }.map(\.index))
        table.removeAll { $0.function == 7 && $0.index > 0 && !used.contains($0.index) }
        let highest = table.filter { $0.function == 7 }.map(\.index).max() ?? 0
        table.edit(7, 0) { $0.eax = min($0.eax, highest) }
    }

    /// 0x80000008 EAX: physical bits 7:0 and linear bits 15:8, each min(host, model); 48 linear bits without la57.
    static func limitAddressSizes(_ recipe: ModelRecipe, in table: inout [CPUIDLeaf]) {
        table.edit(0x8000_0008) { leaf in
            var physical = leaf.eax & 0xFF, linear = leaf.eax >> 8 & 0xFF
            if let bits = recipe.physicalAddressBits { physical = min(physical, UInt32(bits)) }
            if let bits = recipe.linearAddressBits { linear = min(linear, UInt32(bits)) }
            if !recipe.features.contains("la57") { linear = min(linear, 48) }
            leaf.eax = leaf.eax & 0xFFFF_0000 | linear << 8 | physical
        }
    }

    static func hex(_ value: UInt32) -> String { "0x" + String(value, radix: 16) }

    /// A TOML basic string.
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where scalar.value < 0x20 || scalar.value == 0x7F:
                out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count) + String(scalar.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

/// What a model fixes before it meets a host; nil fields are the host's.
struct ModelRecipe {
    var name: String
    var features: Set<String>
    /// True for `host` (and files based on it): unnamed bits keep the host's values.
    var startsFromHost: Bool
    var vendor: String?
    var family: Int?
    var model: Int?
    var stepping: Int?
    var brand: String?
    var profileName: String?
    var maxBasicLeaf: UInt32?
    var maxExtendedLeaf: UInt32?
    var physicalAddressBits: Int?
    var linearAddressBits: Int?

    init(name: String, features: Set<String>, startsFromHost: Bool) {
        self.name = name; self.features = features; self.startsFromHost = startsFromHost
    }

    /// `-f` removes f and everything that needs it; `+f` adds f alone, and a requirement it
    /// lacks is refused with the chain. Then the spec's vendor and signature overrides.
    mutating func apply(_ spec: CPUModelSpec) throws(CPUModelError) {
        try applyChanges(spec.changes, context: "--cpu \(spec)")
        if let vendor = spec.vendor {
            if let fixed = self.vendor, fixed != vendor {
                throw CPUModelError("--cpu \(spec): vendor=\(vendor) contradicts CPU model \(name), which is \(fixed)")
            }
            self.vendor = vendor
        }
        if let family = spec.family { self.family = family }
        if let model = spec.model { self.model = model }
        if let stepping = spec.stepping { self.stepping = stepping }
        if let brand = spec.brand { self.brand = brand }
    }

    mutating func applyChanges(_ changes: [CPUModelSpec.FeatureChange], context: String) throws(CPUModelError) {
        // Only what `+` added is checked: a host's own table is what it is (KVM reports some
        // features apart from what they architecturally need), and `-` never breaks a chain.
        var added: Set<String> = []
        for change in changes {
            if change.enabled {
                features.insert(change.feature)
                added.insert(change.feature)
            } else {
                let removed = CPUFeatures.dependents(of: [change.feature])
                features.subtract(removed)
                added.subtract(removed)
            }
        }
        if let chain = CPUFeatures.brokenChain(in: features, from: added) {
            throw CPUModelError("\(context): " + CPUFeatures.describeChain(chain, owner: "CPU model \(name)")
                                + "; add it too (+\(chain.last ?? "")) or drop +\(chain.first ?? "")")
        }
    }
}

/// Family, model and stepping as leaf 1 EAX encodes them (SDM Vol. 2A, CPUID, "Version Information").
struct CPUSignature: Hashable {
    var family: Int
    var model: Int
    var stepping: Int

    init(family: Int, model: Int, stepping: Int) { self.family = family; self.model = model; self.stepping = stepping }

    init(leaf1EAX eax: UInt32) {
        let baseFamily = Int(eax >> 8 & 0xF), baseModel = Int(eax >> 4 & 0xF)
        family = baseFamily == 0xF ? baseFamily + Int(eax >> 20 & 0xFF) : baseFamily
        model = baseFamily == 0x6 || baseFamily == 0xF ? Int(eax >> 16 & 0xF) << 4 | baseModel : baseModel
        stepping = Int(eax & 0xF)
    }

    /// Into `old`, keeping its processor-type and reserved bits (31:28, 13:12).
    func encoded(keeping old: UInt32) -> UInt32 {
        let baseFamily = UInt32(min(family, 0xF)), extendedFamily = UInt32(max(family - 0xF, 0) & 0xFF)
        let baseModel = UInt32(model & 0xF), extendedModel = UInt32(model >> 4 & 0xF)
        return old & 0xF000_3000 | extendedFamily << 20 | extendedModel << 16 | baseFamily << 8 | baseModel << 4
            | UInt32(stepping & 0xF)
    }
}
