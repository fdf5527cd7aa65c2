import CImageData
import Foundation
import TesseraEngine
#if canImport(Glibc)
import Glibc
#endif

/// Images in tar shards in the WebDataset layout: members grouped into samples by key (the path up
/// to the first "." of the file name: `000123.jpg` + `000123.cls`), the image in a `.jpg`, `.jpeg` or
/// `.png` member and the label, when present, as decimal text in a `.cls` member. Class names come
/// from `classes.txt` beside the shards (one per line) when there is one.
///
/// At start each shard's index file (`NAME.tar.idx`, written by `tessera pack`, or after the first
/// scan of a shard from elsewhere) is read; without one the shard's headers are scanned (their data is
/// skipped, except the few bytes of each label). Nothing is decoded. An epoch visits the shards in a
/// seeded order and passes their samples, in file order, through a seeded shuffle buffer of
/// ``shuffleBuffer`` samples (the ecosystem's shard-and-buffer shuffle); the loader's
/// ``epochReader(seed:epoch:shuffled:order:start:batchSize:shard:)`` reads each shard front to back on one
/// thread in that shard order, and ``image(_:)`` reads one image at its offset (evaluation, tools).
public struct TarShards: ImageDataset {
    public let shards: [String]
    /// Per image: shard, byte offset and size of its image member, and its key.
    let shardOf: [Int32], offsets: [Int], sizes: [Int32]
    let keys: PathTable
    public let channels: Int
    public let labels: [Int]?
    public let classNames: [String]
    /// Samples held by the epoch's shuffle buffer.
    public var shuffleBuffer = 1000
    public var count: Int { offsets.count }
    public var uniformSize: (height: Int, width: Int)? { nil }
    public var summary: String {
        "tar shards \(shards.count == 1 ? shards[0] : (shards[0] as NSString).deletingLastPathComponent + " (\(shards.count) shards)") (\(count) images"
            + (labels == nil ? ")" : ", \(classNames.count) classes)")
    }

    static let imageExtensions: Set<String> = ["jpg", "jpeg", "png"]

