import TesseraData
import TesseraEngine

/// MAE's options beyond the encoder (methods `mae` and `rcmae`, ``PretrainConfig/mae``): the decoder's
/// sizes, the mask ratio and the target.
public struct MAEOptions: Codable, Equatable, Sendable {
    public var decoderDim: Int
    public var decoderDepth: Int
    public var decoderHeads: Int
    /// Fraction of patches removed (0.75: the encoder sees 25%).
    public var maskRatio: Float = MAEOptions.defaultMaskRatio
    /// Per-patch standardized pixel targets (unbiased variance, eps 1e-6).
    public var normPixLoss = true
    /// MAE's mask ratio (He et al., 2022).
    public static let defaultMaskRatio: Float = 0.75

    public init(decoderDim: Int, decoderDepth: Int, decoderHeads: Int, maskRatio: Float = MAEOptions.defaultMaskRatio, normPixLoss: Bool = true) {
        self.decoderDim = decoderDim; self.decoderDepth = decoderDepth; self.decoderHeads = decoderHeads
        self.maskRatio = maskRatio; self.normPixLoss = normPixLoss
    }
}

/// Sizes and options of a masked autoencoder (He et al., 2022): the encoder and ``MAEOptions``, whose
/// fields read and write through it (`config.decoderDim`).
@dynamicMemberLookup
public struct MAEConfig: Codable, Equatable, Sendable {
    public var encoder: ViTConfig
    /// Everything but the encoder.
    public var options: MAEOptions

    public init(encoder: ViTConfig, options: MAEOptions) { self.encoder = encoder; self.options = options }

    public init(encoder: ViTConfig, decoderDim: Int, decoderDepth: Int, decoderHeads: Int, maskRatio: Float = MAEOptions.defaultMaskRatio,
                normPixLoss: Bool = true) {
        self.init(encoder: encoder, options: MAEOptions(decoderDim: decoderDim, decoderDepth: decoderDepth, decoderHeads: decoderHeads,
                                                        maskRatio: maskRatio, normPixLoss: normPixLoss))
    }

    public subscript<T>(dynamicMember field: WritableKeyPath<MAEOptions, T>) -> T {
        get { options[keyPath: field] }
        set { options[keyPath: field] = newValue }
    }

    /// Named sizes: `vit-tiny` (192/12/3, decoder 128/2/4, RC-MAE's tiny), `vit-small` (384/12/6,
    /// decoder 256/4/8), `vit-base` (768/12/12, decoder 512/8/16). Patch 16 on 224×224×3 unless
    /// overridden afterwards.
    public static func named(_ name: String) -> MAEConfig? {
        switch name {
        case "vit-tiny": return MAEConfig(encoder: ViTConfig(dim: 192, depth: 12, heads: 3), decoderDim: 128, decoderDepth: 2, decoderHeads: 4)
        case "vit-small": return MAEConfig(encoder: ViTConfig(dim: 384, depth: 12, heads: 6), decoderDim: 256, decoderDepth: 4, decoderHeads: 8)
        case "vit-base": return MAEConfig(encoder: ViTConfig(dim: 768, depth: 12, heads: 12), decoderDim: 512, decoderDepth: 8, decoderHeads: 16)
        default: return nil
        }
    }
    public static let names = ["vit-tiny", "vit-small", "vit-base"]

    /// Patches kept per image: `Int(L · (1 − ratio))` as the official code.
    public var keptPatches: Int { MaskIndices.keptCount(patches: encoder.patches, maskRatio: options.maskRatio) }
}

/// The official `MaskedAutoencoderViT`: a ViT encoder on the visible patches, a light decoder that
/// re-inserts a shared mask token at the removed positions, and a per-patch pixel regression loss
/// on the removed patches only.
///
/// Tensor names and shapes are the official state_dict's (`cls_token`, `pos_embed`, `mask_token`,
/// `decoder_pos_embed`, `patch_embed.proj.weight [D, C, p, p]`, `blocks.i.…`, `norm.…`,
/// `decoder_embed.…`, `decoder_blocks.j.…`, `decoder_norm.…`, `decoder_pred.…`).
public final class MaskedAutoencoder: Module {
    public let config: MAEConfig
    public let encoder: ViTEncoder
    public let maskToken: Tensor
    public let decoderPosEmbed: Tensor
    public let decoderEmbed: Linear
    public let decoderBlocks: [Block]
    public let decoderNorm: LayerNorm
    public let decoderPred: Linear

