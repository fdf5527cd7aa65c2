import Foundation
import TesseraEngine
#if canImport(Glibc)
import Glibc
#endif

/// Many relative paths in one byte buffer (a million paths cost their bytes plus 8 each, not a
/// million `String`s).
public struct PathTable: Sendable {
    private var bytes: [UInt8] = []
    private var ends: [Int] = []

    public init() {}
    public var count: Int { ends.count }
    public mutating func append(_ path: some Sequence<UInt8>) { bytes.append(contentsOf: path); ends.append(bytes.count) }
    public subscript(i: Int) -> String { String(decoding: self[bytes: i], as: UTF8.self) }
    /// Path `i` as stored: its bytes, which need not be valid UTF-8.
    public subscript(bytes i: Int) -> ArraySlice<UInt8> { bytes[(i == 0 ? 0 : ends[i - 1])..<ends[i]] }
    /// The first `n` paths.
    public func prefix(_ n: Int) -> PathTable {
        var t = PathTable()
        t.ends = Array(ends.prefix(n))
        t.bytes = Array(bytes.prefix(t.ends.last ?? 0))
        return t
    }
}

/// An ImageFolder tree (`root/<class>/…/<image>`, labelled) or a flat folder of images (unlabelled),
/// indexed by path: nothing is decoded until the loader asks for an image.
///
/// The order is torchvision's `ImageFolder`: classes are the sorted names of `root`'s subfolders
/// (hidden ones, starting with ".", are skipped); under each class every folder is walked, folders in
/// sorted path order and files sorted by name within a folder; names are compared as UTF-8 bytes (as
/// Python compares them) and extensions `.png`, `.jpg`, `.jpeg` in any case are kept.
public struct ImageFiles: ImageDataset {
    public let root: String
    public let paths: PathTable
    public let channels: Int
    public let labels: [Int]?
    public let classNames: [String]
    public var count: Int { paths.count }
    public var uniformSize: (height: Int, width: Int)? { nil }
    public var summary: String {
        (labels == nil ? "image folder" : "ImageFolder") + " \(root) (\(count) images" + (labels == nil ? ")" : ", \(classNames.count) classes)")
    }

