import Foundation
@testable import TesseraData
import TesseraEngine
import TestSupport
import XCTest

/// Datasets indexed without decoding, the decode workers, reduced and region decoding, tar shards
/// and memory-mapped `.npy` files.
final class DataAtScaleTests: XCTestCase {
    var tmp = ""

    override func setUpWithError() throws {
        tmp = NSTemporaryDirectory() + "tessera-data-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: tmp) }

    func photo(_ name: String) throws -> String {
        try XCTUnwrap(Bundle.module.url(forResource: "Photos", withExtension: nil)).path + "/" + name
    }

    func write(_ bytes: [UInt8], _ path: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try FileIO.writeAtomically(bytes, to: path)
    }

    /// An ImageFolder of the photo fixtures copied under two classes (13 images), nested folders and
    /// names chosen to test the order, plus files that are not images.
    func makeFolder() throws -> String {
        let root = tmp + "/folder"
        let photos = ["a420.jpg", "b444.jpg", "c_progressive.jpg", "d_gray.jpg", "e_restart.jpg", "f.png"]
        for (i, p) in photos.enumerated() {
            let bytes = try FileIO.readAll(photo(p))
            try write(bytes, root + "/cat/\(i)." + (p.hasSuffix("png") ? "PNG" : "jpg"))
            try write(bytes, root + (i < 3 ? "/dog/x/\(i).jpeg" : "/dog/x-y/\(i)." + (p.hasSuffix("png") ? "png" : "jpg")))
        }
        try write(try FileIO.readAll(photo("a420.jpg")), root + "/dog/x/z/6.jpg")
        try write(Array("not an image".utf8), root + "/cat/notes.txt")
        try write(Array("hidden".utf8), root + "/.cache/0.jpg")
        return root
    }

    func testFolderIndexFollowsTorchvisionOrderWithoutDecoding() throws {
        let root = try makeFolder()
        let set = try ImageFiles.index(root, channels: 3)
        XCTAssertEqual(set.classNames, ["cat", "dog"])   // hidden folders skipped
        XCTAssertEqual(set.count, 13)                    // notes.txt skipped; .PNG matched in any case
        XCTAssertEqual(set.labels, [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1])
        // os.walk's folders sorted as strings: "dog/x-y" before "dog/x/z" ('-' < '/'), not depth first.
        XCTAssertEqual((0..<13).map { set.paths[$0] },
                       ["cat/0.jpg", "cat/1.jpg", "cat/2.jpg", "cat/3.jpg", "cat/4.jpg", "cat/5.PNG",
                        "dog/x/0.jpeg", "dog/x/1.jpeg", "dog/x/2.jpeg", "dog/x-y/3.jpg", "dog/x-y/4.jpg", "dog/x-y/5.png", "dog/x/z/6.jpg"])
        let limited = try ImageFiles.index(root, channels: 3, limit: 4)
        XCTAssertEqual(limited.count, 4)
        XCTAssertEqual(limited.labels, [0, 0, 0, 0])
        // A flat folder: unlabeled.
        let flat = try ImageFiles.index(root + "/cat", channels: 1)
        XCTAssertEqual(flat.count, 6)
        XCTAssertNil(flat.labels)
    }

    func testCorruptImageFailsOnlyWhenSampledAndNamesTheFile() throws {
        let root = try makeFolder()
        try write([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3], root + "/dog/x-y/9-corrupt.jpg")
        let set = try ImageFiles.index(root, channels: 3)   // indexing reads no image
        XCTAssertEqual(set.count, 14)
        XCTAssertEqual(set.paths[12], "dog/x-y/9-corrupt.jpg")
        let aug = Augmentation(size: 32, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25])
        // Never sampled: the first 12 images train fine.
        let clean = Loader(set.prefix(12), batchSize: 4, augmentation: aug, seed: 1)
        XCTAssertEqual(try clean.batches(epoch: 0).remaining().count, 3)
        // Sampled: the batch that holds it fails with the file's name.
        let all = Loader(set, batchSize: 14, augmentation: aug, seed: 1)
        XCTAssertThrowsError(try all.batches(epoch: 0).remaining()) { e in
            XCTAssertTrue("\(e)".contains("9-corrupt.jpg"), "\(e)")
        }
        // Or skipped with a warning that names it, when asked.
        let warnings = LockedStrings()
        let skipping = Loader(set, batchSize: 14, augmentation: aug, seed: 1)
        skipping.skipUnreadable = true
        skipping.warn = { warnings.append($0) }
        let b = try XCTUnwrap(try skipping.batches(epoch: 0).next())
        XCTAssertEqual(b.indices.count, 14)
        XCTAssertFalse(b.indices.contains(12))
        XCTAssertEqual(warnings.all.count, 1)
        XCTAssertTrue(warnings.all[0].contains("9-corrupt.jpg"))
    }

