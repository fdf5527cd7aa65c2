import Foundation
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

    /// The first view.
    public var images: Tensor { viewImages[0] }
    /// The crops of the first view.
    public var views: [CropView] { viewCrops[0] }

    public init(viewImages: [Tensor], viewCrops: [[CropView]], labels: [Int]?, indices: [Int], epoch: Int, step: Int) {
        self.viewImages = viewImages; self.viewCrops = viewCrops; self.labels = labels; self.indices = indices
        self.epoch = epoch; self.step = step
    }

    public init(images: Tensor, labels: [Int]?, indices: [Int], views: [CropView], epoch: Int, step: Int) {
        self.init(viewImages: [images], viewCrops: [views], labels: labels, indices: indices, epoch: epoch, step: step)
    }
}

/// Mixes seeds: a reproducible child seed for (seed, a, b).
public func deriveSeed(_ seed: UInt64, _ a: UInt64, _ b: UInt64 = 0) -> UInt64 {
    var r = TesseraRNG(seed: seed ^ (a &* 0x9E37_79B9_7F4A_7C15) ^ (b &* 0xC2B2_AE3D_27D4_EB4F))
    return r.next()
}

/// Epoch-based batching with augmentation on a background thread.
///
/// The order of epoch e is a Fisher–Yates shuffle seeded by (seed, e); the augmentation of step s
/// of epoch e draws from (seed, e, s). A batch is therefore a pure function of (seed, epoch, step):
/// resuming at any step reproduces the uninterrupted run, and the background thread cannot change
/// results. The last partial batch is dropped when `dropLast` is set (training).
public final class Loader: @unchecked Sendable {
    public let set: ImageSet
    public let batchSize: Int
    /// The view kinds rendered per image, in order (one for MAE; target, anchor, focal… for MSN).
    public let viewAugmentations: [Augmentation]
    public var augmentation: Augmentation { viewAugmentations[0] }
    public let seed: UInt64
    public let shuffle: Bool, dropLast: Bool
    /// Batches prepared ahead of the training step.
    public var prefetch = 2

    public convenience init(_ set: ImageSet, batchSize: Int, augmentation: Augmentation, seed: UInt64, shuffle: Bool = true, dropLast: Bool = true) {
        self.init(set, batchSize: batchSize, views: [augmentation], seed: seed, shuffle: shuffle, dropLast: dropLast)
    }

    public init(_ set: ImageSet, batchSize: Int, views: [Augmentation], seed: UInt64, shuffle: Bool = true, dropLast: Bool = true) {
        precondition(batchSize > 0, "Loader: batch size must be positive")
        precondition(!views.isEmpty, "Loader: needs at least one view")
        self.set = set; self.batchSize = batchSize; self.viewAugmentations = views; self.seed = seed
        self.shuffle = shuffle; self.dropLast = dropLast
    }

    /// Steps per epoch.
    public var stepsPerEpoch: Int { dropLast ? set.count / batchSize : (set.count + batchSize - 1) / batchSize }

    /// The image order of an epoch.
    public func order(epoch: Int) -> [Int] {
        var idx = Array(0..<set.count)
        guard shuffle else { return idx }
        var rng = TesseraRNG(seed: deriveSeed(seed, 1, UInt64(epoch)))
        for i in stride(from: idx.count - 1, to: 0, by: -1) { idx.swapAt(i, rng.int(below: i + 1)) }
        return idx
    }

    /// Builds batch `step` of `epoch` on the calling thread.
    public func makeBatch(epoch: Int, step: Int, order: [Int], threads: Int = 0) -> Batch {
        let lo = step * batchSize, hi = min(lo + batchSize, order.count)
        let indices = Array(order[lo..<hi])
        var rng = TesseraRNG(seed: deriveSeed(seed, 2 + UInt64(epoch), UInt64(step)))
        var tensors: [Tensor] = [], crops: [[CropView]] = []
        for aug in viewAugmentations {
            let views = indices.map { aug.sampleView(height: set.heights[$0], width: set.widths[$0], rng: &rng) }
            tensors.append(aug.render(set, indices: indices, views: views, threads: threads))
            crops.append(views)
        }
        return Batch(viewImages: tensors, viewCrops: crops, labels: set.labels.map { l in indices.map { l[$0] } }, indices: indices,
                     epoch: epoch, step: step)
    }

    /// Iterates the batches of `epoch` from `startStep`, preparing up to ``prefetch`` ahead on a
    /// background thread (single-threaded there, so it does not compete with the step's threads).
    public func batches(epoch: Int, startStep: Int = 0) -> AnyIterator<Batch> {
        let order = self.order(epoch: epoch)
        let steps = stepsPerEpoch
        guard startStep < steps else { return AnyIterator { nil } }
        let queue = BatchQueue(capacity: max(1, prefetch))
        let thread = Thread { [self] in
            for s in startStep..<steps {
                if queue.cancelled { break }
                queue.put(makeBatch(epoch: epoch, step: s, order: order, threads: 1))
            }
            queue.finish()
        }
        thread.stackSize = 1 << 22
        thread.start()
        let handle = CancelOnRelease(queue)
        return AnyIterator { handle.queue.take() }
    }
}

/// A bounded producer/consumer queue; the iterator side cancels the producer when it is released.
final class BatchQueue: @unchecked Sendable {
    private let cond = NSCondition()
    private var items: [Batch] = []
    private var done = false
    private(set) var cancelled = false
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    func put(_ b: Batch) {
        cond.lock()
        while items.count >= capacity && !cancelled { cond.wait() }
        items.append(b)
        cond.broadcast()
        cond.unlock()
    }

    func finish() {
        cond.lock(); done = true; cond.broadcast(); cond.unlock()
    }

    func take() -> Batch? {
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

/// Stops the producer when the consumer's iterator goes away (e.g. a run that stops mid-epoch).
final class CancelOnRelease {
    let queue: BatchQueue
    init(_ q: BatchQueue) { queue = q }
    deinit { queue.cancel() }
}
