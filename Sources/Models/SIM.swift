import Foundation
import TesseraData
import TesseraEngine

/// Options of SiameseIM (Tao et al., 2023), defaults from the released code with the mask and the
/// negative weight scaled for small grids and widths (docs/results.md).
public struct SIMOptions: Codable, Equatable, Sendable {
    /// Width, heads and depths of the projector (on both branches) and the predictor (online only).
    /// `nil` width: the encoder's width (the released config uses 768 = ViT-B's).
    public var decoderDim: Int?
    public var decoderHeads = 4
    public var projectorDepth = 2
    public var predictorDepth = 4
    /// Normalization inside projector and predictor blocks: BatchNorm over tokens (official) or LayerNorm.
    public var norm: NormKind = .batch
    /// Fraction of view-1 patches masked (exactly round(ratio · L) per image, block-wise).
    public var maskRatio: Float = 0.6
    public var cropScale: ClosedRange<Float> = 0.08...1
    /// UniGrad's weight on the correlation term at D = 768; scaled by 768 / D.
    public var negWeight: Float = 0.02
    /// EMA momentum of the target branch, cosine from this to 1 over the run.
    public var momentum: Double = 0.995
    /// View 1 (online, masked): jitter 0.4/0.4/0.2/0.1 p 0.8, grayscale p 0.2, blur p 1.
    public var onlinePhotometric: Photometric? = Photometric(saturation: 0.2, blurProbability: 1)
    /// View 2 (target): the same jitter and grayscale, blur p 0.1, solarize p 0.2.
    public var targetPhotometric: Photometric? = Photometric(saturation: 0.2, blurProbability: 0.1, solarizeProbability: 0.2)

    public init() {}

    public func width(encoderDim: Int) -> Int { decoderDim ?? encoderDim }
}

/// Fixed 2-D sin-cos features with the row first, as SIM's `pos_embed` helpers: for row coordinate y
/// and column coordinate x, `[sin(yω), cos(yω), sin(xω), cos(xω)]`, ω_k = 10000^(−k/K), K = dim/4.
/// Coordinates may be fractional (view-2 patches in view-1 coordinates).
public func sinCosRowFirst(rows ys: [Float], cols xs: [Float], dim: Int) -> [Float] {
    precondition(dim % 4 == 0 && ys.count == xs.count, "sinCosRowFirst: dim must be divisible by 4 and coordinates paired")
    let K = dim / 4
    let omega = (0..<K).map { 1.0 / Foundation.pow(10000.0, Double($0) / Double(K)) }
    // sin and cos of one coordinate at every frequency, computed once per distinct value: a grid's
    // coordinates repeat along its rows and columns (7 values for 49 patches), and SIM builds these
    // tables for every image of every step (measured: 41 ms of its 2.2 s step before this).
    var tables: [UInt32: [Float]] = [:]
    func table(_ v: Float) -> [Float] {
        if let t = tables[v.bitPattern] { return t }
        let t = (0..<(2 * K)).map { i in
            let a = Double(v) * omega[i % K]
            return Float(i < K ? Foundation.sin(a) : Foundation.cos(a))
        }
        tables[v.bitPattern] = t
        return t
    }
    var out = [Float](repeating: 0, count: ys.count * dim)
    out.withUnsafeMutableBufferPointer { o in
        for n in 0..<ys.count {   // [sin y, cos y, sin x, cos x], K frequencies each
            let ty = table(ys[n]), tx = table(xs[n])
            for i in 0..<(2 * K) { o[n * dim + i] = ty[i]; o[n * dim + 2 * K + i] = tx[i] }
        }
    }
    return out
}

/// The branch both sides share: encoder (no final norm) → `decoder_embed` → projector blocks.
public final class SIMProjected: Module {
    public let encoder: ViTEncoder
    public let decoderEmbed: Linear
    public let projector: [Block]

