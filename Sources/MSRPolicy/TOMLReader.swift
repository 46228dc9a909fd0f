// TOMLReader: TOML 1.0 text → the `Node` tree the policy parser walks, plus
// where each table header and key was written. Pure Swift, and written so no
// input can trap: bytes are read only through bounds-checked helpers, numbers
// are accumulated with overflow checks, size and nesting are capped (so the
// recursion is bounded), and every problem is a located `SyntaxError` value.

/// A TOML value as the policy parser sees it. Floats, dates and times are
/// recognised (and checked) but only named: policies never use them.
package indirect enum Node: Equatable, Sendable {
    case int(Int)
    case string(String)
    case bool(Bool)
    case array([Node])
    case table([String: Node])
    case other(String)

    package var typeName: String {
        switch self {
        case .int: return "integer"
        case .string: return "string"
        case .bool: return "boolean"
        case .array: return "array"
        case .table: return "table"
        case .other(let name): return name
        }
    }
}

package enum TOMLReader {
    /// 1-based line and column; columns count Unicode scalars.
    package struct Position: Sendable, Hashable { package var line: Int; package var column: Int }
    package struct SyntaxError: Error, Equatable { package var line: Int; package var column: Int; package var message: String }
    /// Where a `key = value` line wrote its key and its value.
    package struct KeySpot: Equatable { package var key: Position; package var value: Position }
    /// A part of the file that a header opens (or the top, before any header),
    /// with the keys written directly in it (dotted keys joined by ".").
    package struct Section: Equatable { package var header: Position; package var keys: [String: KeySpot] = [:] }

    package struct Document {
        package var root: [String: Node]
        package var top: Section
        /// `[a.b]` sections by key path.
        package var tables: [[String]: Section]
        /// `[[a.b]]` sections by key path, in file order.
        package var arraysOfTables: [[String]: [Section]]
    }

    /// Policy files are small; anything bigger is a mistake.
    static let maxBytes = 4 << 20
    /// How deep arrays, tables and dotted keys may nest, which bounds the recursion.
    static let maxDepth = 64

    package static func read(_ text: String) -> Result<Document, SyntaxError> { read(bytes: Array(text.utf8)) }

    static func read(bytes: [UInt8]) -> Result<Document, SyntaxError> {
        guard bytes.count <= maxBytes else {
            return .failure(SyntaxError(line: 1, column: 1, message: "TOML syntax: the file is larger than \(maxBytes >> 20) MiB"))
        }
        var scanner = TOMLScanner(TOMLText(bytes))
        do {
            return .success(try scanner.document())
        } catch {
            let at = scanner.position(error.offset)
            return .failure(SyntaxError(line: at.line, column: at.column, message: "TOML syntax: " + error.message))
        }
    }
}

/// A problem at a byte offset; turned into line and column once, at the end.
struct TOMLFailure: Error { var offset: Int; var message: String }

/// The input bytes with bounds-checked access and position arithmetic.
struct TOMLText {
    let bytes: [UInt8]

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// The byte at `offset`, nil outside the text.
    subscript(_ offset: Int) -> UInt8? { offset >= 0 && offset < bytes.count ? bytes[offset] : nil }

    /// Line and column of `offset`, given the offsets at which lines start
    /// (at least those up to `offset`; the scanner records them as it goes).
    func position(_ offset: Int, lineStarts: [Int]) -> TOMLReader.Position {
        let clamped = min(max(offset, 0), bytes.count)
        // The last line start at or before the offset.
        var low = 0, high = lineStarts.count - 1
        while low < high {
            let middle = (low + high + 1) / 2
            if lineStarts[middle] <= clamped { low = middle } else { high = middle - 1 }
        }
        var start = min(lineStarts.isEmpty ? 0 : lineStarts[low], clamped)
        // A byte-order mark is not a column.
        if start == 0, clamped >= 3, bytes.starts(with: [0xEF, 0xBB, 0xBF]) { start = 3 }
        let scalars = bytes[start..<clamped].reduce(0) { $1 & 0xC0 == 0x80 ? $0 : $0 + 1 }
        return TOMLReader.Position(line: low + 1, column: scalars + 1)
    }