    /// The shards a spec names: a `.tar` file, a directory of `.tar` files (sorted by name), or a
    /// brace range `DIR/name-{000000..000099}.tar`.
    public static func shardPaths(_ spec: String) throws -> [String] {
        if let open = spec.firstIndex(of: "{"), let close = spec.firstIndex(of: "}"), open < close {
            let range = spec[spec.index(after: open)..<close].components(separatedBy: "..")
            guard range.count == 2, let lo = Int(range[0]), let hi = Int(range[1]), lo <= hi, hi - lo < 10_000_000 else {
                throw DataError("\(spec): a shard range must read {FIRST..LAST} with decimal numbers, e.g. shard-{000000..000099}.tar")
            }
            let width = range[0].count
            return (lo...hi).map { n in
                let digits = String(n)
                return String(spec[..<open]) + String(repeating: "0", count: max(0, width - digits.count)) + digits + String(spec[spec.index(after: close)...])
            }
        }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: spec, isDirectory: &isDir) else { throw DataError("\(spec): no such file or directory") }
        if !isDir.boolValue { return [spec] }
        let tars = try ImageFiles.listDirectory(spec).files.map { String(decoding: $0, as: UTF8.self) }.filter { $0.hasSuffix(".tar") }
        guard !tars.isEmpty else { throw DataError("\(spec): no .tar shards in the directory") }
        return tars.map { spec + "/" + $0 }
    }

    /// Indexes the shards `spec` names (see ``shardPaths(_:)``), stopping after `limit` images.
    public static func index(_ spec: String, channels: Int, limit: Int? = nil) throws -> TarShards {
        let shards = try shardPaths(spec)
        var shardOf: [Int32] = [], offsets: [Int] = [], sizes: [Int32] = [], labels: [Int] = [], keys = PathTable()
        var unlabeled = 0
        shardLoop: for (si, path) in shards.enumerated() {
            for sample in try samples(ofShard: path) {
                if let limit, offsets.count >= limit { break shardLoop }
                shardOf.append(Int32(si)); offsets.append(sample.offset); sizes.append(Int32(sample.size)); keys.append(Array(sample.key.utf8))
                if let l = sample.label { labels.append(l) } else { labels.append(-1); unlabeled += 1 }
            }
        }
        guard !offsets.isEmpty else { throw DataError("\(spec): no .jpg/.png members in the shards") }
        let labeled = unlabeled == 0
        var names: [String] = []
        let classesFile = ((shards[0] as NSString).deletingLastPathComponent as NSString).appendingPathComponent("classes.txt")
        if labeled {
            if FileManager.default.fileExists(atPath: classesFile) {
                names = String(decoding: try FileIO.readAll(classesFile, limit: 1 << 26), as: UTF8.self).split(separator: "\n").map(String.init)
                guard (labels.max() ?? 0) < names.count else { throw DataError("\(classesFile): \(names.count) classes, but a label is \(labels.max()!)") }
            } else {
                names = (0...(labels.max() ?? 0)).map(String.init)
            }
        }
        return TarShards(shards: shards, shardOf: shardOf, offsets: offsets, sizes: sizes, keys: keys, channels: channels,
                         labels: labeled ? labels : nil, classNames: names)
    }

    /// One sample of a shard: its key, its image member's data offset and size, and its label.
    struct Sample: Equatable { var key: String; var offset: Int; var size: Int; var label: Int? }

    /// The samples of a shard, from its index file `PATH.idx` when that was written for this very
    /// shard (``readIndex(_:shard:)``), else by scanning the shard's headers (one read per member: slow
    /// on a cold disk), after which the index file is written beside it when the directory is writable.
    static func samples(ofShard path: String) throws -> [Sample] {
        let identity = try ShardIdentity(path)
        if let cached = readIndex(path + ".idx", shard: identity) { return cached }
        let found = try scanSamples(path)
        try? FileIO.writeAtomically(indexFile(found, shard: identity), to: path + ".idx")
        return found
    }

    /// What an index file records of its shard: byte size and modification time (nanoseconds). A
    /// shard replaced by another of the same size (a re-shuffled pack) has a new time; one copied with
    /// its time kept is caught by the spot check of ``readIndex(_:shard:)``.
    struct ShardIdentity: Equatable {
        let path: String, size: Int, mtime: Int
        init(path: String, size: Int, mtime: Int) { self.path = path; self.size = size; self.mtime = mtime }
        init(_ path: String) throws {
            var st = stat()
            guard stat(path, &st) == 0 else { throw DataError("\(path): cannot open (\(String(cString: strerror(errno))))") }
            self.path = path
            size = Int(st.st_size)
            mtime = Int(st.st_mtim.tv_sec) * 1_000_000_000 + Int(st.st_mtim.tv_nsec)
        }
    }

    /// The index file of a shard: a header line `tessera-tar-index 2 <tar bytes> <mtime ns>`, then per
    /// sample `key<TAB>offset<TAB>size<TAB>label` (label −1 when there is none).
    static func indexFile(_ samples: [Sample], shard: ShardIdentity) -> [UInt8] {
        var text = "tessera-tar-index 2 \(shard.size) \(shard.mtime)\n"
        for x in samples { text += "\(x.key)\t\(x.offset)\t\(x.size)\t\(x.label ?? -1)\n" }
        return Array(text.utf8)
    }

    /// Parses an index file, or nil when it is missing, malformed, of an older version, or not for
    /// `shard` as it is now: another size or time, or a spot check of the shard (the member headers
    /// of its first, middle and last sample: each a valid header for that key and size) fails.
    static func readIndex(_ path: String, shard: ShardIdentity) -> [Sample]? {
        guard FileManager.default.fileExists(atPath: path), let bytes = try? FileIO.readAll(path, limit: 1 << 30) else { return nil }
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.first == "tessera-tar-index 2 \(shard.size) \(shard.mtime)" else { return nil }
        var out: [Sample] = []
        for line in lines.dropFirst() where !line.isEmpty {
            let f = line.split(separator: "\t", omittingEmptySubsequences: false)
            guard f.count == 4, let o = Int(f[1]), let n = Int(f[2]), let l = Int(f[3]), o >= 512, n >= 0, n < Int(Int32.max),
                  o + n <= shard.size, l >= -1, l < 100_000 else { return nil }
            out.append(Sample(key: String(f[0]), offset: o, size: n, label: l < 0 ? nil : l))
        }
        guard let fd = try? FileIO.openRegularFile(shard.path).fd else { return nil }
        defer { close(fd) }
        for k in Set([0, out.count / 2, out.count - 1]) where k >= 0 && k < out.count {
            var h = [UInt8](repeating: 0, count: 512)
            guard pread(fd, &h, 512, off_t(out[k].offset - 512)) == 512, TarReader.headerMatches(h, key: out[k].key, size: out[k].size) else { return nil }
        }
        return out
    }

    /// Scans a shard's headers into samples (members grouped by key, in file order).
    static func scanSamples(_ path: String) throws -> [Sample] {
        var out: [Sample] = []
        var current: Sample?
        func flush() {
            if let c = current, c.offset >= 0 { out.append(c) }   // a sample without an image member is dropped
            current = nil
        }
        try TarReader.scan(path) { name, offset, size, read in
            let base = name.lastIndex(of: "/").map { name.index(after: $0) } ?? name.startIndex
            guard let dot = name[base...].firstIndex(of: ".") else { return true }
            let key = String(name[..<dot]), ext = String(name[name.index(after: dot)...]).lowercased()
            if current?.key != key {
                flush()
                current = Sample(key: key, offset: -1, size: 0, label: nil)
            }
            if imageExtensions.contains(ext) {
                guard size < Int(Int32.max) else { throw DataError("\(path): member \(name) is larger than 2 GiB") }
                current!.offset = offset; current!.size = size
            } else if ext == "cls" {
                let text = String(decoding: try read(min(size, 32)), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                guard let l = Int(text), l >= 0, l < 100_000 else { throw DataError("\(path): \(name) holds '\(text)', not a class index 0…99999") }
                current!.label = l
            }
            return true
        }
        flush()
        return out
    }

    public func image(_ i: Int) throws -> StoredImage {
        let path = shards[Int(shardOf[i])]
        let (fd, _) = try FileIO.openRegularFile(path)
        defer { close(fd) }
        let size = Int(sizes[i])
        var out = [UInt8](repeating: 0, count: size)
        var done = 0
        while done < size {
            let r = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, size - done, off_t(offsets[i] + done)) }
            if r < 0 && errno == EINTR { continue }
            guard r > 0 else { throw DataError("\(name(of: i)): the shard ends early (truncated); re-create it with 'tessera pack'") }
            done += r
        }
        return .encoded(out, name: name(of: i))
    }

    public func name(of i: Int) -> String { shards[Int(shardOf[i])] + ":" + keys[i] }

    public func prefix(_ n: Int) -> any ImageDataset {
        guard n < count else { return self }
        var t = TarShards(shards: shards, shardOf: Array(shardOf.prefix(n)), offsets: Array(offsets.prefix(n)), sizes: Array(sizes.prefix(n)),
                          keys: keys.prefix(n), channels: channels, labels: labels.map { Array($0.prefix(n)) }, classNames: classNames)
        t.shuffleBuffer = shuffleBuffer
        return t
    }

    /// Shards in a seeded order, their samples in file order through a seeded shuffle buffer.
    public func epochOrder(seed: UInt64, epoch: Int) -> [Int] {
        var rng = TesseraRNG(seed: SeedStream.epochOrder(epoch: epoch).seed(seed))
        var buffer: [Int] = [], out: [Int] = []
        buffer.reserveCapacity(shuffleBuffer); out.reserveCapacity(count)
        for i in entrySequence(shardOrder(rng: &rng)) {
            if buffer.count < max(1, shuffleBuffer) { buffer.append(i); continue }
            let j = rng.int(below: buffer.count)
            out.append(buffer[j]); buffer[j] = i
        }
        while !buffer.isEmpty { out.append(buffer.swapRemoveAt(rng.int(below: buffer.count))) }
        return out
    }

    /// The epoch's shard order, drawn first from the epoch's generator.
    func shardOrder(rng: inout TesseraRNG) -> [Int] {
        var order = Array(0..<shards.count)
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, rng.int(below: i + 1)) }
        return order
    }

    /// The images of the shards in `shardOrder`, each shard's in file order.
    func entrySequence(_ shardOrder: [Int]) -> [Int] {
        var firstOfShard = [Int](repeating: count, count: shards.count + 1)
        for i in stride(from: count - 1, through: 0, by: -1) { firstOfShard[Int(shardOf[i])] = i }
        for s in stride(from: shards.count - 1, through: 0, by: -1) where firstOfShard[s] == count { firstOfShard[s] = firstOfShard[s + 1] }
        return shardOrder.flatMap { firstOfShard[$0]..<firstOfShard[$0 + 1] }
    }

    /// Streams the shards front to back, in the epoch's shard order, one reader thread; an image waits
    /// in memory from its read until its position in the epoch is asked for. The shuffle buffer puts
    /// each image at most ``shuffleBuffer`` positions before its place in the stream, so the reader
    /// keeps that many images plus two batches ahead of the positions asked for.
    public func epochReader(seed: UInt64, epoch: Int, shuffled: Bool, order: [Int], start: Int, batchSize: Int,
                            shard: EpochShard) -> (any EpochReader)? {
        var shardSeq = Array(0..<shards.count)
        if shuffled {
            var rng = TesseraRNG(seed: SeedStream.epochOrder(epoch: epoch).seed(seed))
            shardSeq = shardOrder(rng: &rng)
        }
        return ShardStreamer(self, entries: entrySequence(shardSeq), order: order, start: start, shard: shard,
                             lookahead: (shuffled ? shuffleBuffer : 0) + 2 * batchSize)
    }
}