    func testBatchesAreTheSameForAnyNumberOfWorkers() throws {
        let set = try ImageFiles.index(try makeFolder(), channels: 3)
        var views = [Augmentation(size: 48, mean: [0.5, 0.4, 0.3], std: [0.2, 0.2, 0.2]), Augmentation(size: 24, mean: [0.5, 0.4, 0.3], std: [0.2, 0.2, 0.2])]
        views[1].photometric = Photometric()
        let one = Loader(set, batchSize: 6, views: views, seed: 3, workers: 1)
        let four = Loader(set, batchSize: 6, views: views, seed: 3, workers: 4)
        for epoch in 0..<2 {
            let a = try one.batches(epoch: epoch).remaining(), b = try four.batches(epoch: epoch).remaining()
            XCTAssertEqual(a.count, 2)
            XCTAssertEqual(b.count, a.count, "epoch \(epoch): batches with 4 workers")
            for (x, y) in zip(a, b) {
                XCTAssertEqual(x.indices, y.indices)
                XCTAssertEqual(x.viewCrops, y.viewCrops)
                for v in 0..<2 { assertBitIdentical(x.viewImages[v].array, y.viewImages[v].array, "epoch \(epoch) step \(x.step) view \(v)") }
            }
        }
    }

    /// Decoding only the crop's rows and columns gives the pixels of a full decode; a reduced decode
    /// stays close to it.
    func testRegionAndReducedDecodingMatchTheFullDecode() throws {
        let aug = Augmentation(size: 40, mean: [0, 0, 0], std: [1, 1, 1], scale: 0.1...0.5)
        for name in ["a420.jpg", "b444.jpg", "c_progressive.jpg", "d_gray.jpg", "e_restart.jpg", "f.png"] {
            let bytes = try FileIO.readAll(photo(name))
            for seed in 0..<6 {
                func render(reduced: Bool, maxReduction: Int64) throws -> [Float] {
                    var r = SampleRenderer(views: [aug], channels: 3, reducedDecoding: reduced)
                    r.maxReduction = maxReduction
                    var rng = TesseraRNG(seed: UInt64(seed)), scratch = SampleScratch()
                    var out = [Float](repeating: 0, count: 3 * 40 * 40)
                    _ = try out.withUnsafeMutableBufferPointer { o in
                        try r.render(.encoded(bytes, name: name), rng: &rng, into: [o.baseAddress!], scratch: &scratch)
                    }
                    return out
                }
                let full = try render(reduced: false, maxReduction: 1)
                let region = try render(reduced: true, maxReduction: 1)
                let worst = zip(full, region).map { abs($0 - $1) }.max()!
                XCTAssertLessThanOrEqual(worst, 1e-6, "\(name) seed \(seed): region decode differs from the full decode")
                let reduced = try render(reduced: true, maxReduction: 8)
                let mean = zip(full, reduced).map { abs($0 - $1) }.reduce(0, +) / Float(full.count)
                XCTAssertLessThan(mean, 0.03, "\(name) seed \(seed): reduced decode too far from the full one")
            }
        }
    }