    /// The Unicode scalar starting at `offset` and its length in bytes, nil if
    /// the bytes there are not well-formed UTF-8.
    func scalar(at offset: Int) -> (value: UInt32, length: Int)? {
        guard let lead = self[offset] else { return nil }
        let length: Int, minimum: UInt32
        var value: UInt32
        switch lead {
        case 0x00...0x7F: return (UInt32(lead), 1)
        case 0xC2...0xDF: length = 2; minimum = 0x80; value = UInt32(lead & 0x1F)
        case 0xE0...0xEF: length = 3; minimum = 0x800; value = UInt32(lead & 0x0F)
        case 0xF0...0xF4: length = 4; minimum = 0x1_0000; value = UInt32(lead & 0x07)
        default: return nil
        }
        for next in 1..<length {
            guard let byte = self[offset + next], byte & 0xC0 == 0x80 else { return nil }
            value = value << 6 | UInt32(byte & 0x3F)
        }
        guard value >= minimum, value <= 0x10_FFFF, !(0xD800...0xDFFF).contains(value) else { return nil }
        return (value, length)
    }

    /// What stands at `offset`, for messages: 'x', U+000B, the end of the line/file.
    func describe(_ offset: Int) -> String {
        guard let byte = self[offset] else { return "the end of the file" }
        if byte == UInt8(ascii: "\n") || (byte == UInt8(ascii: "\r") && self[offset + 1] == UInt8(ascii: "\n")) {
            return "the end of the line"
        }
        if byte >= 0x20 && byte < 0x7F { return "'\(Character(Unicode.Scalar(byte)))'" }
        guard let (value, _) = scalar(at: offset) else { return "a byte that is not valid UTF-8" }
        return Self.codePoint(value)
    }

    static func codePoint(_ value: UInt32) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return "U+" + String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}

/// The tables built so far. Tables live in an array and refer to each other
/// by index, so a header can reopen a table deep in the tree and add to it.
private struct TableStore {
    enum Entry { case value(Node), table(Int), arrayOfTables([Int]) }
    /// How a table came to be, which decides what may add to it later (TOML 1.0):
    /// `implicit` (a header's path passed through it) may still get its own header;
    /// `header` tables are defined once; `dotted` tables (made by dotted keys)
    /// can be extended by dotted keys but never get a header of their own.
    enum Kind { case implicit, header, dotted, inline }
    struct Table { var kind: Kind; var entries: [String: Entry] = [:] }

    var tables = [Table(kind: .header)]

    mutating func add(_ kind: Kind) -> Int {
        tables.append(Table(kind: kind))
        return tables.count - 1
    }

    /// A new table of `kind`, stored as `key` in table `parent`.
    mutating func add(_ kind: Kind, as key: String, in parent: Int) -> Int {
        let created = add(kind)
        tables[parent].entries[key] = .table(created)
        return created
    }

    /// The finished tree below table `index` (depth is bounded by `maxDepth`).
    func node(_ index: Int) -> [String: Node] {
        guard index < tables.count else { return [:] }
        var result: [String: Node] = [:]
        for (key, entry) in tables[index].entries {
            switch entry {
            case .value(let value): result[key] = value
            case .table(let table): result[key] = .table(node(table))
            case .arrayOfTables(let list): result[key] = .array(list.map { .table(node($0)) })
            }
        }
        return result
    }
}

/// One pass over the text: the grammar of TOML 1.0, with table bookkeeping.
private struct TOMLScanner {
    let text: TOMLText
    var index = 0
    var store = TableStore()

    /// Where key/value lines currently go: the table, its depth, and the section record.
    enum SectionID: Hashable { case top, table([String]), arrayElement([String], Int) }
    var current = 0
    var currentDepth = 0
    var currentSection = SectionID.top
    var sections: [SectionID: (header: Int, keys: [String: (key: Int, value: Int)])] = [.top: (0, [:])]
    var arrayHeaderCounts: [[String]: Int] = [:]
    /// Byte offsets at which the lines read so far start.
    var lineStarts = [0]

    init(_ text: TOMLText) { self.text = text }

    func position(_ offset: Int) -> TOMLReader.Position { text.position(offset, lineStarts: lineStarts) }

    // MARK: Bytes

    func peek(_ ahead: Int = 0) -> UInt8? { text[index + ahead] }

    func isAt(_ ascii: Unicode.Scalar, ahead: Int = 0) -> Bool { peek(ahead) == UInt8(ascii: ascii) }

    mutating func consume(_ ascii: Unicode.Scalar) -> Bool {
        guard isAt(ascii) else { return false }
        index += 1
        return true
    }

    func fail(_ message: String, at offset: Int? = nil) -> TOMLFailure {
        TOMLFailure(offset: offset ?? index, message: message)
    }