    public init(_ config: ViTConfig, options o: SIMOptions, rng: inout TesseraRNG) {
        let D = o.width(encoderDim: config.dim)
        encoder = ViTEncoder(config, rng: &rng)
        decoderEmbed = Linear(config.dim, D, rng: &rng)
        projector = (0..<o.projectorDepth).map { _ in Block(D, heads: o.decoderHeads, mlpRatio: config.mlpRatio, norm: o.norm, rng: &rng) }
        super.init()
        registerInline(encoder)
        register("decoder_embed", decoderEmbed)
        for (i, b) in projector.enumerated() { register("projector_decoder_blocks.\(i)", b) }
    }

    /// Images (optionally masked) → projected tokens `[B, 1 + K, D]`.
    public func callAsFunction(_ images: Tensor, mask: MaskIndices? = nil) -> Tensor {
        var x = decoderEmbed(encoder(images, mask: mask, finalNorm: false))
        for b in projector { x = b(x) }
        return x
    }
}

/// The online network: the projected branch plus the predictor (mask token, relative-position MLP,
/// self-attention blocks, `decoder_pred`).
public final class SIMOnline: Module {
    public let branch: SIMProjected
    public let maskToken: Tensor
    public let decoderPosMLP: Linear
    public let predictor: [Block]
    public let decoderPred: Linear

    public init(_ config: ViTConfig, options o: SIMOptions, rng: inout TesseraRNG) {
        let D = o.width(encoderDim: config.dim)
        branch = SIMProjected(config, options: o, rng: &rng)
        maskToken = Tensor.randn([1, 1, D], std: 0.02, rng: &rng, requiresGrad: true)
        decoderPosMLP = Linear(2 * D, D, rng: &rng)
        predictor = (0..<o.predictorDepth).map { _ in Block(D, heads: o.decoderHeads, mlpRatio: config.mlpRatio, norm: o.norm, rng: &rng) }
        decoderPred = Linear(D, D, rng: &rng)
        super.init()
        registerInline(branch)
        register("mask_token", maskToken)
        register("decoder_pos_mlp", decoderPosMLP)
        for (i, b) in predictor.enumerated() { register("decoder_blocks.\(i)", b) }
        register("decoder_pred", decoderPred)
        branch.encoder.patchEmbed.proj.weight.requiresGrad = false   // frozen random patch projection (MoCo v3)
        branch.encoder.patchEmbed.proj.bias.requiresGrad = false
    }
}

/// Siamese Image Modeling: from a block-masked view 1, predict the EMA target's projected dense
/// features of every patch of view 2, each placed by its position (and the relative scale) in view-1
/// coordinates. Loss: UniGrad's dense form `(‖p − t‖² + w·pᵀCp)/D` with LayerNorm'd targets and
/// `C = tᵀt/N` over the batch's tokens.
public final class SIM: PretrainingMethod {
    public static var kind: MethodKind { .sim }
    /// SiameseIM's released recipe: AdamW (0.9, 0.95), weight decay 0.05, gradient norm clipped to 1,
    /// and its lr of 1e-3 as the base lr. The release states blr 6.25e-5 at a batch of 4,096 (lr 1e-3);
    /// scaled linearly to a CPU batch of 256 that is 16 times smaller steps, which left SIM 5.8 kNN
    /// points lower at 10 epochs on Fashion-MNIST (docs/results.md, "Four methods"). `--blr 6.25e-5` is the release's.
    public static var recipe: TrainingRecipe { TrainingRecipe(blr: 1e-3, betas: (0.9, 0.95), weightDecay: 0.05, clipGrad: 1) }
    public static var title: String { "SIM" }
    public static var recipeDefaults: String {
        let o = SIMOptions(), n = TrainingRecipe.number
        return "block mask ratio \(n(Double(o.maskRatio))), target momentum \(n(o.momentum)) (its blr is the release's lr at batch 256; the release states blr 6.25e-5 at batch 4096)"
    }