    /// Indexes `root`, stopping after `limit` images when given (in index order).
    public static func index(_ root: String, channels: Int, limit: Int? = nil) throws -> ImageFiles {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root, isDirectory: &isDir), isDir.boolValue else {
            throw DataError("\(root): no such directory; pass an ImageFolder root, a .npy file or fashion-mnist")
        }
        let top = try listDirectory(root)
        let classes = top.dirs
        let base = Array(root.utf8) + [UInt8(ascii: "/")]   // names are walked and opened as bytes
        var paths = PathTable()
        var labels: [Int] = []
        let cap = limit ?? Int.max
        if classes.isEmpty {
            for f in top.files where isImage(f) && paths.count < cap { paths.append(f) }
        } else {
            // Links are followed, but each directory is walked once: a link back to the root, a class
            // or any folder already seen (a cycle, or a second way to the same images) is skipped.
            var seen: Set<DirectoryID> = []
            for d in [[]] + classes { if let id = DirectoryID(base + d) { seen.insert(id) } }
            outer: for (ci, cls) in classes.enumerated() {
                // Every folder under the class, then sorted by path as os.walk's tuples sort.
                var dirs: [[UInt8]] = [cls], pending: [[UInt8]] = [cls]
                while let d = pending.popLast() {
                    let sub = try listDirectory(bytes: base + d).dirs
                    for s in sub {
                        let p = d + [UInt8(ascii: "/")] + s
                        guard let id = DirectoryID(base + p), seen.insert(id).inserted else { continue }
                        dirs.append(p); pending.append(p)
                    }
                }
                dirs.sort { $0.lexicographicallyPrecedes($1) }
                for d in dirs {
                    for f in try listDirectory(bytes: base + d).files where isImage(f) {
                        guard paths.count < cap else { break outer }
                        paths.append(d + [UInt8(ascii: "/")] + f)
                        labels.append(ci)
                    }
                }
            }
        }
        guard paths.count > 0 else { throw DataError("\(root): no .png/.jpg images found") }
        return ImageFiles(root: root, paths: paths, channels: channels, labels: classes.isEmpty ? nil : labels,
                          classNames: classes.map { String(decoding: $0, as: UTF8.self) })
    }

    public func image(_ i: Int) throws -> StoredImage {
        let path = name(of: i)
        return .encoded(try FileIO.readAll(bytes: Array(root.utf8) + [UInt8(ascii: "/")] + paths[bytes: i], shown: path, limit: 1 << 30), name: path)
    }

    /// The path of image `i`, for messages (bytes that are not UTF-8 shown as U+FFFD).
    public func name(of i: Int) -> String { root + "/" + paths[i] }

    public func prefix(_ n: Int) -> any ImageDataset {
        n >= count ? self : ImageFiles(root: root, paths: paths.prefix(n), channels: channels, labels: labels.map { Array($0.prefix(n)) },
                                       classNames: classNames)
    }

    /// A directory's device and inode (after following links).
    struct DirectoryID: Hashable {
        let device: UInt64, inode: UInt64
        init?(_ path: [UInt8]) {
            var st = stat()
            guard (path + [0]).withUnsafeBufferPointer({ b in b.withMemoryRebound(to: CChar.self) { stat($0.baseAddress!, &st) } }) == 0 else { return nil }
            device = UInt64(st.st_dev); inode = UInt64(st.st_ino)
        }
    }

    static func isImage(_ name: [UInt8]) -> Bool {
        guard let dot = name.lastIndex(of: UInt8(ascii: ".")) else { return false }
        let ext = String(decoding: name[(dot + 1)...], as: UTF8.self).lowercased()
        return ext == "png" || ext == "jpg" || ext == "jpeg"
    }

    /// The visible entries of a directory, folders and other entries apart, each sorted bytewise
    /// (readdir, with stat only where the file system does not give the entry's type).
    static func listDirectory(_ path: String) throws -> (dirs: [[UInt8]], files: [[UInt8]]) {
        try listDirectory(bytes: Array(path.utf8))
    }

    /// ``listDirectory(_:)`` for a path given as its bytes (names need not be valid UTF-8).
    static func listDirectory(bytes pathBytes: [UInt8]) throws -> (dirs: [[UInt8]], files: [[UInt8]]) {
        let cPath = (pathBytes + [0]).map { CChar(bitPattern: $0) }
        let path = String(decoding: pathBytes, as: UTF8.self)
        guard let dir = opendir(cPath) else {
            throw DataError("\(path): cannot read the directory (\(String(cString: strerror(errno)))); check its permissions")
        }
        defer { closedir(dir) }
        var dirs: [[UInt8]] = [], files: [[UInt8]] = []
        while let entry = readdir(dir) {
            let name: [UInt8] = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                let p = raw.bindMemory(to: UInt8.self)
                return Array(p.prefix(while: { $0 != 0 }))
            }
            guard let first = name.first, first != UInt8(ascii: ".") else { continue }
            var type = Int32(entry.pointee.d_type)
            if type == Int32(DT_UNKNOWN) || type == Int32(DT_LNK) {   // follow links, as os.walk(followlinks=True)
                var st = stat()
                let full = (pathBytes + [UInt8(ascii: "/")] + name + [0]).map { CChar(bitPattern: $0) }
                guard stat(full, &st) == 0 else { continue }
                type = (st.st_mode & S_IFMT) == S_IFDIR ? Int32(DT_DIR) : Int32(DT_REG)
            }
            if type == Int32(DT_DIR) { dirs.append(name) } else { files.append(name) }
        }
        dirs.sort { $0.lexicographicallyPrecedes($1) }
        files.sort { $0.lexicographicallyPrecedes($1) }
        return (dirs, files)
    }
}
