import Foundation
import Logging
import TesseraEngine

/// One training batch: the augmented views of its images, their labels (if any), which images they
/// are and where each view was cut from.
public struct Batch: @unchecked Sendable {
    /// One tensor `[B, C, S_v, S_v]` per view kind of the loader (MAE has one).
    public let viewImages: [Tensor]
    /// `viewCrops[v][i]`: where view v of image i was cut from.
    public let viewCrops: [[CropView]]
    public let labels: [Int]?
    public let indices: [Int]
    /// Epoch and step inside the epoch this batch belongs to.
    public let epoch: Int, step: Int
    /// In data-parallel training, this process's rows of the step's global batch (one process: all).
    /// Per-step randomness a method draws for the whole batch (masks) is drawn for
    /// ``globalBatchSize`` images and these rows kept, so it follows the image, not the process.
    public let globalRows: Range<Int>
    /// Images of the step over all processes.
    public let globalBatchSize: Int

    /// The first view.
    public var images: Tensor { viewImages[0] }
    /// The crops of the first view.
    public var views: [CropView] { viewCrops[0] }

    public init(viewImages: [Tensor], viewCrops: [[CropView]], labels: [Int]?, indices: [Int], epoch: Int, step: Int,
                globalRows: Range<Int>? = nil, globalBatchSize: Int? = nil) {
        self.viewImages = viewImages; self.viewCrops = viewCrops; self.labels = labels; self.indices = indices
        self.epoch = epoch; self.step = step
        self.globalRows = globalRows ?? 0..<indices.count
        self.globalBatchSize = globalBatchSize ?? indices.count
        precondition(self.globalRows.count == indices.count && self.globalRows.upperBound <= self.globalBatchSize,
                     "Batch: rows \(self.globalRows) of a global batch of \(self.globalBatchSize) for \(indices.count) images")
    }

    public init(images: Tensor, labels: [Int]?, indices: [Int], views: [CropView], epoch: Int, step: Int) {
        self.init(viewImages: [images], viewCrops: [views], labels: labels, indices: indices, epoch: epoch, step: step)
    }
}

/// Which positions of each epoch one process of a data-parallel job trains on: every global batch of
/// `globalBatch` consecutive positions of the epoch's one order is cut into `ranks` equal consecutive
/// slices, and rank r takes the r-th. The slices of all ranks are disjoint and together are exactly
/// the single-process batch, so W processes train on the same images, with the same views, as one.
public struct EpochShard: Sendable, Equatable {
    public let rank: Int, ranks: Int, globalBatch: Int

    public init(rank: Int, of ranks: Int, globalBatch: Int) {
        precondition(ranks >= 1 && rank >= 0 && rank < ranks && globalBatch % ranks == 0 && globalBatch >= ranks,
                     "EpochShard: rank \(rank) of \(ranks) with a global batch of \(globalBatch)")
        self.rank = rank; self.ranks = ranks; self.globalBatch = globalBatch
    }

    /// The whole batch (one process).
    public static func whole(batch: Int) -> EpochShard { EpochShard(rank: 0, of: 1, globalBatch: batch) }

    /// Images per process and step.
    public var localBatch: Int { globalBatch / ranks }
    /// This process's rows of a global batch.
    public var rows: Range<Int> { (rank * localBatch)..<((rank + 1) * localBatch) }
    /// Whether the image at `position` of an epoch's order is this process's.
    public func contains(_ position: Int) -> Bool { (position % globalBatch) / localBatch == rank }
}

/// Mixes seeds: a reproducible child seed for (seed, a, b). The (a, b) families in use are the named
/// ``SeedStream``s; new randomness gets a new case there, not a bare number.
public func deriveSeed(_ seed: UInt64, _ a: UInt64, _ b: UInt64 = 0) -> UInt64 {
    var r = TesseraRNG(seed: seed ^ (a &* 0x9E37_79B9_7F4A_7C15) ^ (b &* 0xC2B2_AE3D_27D4_EB4F))
    return r.next()
}