/// The reader thread of ``TarShards/epochReader(seed:epoch:shuffled:order:start:batchSize:shard:)``.
final class ShardStreamer: EpochReader, @unchecked Sendable {
    private let cond = NSCondition()
    private var ready: [Int: Result<StoredImage, Error>] = [:]
    private var requested = -1, cancelled = false, readCount = 0
    private let positionOf: [Int]

    /// Reads only the images at `shard`'s positions (the other processes' are skipped, not read).
    init(_ shards: TarShards, entries: [Int], order: [Int], start: Int, shard: EpochShard, lookahead: Int) {
        var inverse = [Int](repeating: -1, count: shards.count)
        for (p, i) in order.enumerated() { inverse[i] = p }
        positionOf = inverse
        let thread = Thread { [self] in
            for (e, i) in entries.enumerated() {
                cond.lock()
                while !cancelled && e > requested + lookahead { cond.wait() }
                let stop = cancelled
                cond.unlock()
                if stop { return }
                let p = self.positionOf[i]
                guard p >= start, shard.contains(p) else { continue }   // before a resumed epoch's first step, outside the order, or another process's
                let r = Result { try shards.image(i) }   // offsets increase through each shard: sequential reads
                cond.lock()
                ready[p] = r
                readCount += 1
                cond.broadcast()
                cond.unlock()
            }
        }
        thread.stackSize = 1 << 20
        thread.start()
    }

