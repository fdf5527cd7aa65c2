import Foundation
import TesseraEngine

/// One image as its dataset stores it: decoded 8-bit pixels (in-memory sets, `.npy`), or the bytes of
/// a PNG or JPEG file that the loader's workers decode when its batch is due.
public enum StoredImage: Sendable {
    /// HWC pixels, `height × width × channels` bytes.
    case pixels([UInt8], height: Int, width: Int)
    /// An encoded file; `name` (its path, or shard and member) goes into error messages.
    case encoded([UInt8], name: String)
}

/// A dataset the ``Loader`` draws from: a fixed number of images, each read by index when its batch
/// is due. Labels (if any) and class names are known from the index, without decoding an image.
///
/// Conformers: ``ImageSet`` (decoded in memory: IDX, small sets), ``ImageFiles`` (an ImageFolder or a
/// flat folder, indexed by path), ``NpyImages`` (a memory-mapped `.npy` array) and ``TarShards``
/// (WebDataset tar shards). `image(_:)` is called from several decode workers at once.
public protocol ImageDataset: Sendable {
    /// Number of images.
    var count: Int { get }
    /// Channels every image is delivered with (1 or 3).
    var channels: Int { get }
    /// One label per image, or nil for unlabeled data.
    var labels: [Int]? { get }
    /// Class names in label order.
    var classNames: [String] { get }
    /// Height and width shared by every image, when the dataset knows it without decoding (nil otherwise).
    var uniformSize: (height: Int, width: Int)? { get }
    /// What and where the data is, for logs: "ImageFolder /data/train (1,281,167 images, 1000 classes)".
    var summary: String { get }
    /// Image `i` as stored.
    func image(_ i: Int) throws -> StoredImage
    /// The first `n` images (the order of the index), for `--limit`.
    func prefix(_ n: Int) -> any ImageDataset
    /// The order in which an epoch visits the images: a pure function of (seed, epoch). The default
    /// is a Fisher–Yates shuffle; ``TarShards`` keeps each shard's members together for sequential reads.
    func epochOrder(seed: UInt64, epoch: Int) -> [Int]
    /// A reader that streams the epoch's images in storage order and hands out the image at each
    /// position of `order` (from `start` on), or nil to read each image with ``image(_:)``. `order` is
    /// `epochOrder(seed:epoch:)` when `shuffled`, else the index order. Only the positions `shard`
    /// contains are asked for (a data-parallel process's); the reader need not read the others.
    func epochReader(seed: UInt64, epoch: Int, shuffled: Bool, order: [Int], start: Int, batchSize: Int, shard: EpochShard) -> (any EpochReader)?
}

/// Streams one epoch of a dataset in the order its storage is best read (``TarShards``: each shard
/// front to back) and hands out images by their position in the epoch's order.
public protocol EpochReader: AnyObject, Sendable {
    /// The image at `position` of the epoch's order (each position is asked for once).
    func image(at position: Int) throws -> StoredImage
    /// Stops reading (the epoch ended early).
    func cancel()
}

extension ImageDataset {
    public var classCount: Int { labels == nil ? 0 : classNames.count }

    public func epochReader(seed: UInt64, epoch: Int, shuffled: Bool, order: [Int], start: Int, batchSize: Int,
                            shard: EpochShard) -> (any EpochReader)? { nil }

    public func epochOrder(seed: UInt64, epoch: Int) -> [Int] {
        var idx = Array(0..<count)
        var rng = TesseraRNG(seed: SeedStream.epochOrder(epoch: epoch).seed(seed))
        for i in stride(from: idx.count - 1, to: 0, by: -1) { idx.swapAt(i, rng.int(below: i + 1)) }
        return idx
    }

    /// Image `i` decoded to 8-bit HWC pixels at full size (evaluation helpers, statistics, tools).
    public func decoded(_ i: Int) throws -> (pixels: [UInt8], height: Int, width: Int) {
        switch try image(i) {
        case let .pixels(p, h, w): return (p, h, w)
        case let .encoded(bytes, name): return try ImageSet.decodeImage(bytes: bytes, name: name, channels: channels)
        }
    }

    /// Per-channel mean and standard deviation of the pixels scaled to [0, 1] (for Normalize): over
    /// every image of an in-memory ``ImageSet``, else over `sample` images spread evenly over the dataset
    /// (leaving out those that cannot be read when `skipUnreadable`).
    public func channelStatistics(sample: Int = 2000, skipUnreadable: Bool = false) throws -> (mean: [Float], std: [Float]) {
        let n = self is ImageSet ? count : min(count, sample)
        var sum = [Double](repeating: 0, count: channels), sq = sum, pixels = 0.0
        for k in 0..<n {
            let px: [UInt8]
            do { px = try decoded(n == count ? k : k * count / n).pixels } catch where skipUnreadable { continue }
            for (i, v) in px.enumerated() {
                let x = Double(v) / 255
                sum[i % channels] += x; sq[i % channels] += x * x
            }
            pixels += Double(px.count / channels)
        }
        let mean = sum.map { $0 / pixels }
        let std = zip(sq, mean).map { (max($0 / pixels - $1 * $1, 1e-12)).squareRoot() }
        return (mean.map(Float.init), std.map(Float.init))
    }

    /// Every image decoded into one in-memory ``ImageSet`` (for small evaluation sets and `eval --pixels`).
    public func materialized() throws -> ImageSet {
        if let set = self as? ImageSet { return set }
        var px: [UInt8] = [], off: [Int] = [], hs: [Int] = [], ws: [Int] = []
        for i in 0..<count {
            let d = try decoded(i)
            off.append(px.count); px += d.pixels; hs.append(d.height); ws.append(d.width)
        }
        return ImageSet(pixels: px, offsets: off, heights: hs, widths: ws, channels: channels, labels: labels, classNames: classNames)
    }
}

extension ImageSet: ImageDataset {
    public var uniformSize: (height: Int, width: Int)? {
        guard let h = heights.first, let w = widths.first, heights.allSatisfy({ $0 == h }), widths.allSatisfy({ $0 == w }) else { return nil }
        return (h, w)
    }

    public var summary: String { "\(count) images in memory" + (labels == nil ? "" : ", \(classNames.count) classes") }

    public func image(_ i: Int) throws -> StoredImage {
        let n = heights[i] * widths[i] * channels
        return .pixels(Array(pixels[offsets[i]..<(offsets[i] + n)]), height: heights[i], width: widths[i])
    }

    public func prefix(_ n: Int) -> any ImageDataset { n >= count ? self : subset(Array(0..<n)) }
}