    func testShardsHoldTheFolderImagesAndShuffleByShardAndBuffer() throws {
        let folder = try ImageFiles.index(try makeFolder(), channels: 3)
        let dir = tmp + "/shards"
        let packed = try TarShards.pack(folder, into: dir, shardSize: 5, shuffleSeed: nil)
        XCTAssertEqual(packed.shards, 3)
        var shards = try TarShards.index(dir, channels: 3)
        XCTAssertEqual(shards.count, folder.count)
        // pack wrote each shard's index file; it matches a scan, and one for a shard of another size is ignored.
        let first = dir + "/shard-000000.tar"
        let id = try TarShards.ShardIdentity(first)
        XCTAssertEqual(id.size, try FileIO.readAll(first).count)
        XCTAssertEqual(TarShards.readIndex(first + ".idx", shard: id), try TarShards.scanSamples(first))
        XCTAssertEqual(TarShards.readIndex(first + ".idx", shard: id)?.count, 5)
        XCTAssertNil(TarShards.readIndex(first + ".idx", shard: .init(path: first, size: id.size + 1, mtime: id.mtime)))
        XCTAssertNil(TarShards.readIndex(first + ".idx", shard: .init(path: first, size: id.size, mtime: id.mtime + 1)))
        let header = "tessera-tar-index 2 \(id.size) \(id.mtime)\n"
        try write(Array((header + "key\t999999\t5\t0\n").utf8), tmp + "/bad.idx")
        XCTAssertNil(TarShards.readIndex(tmp + "/bad.idx", shard: id))   // offset past the end: not trusted
        // Right size and time, but the members are not where it says (another pack's index): not trusted.
        let valid = try XCTUnwrap(TarShards.readIndex(first + ".idx", shard: id))
        var swapped = valid
        swapped[0].key = valid[1].key; swapped[1].key = valid[0].key
        try write(TarShards.indexFile(swapped, shard: id), tmp + "/swapped.idx")
        XCTAssertNil(TarShards.readIndex(tmp + "/swapped.idx", shard: id))
        try write(TarShards.indexFile(valid, shard: id), tmp + "/copy.idx")
        XCTAssertEqual(TarShards.readIndex(tmp + "/copy.idx", shard: id), valid)
        XCTAssertEqual(shards.labels, folder.labels)
        XCTAssertEqual(shards.classNames, folder.classNames)
        for i in 0..<folder.count {
            guard case let .encoded(a, _) = try folder.image(i), case let .encoded(b, _) = try shards.image(i) else { return XCTFail("not encoded") }
            XCTAssertEqual(a, b, "image \(i)")
        }
        // The same batches in the folder's order.
        let aug = Augmentation(size: 32, mean: [0.5, 0.5, 0.5], std: [0.2, 0.2, 0.2])
        let fromFolder = try Loader(folder, batchSize: 4, augmentation: aug, seed: 2, shuffle: false).batches(epoch: 0).remaining()
        let fromShards = try Loader(shards, batchSize: 4, augmentation: aug, seed: 2, shuffle: false).batches(epoch: 0).remaining()
        XCTAssertEqual(fromShards.count, fromFolder.count, "batches from the shards")
        for (a, b) in zip(fromFolder, fromShards) { assertBitIdentical(a.images.array, b.images.array, "step \(a.step)") }
        // Epoch orders: permutations, different per epoch, and a buffer of 1 keeps whole shards together.
        shards.shuffleBuffer = 4
        let o0 = shards.epochOrder(seed: 1, epoch: 0), o1 = shards.epochOrder(seed: 1, epoch: 1)
        XCTAssertEqual(o0.sorted(), Array(0..<13))
        XCTAssertEqual(o1.sorted(), Array(0..<13))
        XCTAssertNotEqual(o0, o1)
        XCTAssertEqual(o0, shards.epochOrder(seed: 1, epoch: 0))
        shards.shuffleBuffer = 1
        let sequential = shards.epochOrder(seed: 1, epoch: 0)
        XCTAssertTrue([Set(0..<5), Set(5..<10), Set(10..<13)].contains(Set(sequential.prefix(sequential[0] >= 10 ? 3 : 5))))
        // Packing shuffled keeps every image once, keyed by its index in the folder.
        let shuffled = try TarShards.pack(folder, into: tmp + "/shuffled", shardSize: 5, shuffleSeed: 9)
        XCTAssertEqual(shuffled.shards, 3)
        let s2 = try TarShards.index(tmp + "/shuffled", channels: 3)
        XCTAssertEqual((0..<s2.count).map { Int(s2.keys[$0])! }.sorted(), Array(0..<13))
        for i in 0..<s2.count { XCTAssertEqual(s2.labels![i], folder.labels![Int(s2.keys[i])!]) }
        // A brace range names the same shards.
        XCTAssertEqual(try TarShards.shardPaths(dir + "/shard-{000000..000002}.tar"), try TarShards.shardPaths(dir))
    }

