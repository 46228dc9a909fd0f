// CPUModel: the model file (TOML, the policy files' reader), parsed into a
// recipe on top of `host`, a built-in model or nothing, plus raw CPUID bit
// modifiers and MSR rules in the policy format. Every problem is located
// (PATH:LINE:COL). The format is described in docs/cpu-models.md:
//
//     [cpu]
//     name = "fleet-a"                 # default: the file's name without .toml
//     base = "x86-64-v3"               # host | a built-in model; omitted: only `features`
//     vendor = "GenuineIntel"          # default: the base's (or the host's)
//     family = 6                       # family/model/stepping: default the base's (or the host's)
//     model = 0x55
//     stepping = 4
//     brand = "Fleet CPU"              # 0x80000002-4, at most 48 bytes
//     features = ["+avx512f", "-x2apic"]
//     profile = "intel-skylake-server" # MSR profile; default: the base's
//     physical_address_bits = 46       # 0x80000008 EAX, min with the host's
//     linear_address_bits = 48
//
//     [[cpuid]]                        # raw bit modifiers, applied last
//     leaf = 0x7
//     subleaf = 0
//     register = "ebx"
//     set = 0x0
//     clear = 0x800
//
//     [[msr]]                          # rules exactly as a policy's [[rule]]
//     msr = "MSR_PLATFORM_INFO"
//     action = "emulate"
//     value = 0x0000_0800_0000_1000

import MSRPolicy

/// A file location of a part of a model file.
public struct CPUModelFileLocation: Sendable, Hashable {
    public var file: String
    public var line: Int
    public var column: Int
}

/// One `[[cpuid]]` modifier: register = register & ~clear | set.
public struct CPUIDEdit: Sendable, Hashable {
    public var leaf: UInt32
    public var subleaf: UInt32
    public var register: CPUIDRegister
    public var set: UInt32
    public var clear: UInt32
    public var location: CPUModelFileLocation?
}

/// A parsed model file.
public struct CPUModelFile: Sendable, Hashable {
    public var path: String
    public var name: String
    /// "host", a built-in name, or nil: no features beyond `featureChanges`.
    public var base: String?
    public var vendor: String?
    public var family: Int?
    public var model: Int?
    public var stepping: Int?
    public var brand: String?
    public var featureChanges: [CPUModelSpec.FeatureChange]
    public var profile: String?
    public var physicalAddressBits: Int?
    public var linearAddressBits: Int?
    public var cpuidEdits: [CPUIDEdit]
    public var msrRules: [MSRRule]
    /// Where `features` was written, for consistency errors.
    var featuresLocation: CPUModelFileLocation?
    /// Where `vendor` was written.
    var vendorLocation: CPUModelFileLocation?

    static let topKeys = ["cpu", "cpuid", "msr"]
    static let cpuKeys = ["base", "brand", "family", "features", "linear_address_bits", "model", "name",
                          "physical_address_bits", "profile", "stepping", "vendor"]
    static let cpuidKeys = ["clear", "leaf", "register", "set", "subleaf"]

    public static func parse(_ text: String, path: String) throws(CPUModelError) -> CPUModelFile {
        let document: TOMLReader.Document
        switch TOMLReader.read(text) {
        case .success(let parsed): document = parsed
        case .failure(let syntax): throw CPUModelError(syntax.message, file: path, line: syntax.line, column: syntax.column)
        }
        var reader = FileReader(path: path, document: document)
        return try reader.file()
    }

