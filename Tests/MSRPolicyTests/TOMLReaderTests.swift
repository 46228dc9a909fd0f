// Tests for TOMLReader: TOML 1.0 documents and the trees they give, malformed
// documents and where their error is reported, where keys and headers were
// written, and fuzzed input, which must always give a tree or an error.

import Foundation
import SeededRandom
import Testing
@testable import MSRPolicy

/// The error a text gives, nil if it reads.
private func syntaxError(_ text: String) -> TOMLReader.SyntaxError? {
    if case .failure(let error) = TOMLReader.read(text) { return error }
    return nil
}

@Suite struct TOMLReaderTests {
    /// Documents and the trees they must give.
    static let valid: [(String, [String: Node])] = [
        ("# only a comment\n\n   \t\n", [:]),
        ("a = 1\nb = \"x\"\nc = true\nd = false\n", ["a": .int(1), "b": .string("x"), "c": .bool(true), "d": .bool(false)]),
        ("a.b.c = 1\n\"quoted key\" = 2\n'lit.key' = 3\n a . \"b c\" . d = 4\n\"\" = 5\n", [
            "a": .table(["b": .table(["c": .int(1)]), "b c": .table(["d": .int(4)])]),
            "quoted key": .int(2), "lit.key": .int(3), "": .int(5),
        ]),
        ("a = +99\nb = -17\nc = 0\nd = 1_000\ne = 0xDEAD_beef\nf = 0o755\ng = 0b1101\nh = 9223372036854775807\ni = -9223372036854775808\nj = -0\n", [
            "a": .int(99), "b": .int(-17), "c": .int(0), "d": .int(1000), "e": .int(0xdead_beef), "f": .int(0o755),
            "g": .int(13), "h": .int(Int.max), "i": .int(Int.min), "j": .int(0),
        ]),
        ("s = \"tab\\tquote\\\"back\\\\ \\u00E9 \\U0001F600 \\b\\f\\r\\n\"\np = 'C:\\Users\\x \"q\"'\n", [
            "s": .string("tab\tquote\"back\\ é 😀 \u{8}\u{C}\r\n"), "p": .string("C:\\Users\\x \"q\""),
        ]),
        ("m = \"\"\"\nline 1\n  line 2\"\"\"\nj = \"\"\"\\\n   The quick \\  \n\n   brown\"\"\"\nq = \"\"\"a\"\"b\"\"\"\"\"\n", [
            "m": .string("line 1\n  line 2"), "j": .string("The quick brown"), "q": .string("a\"\"b\"\""),
        ]),
        ("r = '''\nfirst\n  second \\n '' ''''\n", ["r": .string("first\n  second \\n '' '")]),
        ("a = [1, \"two\", [3.0, true], {x = 1}, ]\nb = [\n  1, # one\n  2\n  # end\n]\nc = []\n", [
            "a": .array([.int(1), .string("two"), .array([.other("floating-point number"), .bool(true)]), .table(["x": .int(1)])]),
            "b": .array([.int(1), .int(2)]), "c": .array([]),
        ]),
        ("t = { a = 1, b.c = \"x\", d = { e = [] } }\nu = {}\n", [
            "t": .table(["a": .int(1), "b": .table(["c": .string("x")]), "d": .table(["e": .array([])])]), "u": .table([:]),
        ]),
        ("[x]\na = 1\n[x.y]\nb = 2\n[[r]]\nn = 1\n[[r]]\nn = 2\n[r.sub]\nk = 3\n", [
            "x": .table(["a": .int(1), "y": .table(["b": .int(2)])]),
            "r": .array([.table(["n": .int(1)]), .table(["n": .int(2), "sub": .table(["k": .int(3)])])]),
        ]),
        ("[a.b]\nc = 1\n[a]\nd = 2\n", ["a": .table(["b": .table(["c": .int(1)]), "d": .int(2)])]),
        ("[fruit]\napple.color = \"red\"\n[fruit.apple.texture]\nsmooth = true\n", [
            "fruit": .table(["apple": .table(["color": .string("red"), "texture": .table(["smooth": .bool(true)])])]),
        ]),
        ("f1 = 3.14\nf2 = -1e-10\nf3 = 6.626E+34\nf4 = inf\nf5 = -nan\nf6 = 1_000.000_1\nf7 = 0e0\n", [
            "f1": .other("floating-point number"), "f2": .other("floating-point number"), "f3": .other("floating-point number"),
            "f4": .other("floating-point number"), "f5": .other("floating-point number"), "f6": .other("floating-point number"),
            "f7": .other("floating-point number"),
        ]),
        ("d1 = 1979-05-27T07:32:00Z\nd2 = 1979-05-27t00:32:00.999999-07:00\nd3 = 1979-05-27 07:32:00\nld = 2024-02-29 # leap\nlt = 07:32:00.5\n", [
            "d1": .other("date-time"), "d2": .other("date-time"), "d3": .other("date-time"), "ld": .other("date"), "lt": .other("time"),
        ]),
        ("a = 1\r\n# c\r\nb = \"\"\"x\r\ny\"\"\"\r\n\t k\t=\t'v' # c\r\n", ["a": .int(1), "b": .string("x\r\ny"), "k": .string("v")]),
        ("\u{FEFF}a = \"é\" # ü\n", ["a": .string("é")]),
    ]

