import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Reading and writing the [safetensors](https://github.com/huggingface/safetensors) format:
/// an 8-byte little-endian header length N, N bytes of JSON header, then the raw tensor bytes.
///
/// The writer produces the bytes the reference implementation produces (tensors sorted by descending
/// dtype rank then name, header padded with spaces to a multiple of 8). The reader treats every file
/// as hostile and enforces the reference reader's rules plus a few more (see ``SafeTensors/parse(_:)``).
public enum SafeTensors {
    /// Element types. The order is the reference implementation's enum order (writer sort key).
    public enum DType: String, CaseIterable, Sendable {
        case BOOL, F4, F6_E2M3, F6_E3M2, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ
        case I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64

        public var bits: Int {
            switch self {
            case .F4: return 4
            case .F6_E2M3, .F6_E3M2: return 6
            case .BOOL, .U8, .I8, .F8_E5M2, .F8_E4M3, .F8_E8M0, .F8_E4M3FNUZ, .F8_E5M2FNUZ: return 8
            case .I16, .U16, .F16, .BF16: return 16
            case .I32, .U32, .F32: return 32
            case .C64, .F64, .I64, .U64: return 64
            }
        }
        var rank: Int { DType.allCases.firstIndex(of: self)! }
    }

    /// One tensor: its dtype, shape and little-endian bytes.
    public struct Entry: Sendable {
        public var dtype: DType
        public var shape: [Int]
        public var bytes: [UInt8]

        public init(dtype: DType, shape: [Int], bytes: [UInt8]) { self.dtype = dtype; self.shape = shape; self.bytes = bytes }

        /// A float32 tensor.
        public init(floats: [Float], shape: [Int]) {
            precondition(floats.count == shape.reduce(1, *), "SafeTensors.Entry: \(floats.count) values for shape \(shape)")
            dtype = .F32; self.shape = shape
            bytes = floats.withUnsafeBytes { Array($0) }   // little-endian hosts only (x86-64, arm64)
        }

        /// An int64 tensor.
        public init(int64s: [Int64], shape: [Int]) {
            precondition(int64s.count == shape.reduce(1, *), "SafeTensors.Entry: \(int64s.count) values for shape \(shape)")
            dtype = .I64; self.shape = shape
            bytes = int64s.withUnsafeBytes { Array($0) }
        }

        public var count: Int { shape.reduce(1, *) }

        /// The values converted to Float (F32, F16, BF16, F64, integer types); nil for other dtypes.
        public func floats() -> [Float]? {
            let n = count
            return bytes.withUnsafeBytes { raw -> [Float]? in
                switch dtype {
                case .F32: return (0..<n).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) }
                case .F64: return (0..<n).map { Float(raw.loadUnaligned(fromByteOffset: 8 * $0, as: Double.self)) }
                case .F16: return (0..<n).map { Float(Float16(bitPattern: raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))) }
                case .BF16: return (0..<n).map { Float(bitPattern: UInt32(raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) << 16) }
                case .I64: return (0..<n).map { Float(raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) }
                case .I32: return (0..<n).map { Float(raw.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
                case .U8: return (0..<n).map { Float(raw[$0]) }
                default: return nil
                }
            }
        }

        /// The values of an I64 tensor.
        public func int64s() -> [Int64]? {
            guard dtype == .I64 else { return nil }
            return bytes.withUnsafeBytes { raw in (0..<count).map { raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self) } }
        }
    }

    /// A parsed file: tensors in file (offset) order, and the string metadata.
    public struct File: Sendable {
        public var tensors: [(name: String, entry: Entry)]
        public var metadata: [String: String]

        public init(tensors: [(name: String, entry: Entry)], metadata: [String: String] = [:]) {
            self.tensors = tensors; self.metadata = metadata
        }

        public subscript(name: String) -> Entry? { tensors.first { $0.name == name }?.entry }
    }

    /// Why a file was rejected. The description names the problem in one line.
    public struct FormatError: Error, CustomStringConvertible, Equatable {
        public let reason: String
        public var description: String { "not a valid safetensors file: \(reason)" }
    }

    /// The reference reader's header size limit (100 MB).
    public static let maxHeaderBytes: UInt64 = 100_000_000
    /// Tensors per file and dimensions per tensor this reader accepts.
    public static let maxTensors = 1_000_000, maxRank = 32

    // MARK: writing

    /// Serializes tensors and metadata exactly as the reference writer does.
    public static func serialize(_ file: File) -> [UInt8] {
        var names = Set<String>()
        for (n, e) in file.tensors {
            precondition(names.insert(n).inserted, "SafeTensors.serialize: duplicate tensor name '\(n)'")
            precondition(n != "__metadata__", "SafeTensors.serialize: '__metadata__' is reserved")
            precondition(e.bytes.count * 8 == e.count * e.dtype.bits, "SafeTensors.serialize: '\(n)' has \(e.bytes.count) bytes for \(e.dtype) \(e.shape)")
        }
        let order = file.tensors.sorted { a, b in
            a.entry.dtype.rank != b.entry.dtype.rank ? a.entry.dtype.rank > b.entry.dtype.rank
                                                     : Array(a.name.utf8).lexicographicallyPrecedes(Array(b.name.utf8))
        }
        var header = "{"
        var parts: [String] = []
        if !file.metadata.isEmpty {
            let items = file.metadata.keys.sorted().map { "\($0.jsonQuoted):\(file.metadata[$0]!.jsonQuoted)" }
            parts.append("\"__metadata__\":{" + items.joined(separator: ",") + "}")
        }
        var offset = 0
        for (n, e) in order {
            let shape = e.shape.map(String.init).joined(separator: ",")
            parts.append("\(n.jsonQuoted):{\"dtype\":\"\(e.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + e.bytes.count)]}")
            offset += e.bytes.count
        }
        header += parts.joined(separator: ",") + "}"
        var h = Array(header.utf8)
        while h.count % 8 != 0 { h.append(0x20) }
        var out: [UInt8] = []
        out.reserveCapacity(8 + h.count + offset)
        withUnsafeBytes(of: UInt64(h.count).littleEndian) { out.append(contentsOf: $0) }
        out += h
        for (_, e) in order { out += e.bytes }
        return out
    }

    // MARK: reading

    /// Parses and validates a whole file held in memory. Rules (the reference reader's, then ours):
    /// length ≥ 8; header length ≤ 100 MB and inside the file; header is UTF-8 JSON object;
    /// `__metadata__` maps strings to strings; each tensor has a known dtype, an integer shape and
    /// two integer offsets; element and byte counts computed without overflow; byte count matches
    /// dtype × shape; sorted by offset, tensors tile the data section with no gap or overlap and end
    /// exactly at the end of the file. Added: no duplicate names, at most ``maxTensors`` tensors and
    /// ``maxRank`` dimensions, no unknown fields.
    public static func parse(_ bytes: [UInt8]) throws -> File {
        func bad(_ r: String) -> FormatError { FormatError(reason: r) }
        guard bytes.count >= 8 else { throw bad("file is \(bytes.count) bytes, shorter than the 8-byte header length") }
        let n = bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard n <= maxHeaderBytes else { throw bad("header length \(n) exceeds the 100 MB limit") }
        guard 8 + n <= UInt64(bytes.count) else { throw bad("header length \(n) runs past the end of the \(bytes.count)-byte file") }
        let headerBytes = Array(bytes[8..<(8 + Int(n))])
        guard String(validating: headerBytes, as: UTF8.self) != nil else { throw bad("header is not valid UTF-8") }
        let json: JSONValue
        do { json = try JSONValue.parse(headerBytes) } catch let e as JSONValue.ParseError {
            throw bad("header is not valid JSON (\(e.message) at byte \(e.offset))")
        }
        guard case let .object(members) = json else { throw bad("header is not a JSON object") }
        guard members.count <= maxTensors + 1 else { throw bad("more than \(maxTensors) tensors") }

        var metadata: [String: String] = [:]
        var seen = Set<String>()
        var infos: [(name: String, dtype: DType, shape: [Int], begin: UInt64, end: UInt64)] = []
        for (name, value) in members {
            guard seen.insert(name).inserted else { throw bad("duplicate name '\(name)'") }
            if name == "__metadata__" {
                guard case let .object(items) = value else { throw bad("__metadata__ is not an object") }
                for (k, v) in items {
                    guard case let .string(s) = v else { throw bad("__metadata__ value of '\(k)' is not a string") }
                    guard metadata.updateValue(s, forKey: k) == nil else { throw bad("duplicate __metadata__ key '\(k)'") }
                }
                continue
            }
            guard case let .object(fields) = value else { throw bad("entry '\(name)' is not an object") }
            var dtype: DType?, shape: [Int]?, offsets: (UInt64, UInt64)?
            var fieldNames = Set<String>()
            for (k, v) in fields {
                guard fieldNames.insert(k).inserted else { throw bad("entry '\(name)' repeats field '\(k)'") }
                switch k {
                case "dtype":
                    guard case let .string(s) = v else { throw bad("dtype of '\(name)' is not a string") }
                    guard let d = DType(rawValue: s) else { throw bad("unknown dtype '\(s)' for '\(name)'") }
                    dtype = d
                case "shape":
                    guard case let .array(dims) = v else { throw bad("shape of '\(name)' is not an array") }
                    guard dims.count <= maxRank else { throw bad("'\(name)' has \(dims.count) dimensions (limit \(maxRank))") }
                    var s: [Int] = []
                    for d in dims {
                        guard let u = d.uint64, u <= UInt64(Int.max) else { throw bad("shape of '\(name)' has a non-integer or huge dimension") }
                        s.append(Int(u))
                    }
                    shape = s
                case "data_offsets":
                    guard case let .array(o) = v, o.count == 2, let b = o[0].uint64, let e = o[1].uint64 else {
                        throw bad("data_offsets of '\(name)' is not two non-negative integers")
                    }
                    offsets = (b, e)
                default:
                    throw bad("entry '\(name)' has unknown field '\(k)'")
                }
            }
            guard let dtype, let shape, let offsets else { throw bad("entry '\(name)' lacks dtype, shape or data_offsets") }
            infos.append((name, dtype, shape, offsets.0, offsets.1))
        }

        let dataStart = 8 + Int(n)
        let dataBytes = UInt64(bytes.count - dataStart)
        var expectedBegin: UInt64 = 0
        for info in infos.sorted(by: { ($0.begin, $0.end) < ($1.begin, $1.end) }) {
            guard info.begin == expectedBegin, info.end >= info.begin else {
                throw bad("invalid data_offsets for '\(info.name)' (gap or overlap at byte \(info.begin))")
            }
            var elements: UInt64 = 1
            for d in info.shape {
                let (p, o) = elements.multipliedReportingOverflow(by: UInt64(d))
                guard !o else { throw bad("element count of '\(info.name)' overflows") }
                elements = p
            }
            let (bits, o) = elements.multipliedReportingOverflow(by: UInt64(info.dtype.bits))
            guard !o else { throw bad("byte count of '\(info.name)' overflows") }
            guard bits % 8 == 0 else { throw bad("'\(info.name)' is not a whole number of bytes") }
            guard info.end - info.begin == bits / 8 else {
                throw bad("'\(info.name)' spans \(info.end - info.begin) bytes but \(info.dtype.rawValue) \(info.shape) needs \(bits / 8)")
            }
            guard info.end <= dataBytes else { throw bad("'\(info.name)' ends past the end of the file (truncated?)") }
            expectedBegin = info.end
        }
        guard expectedBegin == dataBytes else {
            throw bad("data section is \(dataBytes) bytes but the tensors cover \(expectedBegin) (truncated or trailing bytes)")
        }
        let tensors = infos.sorted { $0.begin < $1.begin }.map { info in
            (info.name, Entry(dtype: info.dtype, shape: info.shape,
                              bytes: Array(bytes[(dataStart + Int(info.begin))..<(dataStart + Int(info.end))])))
        }
        return File(tensors: tensors, metadata: metadata)
    }

    /// Reads and parses a file. Errors name the path.
    public static func read(_ path: String) throws -> File {
        // The 8-byte header length first (the checks of `parse`): a large file that is not a
        // safetensors file is refused before it is read into memory.
        let (fd, size) = try FileIO.openRegularFile(path)
        var head = [UInt8](repeating: 0, count: 8)
        let got = pread(fd, &head, 8, 0)
        close(fd)
        if got == 8 {
            let n = head.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
            let problem = n > maxHeaderBytes ? "header length \(n) exceeds the 100 MB limit"
                : 8 + n > UInt64(size) ? "header length \(n) runs past the end of the \(size)-byte file" : nil
            if let problem { throw FileIO.Error(message: "\(path): \(problem)") }
        }
        let bytes = try FileIO.readAll(path, limit: 1 << 40)
        do { return try parse(bytes) } catch let e as FormatError {
            throw FileIO.Error(message: "\(path): \(e)")
        }
    }

    /// Writes a file atomically (temporary file, fsync, rename).
    public static func write(_ file: File, to path: String) throws {
        try FileIO.writeAtomically(serialize(file), to: path)
    }
}
