import Foundation
import TesseraData
import TesseraEngine

/// Options of MSN (Assran et al., 2022). Defaults are the official ViT-S/16 recipe's, with the view
/// sizes adapted to small images (docs/results.md).
public struct MSNOptions: Codable, Equatable, Sendable {
    /// Small unmasked anchor views per image (official: 10 at 96 px for 224 px images).
    public var focalViews = 4
    /// Side of a focal view in pixels; a multiple of the patch size.
    public var focalSize = 12
    public var randomScale: ClosedRange<Float> = 0.3...1
    public var focalScale: ClosedRange<Float> = 0.05...0.3
    /// Fraction of the random anchor view's patches dropped (one permutation for the whole batch).
    public var patchDrop: Float = 0.15
    public var prototypes = 1024
    public var hiddenDim = 2048
    public var outputDim = 256
    /// Temperature of the cosine scores (τ) and the target sharpening exponent (T).
    public var temperature: Float = 0.1
    public var sharpen: Float = 0.25
    public var sinkhornIterations = 3
    /// Weight of the mean-entropy-maximization regularizer.
    public var memaxWeight: Float = 1
    /// Target momentum rises linearly from this towards 1, reaching 1 at `momentumStretch` × the run.
    public var momentum: Double = 0.996
    public var momentumStretch: Double = 1.25
    /// Color distortion (strength 0.5: jitter 0.4/0.4/0.4/0.1 with p 0.8, grayscale p 0.2) and blur
    /// (p 0.5, sigma 0.1–2 px at 224 px, scaled to the view size), on every view as the official code.
    public var photometric: Photometric? = Photometric()

    public init() {}

    /// Target momentum after `step` of `total` optimizer steps.
    public func momentum(step: Int, total: Int) -> Double {
        Schedule.linear(progress: Double(step) / (momentumStretch * Double(max(total, 1))), from: momentum, to: 1)
    }
}

/// MSN's projection head: `fc1 → bn1 → GELU → fc2 → bn2 → GELU → fc3` (the official module names).
public final class MSNHead: Module {
    public let fc1: Linear, bn1: BatchNorm1d, fc2: Linear, bn2: BatchNorm1d, fc3: Linear

    public init(_ dim: Int, hidden: Int, out: Int, rng: inout TesseraRNG) {
        fc1 = Linear(dim, hidden, rng: &rng)
        bn1 = BatchNorm1d(hidden)
        fc2 = Linear(hidden, hidden, rng: &rng)
        bn2 = BatchNorm1d(hidden)
        fc3 = Linear(hidden, out, rng: &rng)
        super.init()
        register("fc1", fc1); register("bn1", bn1); register("fc2", fc2); register("bn2", bn2); register("fc3", fc3)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        fc3(bn2(fc2(bn1(fc1(x)).gelu())).gelu())
    }
}

/// One MSN network: the ViT encoder (top-level names, as the official `deit` module) and its
/// projection head `fc`. The CLS token after the final norm goes through the head.
public final class MSNNetwork: Module {
    public let encoder: ViTEncoder
    public let fc: MSNHead

    public init(_ config: ViTConfig, options: MSNOptions, rng: inout TesseraRNG) {
        encoder = ViTEncoder(config, rng: &rng)
        fc = MSNHead(config.dim, hidden: options.hiddenDim, out: options.outputDim, rng: &rng)
        super.init()
        registerInline(encoder)
        register("fc", fc)
    }

    public func callAsFunction(_ images: Tensor, mask: MaskIndices? = nil) -> Tensor {
        fc(encoder(images, mask: mask).select(axis: 1, index: 0))
    }
}

/// What an MSN checkpoint reports: the target (EMA) network and the prototypes.
public final class MSNReported: Module {
    public init(target: MSNNetwork, prototypes: Tensor) {
        super.init()
        registerInline(target)
        register("prototypes", prototypes)
    }
}