    @Test func validDocumentsGiveTheirTrees() {
        for (text, expected) in Self.valid {
            switch TOMLReader.read(text) {
            case .success(let document): #expect(document.root == expected, "\(text)")
            case .failure(let error): Issue.record("\(text)\n→ \(error)")
            }
        }
    }

    /// Documents, and where their one error is reported.
    static let invalid: [(String, Int, Int, String)] = [
        // A crasher found by fuzzing: a triple quote in a comment, then a header starting with '.'.
        ("# '''\n[.x]\n", 2, 2, "expected a key, found '.'"),
        // The inputs the TOMLKit pre-screen existed for.
        ("a = 1\n[,efault]\n", 2, 2, "expected a key, found ','"),
        ("[[ ,rule]]\n", 1, 4, "expected a key"),
        ("[[[rule]]]\n", 1, 3, "expected a key, found '['"),
        ("[[\nrule]]\n", 1, 3, "found the end of the line"),
        ("[[rule]]\nrange = [}0x10, 0x20]\n", 2, 10, "expected a value or ']', found '}'"),
        ("[[rule]]\nrange = [0x10,\n  # comment\n  }]\n", 4, 3, "found '}'"),
        ("[[rule]]\nrange = [\u{0B}0x10, 0x20]\n", 2, 10, "U+000B"),
        ("a = 1\n\u{0}\n", 2, 1, "U+0000"),
        // Structure.
        ("a = = 1\n", 1, 5, "expected a value, found '='"),
        ("= 1\n", 1, 1, "expected a key"),
        ("key\n", 1, 4, "expected '=' after the key key"),
        ("a = 1 b = 2\n", 1, 7, "expected the end of the line"),
        ("[]\n", 1, 2, "expected a key"),
        ("[a]]\n", 1, 4, "expected the end of the line"),
        ("[a\n", 1, 3, "expected ']'"),
        ("[[a]\n", 1, 5, "expected ']]'"),
        ("a = True\n", 1, 5, "needs quotes"),
        ("a = nope\n", 1, 5, "needs quotes"),
        ("a = 1\rb = 2\n", 1, 6, "carriage return"),
        ("# comment \u{1}\n", 1, 11, "U+0001 is not allowed in a comment"),
        // Definitions (TOML 1.0: each key and table once; dotted and inline tables are closed).
        ("a = 1\na = 2\n", 2, 1, "key a is defined twice"),
        ("\"a\" = 1\na = 2\n", 2, 1, "defined twice"),
        ("[a]\n[a]\n", 2, 1, "table [a] is defined twice"),
        ("a.b = 1\n[a]\n", 2, 1, "with dotted keys"),
        ("[fruit]\napple.color = \"red\"\n[fruit.apple]\n", 3, 1, "with dotted keys"),
        ("[a.b.c]\nz = 9\n[a]\nb.c.t = 1\n", 4, 1, "b is already defined, so the dotted key b.c.t"),
        ("a = {b = 1}\n[a.c]\n", 2, 1, "a is already a value"),
        ("a = {b = 1}\na.c = 2\n", 2, 1, "a is already defined"),
        ("a = [1]\n[[a]]\n", 2, 1, "a is already a value"),
        ("[[a]]\n[a]\n", 2, 1, "names an array of tables"),
        ("[a]\n[[a]]\n", 2, 1, "names a table already defined"),
        ("[a]\nb = 1\n[a.b]\n", 3, 1, "a.b is already a value"),
        ("t = {a = 1, a = 2}\n", 1, 13, "defined twice"),
        ("t = {a = 1,}\n", 1, 12, "expected a key, found '}'"),
        ("t = {a = 1\n}\n", 1, 11, "on one line"),
        // Integers and floats.
        ("n = 012\n", 1, 5, "leading zeros"),
        ("n = 1__2\n", 1, 5, "single underscores"),
        ("n = 1_\n", 1, 5, "invalid decimal integer"),
        ("n = _1\n", 1, 5, "expected a value"),
        ("n = 0xffff_ffff_ffff_ffff\n", 1, 5, "must be written as strings"),
        ("n = 9223372036854775808\n", 1, 5, "must be written as strings"),
        ("n = -9223372036854775809\n", 1, 5, "must be written as strings"),
        ("n = 99999999999999999999999999\n", 1, 5, "must be written as strings"),
        ("n = +0x1\n", 1, 5, "cannot have a sign"),
        ("n = 0x\n", 1, 5, "invalid hexadecimal integer"),
        ("n = 0b102\n", 1, 5, "invalid binary integer"),
        ("f = 1.\n", 1, 5, "invalid floating-point number"),
        ("f = .5\n", 1, 5, "expected a value"),
        ("f = 1e\n", 1, 5, "invalid floating-point number"),
        ("f = 01.5\n", 1, 5, "invalid floating-point number"),
        ("f = 1.5.3\n", 1, 5, "invalid floating-point number"),
        // Dates and times.
        ("d = 1979-13-01\n", 1, 5, "does not exist"),
        ("d = 1979-02-29\n", 1, 5, "does not exist"),
        ("t = 25:00:00\n", 1, 5, "out of range"),
        ("t = 07:32\n", 1, 10, "expected ':'"),
        ("d = 1979-05-27T07:32:00+25:00\n", 1, 5, "invalid time offset"),
        ("d = 1979-05-27x\n", 1, 5, "invalid date"),
        ("d = 1979-5-27\n", 1, 11, "invalid date"),
        // Strings.
        ("s = \"open\n", 1, 10, "not closed on its line"),
        ("s = 'open\n", 1, 10, "not closed on its line"),
        ("s = \"bad \\x escape\"\n", 1, 10, "invalid escape"),
        ("s = \"\\uD800\"\n", 1, 6, "not a Unicode scalar value"),
        ("s = \"\\U00110000\"\n", 1, 6, "not a Unicode scalar value"),
        ("s = \"\\u12\"\n", 1, 6, "needs 4 hexadecimal digits"),
        ("s = \"a\u{7F}\"\n", 1, 7, "U+007F"),
        ("s = \"a\u{1}\"\n", 1, 7, "U+0001"),
        ("s = \"\"\"a\"\"\"\"\"\"\n", 1, 9, "too many quotes"),
        ("s = \"\"\"\nnot closed\n", 3, 1, "opened at line 1 is not closed"),
        ("s = '''a\u{8}'''\n", 1, 9, "U+0008"),
        ("s = \"\"\"a\rb\"\"\"\n", 1, 9, "carriage return"),
    ]

