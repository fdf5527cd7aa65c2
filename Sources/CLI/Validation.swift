import Foundation

/// Range checks of numeric options: every value a command takes is finite and inside a range that
/// makes sense, or the command stops with one line naming the option, the range and the value,
/// before anything is written. (Negative values parse: numeric options read the next argument
/// whatever it looks like, so `--blr -1` reaches this check instead of reading as a missing value.)
enum Check {
    /// `value`, when given, must be finite and in `low…high` (above `low` when `lowOpen`).
    static func number<T: BinaryFloatingPoint & CustomStringConvertible>(_ name: String, _ value: T?, _ low: T, _ high: T,
                                                                          lowOpen: Bool = false) throws {
        guard let value else { return }
        guard value.isFinite, lowOpen ? value > low : value >= low, value <= high else {
            throw CLIError("\(name) must be \(lowOpen ? "above" : "at least") \(low) and at most \(high), got \(value)")
        }
    }

    /// `value`, when given, must be in `range`.
    static func integer(_ name: String, _ value: Int?, _ range: ClosedRange<Int>) throws {
        guard let value else { return }
        guard range.contains(value) else { throw CLIError("\(name) must be \(range.lowerBound)…\(range.upperBound), got \(value)") }
    }
}