    func image(at position: Int) throws -> StoredImage {
        cond.lock()
        defer { cond.unlock() }
        if position > requested { requested = position; cond.broadcast() }
        while ready[position] == nil && !cancelled { cond.wait() }
        guard let r = ready.removeValue(forKey: position) else { throw DataError("the shard reader was stopped") }
        return try r.get()
    }

    func cancel() { cond.lock(); cancelled = true; cond.broadcast(); cond.unlock() }
}

extension Array {
    /// Removes element `i` by moving the last one into its place.
    mutating func swapRemoveAt(_ i: Int) -> Element {
        swapAt(i, count - 1)
        return removeLast()
    }
}

extension TarShards {
    /// Packs `set` into `directory/shard-NNNNNN.tar` (each written atomically) and `classes.txt`:
    /// per image the file's bytes as KEY.jpg or KEY.png and its label as KEY.cls, KEY its 8-digit index
    /// in `set`; samples shuffled across shards with `shuffleSeed`, or in `set`'s order when nil.
    /// Returns the number of shards and bytes written.
    public static func pack(_ set: ImageFiles, into directory: String, shardSize: Int, shuffleSeed: UInt64?) throws -> (shards: Int, bytes: Int) {
        precondition(shardSize >= 1, "TarShards.pack: shard size must be positive")
        // A pack that fails part way removes what it wrote (and the directory, when it created it), so
        // the same command can simply be run again.
        let created = !FileManager.default.fileExists(atPath: directory)
        try FileIO.makeDirectory(directory)
        var written: [String] = []
        do { return try packShards(set, into: directory, shardSize: shardSize, shuffleSeed: shuffleSeed, written: &written) } catch {
            for path in written { unlink(path) }
            if created { rmdir(directory) }
            throw error
        }
    }