    @Test func invalidDocumentsAreLocated() {
        for (text, line, column, fragment) in Self.invalid {
            guard let error = syntaxError(text) else {
                Issue.record("\(text.debugDescription) was accepted")
                continue
            }
            #expect(error.line == line && error.column == column, "\(text.debugDescription) → \(error)")
            #expect(error.message.hasPrefix("TOML syntax: ") && error.message.contains(fragment), "\(text.debugDescription) → \(error)")
        }
    }

    @Test func columnsCountCharactersNotBytes() {
        #expect(syntaxError("k = \"é\" x\n").map { [$0.line, $0.column] } == [1, 9])
        #expect(syntaxError("\"é\" = \"ü\"\nbad\n").map { [$0.line, $0.column] } == [2, 4])
        #expect(syntaxError("\u{FEFF}a = = 1\n").map { [$0.line, $0.column] } == [1, 5])
    }

    @Test func invalidUTF8IsLocated() {
        let bytes = Array("a = 1\nb = \"".utf8) + [0xFF] + Array("\"\n".utf8)
        guard case .failure(let error) = TOMLReader.read(bytes: bytes) else { Issue.record("accepted"); return }
        #expect(error.line == 2 && error.column == 6 && error.message.contains("not valid UTF-8"), "\(error)")
        for bad: [UInt8] in [[0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xE2, 0x82]] {
            guard case .failure(let error) = TOMLReader.read(bytes: Array("# ".utf8) + bad) else { Issue.record("\(bad) accepted"); continue }
            #expect(error.column == 3 && error.message.contains("UTF-8"), "\(bad): \(error)")
        }
    }