    func found() -> String { text.describe(index) }

    mutating func skipSpaces() {
        while isAt(" ") || isAt("\t") { index += 1 }
    }

    /// A line ending here (LF or CRLF): its length, 0 if none. A lone CR is an error.
    func lineEnding() throws(TOMLFailure) -> Int {
        if isAt("\n") { return 1 }
        if isAt("\r") {
            guard isAt("\n", ahead: 1) else { throw fail("a carriage return must be followed by a line feed") }
            return 2
        }
        return 0
    }

    /// Steps over a line ending, if one is here, and notes where the next line starts.
    mutating func consumeLineEnding() throws(TOMLFailure) -> Bool {
        let length = try lineEnding()
        guard length > 0 else { return false }
        index += length
        lineStarts.append(index)
        return true
    }

    /// Control characters other than tab are not allowed in comments and strings.
    static func isControl(_ byte: UInt8) -> Bool { (byte < 0x20 && byte != 0x09) || byte == 0x7F }

    /// Steps over one character of a comment or string (a whole UTF-8
    /// sequence, which must be well-formed) and returns its bytes.
    mutating func character(in place: String) throws(TOMLFailure) -> ArraySlice<UInt8> {
        let start = index
        guard let byte = peek() else { throw fail("unexpected end of the file in \(place)") }
        if byte < 0x80 {
            if Self.isControl(byte) { throw fail("control character \(found()) is not allowed in \(place)") }
            index += 1
        } else {
            guard let (_, length) = text.scalar(at: index) else { throw fail("the file is not valid UTF-8") }
            index += length
        }
        return text.bytes[start..<index]
    }

    mutating func skipComment() throws(TOMLFailure) {
        guard consume("#") else { return }
        while let byte = peek(), byte != UInt8(ascii: "\n"), byte != UInt8(ascii: "\r") {
            _ = try character(in: "a comment")
        }
    }

    /// Spaces, comments and line endings (inside arrays).
    mutating func skipBlank() throws(TOMLFailure) {
        while true {
            skipSpaces()
            try skipComment()
            guard try consumeLineEnding() else { return }
        }
    }

    /// Spaces, an optional comment, then a line ending or the end of the file.
    mutating func endLine() throws(TOMLFailure) {
        skipSpaces()
        try skipComment()
        guard peek() != nil else { return }
        guard try consumeLineEnding() else { throw fail("expected the end of the line, found \(found())") }
    }

    // MARK: Document

    mutating func document() throws(TOMLFailure) -> TOMLReader.Document {
        if peek() == 0xEF, peek(1) == 0xBB, peek(2) == 0xBF { index = 3 }  // a UTF-8 byte-order mark
        while peek() != nil {
            skipSpaces()
            if isAt("[") {
                try header()
            } else if let byte = peek(), byte != UInt8(ascii: "#"), byte != UInt8(ascii: "\n"), byte != UInt8(ascii: "\r") {
                try keyValue(into: current, depth: currentDepth, record: true)
            }
            try endLine()
        }
        return TOMLReader.Document(root: store.node(0), top: section(.top), tables: tableSections(),
                                   arraysOfTables: arraySections())
    }

    // MARK: Keys

    /// A key, dotted or not: its parts, unescaped.
    mutating func key() throws(TOMLFailure) -> [String] {
        var parts: [String] = []
        repeat {
            skipSpaces()
            parts.append(try simpleKey())
            skipSpaces()
        } while consume(".")
        return parts
    }

    mutating func simpleKey() throws(TOMLFailure) -> String {
        if isAt("\"") { return try basicString() }
        if isAt("'") { return try literalString() }
        let start = index
        while let byte = peek(), Self.isBareKeyByte(byte) { index += 1 }
        guard index > start else { throw fail("expected a key, found \(found())") }
        return String(decoding: text.bytes[start..<index], as: UTF8.self)
    }