/// Masked Siamese Networks. Per image: one unmasked target view, one anchor view with a batch-shared
/// patch drop, and `focalViews` small unmasked anchor views. Anchors are trained to match the EMA
/// target's sharpened, Sinkhorn-balanced soft assignment to K learned prototypes (cosine scores at
/// temperature τ), plus a mean-entropy-maximization term. Gradients reach the anchor network and the
/// prototypes only.
public final class MSN: PretrainingMethod {
    public static var kind: MethodKind { .msn }
    /// MSN's released ViT-S/16 recipe: AdamW (0.9, 0.999), blr 1e-3, weight decay cosine 0.04 → 0.4,
    /// gradient norm clipped to 3.
    public static var recipe: TrainingRecipe {
        TrainingRecipe(blr: 1e-3, betas: (0.9, 0.999), weightDecay: 0.04, weightDecayEnd: 0.4, clipGrad: 3)
    }
    public static var title: String { "MSN" }
    public static var recipeDefaults: String {
        let o = MSNOptions(), n = TrainingRecipe.number
        return "anchor patch drop \(n(Double(o.patchDrop))), \(o.focalViews) focal views, \(o.prototypes) prototypes, target momentum \(n(o.momentum))"
    }

    public static func addDefaultOptions(to config: inout PretrainConfig, model: MAEConfig) { config.msn = MSNOptions() }
    /// Range checks of MSN's options against the encoder and the batch (``PretrainConfig/validate()``).
    public static func validateOptions(of config: PretrainConfig) throws {
        let batchSize = config.batchSize, e = config.encoder
        guard let o = config.msn else { throw ConfigError("method msn without its msn options") }
        // The projection head's BatchNorm normalizes over the (global) batch: one image has no variance.
        try ConfigRule.need(batchSize >= 2, "--batch-size \(batchSize): MSN's BatchNorm head needs at least 2 images per step; raise --batch-size")
        try ConfigRule.int("msn.focalViews (--focal-views)", o.focalViews, ConfigLimits.focalViews)
        try ConfigRule.int("msn.focalSize (--focal-size)", o.focalSize, ConfigLimits.imageSize)
        try ConfigRule.need(o.focalSize % e.patchSize == 0 && o.focalSize >= e.patchSize,
                            "--focal-size \(o.focalSize) must be a positive multiple of the patch size \(e.patchSize)")
        try ConfigRule.range("msn.randomScale", o.randomScale, 0...1)
        try ConfigRule.range("msn.focalScale", o.focalScale, 0...1)
        try ConfigRule.real("msn.patchDrop (--patch-drop)", o.patchDrop, 0...1, highOpen: true)
        try ConfigRule.int("msn.prototypes (--prototypes)", o.prototypes, ConfigLimits.prototypes)
        try ConfigRule.int("msn.hiddenDim (--head-hidden)", o.hiddenDim, ConfigLimits.headHidden)
        try ConfigRule.int("msn.outputDim", o.outputDim, ConfigLimits.headHidden)
        try ConfigRule.real("msn.temperature", o.temperature, 0...100, lowOpen: true)
        try ConfigRule.real("msn.sharpen", o.sharpen, 0...100, lowOpen: true)
        try ConfigRule.int("msn.sinkhornIterations", o.sinkhornIterations, 0...1000)
        try ConfigRule.real("msn.memaxWeight", o.memaxWeight, 0...1000)
        try ConfigRule.real("msn.momentum", o.momentum, 0...1)
        try ConfigRule.real("msn.momentumStretch", o.momentumStretch, 0...1000, lowOpen: true)
        try ConfigRule.photometric("msn.photometric", o.photometric)
    }

    public let options: MSNOptions
    public let config: ViTConfig
    public let anchor: MSNNetwork
    public let target: MSNNetwork
    public let prototypes: Tensor
    private let reported: MSNReported
    private let ema: EMATeacher
    /// The processes whose batches together form the global batch (one unless distributed).
    public private(set) var comm: any Communicator = SingleProcess()

