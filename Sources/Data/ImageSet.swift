import CImageData
import Foundation
import TesseraEngine

/// A set of 8-bit images (HWC, any size, one channel count) with optional integer labels, held in
/// memory. Readers for the formats users have: IDX (MNIST/Fashion-MNIST, gzip or raw), `.npy`
/// arrays, ImageFolder trees (`root/class/xxx.png|jpg`) and flat folders of images.
public struct ImageSet: Sendable {
    /// All pixels, image after image, each `heights[i] × widths[i] × channels` bytes.
    public var pixels: [UInt8]
    public var offsets: [Int]
    public var heights: [Int]
    public var widths: [Int]
    public var channels: Int
    /// One label per image, or nil for unlabeled data.
    public var labels: [Int]?
    /// Class names in label order (ImageFolder's sorted folder names, or "0"…"9").
    public var classNames: [String]

    public var count: Int { offsets.count }

    /// Images of one size `[count, height, width, channels]` packed in `pixels`.
    public init(uniform pixels: [UInt8], count: Int, height: Int, width: Int, channels: Int,
                labels: [Int]? = nil, classNames: [String] = []) {
        precondition(pixels.count == count * height * width * channels, "ImageSet: pixel count does not match the shape")
        self.pixels = pixels
        offsets = (0..<count).map { $0 * height * width * channels }
        heights = Array(repeating: height, count: count)
        widths = Array(repeating: width, count: count)
        self.channels = channels
        self.labels = labels
        self.classNames = classNames.isEmpty && labels != nil ? (0...(labels!.max() ?? 0)).map(String.init) : classNames
    }

    init(pixels: [UInt8], offsets: [Int], heights: [Int], widths: [Int], channels: Int, labels: [Int]?, classNames: [String]) {
        self.pixels = pixels; self.offsets = offsets; self.heights = heights; self.widths = widths
        self.channels = channels; self.labels = labels; self.classNames = classNames
    }

    /// The subset at `indices`, in that order.
    public func subset(_ indices: [Int]) -> ImageSet {
        var px: [UInt8] = [], off: [Int] = []
        px.reserveCapacity(indices.reduce(0) { $0 + heights[$1] * widths[$1] * channels })
        for i in indices {
            off.append(px.count)
            px += pixels[offsets[i]..<(offsets[i] + heights[i] * widths[i] * channels)]
        }
        return ImageSet(pixels: px, offsets: off, heights: indices.map { heights[$0] }, widths: indices.map { widths[$0] },
                        channels: channels, labels: labels.map { l in indices.map { l[$0] } }, classNames: classNames)
    }
}

/// A data-loading failure: one line that names the file and what to do.
public struct DataError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

// MARK: - IDX (MNIST, Fashion-MNIST)

extension ImageSet {
    /// Where Debian's `dataset-fashion-mnist` package installs the files.
    public static let fashionMNISTDirectory = "/usr/share/datasets/fashion-mnist"

    /// Fashion-MNIST's train (60,000) or test (10,000) split from `directory`.
    public static func fashionMNIST(train: Bool, directory: String = fashionMNISTDirectory) throws -> ImageSet {
        let prefix = train ? "train" : "t10k"
        func find(_ stem: String) throws -> String {
            for name in [stem + ".gz", stem] where FileManager.default.fileExists(atPath: directory + "/" + name) {
                return directory + "/" + name
            }
            throw DataError("Fashion-MNIST not found: \(directory)/\(stem).gz is missing; install it with `apt-get install dataset-fashion-mnist` or pass --data DIR")
        }
        let set = try idx(images: find("\(prefix)-images-idx3-ubyte"), labels: find("\(prefix)-labels-idx1-ubyte"))
        var s = set
        s.classNames = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
        return s
    }

    /// Reads a file, gunzipping it when it ends in `.gz`, with `limit` bytes at most after decompression.
    static func readMaybeGzip(_ path: String, limit: Int = 1 << 32) throws -> [UInt8] {
        let raw = try FileIO.readAll(path, limit: limit)
        return path.hasSuffix(".gz") ? try gunzip(raw, name: path, limit: limit) : raw
    }

