// FuzzInputs: the inputs fuzz tests and fuzz benchmarks feed a parser, drawn
// from a corpus of valid files: mostly a few random edits of one of them,
// sometimes random bytes, all from one seed so that a failing input replays.

public struct FuzzInputs: Sequence, IteratorProtocol {
    /// Bytes that carry syntax in text formats (TOML, JSON, INI), plus a few
    /// that must be refused: control characters, a non-ASCII letter, invalid UTF-8.
    public static let syntaxBytes: [UInt8] = Array("[]{}=\"'#,.\\-_+:0123456789abcdefxobnrtuTZ \t\n\r".utf8)
        + [0x00, 0x0B, 0x7F, 0xC3, 0xA9, 0xFF]

    private var generator: SeededGenerator
    private let corpus: [[UInt8]]
    private let alphabet: [UInt8]
    private var remaining: Int

    public init(corpus: [[UInt8]], count: Int, seed: UInt64, alphabet: [UInt8] = FuzzInputs.syntaxBytes) {
        generator = SeededGenerator(seed: seed)
        self.corpus = corpus
        self.alphabet = alphabet.isEmpty ? [0] : alphabet
        remaining = count
    }

    public mutating func next() -> [UInt8]? {
        guard remaining > 0 else { return nil }
        remaining -= 1
        switch Int.random(in: 0..<10, using: &generator) {
        case 0: return (0..<Int.random(in: 0..<256, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        case 1: return (0..<Int.random(in: 0..<256, using: &generator)).map { _ in syntaxByte() }
        default: return mutated(corpus.randomElement(using: &generator) ?? [])
        }
    }

    private mutating func syntaxByte() -> UInt8 { alphabet.randomElement(using: &generator) ?? 0 }

    /// One to eight edits: delete, insert or replace a byte, copy or delete a run.
    private mutating func mutated(_ original: [UInt8]) -> [UInt8] {
        var bytes = original
        for _ in 0..<Int.random(in: 1...8, using: &generator) {
            let at = Int.random(in: 0...bytes.count, using: &generator)
            let run = Swift.min(Int.random(in: 1...32, using: &generator), bytes.count - at)
            switch Int.random(in: 0..<6, using: &generator) {
            case 0: if at < bytes.count { bytes.remove(at: at) }
            case 1: bytes.insert(syntaxByte(), at: at)
            case 2: if at < bytes.count { bytes[at] = syntaxByte() }
            case 3: if at < bytes.count { bytes[at] = UInt8.random(in: 0...255, using: &generator) }
            case 4:
                let copy = Array(bytes[at..<(at + run)])
                bytes.insert(contentsOf: copy, at: Int.random(in: 0...bytes.count, using: &generator))
            default: bytes.removeSubrange(at..<(at + run))
            }
        }
        return bytes
    }
}