    public static func addDefaultOptions(to config: inout PretrainConfig, model: MAEConfig) { config.sim = SIMOptions() }
    public static func maskRatio(of config: PretrainConfig) -> Float? { (config.sim ?? SIMOptions()).maskRatio }
    /// Range checks of SIM's options against the encoder (``PretrainConfig/validate()``).
    public static func validateOptions(of config: PretrainConfig) throws {
        let e = config.encoder
        guard let o = config.sim else { throw ConfigError("method sim without its sim options") }
        let w = o.width(encoderDim: e.dim)
        try ConfigRule.int("sim.decoderDim (--decoder-dim)", w, ConfigLimits.width)
        try ConfigRule.int("sim.decoderHeads (--decoder-heads)", o.decoderHeads, ConfigLimits.heads)
        try ConfigRule.need(w % o.decoderHeads == 0 && w % 4 == 0, "SIM width \(w) must be a multiple of 4 and of --decoder-heads \(o.decoderHeads)")
        try ConfigRule.int("sim.projectorDepth", o.projectorDepth, 0...ConfigLimits.depth.upperBound)
        try ConfigRule.int("sim.predictorDepth", o.predictorDepth, ConfigLimits.depth)
        try ConfigRule.real("sim.maskRatio (--mask-ratio)", o.maskRatio, 0...1, highOpen: true)
        try ConfigRule.need(SIM.maskedCount(patches: e.patches, ratio: o.maskRatio) < e.patches,
                            "--mask-ratio \(o.maskRatio) keeps no patch of \(e.patches); lower it")
        try ConfigRule.range("sim.cropScale", o.cropScale, 0...1)
        try ConfigRule.real("sim.negWeight", o.negWeight, 0...1000)
        try ConfigRule.real("sim.momentum", o.momentum, 0...1)
        try ConfigRule.photometric("sim.onlinePhotometric", o.onlinePhotometric)
        try ConfigRule.photometric("sim.targetPhotometric", o.targetPhotometric)
    }

    public let options: SIMOptions
    public let config: ViTConfig
    public let online: SIMOnline
    public let target: SIMProjected
    private let targetNorm: LayerNorm
    private let ema: EMATeacher
    /// The processes whose batches together form the global batch (one unless distributed).
    public private(set) var comm: any Communicator = SingleProcess()

    public init(_ config: ViTConfig, options: SIMOptions = SIMOptions(), rng: inout TesseraRNG) {
        precondition(options.width(encoderDim: config.dim) % options.decoderHeads == 0, "SIM: width must be divisible by the heads")
        self.options = options
        self.config = config
        online = SIMOnline(config, options: options, rng: &rng)
        var unused = TesseraRNG(seed: 0)
        target = SIMProjected(config, options: options, rng: &unused)
        ema = EMATeacher(teacher: target, student: online.branch, frozenToo: true)
        targetNorm = LayerNorm(options.width(encoderDim: config.dim), eps: 1e-5)   // elementwise_affine=False: weight 1, bias 0, never trained
    }

    public convenience init(_ config: PretrainConfig, rng: inout TesseraRNG) {
        self.init(config.encoder, options: config.sim ?? SIMOptions(), rng: &rng)
    }

    public var partsSummary: String {
        "projector/predictor \(options.width(encoderDim: config.dim)) wide, \(options.projectorDepth)+\(options.predictorDepth) blocks"
    }
    public var reportedModel: Module { online }
    public var evaluationEncoder: ViTEncoder { online.branch.encoder }
    public func optimizedParameters() -> [(name: String, tensor: Tensor)] { online.trainableParameters() }
    public func extraState() -> [(name: String, tensor: Tensor)] { target.stateDict().map { ("mm." + $0.name, $0.tensor) } }

    /// Global batch statistics, as the official code: SyncBatchNorm in the projector and predictor
    /// (both branches), UniGrad's correlation matrix and the monitors over every process's tokens.
    public func distribute(over comm: any Communicator) {
        self.comm = comm
        online.synchronizeBatchNorm(over: comm)
        target.synchronizeBatchNorm(over: comm)
    }

    public func viewAugmentations(base: Augmentation) -> [Augmentation] {
        var v1 = base, v2 = base
        v1.scale = options.cropScale; v2.scale = options.cropScale
        v1.photometric = options.onlinePhotometric
        v2.photometric = options.targetPhotometric
        return [v1, v2]
    }