/// The random streams of a run and of its evaluation, each a family of ``deriveSeed(_:_:_:)`` child seeds
/// of the run's seed. The training streams' families are disjoint (no two give the same (a, b)), however
/// long the run; their numbers are the ones runs have always used, except where
/// they would have met (the view augmentation of epochs from 98 on, which reached the method's stream
/// 100), so every run of up to 98 epochs keeps its bits.
public enum SeedStream: Sendable {
    /// The order of epoch `epoch`'s images (a = 1).
    case epochOrder(epoch: Int)
    /// The views of the image at `position` of epoch `epoch`'s order (a = 2 + epoch below epoch 98, then
    /// 2³² + epoch).
    case viewAugmentation(epoch: Int, position: Int)
    /// The method's randomness (masks, extra views) at global micro-batch `microStep` (a = 100).
    case methodStep(microStep: Int)
    /// The few-shot probe's class picks and its fit, split `split` (a = 7 and 8). Evaluation streams run
    /// in their own process after training; their numbers are kept so that earlier probe figures
    /// reproduce, and they share theirs with the view augmentation of epochs 5 and 6.
    case fewShotPick(split: Int), fewShotFit(split: Int)

    /// The stream's (a, b).
    public var family: (a: UInt64, b: UInt64) {
        switch self {
        case .epochOrder(let e): return (1, UInt64(e))
        case .viewAugmentation(let e, let j): return (e < 98 ? 2 + UInt64(e) : (1 << 32) + UInt64(e), UInt64(j))
        case .methodStep(let t): return (100, UInt64(t))
        case .fewShotPick(let s): return (7, UInt64(s))
        case .fewShotFit(let s): return (8, UInt64(s))
        }
    }

    /// The stream's seed under the run's `seed`.
    public func seed(_ seed: UInt64) -> UInt64 { deriveSeed(seed, family.a, family.b) }
}

/// Epoch-based batching: images read, decoded and augmented by a pool of decode workers when their
/// batch is due, up to ``prefetch`` batches ahead of the training step.
///
/// The order of epoch e is the dataset's ``ImageDataset/epochOrder(seed:epoch:)`` for (seed, e); the
/// views of the image at position j of epoch e draw from (seed, e, j) alone. A batch is therefore a
/// pure function of (seed, epoch, step): the same bits whatever the number of workers or threads,
/// and resuming at any step reproduces the uninterrupted run. The last partial batch is dropped when
/// `dropLast` is set (training). In data-parallel training each process's loader has the global
/// batch size and its ``EpochShard``, and builds only its slice of each batch.
public final class Loader: @unchecked Sendable {
    public let dataset: any ImageDataset
    /// Images per step over all processes (the global batch).
    public let batchSize: Int
    /// This process's part of each batch (one process: all of it).
    public let shard: EpochShard
    /// The view kinds rendered per image, in order (one for MAE; target, anchor, focal… for MSN).
    public let viewAugmentations: [Augmentation]
    public var augmentation: Augmentation { viewAugmentations[0] }
    public let seed: UInt64
    public let shuffle: Bool, dropLast: Bool
    /// Batches prepared ahead of the training step.
    public var prefetch = 2
    /// Decode workers (threads that read, decode and augment images); 1 decodes on the loader's own thread.
    public let workers: Int
    /// Draw crops on the full-size image, then let JPEG decoding reduce the image by 2, 4 or 8 in the
    /// DCT domain while every crop keeps at least its output size (PIL's draft mode), and decode only
    /// the rows and columns the crops cover. Off: every image is decoded whole at full size.
    public var reducedDecoding = true
    /// Replace an image that cannot be read by the next readable one in the epoch's order (with a
    /// warning naming it) instead of stopping.
    public var skipUnreadable = false
    /// Where warnings go (a warning of the `tessera.data` logger unless replaced).
    public var warn: @Sendable (String) -> Void = { Logger(label: "tessera.data").warning("\($0)") }
    private let pool: DecodeWorkers?

    public convenience init(_ set: any ImageDataset, batchSize: Int, augmentation: Augmentation, seed: UInt64, shuffle: Bool = true,
                            dropLast: Bool = true, workers: Int = 1) {
        self.init(set, batchSize: batchSize, views: [augmentation], seed: seed, shuffle: shuffle, dropLast: dropLast, workers: workers)
    }

    public init(_ set: any ImageDataset, batchSize: Int, views: [Augmentation], seed: UInt64, shuffle: Bool = true, dropLast: Bool = true,
                workers: Int = 1, shard: EpochShard? = nil) {
        precondition(shard == nil || (shard!.globalBatch == batchSize && dropLast), "Loader: a shard needs the global batch size and dropLast")
        precondition(batchSize > 0, "Loader: batch size must be positive")
        precondition(!views.isEmpty, "Loader: needs at least one view")
        precondition(workers >= 1, "Loader: needs at least one worker")
        for v in views {
            precondition(v.mean.count == set.channels && v.std.count == set.channels,
                         "Loader: normalization has \(v.mean.count) channels, the data \(set.channels)")
        }
        self.dataset = set; self.batchSize = batchSize; self.viewAugmentations = views; self.seed = seed
        self.shuffle = shuffle; self.dropLast = dropLast; self.workers = workers
        self.shard = shard ?? .whole(batch: batchSize)
        pool = workers > 1 ? DecodeWorkers(count: workers) : nil
    }

