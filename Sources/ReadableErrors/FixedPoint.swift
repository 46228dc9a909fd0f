// ReadableErrors: numbers in messages as printf's "%.Nf" writes them, without
// Foundation's String(format:) (whose Foundation library a run would
// otherwise load only to print a figure).

extension Double {
    /// This value with `fractionDigits` digits after the point, rounded
    /// half away from zero: `2.345.fixed(1)` is "2.3", `(-0.06).fixed(1)` "-0.1",
    /// `7.0.fixed(0)` "7". Infinities and NaN print as "inf", "-inf", "nan";
    /// a value too large for exact digits prints as Swift writes it.
    public func fixed(_ fractionDigits: Int) -> String {
        if isNaN { return "nan" }
        if isInfinite { return self < 0 ? "-inf" : "inf" }
        let digits = min(max(fractionDigits, 0), 9)
        var scale: UInt64 = 1
        for _ in 0..<digits { scale *= 10 }
        let scaled = (magnitude * Double(scale)).rounded(.toNearestOrAwayFromZero)
        guard scaled < 9.0e18 else { return "\(self)" }
        let units = UInt64(scaled)
        let sign = self.sign == .minus ? "-" : ""  // as printf: -0.04 is "-0.0"
        let whole = units / scale
        guard digits > 0 else { return "\(sign)\(whole)" }
        let fraction = String(units % scale)
        return "\(sign)\(whole).\(String(repeating: "0", count: digits - fraction.count))\(fraction)"
    }
}