    /// The fixed row-first sin-cos table of view-1 patches `[L, D]` (computed once).
    private lazy var visiblePositions: [Float] = {
        let g = config.grid, L = config.patches
        return sinCosRowFirst(rows: (0..<L).map { Float($0 / g) }, cols: (0..<L).map { Float($0 % g) }, dim: options.width(encoderDim: config.dim))
    }()

    /// The position table repeated for a batch, `[B, L, D]`, for ``Tensor/gatherKept(_:)``: built for
    /// the first batch of each size and reused, so a step only gathers its visible rows.
    private var batchPositions: Tensor?

    private func positionTable(batch B: Int) -> Tensor {
        if let t = batchPositions, t.shape[0] == B { return t }
        let t = Tensor(Array(repeatElement(visiblePositions, count: B).joined()),
                       shape: [B, config.patches, options.width(encoderDim: config.dim)])
        batchPositions = t
        return t
    }

    /// One image's patches, the visible ones first, from a fresh block mask: each group in the order of
    /// a uniform key per patch (the encoder's token order; it does not change what the tokens see).
    func visibleFirst(rng: inout TesseraRNG) -> [Int32] {
        let L = config.patches
        let masked = Self.blockMask(grid: config.grid, count: maskedCount, minPatches: max(1, L / 12), rng: &rng)
        let key = (0..<L).map { _ in rng.uniform() }
        func ordered(_ ids: [Int]) -> [Int32] { ids.sorted { (key[$0], $0) < (key[$1], $1) }.map(Int32.init) }
        return ordered((0..<L).filter { !masked[$0] }) + ordered((0..<L).filter { masked[$0] })
    }

    /// Masked patches per image: round(ratio · L).
    public var maskedCount: Int { Self.maskedCount(patches: config.patches, ratio: options.maskRatio) }
    /// `round(ratio · L)`.
    public static func maskedCount(patches L: Int, ratio: Float) -> Int { Int((ratio * Float(L)).rounded()) }

    // MARK: geometry

    /// View-2 patch positions in view-1 patch-index coordinates (official `pos_embed` formulas). Boxes
    /// are taken in each view's flipped frame (the official pipeline flips, then crops), so a view
    /// cut at `left` and then mirrored has `j = W − left − width`.
    /// Returns per view-2 patch (row-major) the row and column coordinate, and the log scales.
    public static func relativePositions(view1 a: CropView, view2 b: CropView, grid g: Int) -> (rows: [Float], cols: [Float], logH: Float, logW: Float) {
        let W = Double(a.sourceWidth)
        let i1 = Double(a.top), h1 = Double(a.height), w1 = Double(a.width)
        let i2 = Double(b.top), h2 = Double(b.height), w2 = Double(b.width)
        let j1 = a.flipped ? W - Double(a.left) - w1 : Double(a.left)
        let j2 = b.flipped ? W - Double(b.left) - w2 : Double(b.left)
        let relativeFlip = a.flipped != b.flipped
        var rows: [Float] = [], cols: [Float] = []
        for r in 0..<g {
            for c in 0..<g {
                rows.append(Float((h2 / h1) * (Double(r) + 0.5) + Double(g) * (i2 - i1) / h1 - 0.5))
                cols.append(Float(relativeFlip ? -(w2 / w1) * (Double(c) + 0.5) + Double(g) * (W - j1 - j2) / w1 - 0.5
                                               : (w2 / w1) * (Double(c) + 0.5) + Double(g) * (j2 - j1) / w1 - 0.5))
            }
        }
        return (rows, cols, Float(Foundation.log(h2 / h1)), Float(Foundation.log(w2 / w1)))
    }