    deinit { pool?.stop() }

    /// Steps per epoch.
    public var stepsPerEpoch: Int { dropLast ? dataset.count / batchSize : (dataset.count + batchSize - 1) / batchSize }

    /// The image order of an epoch.
    public func order(epoch: Int) -> [Int] {
        shuffle ? dataset.epochOrder(seed: seed, epoch: epoch) : Array(0..<dataset.count)
    }

    /// Builds batch `step` of `epoch` (the images at positions step·batch… of `order`), its images
    /// spread over the decode workers. Throws the first image (in batch order) that cannot be read.
    public func makeBatch(epoch: Int, step: Int, order: [Int]) throws -> Batch {
        try makeBatch(epoch: epoch, step: step, order: order, reader: nil)
    }

    /// `makeBatch`, its images from `reader` when given (``ImageDataset/epochReader(seed:epoch:shuffled:order:start:batchSize:)``
    /// for this `order`; steps asked for in increasing order).
    public func makeBatch(epoch: Int, step: Int, order: [Int], reader: (any EpochReader)?) throws -> Batch {
        let first = step * batchSize, rows = shard.ranks == 1 ? 0..<(min(first + batchSize, order.count) - first) : shard.rows
        let lo = first + rows.lowerBound, hi = first + rows.upperBound
        let B = hi - lo, C = dataset.channels
        let tensors = viewAugmentations.map { Tensor(uninitialized: [B, C, $0.size, $0.size]) }
        let outputs = tensors.map { UnsafeMutablePointerBox($0.data) }
        let renderer = SampleRenderer(views: viewAugmentations, channels: C, reducedDecoding: reducedDecoding)
        let sink = ResultSink(views: viewAugmentations.count, indices: Array(order[lo..<hi]))
        let work = { [self] (k: Int, scratch: inout SampleScratch) in
            let rng = TesseraRNG(seed: SeedStream.viewAugmentation(epoch: epoch, position: lo + k).seed(seed))
            let slots = zip(outputs, viewAugmentations).map { $0.pointer + k * C * $1.size * $1.size }
            var index = order[lo + k]
            for attempt in 0..<16 {
                do {
                    var r = rng
                    let stored = try attempt == 0 && reader != nil ? reader!.image(at: lo + k) : dataset.image(index)
                    let views = try renderer.render(stored, rng: &r, into: slots, scratch: &scratch)
                    sink.set(k, views: views, index: index)
                    return
                } catch {
                    if !skipUnreadable || attempt == 15 { sink.fail(k, error); return }
                    warn("\(error); skipped (--skip-unreadable), using the next image of the epoch instead")
                    index = order[(lo + k + attempt + 1) % order.count]
                }
            }
        }
        if let pool { pool.run(B, work) } else { var scratch = SampleScratch(); for k in 0..<B { work(k, &scratch) } }
        if let e = sink.failures.compactMap({ $0 }).first { throw e }
        return Batch(viewImages: tensors, viewCrops: sink.crops, labels: dataset.labels.map { l in sink.indices.map { l[$0] } },
                     indices: sink.indices, epoch: epoch, step: step, globalRows: rows, globalBatchSize: shard.ranks == 1 ? B : batchSize)
    }

    /// The dataset's streaming reader for `epoch` from `startStep` (nil: images are read one by one).
    public func epochReader(epoch: Int, order: [Int], startStep: Int = 0) -> (any EpochReader)? {
        dataset.epochReader(seed: seed, epoch: epoch, shuffled: shuffle, order: order, start: startStep * batchSize, batchSize: batchSize,
                            shard: shard)
    }

    /// The batches of `epoch` from `startStep`, prepared up to ``prefetch`` ahead on a background
    /// thread; `next()` rethrows an image that could not be read.
    public func batches(epoch: Int, startStep: Int = 0) -> BatchStream {
        let order = self.order(epoch: epoch)
        let steps = stepsPerEpoch
        let queue = BatchQueue(capacity: max(1, prefetch))
        guard startStep < steps else { queue.finish(); return BatchStream(queue) }
        let reader = epochReader(epoch: epoch, order: order, startStep: startStep)
        let thread = Thread { [self] in
            for s in startStep..<steps {
                if queue.cancelled { break }
                do { queue.put(.success(try makeBatch(epoch: epoch, step: s, order: order, reader: reader))) } catch { queue.put(.failure(error)); break }
            }
            reader?.cancel()
            queue.finish()
        }
        thread.stackSize = 1 << 22
        thread.start()
        return BatchStream(queue)
    }
}