    /// The recipe this file describes, its base resolved (not yet against the host's features).
    func recipe(host: [CPUIDLeaf]) throws(CPUModelError) -> ModelRecipe {
        var recipe: ModelRecipe
        if let base {
            do {
                recipe = try CPUModels.baseRecipe(base, host: host)
            } catch {
                throw located(error.message, featuresLocation)
            }
        } else {
            recipe = ModelRecipe(name: name, features: [], startsFromHost: false)
        }
        recipe.name = name
        if let vendor {
            if let fixed = recipe.vendor, fixed != vendor {
                throw located("vendor \(vendor) contradicts the base model \(base ?? ""), which is \(fixed)", vendorLocation)
            }
            recipe.vendor = vendor
        }
        if let family { recipe.family = family }
        if let model { recipe.model = model }
        if let stepping { recipe.stepping = stepping }
        if let brand { recipe.brand = brand }
        if let profile { recipe.profileName = profile }
        if let physicalAddressBits { recipe.physicalAddressBits = physicalAddressBits }
        if let linearAddressBits { recipe.linearAddressBits = linearAddressBits }
        do {
            try recipe.applyChanges(featureChanges, context: "features")
        } catch {
            throw located("CPU model \(name) is inconsistent: " + error.message, featuresLocation)
        }
        return recipe
    }

    func located(_ message: String, _ location: CPUModelFileLocation?) -> CPUModelError {
        CPUModelError(message, file: path, line: location?.line, column: location?.column)
    }
}

/// One walk over a model file's tree.
private struct FileReader {
    let path: String
    let document: TOMLReader.Document

    func at(_ position: TOMLReader.Position) -> CPUModelFileLocation {
        CPUModelFileLocation(file: path, line: position.line, column: position.column)
    }

    func fail(_ position: TOMLReader.Position, _ message: String) -> CPUModelError {
        CPUModelError(message, file: path, line: position.line, column: position.column)
    }

    var cpuSection: TOMLReader.Section? { document.tables[["cpu"]] }

    func cpuKey(_ key: String) -> TOMLReader.Position {
        cpuSection?.keys[key]?.key ?? document.top.keys["cpu.\(key)"]?.key ?? cpuSection?.header ?? document.top.header
    }

    func cpuValue(_ key: String) -> TOMLReader.Position {
        cpuSection?.keys[key]?.value ?? document.top.keys["cpu.\(key)"]?.value ?? cpuSection?.header ?? document.top.header
    }