    @Test func nestingAndSizeAreBounded() {
        let deepArray = "a = " + String(repeating: "[", count: 100_000) + "\n"
        #expect(syntaxError(deepArray)?.message.contains("deeper than 64") == true)
        let deepInline = "a = " + String(repeating: "{b = ", count: 10_000) + "\n"
        #expect(syntaxError(deepInline)?.message.contains("deeper than 64") == true)
        let longKey = (0..<100).map { "k\($0)" }.joined(separator: ".") + " = 1\n"
        #expect(syntaxError(longKey)?.message.contains("deeper than 64") == true)
        #expect(syntaxError("[" + (0..<100).map { "k\($0)" }.joined(separator: ".") + "]\n")?.message.contains("deeper than 64") == true)
        // Dotted keys inside nested inline tables count toward the same limit.
        let spread = "a = " + String(repeating: "{b.c.d.e = ", count: 20) + "1" + String(repeating: "}", count: 20) + "\n"
        #expect(syntaxError(spread)?.message.contains("deeper than 64") == true)
        let tooBig = String(repeating: "# padding\n", count: (TOMLReader.maxBytes / 10) + 1)
        #expect(syntaxError(tooBig).map { [$0.line, $0.column] } == [1, 1])
        #expect(syntaxError(tooBig)?.message.contains("larger than 4 MiB") == true)
        let many = String(repeating: "[[rule]]\nmsr = 1\n", count: 20_000)
        #expect(syntaxError(many) == nil)
    }

    @Test func headersAndKeysAreRecordedWhereWritten() throws {
        let text = "a = 1\n[default]\n  action = \"gp\"\n[[rule]]\nmsr = 1\n[[rule]]\n msr.x = 2\nrange = [\n1]\n"
        let document = try TOMLReader.read(text).get()
        let at = { (line: Int, column: Int) in TOMLReader.Position(line: line, column: column) }
        #expect(document.top.header == at(1, 1))
        #expect(document.top.keys["a"] == TOMLReader.KeySpot(key: at(1, 1), value: at(1, 5)))
        #expect(document.tables[["default"]]?.header == at(2, 1))
        #expect(document.tables[["default"]]?.keys["action"] == TOMLReader.KeySpot(key: at(3, 3), value: at(3, 12)))
        let rules = document.arraysOfTables[["rule"]] ?? []
        #expect(rules.map(\.header) == [at(4, 1), at(6, 1)])
        #expect(rules.last?.keys["msr.x"] == TOMLReader.KeySpot(key: at(7, 2), value: at(7, 10)))
        #expect(rules.last?.keys["range"]?.value == at(8, 9))
    }
}

@Suite struct TOMLReaderFuzzTests {
    /// The example policies and the documented one: what the fuzzer mutates.
    static func corpus() throws -> [[UInt8]] {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("examples/policies")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".toml") }.sorted()
        let examples = try files.map { [UInt8](try Data(contentsOf: directory.appendingPathComponent($0))) }
        return examples + [Array(PolicyParserTests.documented.utf8)]
    }

    /// Mutated policies and random bytes: each reads, or gives an error inside
    /// the text; every fourth also goes through the whole policy parser (its
    /// checks are slower in debug builds, and PolicyParserFuzzTests has more).
    @Test func fuzzedInputGivesATreeOrALocatedError() throws {
        let corpus = try Self.corpus()
        #expect(corpus.count >= 3)
        var accepted = 0, rejected = 0
        for (number, input) in FuzzInputs(corpus: corpus, count: 3_000, seed: 0x70_31_F0_22).enumerated() {
            switch TOMLReader.read(bytes: input) {
            case .success: accepted += 1
            case .failure(let error):
                rejected += 1
                let lines = input.filter { $0 == UInt8(ascii: "\n") }.count + 1
                #expect(error.line >= 1 && error.line <= lines && error.column >= 1, "\(error)\n\(String(decoding: input, as: UTF8.self))")
            }
            guard number % 4 == 0 else { continue }
            do {
                _ = try PolicyParser.parse(String(decoding: input, as: UTF8.self), file: "fuzz.toml")
            } catch {
                #expect(!error.errors.isEmpty)
            }
        }
        // Both outcomes are exercised, so the mutations are neither too mild nor too wild.
        #expect(accepted > 100 && rejected > 1_000, "accepted \(accepted), rejected \(rejected)")
    }
}