/// The batches of one epoch, in order. Releasing the stream stops the loader's thread.
public final class BatchStream {
    let queue: BatchQueue
    init(_ q: BatchQueue) { queue = q }
    deinit { queue.cancel() }

    /// The next batch, nil after the last; throws when one of its images cannot be read.
    public func next() throws -> Batch? { try queue.take()?.get() }

    /// Every batch left in the epoch.
    public func remaining() throws -> [Batch] {
        var out: [Batch] = []
        while let b = try next() { out.append(b) }
        return out
    }
}

extension CropView {
    static let none = CropView(top: 0, left: 0, height: 0, width: 0, flipped: false, sourceHeight: 0, sourceWidth: 0)
}

/// A raw pointer that may cross to the decode workers (each writes only its own images' slots).
struct UnsafeMutablePointerBox: @unchecked Sendable { let pointer: UnsafeMutablePointer<Float>; init(_ p: UnsafeMutablePointer<Float>) { pointer = p } }

/// Per-image results written by the workers, each to its own index.
final class ResultSink: @unchecked Sendable {
    var crops: [[CropView]], indices: [Int], failures: [Error?]
    private let lock = NSLock()
    /// For the images `indices` of a batch (each may be replaced by the one actually used), `views` crops each.
    init(views: Int, indices: [Int]) {
        crops = [[CropView]](repeating: [CropView](repeating: CropView.none, count: indices.count), count: views)
        self.indices = indices
        failures = [Error?](repeating: nil, count: indices.count)
    }
    func set(_ k: Int, views: [CropView], index: Int) {
        lock.lock(); defer { lock.unlock() }
        for v in views.indices { crops[v][k] = views[v] }
        indices[k] = index
    }
    func fail(_ k: Int, _ e: Error) { lock.lock(); failures[k] = e; lock.unlock() }
}

/// A fixed set of threads that run the images of one batch at a time (each thread pulls the next
/// image index; the results do not depend on which thread ran which image).
final class DecodeWorkers: @unchecked Sendable {
    private let cond = NSCondition()
    private var job: ((Int, inout SampleScratch) -> Void)?
    private var total = 0, nextIndex = 0, running = 0
    private var stopped = false
    private let serial = NSLock()

    init(count: Int) {
        for _ in 0..<count {
            let t = Thread { [self] in loop() }
            t.stackSize = 1 << 22
            t.start()
        }
    }

    /// Runs `body(k, scratch)` for k in 0..<n on the workers; returns when all are done.
    func run(_ n: Int, _ body: @escaping (Int, inout SampleScratch) -> Void) {
        serial.lock(); defer { serial.unlock() }
        cond.lock()
        job = body; total = n; nextIndex = 0
        cond.broadcast()
        while nextIndex < total || running > 0 { cond.wait() }
        job = nil
        cond.unlock()
    }

    func stop() { cond.lock(); stopped = true; cond.broadcast(); cond.unlock() }

    private func loop() {
        var scratch = SampleScratch()
        cond.lock()
        while !stopped {
            guard let body = job, nextIndex < total else { cond.wait(); continue }
            let k = nextIndex
            nextIndex += 1
            running += 1
            cond.unlock()
            body(k, &scratch)
            cond.lock()
            running -= 1
            if nextIndex >= total && running == 0 { cond.broadcast() }
        }
        cond.unlock()
    }
}

/// A bounded producer/consumer queue; the iterator side cancels the producer when it is released.
final class BatchQueue: @unchecked Sendable {
    private let cond = NSCondition()
    private var items: [Result<Batch, Error>] = []
    private var done = false
    private(set) var cancelled = false
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    func put(_ b: Result<Batch, Error>) {
        cond.lock()
        while items.count >= capacity && !cancelled { cond.wait() }
        items.append(b)
        cond.broadcast()
        cond.unlock()
    }

    func finish() {
        cond.lock(); done = true; cond.broadcast(); cond.unlock()
    }

    func take() -> Result<Batch, Error>? {
        cond.lock()
        defer { cond.unlock() }
        while items.isEmpty && !done { cond.wait() }
        guard !items.isEmpty else { return nil }
        let b = items.removeFirst()
        cond.broadcast()
        return b
    }

    func cancel() {
        cond.lock(); cancelled = true; cond.broadcast(); cond.unlock()
    }
}