    mutating func file() throws(CPUModelError) -> CPUModelFile {
        for key in document.root.keys.sorted() where !CPUModelFile.topKeys.contains(key) {
            throw fail(document.top.keys[key]?.key ?? document.top.header,
                       "unknown key \"\(key)\" at the top level; a CPU model file has [cpu], [[cpuid]] and [[msr]]")
        }
        let cpu: [String: Node]
        switch document.root["cpu"] {
        case .table(let table): cpu = table
        case nil: throw fail(document.top.header, "a CPU model file needs a [cpu] table (name, base, features, ...)")
        case .some(let other): throw fail(document.top.keys["cpu"]?.value ?? document.top.header,
                                          "cpu must be a table ([cpu]), found \(other.typeName)")
        }
        for key in cpu.keys.sorted() where !CPUModelFile.cpuKeys.contains(key) {
            throw fail(cpuKey(key), "unknown key \"\(key)\" in [cpu]; it takes: \(CPUModelFile.cpuKeys.joined(separator: ", "))")
        }

        let defaultName = String(path.split(separator: "/").last ?? Substring(path)).replacingSuffix(".toml")
        var model = CPUModelFile(path: path, name: try string(cpu, "name") ?? defaultName, base: nil,
                                 featureChanges: [], cpuidEdits: [], msrRules: [])
        if let base = try string(cpu, "base") {
            let normalised = base == "max" ? "host" : base
            guard normalised == "host" || CPUModels.definition(named: normalised) != nil else {
                throw fail(cpuValue("base"), "unknown base model \"\(base)\"; a model file builds on host or a built-in model: "
                           + CPUModels.names.joined(separator: ", "))
            }
            model.base = normalised
        }
        if let vendor = try string(cpu, "vendor") {
            guard vendor.utf8.count <= 12, !vendor.isEmpty else {
                throw fail(cpuValue("vendor"), "vendor must be 1 to 12 characters, e.g. GenuineIntel or AuthenticAMD")
            }
            model.vendor = vendor
            model.vendorLocation = at(cpuValue("vendor"))
        }
        model.family = try integer(cpu, "family", limit: 0xFF + 0xF)
        model.model = try integer(cpu, "model", limit: 0xFF)
        model.stepping = try integer(cpu, "stepping", limit: 0xF)
        model.physicalAddressBits = try integer(cpu, "physical_address_bits", limit: 52)
        model.linearAddressBits = try integer(cpu, "linear_address_bits", limit: 57)
        if let brand = try string(cpu, "brand") {
            guard brand.utf8.count <= CPUModelSpec.maxBrandBytes else {
                throw fail(cpuValue("brand"), "brand is \(brand.utf8.count) bytes; CPUID carries at most \(CPUModelSpec.maxBrandBytes)")
            }
            model.brand = brand
        }
        if let profile = try string(cpu, "profile") {
            guard CPUProfiles.named(profile) != nil else {
                throw fail(cpuValue("profile"), "unknown MSR profile \"\(profile)\"; profiles: "
                           + CPUProfiles.all.map(\.name).joined(separator: ", "))
            }
            model.profile = profile
        }
        if let node = cpu["features"] {
            model.featuresLocation = at(cpuValue("features"))
            guard case .array(let items) = node else {
                throw fail(cpuValue("features"), "features must be an array of strings like \"+avx2\" or \"-x2apic\", found \(node.typeName)")
            }
            for item in items {
                guard case .string(let word) = item else {
                    throw fail(cpuValue("features"), "features must hold strings like \"+avx2\", found \(item.typeName)")
                }
                model.featureChanges.append(try featureChange(word.trimmingSpaces()))
            }
        } else {
            model.featuresLocation = at(cpuSection?.header ?? document.top.header)
        }
        model.cpuidEdits = try cpuidEdits()

        let (rules, errors) = PolicyParser.parseRules(in: document, key: "msr", file: path, knownProviders: ValueProviders.names)
        if let first = errors.min(by: { ($0.location.line, $0.location.column) < ($1.location.line, $1.location.column) }) {
            throw CPUModelError(first.message, file: path, line: first.location.line, column: first.location.column)
        }
        model.msrRules = rules
        return model
    }

    func featureChange(_ word: String) throws(CPUModelError) -> CPUModelSpec.FeatureChange {
        var name = Substring(word), enabled = true
        if let sign = name.first, sign == "+" || sign == "-" {
            enabled = sign == "+"
            name = name.dropFirst()
        }
        guard let canonical = CPUFeatures.canonicalName(String(name)) else {
            var message = "unknown CPU feature \"\(name)\" in features"
            if let close = CPUFeatures.suggestion(for: String(name)) { message += "; did you mean \(close)?" }
            throw fail(cpuValue("features"), message)
        }
        return CPUModelSpec.FeatureChange(feature: canonical, enabled: enabled)
    }