    public init(_ config: MAEConfig, rng: inout TesseraRNG) {
        let e = config.encoder
        precondition(config.maskRatio >= 0 && config.maskRatio < 1, "MAE: mask ratio must be in [0, 1)")
        self.config = config
        encoder = ViTEncoder(e, rng: &rng)
        maskToken = Tensor.randn([1, 1, config.decoderDim], std: 0.02, rng: &rng, requiresGrad: true)
        decoderPosEmbed = sinCosPositionalEmbedding(dim: config.decoderDim, gridHeight: e.grid, gridWidth: e.grid)
        decoderEmbed = Linear(e.dim, config.decoderDim, rng: &rng)
        decoderBlocks = (0..<config.decoderDepth).map { _ in
            Block(config.decoderDim, heads: config.decoderHeads, mlpRatio: e.mlpRatio, eps: e.layerNormEps, rng: &rng)
        }
        decoderNorm = LayerNorm(config.decoderDim, eps: e.layerNormEps)
        decoderPred = Linear(config.decoderDim, e.patchSize * e.patchSize * e.channels, rng: &rng)
        super.init()
        registerInline(encoder)
        register("mask_token", maskToken)
        register("decoder_pos_embed", decoderPosEmbed)
        register("decoder_embed", decoderEmbed)
        for (j, b) in decoderBlocks.enumerated() { register("decoder_blocks.\(j)", b) }
        register("decoder_norm", decoderNorm)
        register("decoder_pred", decoderPred)
    }

    /// A fresh random masking for a batch of `B` images (per-sample uniform noise, argsort).
    public func randomMask(batch B: Int, rng: inout TesseraRNG) -> MaskIndices {
        MaskIndices.random(batch: B, patches: config.encoder.patches, maskRatio: config.maskRatio, rng: &rng)
    }

    /// The masking of a training batch: drawn for the whole global batch and cut to this process's
    /// rows, so an image gets the same mask whichever process trains on it.
    public func randomMask(for batch: Batch, rng: inout TesseraRNG) -> MaskIndices {
        let all = randomMask(batch: batch.globalBatchSize, rng: &rng)
        return batch.globalRows == 0..<batch.globalBatchSize ? all : all.rows(batch.globalRows)
    }

    /// Encoder on the visible patches: `[B, C, H, W] → [B, 1 + K, D]`.
    public func encode(_ images: Tensor, mask: MaskIndices) -> Tensor { encoder(images, mask: mask) }

    /// Decoder: latent `[B, 1 + K, D]` → predicted patches `[B, L, p·p·C]` for every position.
    public func decode(_ latent: Tensor, mask: MaskIndices) -> Tensor {
        let L = config.encoder.patches
        var x = decoderEmbed(latent).unshuffled(mask, maskToken: maskToken) + decoderPosEmbed
        for block in decoderBlocks { x = block(x) }
        return decoderPred(decoderNorm(x)).narrow(axis: 1, start: 1, length: L)
    }

    /// The regression target: patchified images, standardized per patch when `normPixLoss`.
    public func target(_ images: Tensor) -> Tensor {
        withNoGrad {
            let t = images.patchify(patchSize: config.encoder.patchSize)
            return config.normPixLoss ? t.standardizedRows(eps: 1e-6) : t
        }
    }

    /// Per-patch MSE averaged over the removed patches: `Σ mask·mean_k (pred − target)² / Σ mask`.
    public static func maskedPatchMSE(_ pred: Tensor, _ target: Tensor, mask: MaskIndices) -> Tensor {
        let d = pred - target
        let perPatch = (d * d).mean(axis: 2)                         // [B, L]
        let m = mask.maskTensor
        let removed = Float(mask.batch * (mask.patches - mask.keep))
        return (perPatch * m).sum() / removed
    }

    /// One forward pass: loss, predictions `[B, L, p·p·C]` and the masking used.
    public func callAsFunction(_ images: Tensor, mask: MaskIndices) -> (loss: Tensor, pred: Tensor) {
        let e = config.encoder
        precondition(images.rank == 4 && images.shape[1] == e.channels && images.shape[2] == e.imageSize && images.shape[3] == e.imageSize,
                     "MAE: images \(images.shape) do not match [B, \(e.channels), \(e.imageSize), \(e.imageSize)]")
        let pred = decode(encode(images, mask: mask), mask: mask)
        return (Self.maskedPatchMSE(pred, target(images), mask: mask), pred)
    }
}