    /// The fixture folder and its images packed into shards of 4 (shuffled, seed 5), read with a
    /// shuffle buffer of 3.
    func folderAndShards() throws -> (ImageFiles, TarShards) {
        let folder = try ImageFiles.index(try makeFolder(), channels: 3)
        _ = try TarShards.pack(folder, into: tmp + "/s", shardSize: 4, shuffleSeed: 5)
        var shards = try TarShards.index(tmp + "/s", channels: 3)
        shards.shuffleBuffer = 3
        return (folder, shards)
    }

    /// The streaming reader (each shard front to back, images held until their position is due)
    /// gives the batches that reading each image at its offset gives, from any start, with any workers.
    func testStreamedShardsGiveTheSameBatches() throws {
        let (_, shards) = try folderAndShards()
        let aug = Augmentation(size: 24, mean: [0.5, 0.5, 0.5], std: [0.2, 0.2, 0.2])
        for workers in [1, 3] {
            let loader = Loader(shards, batchSize: 3, augmentation: aug, seed: 4, workers: workers)
            for epoch in 0..<2 {
                let order = loader.order(epoch: epoch)
                let streamed = try loader.batches(epoch: epoch).remaining()
                XCTAssertEqual(streamed.count, 4)
                for b in streamed {
                    let direct = try loader.makeBatch(epoch: epoch, step: b.step, order: order)
                    XCTAssertEqual(b.indices, direct.indices)
                    assertBitIdentical(b.images.array, direct.images.array, "workers \(workers) epoch \(epoch) step \(b.step)")
                }
                let resumed = try loader.batches(epoch: epoch, startStep: 2).remaining()
                XCTAssertEqual(resumed.map(\.indices), streamed.suffix(2).map(\.indices))
            }
            // Leaving an epoch early stops the reader: dropping the epoch after one batch returns.
            assertFinishes(within: 60, "an epoch of streamed shards dropped after its first batch (workers \(workers))") {
                let early = loader.batches(epoch: 3)
                _ = try early.next()
            }
        }
    }

    /// Data-parallel shards: W processes' batches of a step are disjoint, together exactly the
    /// one-process batch (same images, same pixels, in rank order), cover the epoch's order, and are
    /// reshuffled per epoch; for an image folder read directly and for tar shards streamed with the
    /// other processes' members skipped.
    func testProcessShardsAreDisjointCompleteAndReshuffled() throws {
        let (folder, shards) = try folderAndShards()
        let aug = Augmentation(size: 16, mean: [0.5, 0.5, 0.5], std: [0.2, 0.2, 0.2])
        for data in [folder as any ImageDataset, shards] {
            for W in [2, 3] {
                let B = 2 * W   // 13 images: 2 or 1 whole global batches, the rest dropped
                let whole = Loader(data, batchSize: B, augmentation: aug, seed: 8)
                let parts = (0..<W).map { Loader(data, batchSize: B, views: [aug], seed: 8, workers: 2,
                                                 shard: EpochShard(rank: $0, of: W, globalBatch: B)) }
                var epochs: [[Int]] = []
                for epoch in 0..<2 {
                    let reference = try whole.batches(epoch: epoch).remaining()
                    let streamed = try parts.map { try $0.batches(epoch: epoch).remaining() }
                    XCTAssertEqual(reference.count, 13 / B)
                    var seen: [Int] = []
                    for (s, ref) in reference.enumerated() {
                        let mine = streamed.map { $0[s] }
                        XCTAssertEqual(mine.flatMap(\.indices), ref.indices, "\(data.summary): W \(W) epoch \(epoch) step \(s)")
                        assertBitIdentical(mine.flatMap { $0.images.array }, ref.images.array, "W \(W) epoch \(epoch) step \(s)")
                        for (r, b) in mine.enumerated() {
                            XCTAssertEqual(b.globalRows, (r * 2)..<(r * 2 + 2))
                            XCTAssertEqual(b.globalBatchSize, B)
                        }
                        seen += mine.flatMap(\.indices)
                    }
                    XCTAssertEqual(Set(seen).count, seen.count, "an image in two processes' batches")
                    XCTAssertEqual(seen, Array(whole.order(epoch: epoch).prefix(seen.count)))
                    epochs.append(seen)
                }
                XCTAssertNotEqual(epochs[0], epochs[1], "not reshuffled between epochs")
            }
        }
    }

