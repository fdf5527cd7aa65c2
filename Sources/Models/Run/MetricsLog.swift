import Foundation
import TesseraEngine

/// One line of a run's `metrics.jsonl`: its kind (`step`, `epoch`, `monitor`, `eval`) and named fields.
///
/// Encoded by `JSONEncoder` with sorted keys, so every line is valid JSON whatever a method's metric
/// name, a data path or a checkpoint's metadata holds, and the same record gives the same line; a
/// number that is not finite is written as `null`.
public struct MetricsRecord: Encodable {
    /// A field's value.
    public enum Value {
        case number(Double), integer(Int), text(String), flag(Bool), numbers([Double])
        /// JSON's null (a value the record does not have).
        case null
    }

    public var kind: String
    public var fields: [(name: String, value: Value)]

    public init(kind: String, fields: [(name: String, value: Value)] = []) {
        self.kind = kind
        self.fields = fields
    }

    /// Named scalars of a method (its loss terms and monitors) as fields.
    public static func numbers(_ named: [(String, Float)]) -> [(name: String, value: Value)] {
        named.map { ($0.0, .number(Double($0.1))) }
    }

    private struct Key: CodingKey {
        let stringValue: String
        init(_ name: String) { stringValue = name }
        init?(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(kind, forKey: Key("kind"))
        for (name, value) in fields {
            let key = Key(name)
            switch value {
            case let .number(v): if v.isFinite { try c.encode(v, forKey: key) } else { try c.encodeNil(forKey: key) }
            case let .integer(v): try c.encode(v, forKey: key)
            case let .text(v): try c.encode(v, forKey: key)
            case let .flag(v): try c.encode(v, forKey: key)
            case let .numbers(v): try c.encode(v.map { $0.isFinite ? $0 : nil }, forKey: key)
            case .null: try c.encodeNil(forKey: key)
            }
        }
    }

    /// The record as one line of JSON (no newline).
    public func jsonLine() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }
}

/// A run's `metrics.jsonl`: records appended one line at a time (``FileIO/appendLine(_:to:)``: a kill
/// leaves whole lines).
public struct MetricsLog {
    public let path: String
    public init(path: String) { self.path = path }

    public func append(_ record: MetricsRecord) throws {
        try FileIO.appendLine(record.jsonLine(), to: path)
    }
}