    public init(_ config: ViTConfig, options: MSNOptions = MSNOptions(), rng: inout TesseraRNG) {
        precondition(options.focalSize % config.patchSize == 0, "MSN: focal size \(options.focalSize) is not a multiple of the patch size \(config.patchSize)")
        self.options = options
        self.config = config
        anchor = MSNNetwork(config, options: options, rng: &rng)
        var unused = TesseraRNG(seed: 0)
        target = MSNNetwork(config, options: options, rng: &unused)
        ema = EMATeacher(teacher: target, student: anchor)
        let bound = 1 / Float(options.outputDim).squareRoot()
        prototypes = Tensor.uniform([options.prototypes, options.outputDim], low: -bound, high: bound, rng: &rng, requiresGrad: true)
        reported = MSNReported(target: target, prototypes: prototypes)
    }

    public convenience init(_ config: PretrainConfig, rng: inout TesseraRNG) {
        self.init(config.encoder, options: config.msn ?? MSNOptions(), rng: &rng)
    }

    public var partsSummary: String { "head \(options.hiddenDim), \(options.prototypes) prototypes" }
    public var reportedModel: Module { reported }
    public var evaluationEncoder: ViTEncoder { target.encoder }
    public func optimizedParameters() -> [(name: String, tensor: Tensor)] {
        anchor.trainableParameters().map { ("anchor." + $0.name, $0.tensor) } + [("prototypes", prototypes)]
    }
    public func decays(_ name: String, _ t: Tensor) -> Bool { name != "prototypes" && ParameterArena.defaultDecay(name, t) }
    public func extraState() -> [(name: String, tensor: Tensor)] { anchor.stateDict().map { ("anchor." + $0.name, $0.tensor) } }

    /// Global batch statistics, as the official code: SyncBatchNorm in both networks' heads, the
    /// Sinkhorn sums and the ME-MAX mean over every process's samples.
    public func distribute(over comm: any Communicator) {
        self.comm = comm
        anchor.synchronizeBatchNorm(over: comm)
        target.synchronizeBatchNorm(over: comm)
    }

    /// Views: target and random anchor at the model's size (scale `randomScale`), then the focal views.
    public func viewAugmentations(base: Augmentation) -> [Augmentation] {
        var random = base
        random.scale = options.randomScale
        random.photometric = options.photometric
        var focal = random
        focal.size = options.focalSize
        focal.scale = options.focalScale
        return [random, random] + Array(repeating: focal, count: options.focalViews)
    }

    // MARK: loss pieces (public for tests)

    /// `p^(1/T)` renormalized per row.
    public static func sharpen(_ p: [Float], rows: Int, columns: Int, temperature T: Float) -> [Float] {
        var out = p
        for r in 0..<rows {
            var s: Double = 0
            for c in 0..<columns { let v = Foundation.pow(Double(p[r * columns + c]), Double(1 / T)); out[r * columns + c] = Float(v); s += v }
            for c in 0..<columns { out[r * columns + c] = Float(Double(out[r * columns + c]) / s) }
        }
        return out
    }

    /// The official Sinkhorn on probabilities `[B, K]`: normalize the total to 1, then alternately make
    /// each prototype's mass 1/K and each sample's mass 1/B; finally scale rows to sum to 1. With
    /// several processes, `p` is this process's rows of the global batch: the total and the
    /// prototypes' masses are summed over the processes (as the official code all-reduces them) and
    /// B is the global batch.
    public static func sinkhorn(_ p: [Float], rows: Int, columns K: Int, iterations: Int,
                                comm: any Communicator = SingleProcess()) -> [Float] {
        var q = p.map(Double.init)
        let B = Double(rows * comm.size)
        let total = comm.sum([q.reduce(0, +)])[0]
        for i in q.indices { q[i] /= total }
        for _ in 0..<iterations {
            var mass = [Double](repeating: 0, count: K)
            for b in 0..<rows { for k in 0..<K { mass[k] += q[b * K + k] } }
            mass = comm.sum(mass)
            for b in 0..<rows { for k in 0..<K { q[b * K + k] /= mass[k] * Double(K) } }
            for b in 0..<rows {
                var s = 0.0
                for k in 0..<K { s += q[b * K + k] }
                for k in 0..<K { q[b * K + k] /= s * B }
            }
        }
        return q.map { Float($0 * B) }
    }