    func testHostileShardsGiveClearErrors() throws {
        let folder = try ImageFiles.index(try makeFolder(), channels: 3)
        _ = try TarShards.pack(folder, into: tmp + "/s", shardSize: 13, shuffleSeed: nil)
        let good = try FileIO.readAll(tmp + "/s/shard-000000.tar")
        try write(Array(good.prefix(good.count / 2)), tmp + "/t/truncated.tar")
        XCTAssertThrowsError(try TarShards.index(tmp + "/t/truncated.tar", channels: 3)) { XCTAssertTrue("\($0)".contains("truncated"), "\($0)") }
        var bad = good
        bad[10] ^= 0x55
        try write(bad, tmp + "/u/checksum.tar")
        XCTAssertThrowsError(try TarShards.index(tmp + "/u/checksum.tar", channels: 3)) { XCTAssertTrue("\($0)".contains("checksum"), "\($0)") }
        try write(Array("hello".utf8), tmp + "/v/tiny.tar")
        XCTAssertThrowsError(try TarShards.index(tmp + "/v/tiny.tar", channels: 3))
        XCTAssertThrowsError(try TarShards.shardPaths(tmp + "/s/shard-{2..x}.tar"))
    }

    func testNpyImagesAreMappedAndConvertedPerImage() throws {
        // float32 NCHW in [0, 1] (as numpy writes it), 3 images of 3 channels × 2 × 4.
        var values: [Float] = []
        for i in 0..<3 { for c in 0..<3 { for p in 0..<8 { values.append(Float(i * 100 + c * 10 + p) / 255) } } }
        try write(NpyArray.serialize(floats: values, shape: [3, 3, 2, 4]), tmp + "/x.npy")
        try write(NpyArray.serialize(int64s: [2, 0, 1], shape: [3]), tmp + "/x-labels.npy")
        let set = try XCTUnwrap(DataSource.load(tmp + "/x.npy", split: .train) as? NpyImages)
        XCTAssertEqual(set.count, 3)
        XCTAssertEqual(set.channels, 3)
        XCTAssertEqual(set.labels, [2, 0, 1])
        let img = try set.decoded(1)
        XCTAssertEqual(img.height, 2)
        XCTAssertEqual(img.width, 4)
        // HWC: pixel p, channel c of image 1 is 100 + 10c + p.
        XCTAssertEqual(img.pixels, (0..<8).flatMap { p in (0..<3).map { c in UInt8(100 + 10 * c + p) } })
        XCTAssertEqual(set.prefix(2).count, 2)
        // uint8 NHWC, written by hand with numpy's header layout.
        let header = "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2, 2, 1), }"
        let padded = header + String(repeating: " ", count: (64 - (10 + header.utf8.count + 1) % 64) % 64) + "\n"
        let bytes = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(padded.utf8.count), 0] + Array(padded.utf8) + (0..<8).map { UInt8($0 * 30) }
        try write(bytes, tmp + "/g.npy")
        let g = try NpyImages(images: tmp + "/g.npy")
        XCTAssertEqual(try g.decoded(1).pixels, [120, 150, 180, 210])
        XCTAssertNil(g.labels)
        // A truncated file is refused at open, naming it.
        try write(Array(bytes.dropLast(3)), tmp + "/short.npy")
        XCTAssertThrowsError(try NpyImages(images: tmp + "/short.npy")) { XCTAssertTrue("\($0)".contains("short.npy"), "\($0)") }
    }
}

/// Strings appended from several threads.
final class LockedStrings: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func append(_ s: String) { lock.lock(); items.append(s); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return items }
}
