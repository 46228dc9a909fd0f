// SharedRegionsReport.swift — the shared-regions list of a page map as text
// for people (a table) and for tools (JSON), as `deflect` prints it at the end
// of a run. Addresses are hex strings in both: JSON numbers lose precision
// above 2^53 in many parsers.
import KVMABI

public enum SharedRegionsReport {
    /// A fixed-width table of the shared ranges, end exclusive, with a summary line.
    public static func table(_ map: GPAAttributeMap) -> String {
        let shared = map.sharedRanges
        var lines: [String] = []
        let summary = "\(sizeString(map.sharedBytes)) of \(sizeString(map.size)) guest memory"
        if shared.isEmpty {
            lines.append("Shared regions: none (\(summary); \(map.rangeCount) range(s) in the map)")
            return lines.joined(separator: "\n") + "\n"
        }
        lines.append("Shared regions: \(shared.count) range(s), \(summary) (\(map.rangeCount) range(s) in the map)")
        lines.append(pad("start", 20) + pad("end (exclusive)", 20) + "size")
        for range in shared {
            lines.append(pad(hex(range.lowerBound, digits: 16), 20) + pad(hex(range.upperBound, digits: 16), 20)
                         + sizeString(range.upperBound - range.lowerBound))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// One JSON object: memory size, range count, shared bytes and the shared ranges.
    public static func json(_ map: GPAAttributeMap) -> String {
        let regions = map.sharedRanges.map { range in
            "{\"start\":\"\(hex(range.lowerBound))\",\"end\":\"\(hex(range.upperBound))\",\"size\":\"\(hex(range.upperBound - range.lowerBound))\"}"
        }
        return "{\"memorySize\":\"\(hex(map.size))\",\"rangeCount\":\(map.rangeCount),"
            + "\"sharedBytes\":\"\(hex(map.sharedBytes))\",\"shared\":[\(regions.joined(separator: ","))]}"
    }


    private static func pad(_ text: String, _ width: Int) -> String {
        text + String(repeating: " ", count: max(1, width - text.count))
    }
}