    /// BEiT's block-wise masking generator on a g×g grid: rectangles of area ≥ `minPatches` and aspect
    /// 0.3–3.3 until `count` patches are masked, topped up with random patches to exactly `count`.
    public static func blockMask(grid g: Int, count: Int, minPatches: Int, rng: inout TesseraRNG) -> [Bool] {
        var mask = [Bool](repeating: false, count: g * g)
        var masked = 0
        let logLo = Foundation.log(0.3), logHi = Foundation.log(1 / 0.3)
        while masked < count {
            let maxPatches = count - masked
            var delta = 0
            for _ in 0..<10 {
                let area = Double(rng.uniform(Float(min(minPatches, maxPatches)), Float(maxPatches)))
                let aspect = Foundation.exp(logLo + (logHi - logLo) * Double(rng.uniform()))
                let h = Int((area * aspect).squareRoot().rounded()), w = Int((area / aspect).squareRoot().rounded())
                guard w < g, h < g, h > 0, w > 0 else { continue }
                let top = rng.int(below: g - h + 1), left = rng.int(below: g - w + 1)
                var already = 0
                for y in top..<(top + h) { for x in left..<(left + w) where mask[y * g + x] { already += 1 } }
                if h * w - already > 0 && h * w - already <= maxPatches {
                    for y in top..<(top + h) { for x in left..<(left + w) where !mask[y * g + x] { mask[y * g + x] = true; delta += 1 } }
                }
                if delta > 0 { break }
            }
            if delta == 0 { break }
            masked += delta
        }
        var free = (0..<(g * g)).filter { !mask[$0] }
        while masked < count {
            let k = rng.int(below: free.count)
            mask[free.remove(at: k)] = true
            masked += 1
        }
        return mask
    }

    // MARK: loss

    /// Collapse monitors of a batch of target rows `t [N, D]` (UniGrad's C = tᵀt/N, uncentered).
    public struct TargetSpread: Sendable {
        /// Participation ratio of C, `tr(C)² / ‖C‖²_F = (Σλ)² / Σλ²`: 1 when every target token is
        /// the same vector, D when C is isotropic.
        public var rank: Float
        /// The same for the centered covariance `C − μμᵀ` (μ the mean token): how many directions
        /// the tokens differ along; 0 when they are all equal.
        public var centeredRank: Float
        /// `‖μ‖² / tr(C)`: the share of the target energy that all tokens of the batch have in common.
        public var shared: Float
    }

    /// UniGrad dense loss on prediction rows `p [N, D]` and target rows `t [N, D]` (already normalized),
    /// with the targets' collapse monitors.
    public func unigrad(_ p: Tensor, _ t: Tensor) -> (loss: Tensor, positive: Float, negative: Float, spread: TargetSpread) {
        let N = p.shape[0], D = p.shape[1]
        let w = options.negWeight * 768 / Float(D)
        let d = p - t
        let positive = (d * d).sum(axis: 1).mean()
        // C over the global batch's tokens (all processes; the official code all-reduces tᵀt/N).
        let C = withNoGrad {
            let local = t.transposed().matmul(t)
            return (comm.size == 1 ? local : Tensor(comm.sum(local.array), shape: [D, D])).scaled(by: 1 / Float(N * comm.size))
        }
        let negative = (p.matmul(C) * p).sum(axis: 1).mean()
        let loss = (positive + negative.scaled(by: w)).scaled(by: 1 / Float(D))
        return (loss, positive.item, negative.item, Self.spread(correlation: C.array, mean: comm.mean(t.mean(axis: 0).array), dim: D))
    }

    /// Participation ratios of `C [D, D]` and of `C − μμᵀ`, and the shared-energy share `‖μ‖² / tr C`.
    static func spread(correlation c: [Float], mean mu: [Float], dim D: Int) -> TargetSpread {
        var total = 0.0
        for i in 0..<D { total += Double(c[i * D + i]) }
        guard total > 0 else { return TargetSpread(rank: 0, centeredRank: 0, shared: 0) }
        /// tr(M)² / ‖M‖²_F, or 0 when M holds less than a float's rounding of the batch's energy.
        func ratio(_ entry: (Int, Int) -> Double) -> Double {
            var trace = 0.0, frobenius = 0.0
            for i in 0..<D {
                for j in 0..<D {
                    let v = entry(i, j)
                    frobenius += v * v
                    if i == j { trace += v }
                }
            }
            return trace > 1e-5 * total ? trace * trace / frobenius : 0
        }
        let m = mu.map(Double.init)
        let full = ratio { Double(c[$0 * D + $1]) }
        let centered = ratio { Double(c[$0 * D + $1]) - m[$0] * m[$1] }
        let shared = m.reduce(0) { $0 + $1 * $1 } / total
        return TargetSpread(rank: Float(full), centeredRank: Float(centered), shared: Float(shared))
    }