    static func isBareKeyByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"): return true
        default: return false
        }
    }

    static func display(_ parts: [String]) -> String {
        parts.map { part in part.utf8.allSatisfy(isBareKeyByte) && !part.isEmpty ? part : QuotedString.quoted(part) }
            .joined(separator: ".")
    }

    // MARK: Headers

    /// `[a.b]` or `[[a.b]]`: opens the table that the following lines fill.
    mutating func header() throws(TOMLFailure) {
        let start = index
        index += 1
        let isArray = consume("[")
        let path = try key()
        guard consume("]") else { throw fail("expected ']' to end the table header, found \(found())") }
        if isArray, !consume("]") { throw fail("expected ']]' to end the array-of-tables header, found \(found())") }
        guard path.count <= TOMLReader.maxDepth else {
            throw fail("the header nests deeper than \(TOMLReader.maxDepth) tables", at: start)
        }
        let name = Self.display(path)

        var table = 0
        for (depth, part) in path.dropLast().enumerated() {
            switch store.tables[table].entries[part] {
            case nil:
                table = store.add(.implicit, as: part, in: table)
            case .table(let existing):
                table = existing
            case .arrayOfTables(let list):
                table = list.last ?? table
            case .value:
                throw fail("\(Self.display(Array(path.prefix(depth + 1)))) is already a value, so [\(name)] cannot be a table in it", at: start)
            }
        }
        let last = path.last ?? ""
        let existing = store.tables[table].entries[last]
        if isArray {
            let element = store.add(.header)
            switch existing {
            case nil: store.tables[table].entries[last] = .arrayOfTables([element])
            case .arrayOfTables(var list):
                store.tables[table].entries[last] = nil  // so the append below does not copy the list
                list.append(element)
                store.tables[table].entries[last] = .arrayOfTables(list)
            case .table: throw fail("[[\(name)]] names a table already defined; an array of tables must only be written [[\(name)]]", at: start)
            case .value: throw fail("\(name) is already a value, so [[\(name)]] cannot add to it", at: start)
            }
            current = element
            let number = arrayHeaderCounts[path, default: 0]
            arrayHeaderCounts[path] = number + 1
            currentSection = .arrayElement(path, number)
        } else {
            switch existing {
            case nil:
                current = store.add(.header, as: last, in: table)
            case .table(let defined) where store.tables[defined].kind == .implicit:
                store.tables[defined].kind = .header
                current = defined
            case .table(let defined):
                let how = store.tables[defined].kind == .dotted ? "with dotted keys" : "by an earlier [\(name)]"
                throw fail("table [\(name)] is defined twice: it was already defined \(how)", at: start)
            case .arrayOfTables: throw fail("[\(name)] names an array of tables; add an element with [[\(name)]]", at: start)
            case .value: throw fail("\(name) is already a value, so [\(name)] cannot be a table", at: start)
            }
            currentSection = .table(path)
        }
        currentDepth = path.count
        sections[currentSection] = (start, [:])
    }

    // MARK: Key/value pairs

    /// `key = value` into `table` (which sits `depth` levels down).
    mutating func keyValue(into table: Int, depth: Int, record: Bool) throws(TOMLFailure) {
        let keyStart = index
        let path = try key()
        guard consume("=") else { throw fail("expected '=' after the key \(Self.display(path)), found \(found())") }
        skipSpaces()
        let valueStart = index
        let valueDepth = depth + path.count
        guard valueDepth <= TOMLReader.maxDepth else {
            throw fail("the key nests deeper than \(TOMLReader.maxDepth) levels", at: keyStart)
        }
        let value = try self.value(depth: valueDepth)
        var target = table
        for (level, part) in path.dropLast().enumerated() {
            switch store.tables[target].entries[part] {
            case nil:
                target = store.add(.dotted, as: part, in: target)
            case .table(let existing) where store.tables[existing].kind == .dotted:
                target = existing
            default:
                throw fail("\(Self.display(Array(path.prefix(level + 1)))) is already defined, so the dotted key \(Self.display(path)) cannot add to it",
                           at: keyStart)
            }
        }
        let last = path.last ?? ""
        guard store.tables[target].entries[last] == nil else {
            throw fail("key \(Self.display(path)) is defined twice", at: keyStart)
        }
        store.tables[target].entries[last] = .value(value)
        let joined = path.joined(separator: ".")
        if record, sections[currentSection]?.keys[joined] == nil {
            sections[currentSection]?.keys[joined] = (keyStart, valueStart)
        }
    }

    // MARK: Values

    mutating func value(depth: Int, expected: String = "a value") throws(TOMLFailure) -> Node {
        guard let byte = peek() else { throw fail("expected \(expected), found \(found())") }
        switch byte {
        case UInt8(ascii: "\""):
            return .string(isAt("\"", ahead: 1) && isAt("\"", ahead: 2) ? try multiLineString() : try basicString())
        case UInt8(ascii: "'"):
            return .string(isAt("'", ahead: 1) && isAt("'", ahead: 2) ? try multiLineString() : try literalString())
        case UInt8(ascii: "["): return try array(depth: depth)
        case UInt8(ascii: "{"): return try inlineTable(depth: depth)
        case UInt8(ascii: "t"), UInt8(ascii: "f"):
            for (word, result) in [("true", true), ("false", false)] where matches(word) {
                index += word.utf8.count
                return .bool(result)
            }
            throw fail("expected \(expected), found \(found()) (booleans are lowercase true and false)")
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "+"), UInt8(ascii: "-"),
             UInt8(ascii: "i"), UInt8(ascii: "n"):
            return try numberOrDate()
        default:
            let hint = Self.isBareKeyByte(byte) ? " (a string needs quotes)" : ""
            throw fail("expected \(expected), found \(found())\(hint)")
        }
    }

    func matches(_ word: String) -> Bool {
        word.utf8.enumerated().allSatisfy { peek($0.offset) == $0.element }
    }

    mutating func array(depth: Int) throws(TOMLFailure) -> Node {
        guard depth <= TOMLReader.maxDepth else { throw fail("arrays and tables nest deeper than \(TOMLReader.maxDepth) levels") }
        index += 1
        var elements: [Node] = []
        while true {
            try skipBlank()
            if consume("]") { break }
            elements.append(try value(depth: depth + 1, expected: "a value or ']'"))
            try skipBlank()
            if consume(",") { continue }
            if consume("]") { break }
            throw fail("expected ',' or ']' in the array, found \(found())")
        }
        return .array(elements)
    }

    /// `{ k = v, ... }`: on one line, no trailing comma, closed once written.
    mutating func inlineTable(depth: Int) throws(TOMLFailure) -> Node {
        guard depth <= TOMLReader.maxDepth else { throw fail("arrays and tables nest deeper than \(TOMLReader.maxDepth) levels") }
        index += 1
        let mark = store.tables.count
        let table = store.add(.inline)
        skipSpaces()
        if !consume("}") {
            while true {
                skipSpaces()
                try keyValue(into: table, depth: depth, record: false)
                skipSpaces()
                if consume(",") { continue }
                if consume("}") { break }
                let hint = try lineEnding() > 0 ? " (an inline table must be written on one line)" : ""
                throw fail("expected ',' or '}' in the inline table, found \(found())\(hint)")
            }
        }
        let node = store.node(table)
        store.tables.removeSubrange(mark...)  // only this table's own sub-tables were added since
        return .table(node)
    }

    // MARK: Strings

    /// `"..."` with escapes, on one line.
    mutating func basicString() throws(TOMLFailure) -> String {
        index += 1
        var bytes: [UInt8] = []
        while true {
            guard let byte = peek() else { throw fail("the string is not closed: expected '\"', found the end of the file") }
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                return String(decoding: bytes, as: UTF8.self)
            case UInt8(ascii: "\\"):
                try escape(into: &bytes)
            case UInt8(ascii: "\n"), UInt8(ascii: "\r"):
                throw fail("the string is not closed on its line (use \"\"\" for a multi-line string)")
            default:
                bytes += try character(in: "a string (write it as an escape)")
            }
        }
    }

    /// `'...'`, taken as written, on one line.
    mutating func literalString() throws(TOMLFailure) -> String {
        index += 1
        let start = index
        while true {
            guard let byte = peek() else { throw fail("the string is not closed: expected \"'\", found the end of the file") }
            if byte == UInt8(ascii: "'") {
                index += 1
                return String(decoding: text.bytes[start..<(index - 1)], as: UTF8.self)
            }
            if byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") {
                throw fail("the string is not closed on its line (use ''' for a multi-line string)")
            }
            _ = try character(in: "a string")
        }
    }

    /// `"""..."""` (escapes, line-ending backslash) or `'''...'''` (as written).
    /// A line ending right after the opening quotes is dropped; up to two
    /// quotes may stand just inside the closing ones.
    mutating func multiLineString() throws(TOMLFailure) -> String {
        guard let quote = peek() else { throw fail("expected a string") }
        let escapes = quote == UInt8(ascii: "\"")
        let start = index
        index += 3
        _ = try consumeLineEnding()
        var bytes: [UInt8] = []
        while true {
            guard let byte = peek() else {
                throw fail("the multi-line string opened at line \(position(start).line) is not closed")
            }
            if byte == quote {
                var run = 0
                while peek(run) == quote { run += 1 }
                index += run
                guard run >= 3 else { bytes += Array(repeating: quote, count: run); continue }
                guard run <= 5 else { throw fail("too many quotes at the end of the multi-line string", at: index - run) }
                bytes += Array(repeating: quote, count: run - 3)
                return String(decoding: bytes, as: UTF8.self)
            }
            if escapes && byte == UInt8(ascii: "\\") {
                if try trimLineEndingBackslash() { continue }
                try escape(into: &bytes)
                continue
            }
            let lineEndingStart = index
            if try consumeLineEnding() {
                bytes += text.bytes[lineEndingStart..<index]
                continue
            }
            bytes += try character(in: "a string")
        }
    }

    /// A backslash that ends its line swallows the line ending and the blank
    /// space after it; true if that is what stands here.
    mutating func trimLineEndingBackslash() throws(TOMLFailure) -> Bool {
        var ahead = 1
        while isAt(" ", ahead: ahead) || isAt("\t", ahead: ahead) { ahead += 1 }
        guard isAt("\n", ahead: ahead) || (isAt("\r", ahead: ahead) && isAt("\n", ahead: ahead + 1)) else { return false }
        index += ahead
        while true {
            skipSpaces()
            guard try consumeLineEnding() else { return true }
        }
    }

    /// One escape sequence (the backslash is at `index`), appended as UTF-8.
    mutating func escape(into bytes: inout [UInt8]) throws(TOMLFailure) {
        let start = index
        index += 1
        guard let letter = peek() else { throw fail("the string is not closed: expected an escape, found the end of the file") }
        index += 1
        let digits: Int
        switch letter {
        case UInt8(ascii: "b"): bytes.append(0x08); return
        case UInt8(ascii: "t"): bytes.append(0x09); return
        case UInt8(ascii: "n"): bytes.append(0x0A); return
        case UInt8(ascii: "f"): bytes.append(0x0C); return
        case UInt8(ascii: "r"): bytes.append(0x0D); return
        case UInt8(ascii: "\""), UInt8(ascii: "\\"): bytes.append(letter); return
        case UInt8(ascii: "u"): digits = 4
        case UInt8(ascii: "U"): digits = 8
        default: throw fail("invalid escape \\\(text.describe(start + 1)) (TOML has \\b \\t \\n \\f \\r \\\" \\\\ \\uXXXX \\UXXXXXXXX)", at: start)
        }
        var value: UInt32 = 0
        for _ in 0..<digits {
            guard let byte = peek(), let digit = Self.digitValue(byte), digit < 16 else {
                throw fail("\\\(Character(Unicode.Scalar(letter))) needs \(digits) hexadecimal digits", at: start)
            }
            value = value << 4 | UInt32(digit)
            index += 1
        }
        guard let scalar = Unicode.Scalar(value) else {
            throw fail("escape \\\(Character(Unicode.Scalar(letter)))… is \(TOMLText.codePoint(value)), which is not a Unicode scalar value", at: start)
        }
        UTF8.encode(scalar) { bytes.append($0) }
    }

    // MARK: Numbers, dates and times

    static func digitValue(_ byte: UInt8) -> Int? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return Int(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return Int(byte - UInt8(ascii: "a")) + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return Int(byte - UInt8(ascii: "A")) + 10
        default: return nil
        }
    }

    func isDigit(ahead: Int) -> Bool {
        guard let byte = peek(ahead) else { return false }
        return byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    mutating func numberOrDate() throws(TOMLFailure) -> Node {
        if (0..<4).allSatisfy({ isDigit(ahead: $0) }) && isAt("-", ahead: 4) { return try dateTime() }
        if isDigit(ahead: 0) && isDigit(ahead: 1) && isAt(":", ahead: 2) {
            let start = index
            try time()
            try endOfToken(start, what: "time")
            return .other("time")
        }
        let start = index
        while let byte = peek(), Self.isBareKeyByte(byte) || byte == UInt8(ascii: "+") || byte == UInt8(ascii: ".") { index += 1 }
        let token = Array(text.bytes[start..<index])
        let number = String(decoding: token, as: UTF8.self)
        var body = token[...]
        let sign = body.first == UInt8(ascii: "+") || body.first == UInt8(ascii: "-") ? body.popFirst() : nil
        if body.elementsEqual("inf".utf8) || body.elementsEqual("nan".utf8) { return .other("floating-point number") }
        guard let first = body.first, first >= UInt8(ascii: "0"), first <= UInt8(ascii: "9") else {
            throw fail("invalid value \(number) (a string needs quotes)", at: start)
        }

        let prefixes: [(UInt8, Int, String)] = [(UInt8(ascii: "x"), 16, "hexadecimal"), (UInt8(ascii: "o"), 8, "octal"), (UInt8(ascii: "b"), 2, "binary")]
        if body.first == UInt8(ascii: "0"), body.count > 1, let (_, radix, name) = prefixes.first(where: { $0.0 == body.dropFirst().first }) {
            guard sign == nil else { throw fail("a \(name) integer cannot have a sign: \(number)", at: start) }
            guard let magnitude = Self.digits(body.dropFirst(2), radix: radix), magnitude <= UInt64(Int.max) else {
                throw Self.badInteger(number, radix: radix, name: name, at: start)
            }
            return .int(Int(magnitude))
        }
        if body.contains(where: { $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") }) {
            guard Self.isFloat(body) else { throw fail("invalid floating-point number \(number)", at: start) }
            return .other("floating-point number")
        }
        if body.count > 1 && body.first == UInt8(ascii: "0") {
            throw fail("invalid integer \(number): leading zeros are not allowed", at: start)
        }
        guard let magnitude = Self.digits(body, radix: 10) else { throw Self.badInteger(number, radix: 10, name: "decimal", at: start) }
        if sign == UInt8(ascii: "-") {
            guard magnitude <= UInt64(Int.max) + 1 else { throw Self.badInteger(number, radix: 10, name: "decimal", at: start) }
            return .int(Int(truncatingIfNeeded: 0 &- magnitude))
        }
        guard magnitude <= UInt64(Int.max) else { throw Self.badInteger(number, radix: 10, name: "decimal", at: start) }
        return .int(Int(magnitude))
    }

    /// The error for digits that are malformed or out of the signed 64-bit range.
    static func badInteger(_ number: String, radix: Int, name: String, at offset: Int) -> TOMLFailure {
        let body = number.utf8.drop(while: { $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "-") }).dropFirst(radix == 10 ? 0 : 2)
        let wellFormed = digitsAreWellFormed(body, radix: radix)
        let message = wellFormed
            ? "integer \(number) is not representable in 64 bits (signed); numbers of 2^63 and above must be written as strings, e.g. \"0xffff_ffff_ffff_ffff\""
            : "invalid \(name) integer \(number) (digits may be separated by single underscores between digits)"
        return TOMLFailure(offset: offset, message: message)
    }

    /// Digits of `radix` with single underscores between them.
    static func digitsAreWellFormed<C: Collection>(_ digits: C, radix: Int) -> Bool where C.Element == UInt8 {
        var previousWasDigit = false
        for byte in digits {
            if byte == UInt8(ascii: "_") {
                guard previousWasDigit else { return false }
                previousWasDigit = false
            } else {
                guard let value = digitValue(byte), value < radix else { return false }
                previousWasDigit = true
            }
        }
        return previousWasDigit
    }

    /// The value of well-formed digits, nil if malformed or above UInt64.max.
    static func digits<C: Collection>(_ digits: C, radix: Int) -> UInt64? where C.Element == UInt8 {
        guard digitsAreWellFormed(digits, radix: radix) else { return nil }
        var value: UInt64 = 0
        for byte in digits where byte != UInt8(ascii: "_") {
            guard let digit = digitValue(byte) else { return nil }
            let (shifted, overflowA) = value.multipliedReportingOverflow(by: UInt64(radix))
            let (sum, overflowB) = shifted.addingReportingOverflow(UInt64(digit))
            if overflowA || overflowB { return nil }
            value = sum
        }
        return value
    }

    /// An unsigned float body: integer part, then a fraction, an exponent or both.
    static func isFloat(_ body: ArraySlice<UInt8>) -> Bool {
        let exponentAt = body.firstIndex { $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") }
        let mantissa = body[..<(exponentAt ?? body.endIndex)]
        let dot = mantissa.firstIndex(of: UInt8(ascii: "."))
        let integer = mantissa[..<(dot ?? mantissa.endIndex)]
        guard digitsAreWellFormed(integer, radix: 10), integer.count == 1 || integer.first != UInt8(ascii: "0") else { return false }
        if let dot, !digitsAreWellFormed(mantissa[(dot + 1)...], radix: 10) { return false }
        if let exponentAt {
            var exponent = body[(exponentAt + 1)...]
            if exponent.first == UInt8(ascii: "+") || exponent.first == UInt8(ascii: "-") { exponent = exponent.dropFirst() }
            return digitsAreWellFormed(exponent, radix: 10)
        }
        return dot != nil
    }

    /// Exactly `count` decimal digits as a number.
    mutating func fixedDigits(_ count: Int, what: String) throws(TOMLFailure) -> Int {
        var value = 0
        for _ in 0..<count {
            guard let byte = peek(), let digit = Self.digitValue(byte), digit < 10 else {
                throw fail("invalid \(what): expected a digit, found \(found())")
            }
            value = value * 10 + digit
            index += 1
        }
        return value
    }

    mutating func expect(_ ascii: Unicode.Scalar, in what: String) throws(TOMLFailure) {
        guard consume(ascii) else { throw fail("invalid \(what): expected '\(ascii)', found \(found())") }
    }

    /// Three fixed-width numbers with a separator between them: a date's or a time's fields.
    mutating func fields(_ first: Int, _ second: Int, _ third: Int, separatedBy separator: Unicode.Scalar,
                         what: String) throws(TOMLFailure) -> (Int, Int, Int) {
        let a = try fixedDigits(first, what: what)
        try expect(separator, in: what)
        let b = try fixedDigits(second, what: what)
        try expect(separator, in: what)
        return (a, b, try fixedDigits(third, what: what))
    }

    /// `1979-05-27`, optionally followed by `T` or a space and a time, then an optional offset.
    mutating func dateTime() throws(TOMLFailure) -> Node {
        let start = index
        let (year, month, day) = try fields(4, 2, 2, separatedBy: "-", what: "date")
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        guard (1...12).contains(month), day >= 1, day <= days[month - 1] else {
            throw fail("invalid date: \(year)-\(month)-\(day) does not exist", at: start)
        }
        let timeFollows = isAt("T") || isAt("t")
            || (isAt(" ") && isDigit(ahead: 1) && isDigit(ahead: 2) && isAt(":", ahead: 3))
        guard timeFollows else {
            try endOfToken(start, what: "date")
            return .other("date")
        }
        index += 1
        try time()
        if consume("Z") || consume("z") {
        } else if isAt("+") || isAt("-") {
            index += 1
            let hours = try fixedDigits(2, what: "time offset")
            try expect(":", in: "time offset")
            let minutes = try fixedDigits(2, what: "time offset")
            guard hours < 24, minutes < 60 else { throw fail("invalid time offset", at: start) }
        }
        try endOfToken(start, what: "date-time")
        return .other("date-time")
    }

    /// `07:32:00` with optional fractional seconds (TOML 1.0 requires the seconds).
    mutating func time() throws(TOMLFailure) {
        let start = index
        let (hours, minutes, seconds) = try fields(2, 2, 2, separatedBy: ":", what: "time")
        guard hours < 24, minutes < 60, seconds <= 60 else { throw fail("invalid time: out of range", at: start) }
        if consume(".") {
            guard isDigit(ahead: 0) else { throw fail("invalid time: expected digits after '.', found \(found())") }
            while isDigit(ahead: 0) { index += 1 }
        }
    }

    /// A date or time must not run on into more letters or digits.
    func endOfToken(_ start: Int, what: String) throws(TOMLFailure) {
        guard let byte = peek() else { return }
        if Self.isBareKeyByte(byte) || byte == UInt8(ascii: ".") || byte == UInt8(ascii: ":") || byte == UInt8(ascii: "+") {
            throw fail("invalid \(what): unexpected \(found()) after it", at: start)
        }
    }

    // MARK: Sections

    func section(_ id: SectionID) -> TOMLReader.Section {
        guard let raw = sections[id] else { return TOMLReader.Section(header: TOMLReader.Position(line: 1, column: 1)) }
        var section = TOMLReader.Section(header: position(raw.header))
        for (key, spot) in raw.keys {
            section.keys[key] = TOMLReader.KeySpot(key: position(spot.key), value: position(spot.value))
        }
        return section
    }

    func tableSections() -> [[String]: TOMLReader.Section] {
        var result: [[String]: TOMLReader.Section] = [:]
        for id in sections.keys { if case .table(let path) = id { result[path] = section(id) } }
        return result
    }

    func arraySections() -> [[String]: [TOMLReader.Section]] {
        var result: [[String]: [TOMLReader.Section]] = [:]
        for (path, count) in arrayHeaderCounts {
            result[path] = (0..<count).map { section(.arrayElement(path, $0)) }
        }
        return result
    }
}