    /// Decompresses gzip bytes (all members), at most `limit` bytes of output.
    public static func gunzip(_ raw: [UInt8], name: String, limit: Int = 1 << 32) throws -> [UInt8] {
        guard raw.count >= 18 else { throw DataError("\(name): truncated gzip file (\(raw.count) bytes)") }
        // ISIZE (last 4 bytes) is the size mod 2^32: a hint, verified by the decoder. Deflate expands
        // at most 1032:1, which bounds what a hostile ISIZE can make us allocate.
        let isize = Int(raw.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: raw.count - 4, as: UInt32.self)) })
        let bound = min(limit, raw.count * 1032 + 1024)
        var cap = min(max(isize, 1), bound)
        while true {
            var out = [UInt8](repeating: 0, count: cap)
            var len = 0
            let rc = ck_gunzip(&out, cap, &len, raw, raw.count)
            if rc == Int32(CK_IO_OK) { out.removeLast(cap - len); return out }
            if rc == Int32(CK_IO_TOO_LARGE) && cap < bound { cap = min(cap * 2, bound); continue }
            throw DataError("\(name): corrupt gzip data (\(ioMessage(rc))); re-download or reinstall the file")
        }
    }

    /// Reads an IDX image file (`u8`, rank 3 `[N, H, W]` or rank 4 `[N, H, W, C]`) and an optional
    /// IDX label file (rank 1 `u8`).
    public static func idx(images: String, labels: String?) throws -> ImageSet {
        let (dims, data) = try parseIDX(readMaybeGzip(images), path: images)
        guard dims.count == 3 || dims.count == 4 else { throw DataError("\(images): IDX images must have 3 or 4 dimensions, found \(dims.count)") }
        let n = dims[0], h = dims[1], w = dims[2], c = dims.count == 4 ? dims[3] : 1
        guard c == 1 || c == 3 else { throw DataError("\(images): \(c) channels; only 1 or 3 are supported") }
        var lab: [Int]?
        if let labels {
            let (ld, l) = try parseIDX(readMaybeGzip(labels), path: labels)
            guard ld.count == 1 else { throw DataError("\(labels): IDX labels must have 1 dimension, found \(ld.count)") }
            guard ld[0] == n else { throw DataError("\(labels): \(ld[0]) labels for \(n) images in \(images)") }
            lab = l.map(Int.init)
        }
        return ImageSet(uniform: data, count: n, height: h, width: w, channels: c, labels: lab)
    }

    /// Parses IDX bytes: magic `00 00 08 rank`, big-endian u32 dims, then the u8 data (exactly).
    public static func parseIDX(_ b: [UInt8], path: String) throws -> (dims: [Int], data: [UInt8]) {
        guard b.count >= 4, b[0] == 0, b[1] == 0 else { throw DataError("\(path): not an IDX file (bad magic)") }
        guard b[2] == 0x08 else { throw DataError("\(path): IDX element type 0x\(String(b[2], radix: 16)) is not unsigned byte") }
        let rank = Int(b[3])
        guard (1...4).contains(rank) else { throw DataError("\(path): IDX rank \(rank) is not 1…4") }
        guard b.count >= 4 + 4 * rank else { throw DataError("\(path): truncated IDX header") }
        var dims: [Int] = [], total = 1
        for r in 0..<rank {
            let o = 4 + 4 * r
            let d = Int(b[o]) << 24 | Int(b[o + 1]) << 16 | Int(b[o + 2]) << 8 | Int(b[o + 3])
            guard d > 0 else { throw DataError("\(path): IDX dimension \(r) is zero") }
            let (p, ovf) = total.multipliedReportingOverflow(by: d)
            guard !ovf, p <= 1 << 34 else { throw DataError("\(path): IDX dimensions are too large") }
            total = p
            dims.append(d)
        }
        let start = 4 + 4 * rank
        guard b.count - start == total else {
            throw DataError("\(path): IDX data is \(b.count - start) bytes, the header says \(total) (truncated or corrupt)")
        }
        return (dims, Array(b[start...]))
    }
}

/// A readable message for a CK_IO_* code.
func ioMessage(_ rc: Int32) -> String {
    switch rc {
    case Int32(CK_IO_CORRUPT): return "corrupt data"
    case Int32(CK_IO_TOO_LARGE): return "larger than the allowed size"
    case Int32(CK_IO_TRUNCATED): return "the file ends early"
    case Int32(CK_IO_SIZE_MISMATCH): return "size changed while decoding"
    case Int32(CK_IO_UNSUPPORTED): return "unsupported format"
    default: return "error \(rc)"
    }
}

// MARK: - .npy

/// A NumPy `.npy` array (format versions 1–3, little-endian uint8, int32, int64 or float32, C order).
public struct NpyArray {
    public enum Values { case u8([UInt8]), f32([Float]), i32([Int32]), i64([Int64]) }
    public var shape: [Int]
    public var values: Values