    /// Cross-entropy of anchors against targets plus λ·ME-MAX, from projections (not yet normalized).
    /// `targetProjections [B, d]` (no gradient); `anchorProjections [V·B, d]`, V anchor views per image.
    /// Returns the loss and the collapse monitors (distinct target argmax prototypes, mean max target).
    public func loss(anchorProjections za: Tensor, targetProjections zt: Tensor, prototypes P: Tensor)
        -> (loss: Tensor, crossEntropy: Float, memax: Float, distinct: Int, maxTarget: Float) {
        let B = zt.shape[0], K = P.shape[0], V = za.shape[0] / B
        let tau = options.temperature
        let pn = P.l2Normalized()
        let logits = za.l2Normalized().linear(pn).scaled(by: 1 / tau)            // [V·B, K]
        let targets: [Float] = withNoGrad {
            let t = zt.l2Normalized().linear(pn.detach()).scaled(by: 1 / tau).softmax().array
            let sharp = Self.sharpen(t, rows: B, columns: K, temperature: options.sharpen)
            return options.sinkhornIterations > 0 ? Self.sinkhorn(sharp, rows: B, columns: K, iterations: options.sinkhornIterations, comm: comm)
                                                  : sharp
        }
        var repeated: [Float] = []
        repeated.reserveCapacity(V * B * K)
        for _ in 0..<V { repeated += targets }
        let ce = crossEntropy(logits: logits, target: Tensor(repeated, shape: [V * B, K])).mean()
        let meanProbs = logits.softmax().mean(axis: 0).meanOverProcesses(comm)              // [K], over the global batch
        let memax = (meanProbs * meanProbs.log()).sum() + Float(Foundation.log(Double(K)))
        var argmax: [Int32] = [], maxSum: Float = 0
        for b in 0..<B {
            let row = targets[(b * K)..<((b + 1) * K)]
            let m = row.max()!
            argmax.append(Int32(row.firstIndex(of: m)! - b * K))
            maxSum += m
        }
        let distinct = Set(comm.allGather(argmax)).count   // over the global batch
        return (ce + memax.scaled(by: options.memaxWeight), ce.item, memax.item, distinct, maxSum / Float(B))
    }

    public func trainingLoss(_ batch: Batch, rng: inout TesseraRNG) -> (loss: Tensor, metrics: [(String, Float)]) {
        let views = batch.viewImages
        let B = views[0].shape[0]
        let zt = withNoGrad { target(views[0]) }   // the target stays in train mode: batch statistics in its BN
        let drop = MaskIndices.random(batch: B, patches: config.patches, maskRatio: options.patchDrop, sharedAcrossBatch: true, rng: &rng)
        var anchors = [anchor(views[1], mask: drop)]
        if views.count > 2 { anchors.append(anchor(concat(Array(views[2...]), axis: 0))) }   // focal views: one BN group
        let za = anchors.count == 1 ? anchors[0] : concat(anchors, axis: 0)
        let r = loss(anchorProjections: za, targetProjections: zt, prototypes: prototypes)
        return (r.loss, [("ce", r.crossEntropy), ("memax", r.memax), ("np", Float(r.distinct)), ("max_t", r.maxTarget)])
    }

    /// EMA of the target network (encoder and head) from the anchor; the prototypes are shared, not EMA'd.
    public func afterUpdate(step: Int, totalSteps: Int) {
        ema.update(momentum: Float(options.momentum(step: step, total: totalSteps)))
    }
}