    func cpuidEdits() throws(CPUModelError) -> [CPUIDEdit] {
        guard let node = document.root["cpuid"] else { return [] }
        guard case .array(let elements) = node else {
            throw fail(document.top.keys["cpuid"]?.value ?? document.top.header, "cpuid must be an array of tables ([[cpuid]])")
        }
        let sections = document.arraysOfTables[["cpuid"]] ?? []
        var edits: [CPUIDEdit] = []
        for (position, element) in elements.enumerated() {
            let section = position < sections.count ? sections[position] : nil
            let header = section?.header ?? document.top.header
            func keyAt(_ key: String) -> TOMLReader.Position { section?.keys[key]?.key ?? header }
            func valueAt(_ key: String) -> TOMLReader.Position { section?.keys[key]?.value ?? header }
            guard case .table(let table) = element else { throw fail(header, "each [[cpuid]] must be a table") }
            for key in table.keys.sorted() where !CPUModelFile.cpuidKeys.contains(key) {
                throw fail(keyAt(key), "unknown key \"\(key)\" in [[cpuid]]; it takes: \(CPUModelFile.cpuidKeys.joined(separator: ", "))")
            }
            guard let leafNode = table["leaf"] else { throw fail(header, "[[cpuid]] needs leaf = <number>") }
            let leaf = try word(leafNode, "leaf", at: valueAt("leaf"))
            let subleaf = try table["subleaf"].map { node throws(CPUModelError) in try word(node, "subleaf", at: valueAt("subleaf")) } ?? 0
            guard case .string(let registerName)? = table["register"], let register = CPUIDRegister(rawValue: registerName.lowercased()) else {
                throw fail(table["register"] == nil ? header : valueAt("register"),
                           "[[cpuid]] needs register = \"eax\", \"ebx\", \"ecx\" or \"edx\"")
            }
            let set = try table["set"].map { node throws(CPUModelError) in try word(node, "set", at: valueAt("set")) } ?? 0
            let clear = try table["clear"].map { node throws(CPUModelError) in try word(node, "clear", at: valueAt("clear")) } ?? 0
            guard set != 0 || clear != 0 else { throw fail(header, "[[cpuid]] changes nothing: give set = <bits>, clear = <bits> or both") }
            guard set & clear == 0 else {
                throw fail(valueAt("set"), "set and clear share bits \(CPUModels.hex(set & clear)); a bit is either set or cleared")
            }
            if leaf >= 0x4000_0000 && leaf < 0x5000_0000 {
                throw fail(valueAt("leaf"), "leaf \(CPUModels.hex(leaf)) is a hypervisor leaf; the VMM owns those")
            }
            edits.append(CPUIDEdit(leaf: leaf, subleaf: subleaf, register: register, set: set, clear: clear, location: at(header)))
        }
        return edits
    }

    // MARK: Values

    func string(_ table: [String: Node], _ key: String) throws(CPUModelError) -> String? {
        guard let node = table[key] else { return nil }
        guard case .string(let text) = node, !text.isEmpty else {
            throw fail(cpuValue(key), "\(key) must be a non-empty string, found \(node.typeName)")
        }
        return text
    }

    func integer(_ table: [String: Node], _ key: String, limit: Int) throws(CPUModelError) -> Int? {
        guard let node = table[key] else { return nil }
        let value = try number(node, key, at: cpuValue(key))
        guard value <= UInt64(limit) else { throw fail(cpuValue(key), "\(key) is \(value); at most \(limit)") }
        return Int(value)
    }

    /// A 32-bit number: a TOML integer or a string of digits (0x..., 0b..., decimal).
    func word(_ node: Node, _ key: String, at position: TOMLReader.Position) throws(CPUModelError) -> UInt32 {
        let value = try number(node, key, at: position)
        guard value <= UInt64(UInt32.max) else { throw fail(position, "\(key) must fit in 32 bits, found \(CPUModels.hex64(value))") }
        return UInt32(value)
    }

    func number(_ node: Node, _ key: String, at position: TOMLReader.Position) throws(CPUModelError) -> UInt64 {
        switch node {
        case .int(let value) where value >= 0: return UInt64(value)
        case .string(let text):
            let digits = text.lowercased().filter { $0 != "_" }
            let parsed = digits.hasPrefix("0x") ? UInt64(digits.dropFirst(2), radix: 16)
                : digits.hasPrefix("0b") ? UInt64(digits.dropFirst(2), radix: 2) : UInt64(digits)
            if let parsed { return parsed }
            throw fail(position, "\(key) must be a number, found \"\(text)\"")
        default:
            throw fail(position, "\(key) must be a non-negative number, found \(node.typeName)")
        }
    }
}

extension CPUModels {
    static func hex64(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
}

extension String {
    func replacingSuffix(_ suffix: String) -> String { hasSuffix(suffix) ? String(dropLast(suffix.count)) : self }
}
