// CPUModel: resolving a model as its own host would — for comparing models
// and taking a fleet's baseline, where the models belong to other hosts (of
// either vendor, with features this one lacks) and nothing is run here.

extension CPUModels {
    /// `spec` resolved against `host` with every known feature added and the
    /// model's own vendor: the table a host that can give all of it would
    /// produce. Never refuses for this host's lack of a feature or vendor;
    /// a broken dependency chain or a malformed file is still refused.
    public static func resolveAnywhere(_ spec: CPUModelSpec, host: [CPUIDLeaf],
                                       readFile: (String) throws -> String) throws(CPUModelError) -> ResolvedCPUModel {
        let capable = capableHost(host)
        let (recipe, edits) = try recipe(for: spec, host: capable, readFile: readFile)
        var table = capable
        if let vendor = recipe.vendor { writeVendor(vendor, into: &table) }
        return try build(recipe, spec: spec, edits: edits, host: table)
    }

    /// `host` with the bit of every known feature set (leaves added where missing).
    static func capableHost(_ host: [CPUIDLeaf]) -> [CPUIDLeaf] {
        var table = host
        for feature in CPUFeatures.all {
            let set: (inout CPUIDLeaf) -> Void = { $0[feature.register] |= UInt32(1) << UInt32(feature.bit) }
            if !table.edit(feature.function, feature.index, set) {
                var leaf = CPUIDLeaf(function: feature.function, index: feature.index)
                set(&leaf)
                table.append(leaf)
            }
        }
        return table.sortedByLeaf
    }
}