    public func trainingLoss(_ batch: Batch, rng: inout TesseraRNG) -> (loss: Tensor, metrics: [(String, Float)]) {
        let B = batch.viewImages[0].shape[0], L = config.patches
        // Block-wise mask on view 1, as kept sets: each image's visible patches, then its masked ones.
        // Drawn for the whole global batch, this process's rows kept (the mask follows the image).
        let orders = (0..<batch.globalBatchSize).map { _ in visibleFirst(rng: &rng) }
        let mask = MaskIndices(order: Array(orders[batch.globalRows].joined()), batch: B, keep: L - maskedCount)
        // Where each view-2 patch lies in view-1 coordinates, and the relative scale.
        let relative = (0..<B).map { Self.relativePositions(view1: batch.viewCrops[0][$0], view2: batch.viewCrops[1][$0], grid: config.grid) }
        let r = loss(view1: batch.viewImages[0], view2: batch.viewImages[1], mask: mask, relative: relative)
        return (r.loss, [("pos", r.positive), ("neg", r.negative),
                         ("rank_t", r.spread.rank), ("rank_c", r.spread.centeredRank), ("shared", r.spread.shared)])
    }

    /// The official `forward_sim` for given views, mask and geometry: the online branch on view 1's
    /// visible patches (`mask`), the predictor's queries at view 2's patches placed by `relative` (per
    /// image, from ``relativePositions(view1:view2:grid:)``), the EMA target on all of view 2, UniGrad.
    public func loss(view1 x1: Tensor, view2 x2: Tensor, mask: MaskIndices,
                     relative: [(rows: [Float], cols: [Float], logH: Float, logW: Float)])
        -> (loss: Tensor, positive: Float, negative: Float, spread: TargetSpread) {
        let B = x1.shape[0], L = config.patches, K = mask.keep
        let D = options.width(encoderDim: config.dim)

        // Online: visible view-1 tokens, projected, plus their fixed row-first positions.
        let proj = online.branch(x1, mask: mask)                                             // [B, 1 + K, D]
        let positions = positionTable(batch: B).gatherKept(mask)
        // Mask tokens at every view-2 patch, placed in view-1 coordinates with the relative scale.
        var rel = [Float](repeating: 0, count: B * L * 2 * D)
        rel.withUnsafeMutableBufferPointer { out in
            for b in 0..<B {
                let r = relative[b]
                let pos = sinCosRowFirst(rows: r.rows, cols: r.cols, dim: D)
                let scale = sinCosRowFirst(rows: [10 * r.logH], cols: [10 * r.logW], dim: D)
                for l in 0..<L {
                    for d in 0..<D {
                        out[((b * L + l) * 2 * D) + d] = pos[l * D + d]
                        out[((b * L + l) * 2 * D) + D + d] = scale[d]
                    }
                }
            }
        }
        let queries = online.decoderPosMLP(Tensor(rel, shape: [B, L, 2 * D])) + online.maskToken
        var seq = concat([proj.narrow(axis: 1, start: 0, length: 1),
                          proj.narrow(axis: 1, start: 1, length: K) + positions,
                          queries], axis: 1)
        for blk in online.predictor { seq = blk(seq) }
        let pred = online.decoderPred(seq.narrow(axis: 1, start: 1 + K, length: L)).reshaped([B * L, D])

        // Target: EMA branch on the full view 2, patch tokens, LayerNorm without affine.
        let t = withNoGrad { targetNorm(target(x2).narrow(axis: 1, start: 1, length: L).reshaped([B * L, D])) }
        return unigrad(pred, t)
    }

    /// EMA (cosine 0.995 → 1) of every target tensor from its online counterpart.
    public func afterUpdate(step: Int, totalSteps: Int) {
        ema.update(momentum: Float(Schedule.cosine(progress: Double(step) / Double(max(totalSteps, 1)), from: options.momentum, to: 1)))
    }
}