    public static func read(_ path: String) throws -> NpyArray {
        do { return try parse(FileIO.readAll(path)) } catch let e as DataError { throw DataError("\(path): \(e.message)") }
    }

    /// A parsed `.npy` header: element type, shape, element count and where the data starts.
    public struct Header: Sendable {
        public var descr: String
        public var shape: [Int]
        public var count: Int
        public var dataOffset: Int
        /// Bytes per element of the supported types (nil for others).
        public var elementSize: Int? { ["|u1": 1, "<u1": 1, "u1": 1, "<f4": 4, "<i4": 4, "<i8": 8][descr] }
    }

    /// Parses the header at the start of `b` (the whole file or at least its header); hostile input.
    public static func parseHeader(_ b: some RandomAccessCollection<UInt8>) throws -> Header {
        let b = Array(b.prefix(12 + (1 << 20)))
        guard b.count >= 10, b[0] == 0x93, Array(b[1..<6]) == Array("NUMPY".utf8) else { throw DataError("not a .npy file (bad magic)") }
        let major = b[6]
        var headerLen = 0, start = 0
        switch major {
        case 1: headerLen = Int(b[8]) | Int(b[9]) << 8; start = 10
        case 2, 3:
            guard b.count >= 12 else { throw DataError("truncated .npy header") }
            headerLen = Int(b[8]) | Int(b[9]) << 8 | Int(b[10]) << 16 | Int(b[11]) << 24; start = 12
        default: throw DataError(".npy format version \(major) is not supported")
        }
        guard headerLen <= 1 << 20, start + headerLen <= b.count else { throw DataError("truncated or oversized .npy header") }
        guard let header = String(validating: b[start..<(start + headerLen)], as: UTF8.self) else { throw DataError(".npy header is not text") }
        func field(_ key: String) -> Substring? {
            guard let r = header.range(of: "'\(key)':") else { return nil }
            return header[r.upperBound...].drop { $0 == " " }
        }
        guard let d = field("descr"), d.first == "'", let dEnd = d.dropFirst().firstIndex(of: "'") else { throw DataError(".npy header lacks 'descr'") }
        let descr = String(d[d.index(after: d.startIndex)..<dEnd])
        guard let f = field("fortran_order") else { throw DataError(".npy header lacks 'fortran_order'") }
        guard f.hasPrefix("False") else { throw DataError("Fortran-ordered .npy arrays are not supported; save with np.ascontiguousarray") }
        guard let sh = field("shape"), sh.first == "(", let close = sh.firstIndex(of: ")") else { throw DataError(".npy header lacks 'shape'") }
        var shape: [Int] = []
        for part in sh[sh.index(after: sh.startIndex)..<close].split(separator: ",") {
            let t = part.trimmingCharacters(in: .whitespaces)
            if t.isEmpty { continue }
            guard let v = Int(t), v >= 0, v <= 1 << 34 else { throw DataError(".npy shape entry '\(t)' is not a valid size") }
            shape.append(v)
        }
        guard shape.count <= 8 else { throw DataError(".npy arrays of rank \(shape.count) are not supported") }
        var count = 1
        for v in shape {
            let (p, o) = count.multipliedReportingOverflow(by: v)
            guard !o, p <= 1 << 34 else { throw DataError(".npy shape \(shape) is too large") }
            count = p
        }
        let h = Header(descr: descr, shape: shape, count: count, dataOffset: start + headerLen)
        guard h.elementSize != nil else {
            throw DataError(".npy dtype '\(descr)' is not supported (use uint8, float32, int32 or int64, little-endian)")
        }
        return h
    }

    /// Parses `.npy` bytes; the header is treated as hostile.
    public static func parse(_ b: [UInt8]) throws -> NpyArray {
        let h = try parseHeader(b)
        let (descr, shape, count, base) = (h.descr, h.shape, h.count, h.dataOffset)
        let data = b[base...]
        func need(_ size: Int) throws {
            guard data.count == count * size else {
                throw DataError(".npy data is \(data.count) bytes, shape \(shape) of \(descr) needs \(count * size) (truncated or corrupt)")
            }
        }
        switch descr {
        case "|u1", "<u1", "u1":
            try need(1); return NpyArray(shape: shape, values: .u8(Array(data)))
        case "<f4":
            try need(4)
            return NpyArray(shape: shape, values: .f32(b.withUnsafeBytes { r in (0..<count).map { r.loadUnaligned(fromByteOffset: base + 4 * $0, as: Float.self) } }))
        case "<i4":
            try need(4)
            return NpyArray(shape: shape, values: .i32(b.withUnsafeBytes { r in (0..<count).map { r.loadUnaligned(fromByteOffset: base + 4 * $0, as: Int32.self) } }))
        case "<i8":
            try need(8)
            return NpyArray(shape: shape, values: .i64(b.withUnsafeBytes { r in (0..<count).map { r.loadUnaligned(fromByteOffset: base + 8 * $0, as: Int64.self) } }))
        default:
            throw DataError(".npy dtype '\(descr)' is not supported (use uint8, float32, int32 or int64, little-endian)")
        }
    }