    static func packShards(_ set: ImageFiles, into directory: String, shardSize: Int, shuffleSeed: UInt64?,
                           written: inout [String]) throws -> (shards: Int, bytes: Int) {
        var order = Array(0..<set.count)
        if let shuffleSeed {
            var rng = TesseraRNG(seed: shuffleSeed)
            for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, rng.int(below: i + 1)) }
        }
        let shards = (set.count + shardSize - 1) / shardSize
        var bytes = 0
        for s in 0..<shards {
            var tar: [UInt8] = [], samples: [Sample] = []
            for i in order[(s * shardSize)..<min((s + 1) * shardSize, set.count)] {
                guard case let .encoded(data, _) = try set.image(i) else { preconditionFailure("ImageFiles holds encoded images") }
                let key = String(format: "%08d", i)
                samples.append(Sample(key: key, offset: tar.count + 512, size: data.count, label: set.labels?[i]))   // after its header
                tar += TarReader.member(name: key + (ck_image_kind(data, data.count) == 1 ? ".png" : ".jpg"), data: data)
                if let labels = set.labels { tar += TarReader.member(name: key + ".cls", data: Array("\(labels[i])".utf8)) }
            }
            tar += TarReader.end
            bytes += tar.count
            let name = directory + "/" + String(format: "shard-%06d.tar", s)
            written.append(name)
            try FileIO.writeAtomically(tar, to: name)
            written.append(name + ".idx")
            try FileIO.writeAtomically(indexFile(samples, shard: try ShardIdentity(name)), to: name + ".idx")
        }
        if set.labels != nil {
            written.append(directory + "/classes.txt")
            try FileIO.writeAtomically(Array((set.classNames.joined(separator: "\n") + "\n").utf8), to: directory + "/classes.txt")
        }
        return (shards, bytes)
    }
}