// MARK: - MAE as a pretraining method

extension MaskedAutoencoder: PretrainingMethod {
    public static var kind: MethodKind { .mae }
    public static var reportsAutoencoder: Bool { true }
    /// MAE's recipe (He et al., 2022, Table 8): AdamW (0.9, 0.95), weight decay 0.05, blr 1.5e-4.
    public static var recipe: TrainingRecipe { TrainingRecipe(blr: 1.5e-4, betas: (0.9, 0.95), weightDecay: 0.05) }
    public static var title: String { "MAE" }
    public static var recipeDefaults: String { "mask ratio \(TrainingRecipe.number(Double(MAEOptions.defaultMaskRatio))), norm-pix loss" }

    /// The decoder's part of the model's sizes (``PretrainConfig/init(method:mae:augmentation:)``).
    public static func addDefaultOptions(to config: inout PretrainConfig, model: MAEConfig) { config.mae = model.options }
    public static func maskRatio(of config: PretrainConfig) -> Float? { config.mae?.maskRatio }
    /// The decoder's sizes, the mask ratio (it must keep a patch), and the per-patch normalized target,
    /// which needs two values per patch (``PretrainConfig/validate()``).
    public static func validateOptions(of config: PretrainConfig) throws {
        guard let model = config.maeModel else { throw ConfigError("method \(config.method) without its mae options") }
        let mae = model.options, e = config.encoder
        try ConfigRule.int("mae.decoderDim (--decoder-dim)", mae.decoderDim, ConfigLimits.width)
        try ConfigRule.int("mae.decoderHeads (--decoder-heads)", mae.decoderHeads, ConfigLimits.heads)
        try ConfigRule.need(mae.decoderDim % mae.decoderHeads == 0 && mae.decoderDim % 4 == 0,
                            "decoder width \(mae.decoderDim) must be a multiple of 4 and of its head count \(mae.decoderHeads); adjust --decoder-dim/--decoder-heads")
        try ConfigRule.int("mae.decoderDepth (--decoder-depth)", mae.decoderDepth, ConfigLimits.depth)
        try ConfigRule.real("mae.maskRatio (--mask-ratio)", mae.maskRatio, 0...1, highOpen: true)
        try ConfigRule.need(model.keptPatches >= 1, "--mask-ratio \(mae.maskRatio) keeps no patch of \(e.patches); lower it")
        try ConfigRule.need(!mae.normPixLoss || e.patchSize * e.patchSize * e.channels >= 2,
                            "patches of \(e.patchSize)x\(e.patchSize)x\(e.channels) hold one value, which the per-patch normalized target cannot standardize; raise --patch-size or pass --no-norm-pix")
    }

    public convenience init(_ config: PretrainConfig, rng: inout TesseraRNG) { self.init(config.maeModel!, rng: &rng) }

    public var reportedModel: Module { self }
    public var evaluationEncoder: ViTEncoder { encoder }
    public func optimizedParameters() -> [(name: String, tensor: Tensor)] { trainableParameters() }
    public var partsSummary: String { "decoder \(config.decoderDim)/\(config.decoderDepth)/\(config.decoderHeads)" }

    /// MAE: mask 75% of the patches per image, reconstruct them.
    public func trainingLoss(_ batch: Batch, rng: inout TesseraRNG) -> (loss: Tensor, metrics: [(String, Float)]) {
        let mask = randomMask(for: batch, rng: &rng)
        return (self(batch.images, mask: mask).loss, [])
    }

    /// Predictions `[B, L, p·p·C]` back in the images' normalized pixel space: with the norm-pix
    /// loss each predicted patch is de-standardized with its target patch's own mean and standard
    /// deviation (the loss's statistics: unbiased variance, eps 1e-6), as the official
    /// visualization does; without it the predictions already are pixels.
    public func pixelPredictions(_ pred: Tensor, images: Tensor) -> Tensor {
        guard config.normPixLoss else { return pred }
        let F = pred.shape.last!, rows = pred.count / F
        let s = images.patchify(patchSize: config.encoder.patchSize).rowStatistics(eps: 1e-6)
        precondition(s.mean.count == rows, "pixelPredictions: predictions \(pred.shape) do not match the images' patches")
        var out = pred.array
        for r in 0..<rows { for k in 0..<F { out[r * F + k] = out[r * F + k] / s.rstd[r] + s.mean[r] } }
        return Tensor(out, shape: pred.shape)
    }
}
