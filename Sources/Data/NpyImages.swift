import Foundation
import TesseraEngine
#if canImport(Glibc)
import Glibc
#endif

/// A read-only memory mapping of a whole file, unmapped when the last reference goes.
final class MappedFile: @unchecked Sendable {
    let base: UnsafeRawPointer
    let size: Int

    init(_ path: String) throws {
        let (fd, size) = try FileIO.openRegularFile(path)
        defer { close(fd) }
        self.size = size
        guard size > 0 else { throw DataError("\(path): empty file") }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw DataError("\(path): cannot map the file (\(String(cString: strerror(errno))))")
        }
        base = UnsafeRawPointer(p)
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), size) }

    /// Lets the kernel drop the mapped pages of [offset, offset + count) from this process's memory
    /// (they are re-read from the file if touched again).
    func release(_ offset: Int, _ count: Int) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let lo = (offset / page) * page
        madvise(UnsafeMutableRawPointer(mutating: base) + lo, min(size, offset + count) - lo, MADV_DONTNEED)
    }
}

/// Images in a NumPy `.npy` file, memory-mapped: uint8 or float32 (values in [0, 1], or 0…255 if
/// any exceeds 1), shaped `[N, H, W]`, `[N, H, W, C]` or `[N, C, H, W]` (C = 1 or 3; NHWC when the
/// last axis is 1 or 3). Each image is converted to 8-bit HWC when the loader reads it, so resident
/// memory does not grow with the file. Labels: an optional 1-D `.npy` of integers, read whole.
public struct NpyImages: ImageDataset {
    public let path: String
    let file: MappedFile
    let header: NpyArray.Header
    /// Bytes per element: 1 (uint8) or 4 (float32).
    let elementSize: Int
    let height: Int, width: Int, nchw: Bool
    /// float32 files: the factor to 0…255 (255 when every value is at most 1, else 1).
    let floatScale: Float
    public let count: Int
    public let channels: Int
    public let labels: [Int]?
    public let classNames: [String]
    public var uniformSize: (height: Int, width: Int)? { (height, width) }
    public var summary: String { ".npy \(path) (\(count) images of \(height)×\(width)×\(channels), memory-mapped)" }

    public init(images: String, labels labelPath: String? = nil) throws {
        path = images
        file = try MappedFile(images)
        let raw = UnsafeRawBufferPointer(start: file.base, count: file.size)
        do { header = try NpyArray.parseHeader(raw) } catch let e as DataError { throw DataError("\(images): \(e.message)") }
        let s = header.shape
        var n = 0, h = 0, w = 0, c = 1, nchw = false
        switch s.count {
        case 3: (n, h, w) = (s[0], s[1], s[2])
        case 4:
            if s[3] == 1 || s[3] == 3 { (n, h, w, c) = (s[0], s[1], s[2], s[3]) }
            else if s[1] == 1 || s[1] == 3 { (n, c, h, w) = (s[0], s[1], s[2], s[3]); nchw = true }
            else { throw DataError("\(images): shape \(s) has neither 1 nor 3 channels on axis 1 or 3") }
        default: throw DataError("\(images): image arrays must be [N,H,W], [N,H,W,C] or [N,C,H,W], found \(s)")
        }
        guard n > 0, h > 0, w > 0 else { throw DataError("\(images): empty array \(s)") }
        switch header.descr {
        case "<i4", "<i8": throw DataError("\(images): integer images must be uint8 (|u1); convert or pass float32")
        default: break
        }
        let esize = header.elementSize!
        elementSize = esize
        guard file.size - header.dataOffset == header.count * esize else {
            throw DataError("\(images): .npy data is \(file.size - header.dataOffset) bytes, shape \(s) of \(header.descr) needs \(header.count * esize) (truncated or corrupt)")
        }
        (count, height, width, channels, self.nchw) = (n, h, w, c, nchw)
        if esize == 4 {   // one pass for the range, in chunks whose pages are released behind it
            var maxValue: Float = 0
            let chunk = 1 << 22
            var at = 0
            while at < header.count {
                let m = min(chunk, header.count - at)
                let p = file.base + header.dataOffset + 4 * at
                for k in 0..<m { let v = p.loadUnaligned(fromByteOffset: 4 * k, as: Float.self); if v > maxValue { maxValue = v } }
                file.release(header.dataOffset + 4 * at, 4 * m)
                at += m
            }
            floatScale = maxValue > 1 ? 1 : 255
        } else {
            floatScale = 1
        }
        if let labelPath {
            let l = try NpyArray.read(labelPath)
            guard l.shape == [n] else { throw DataError("\(labelPath): labels must be shape [\(n)], found \(l.shape)") }
            var lab: [Int]
            switch l.values {
            case let .u8(v): lab = v.map(Int.init)
            case let .i64(v): lab = v.map(Int.init)
            case let .i32(v): lab = v.map(Int.init)
            case .f32: throw DataError("\(labelPath): labels must be integers, found float32")
            }
            guard lab.allSatisfy({ $0 >= 0 && $0 < 100_000 }) else { throw DataError("\(labelPath): labels must be in 0…99999") }
            labels = lab
            classNames = (0...(lab.max() ?? 0)).map(String.init)
        } else {
            labels = nil
            classNames = []
        }
    }

    private init(_ o: NpyImages, count n: Int) {
        path = o.path; file = o.file; header = o.header; elementSize = o.elementSize; height = o.height; width = o.width; nchw = o.nchw
        floatScale = o.floatScale; count = n; channels = o.channels
        labels = o.labels.map { Array($0.prefix(n)) }; classNames = o.classNames
    }

    public func image(_ i: Int) throws -> StoredImage {
        let hw = height * width, c = channels, n = hw * c, bytes = elementSize
        let start = file.base + header.dataOffset + i * n * bytes
        var out = [UInt8](repeating: 0, count: n)
        out.withUnsafeMutableBufferPointer { o in
            for e in 0..<n {
                // Element e of the stored image; its place in HWC.
                let dst = nchw ? (e % hw) * c + e / hw : e
                if bytes == 1 {
                    o[dst] = start.load(fromByteOffset: e, as: UInt8.self)
                } else {
                    let x = start.loadUnaligned(fromByteOffset: 4 * e, as: Float.self)
                    o[dst] = x.isFinite ? UInt8(max(0, min(255, (x * floatScale).rounded()))) : 0
                }
            }
        }
        return .pixels(out, height: height, width: width)
    }

    public func prefix(_ n: Int) -> any ImageDataset { n >= count ? self : NpyImages(self, count: n) }
}