    /// Serializes a float32 array as `.npy` version 1.0.
    public static func serialize(floats: [Float], shape: [Int]) -> [UInt8] {
        precondition(floats.count == shape.reduce(1, *), "NpyArray.serialize: \(floats.count) values for shape \(shape)")
        return header(descr: "<f4", shape: shape) + floats.withUnsafeBytes { Array($0) }
    }

    /// Serializes an int64 array (labels) as `.npy` version 1.0.
    public static func serialize(int64s: [Int64], shape: [Int]) -> [UInt8] {
        precondition(int64s.count == shape.reduce(1, *), "NpyArray.serialize: \(int64s.count) values for shape \(shape)")
        return header(descr: "<i8", shape: shape) + int64s.withUnsafeBytes { Array($0) }
    }

    /// Magic, version 1.0 and the header dictionary, padded so the data starts 64-byte aligned.
    static func header(descr: String, shape: [Int]) -> [UInt8] {
        let dims = shape.count == 1 ? "\(shape[0])," : shape.map(String.init).joined(separator: ", ")
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': (\(dims)), }"
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count & 0xff), UInt8(header.utf8.count >> 8)] + Array(header.utf8)
    }
}

// MARK: - PNG / JPEG folders

extension ImageSet {
    /// Largest image accepted by the decoders (pixels), to refuse decompression bombs.
    public static let maxPixels = 1 << 26

    static let imageExtensions: Set<String> = ["png", "jpg", "jpeg"]

    /// Decodes one PNG or JPEG file to 8-bit HWC with `channels` (1 or 3).
    public static func decodeImage(_ path: String, channels: Int) throws -> (pixels: [UInt8], height: Int, width: Int) {
        try decodeImage(bytes: FileIO.readAll(path, limit: 1 << 30), name: path, channels: channels)
    }

    /// Decodes PNG or JPEG bytes; `name` is used in error messages.
    public static func decodeImage(bytes: [UInt8], name: String, channels: Int) throws -> (pixels: [UInt8], height: Int, width: Int) {
        var w: Int64 = 0, h: Int64 = 0, c: Int64 = 0
        var rc = ck_image_info(bytes, bytes.count, &w, &h, &c)
        guard rc == 0 else { throw DataError("\(name): cannot read image header (\(ioMessage(rc))); the file is not a valid PNG or JPEG") }
        guard w > 0, h > 0, w * h <= Int64(maxPixels) else {
            throw DataError("\(name): \(w)×\(h) pixels exceeds the \(maxPixels)-pixel limit; downscale the image")
        }
        var out = [UInt8](repeating: 0, count: Int(w * h) * channels)
        rc = ck_image_decode(&out, bytes, bytes.count, w, h, Int64(channels), Int64(maxPixels))
        guard rc == 0 else { throw DataError("\(name): cannot decode image (\(ioMessage(rc)))") }
        return (out, Int(h), Int(w))
    }

    /// PNG bytes of 8-bit HWC pixels with 1 (gray) or 3 (RGB) channels.
    public static func encodePNG(_ pixels: [UInt8], width: Int, height: Int, channels: Int) throws -> [UInt8] {
        precondition(width >= 1 && height >= 1 && (channels == 1 || channels == 3) && pixels.count == width * height * channels,
                     "encodePNG: \(pixels.count) bytes for \(width)×\(height)×\(channels)")
        var size = 0
        var rc = ck_png_encode(nil, 0, &size, pixels, Int64(width), Int64(height), Int64(channels))
        guard rc == 0 || size > 0 else { throw DataError("PNG encoding failed (\(ioMessage(rc)))") }
        var buf = [UInt8](repeating: 0, count: size + 1024)
        var written = 0
        rc = ck_png_encode(&buf, buf.count, &written, pixels, Int64(width), Int64(height), Int64(channels))
        guard rc == 0 else { throw DataError("PNG encoding failed (\(ioMessage(rc)))") }
        return Array(buf[0..<written])
    }
}