/// Reads and writes POSIX (ustar) tar archives, with the pax and GNU long-name extensions on reading.
/// Written here rather than on libarchive (not among the packages Tessera installs): what the loader
/// needs is each member's data offset, for the index files and for reading one image with one
/// `pread`, and the format's part of that is a 512-byte header with octal fields.
public enum TarReader {
    /// Calls `member(name, dataOffset, size, read)` for each regular file in order, where `read(n)`
    /// returns the member's first n bytes; the member returns false to stop. Hostile input: every
    /// size is checked against the file.
    public static func scan(_ path: String, _ member: (String, Int, Int, (Int) throws -> [UInt8]) throws -> Bool) throws {
        let (fd, fileSize) = try FileIO.openRegularFile(path)
        defer { close(fd) }
        func readAt(_ offset: Int, _ n: Int) throws -> [UInt8] {
            guard offset + n <= fileSize else { throw DataError("\(path): truncated tar (a member runs past the end); re-create the shard") }
            var b = [UInt8](repeating: 0, count: n)
            var done = 0
            while done < n {
                let r = b.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, n - done, off_t(offset + done)) }
                if r < 0 && errno == EINTR { continue }
                guard r > 0 else { throw DataError("\(path): read failed at byte \(offset + done)") }
                done += r
            }
            return b
        }
        var at = 0
        var longName: String?
        while true {
            // A tar ends with zero blocks; a file that ends without one was cut (inside a header, or at a
            // member boundary, where it would otherwise read as a shorter valid archive).
            guard at + 512 <= fileSize else {
                throw DataError("\(path): truncated tar (it ends at byte \(fileSize) without the end-of-archive blocks); re-create or re-copy the shard")
            }
            let h = try readAt(at, 512)
            if h.allSatisfy({ $0 == 0 }) { return }   // end of archive
            var sum = 0
            for (i, b) in h.enumerated() { sum += (148..<156).contains(i) ? 32 : Int(b) }
            guard let stored = octal(h[148..<156]), stored == sum else { throw DataError("\(path): not a tar file, or corrupt at byte \(at) (bad header checksum)") }
            guard let size = octal(h[124..<136]), size >= 0, at + 512 + size <= fileSize else {
                throw DataError("\(path): truncated or corrupt tar at byte \(at) (member size)")
            }
            let type = h[156]
            let data = at + 512
            at = data + (size + 511) / 512 * 512
            switch type {
            case UInt8(ascii: "L"):   // GNU long name of the next member
                longName = String(decoding: try readAt(data, min(size, 4096)).prefix { $0 != 0 }, as: UTF8.self)
            case UInt8(ascii: "x"):   // pax extended header: "LEN path=VALUE\n" records
                let text = String(decoding: try readAt(data, min(size, 1 << 20)), as: UTF8.self)
                for record in text.split(separator: "\n") where record.contains(" path=") {
                    longName = String(record[record.range(of: " path=")!.upperBound...])
                }
            case 0, UInt8(ascii: "0"), UInt8(ascii: "7"):
                var name = longName ?? cString(h[0..<100])
                if longName == nil && Array(h[257..<262]) == Array("ustar".utf8) {
                    let prefix = cString(h[345..<500])
                    if !prefix.isEmpty { name = prefix + "/" + name }
                }
                longName = nil
                guard try member(name, data, size, { n in try readAt(data, min(n, size)) }) else { return }
            default:
                longName = nil   // directories, links, global headers: skipped
            }
        }
    }

    /// Whether a 512-byte block is a valid header of a regular member of `size` bytes whose name is
    /// `key` plus an extension (a name filling the field, cut by a long-name extension, is not compared).
    static func headerMatches(_ h: [UInt8], key: String, size: Int) -> Bool {
        var sum = 0
        for (i, b) in h.enumerated() { sum += (148..<156).contains(i) ? 32 : Int(b) }
        guard h.count == 512, let stored = octal(h[148..<156]), stored == sum, octal(h[124..<136]) == size,
              [0, UInt8(ascii: "0"), UInt8(ascii: "7")].contains(h[156]) else { return false }
        var name = cString(h[0..<100])
        if Array(h[257..<262]) == Array("ustar".utf8) {
            let prefix = cString(h[345..<500])
            if !prefix.isEmpty { name = prefix + "/" + name }
        }
        return h[99] != 0 || name.hasPrefix(key + ".")
    }

    static func cString(_ b: ArraySlice<UInt8>) -> String { String(decoding: b.prefix { $0 != 0 }, as: UTF8.self) }

    static func octal(_ b: ArraySlice<UInt8>) -> Int? {
        if let f = b.first, f & 0x80 != 0 {   // base-256 (GNU) for sizes beyond 8 GiB
            var v = Int(f & 0x7f)
            for x in b.dropFirst() { guard v < Int.max >> 9 else { return nil }; v = v << 8 | Int(x) }
            return v
        }
        var v = 0, seen = false
        for x in b {
            if x == 0 || x == 32 { if seen { break } else { continue } }
            guard x >= 48 && x <= 55, v < Int.max >> 4 else { return nil }
            v = v * 8 + Int(x - 48); seen = true
        }
        return seen ? v : 0
    }

    /// A tar member: ustar header (mode 0644, owner 0, time 0 so shards are reproducible) and data padded to 512 bytes.
    public static func member(name: String, data: [UInt8]) -> [UInt8] {
        precondition(name.utf8.count < 100, "tar member name '\(name)' is too long")
        var h = [UInt8](repeating: 0, count: 512)
        func put(_ s: String, _ at: Int) { for (i, b) in s.utf8.enumerated() { h[at + i] = b } }
        put(name, 0)
        put("0000644", 100); put("0000000", 108); put("0000000", 116)
        put(String(format: "%011o", data.count), 124)
        put("00000000000", 136)
        h[156] = UInt8(ascii: "0")
        put("ustar", 257); put("00", 263)
        for i in 148..<156 { h[i] = 32 }
        let sum = h.reduce(0) { $0 + Int($1) }
        put(String(format: "%06o", sum), 148); h[154] = 0; h[155] = 32
        return h + data + [UInt8](repeating: 0, count: (512 - data.count % 512) % 512)
    }

    /// The end-of-archive marker: two zero blocks.
    public static let end = [UInt8](repeating: 0, count: 1024)
}
