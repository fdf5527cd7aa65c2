import TesseraEngine

/// Sizes of a ViT encoder. Defaults are ViT-Tiny with 16×16 patches on 224×224 RGB images.
public struct ViTConfig: Codable, Equatable, Sendable {
    public var imageSize = 224     // H = W
    public var patchSize = 16      // p
    public var channels = 3        // C
    public var dim = 192           // D (ViT-Ti 192, ViT-S 384, ViT-B 768)
    public var depth = 12          // blocks
    public var heads = 3           // attention heads
    public var mlpRatio: Float = 4 // MLP hidden = mlpRatio · D
    public var layerNormEps: Float = 1e-6

    public init(imageSize: Int = 224, patchSize: Int = 16, channels: Int = 3, dim: Int = 192, depth: Int = 12,
                heads: Int = 3, mlpRatio: Float = 4, layerNormEps: Float = 1e-6) {
        self.imageSize = imageSize; self.patchSize = patchSize; self.channels = channels; self.dim = dim
        self.depth = depth; self.heads = heads; self.mlpRatio = mlpRatio; self.layerNormEps = layerNormEps
    }

    /// Patches per side.
    public var grid: Int { imageSize / patchSize }
    /// Patches per image (L).
    public var patches: Int { grid * grid }
}

/// The ViT encoder shared by every method: timm's `VisionTransformer` without a head, with MAE's
/// fixed sin-cos positional embedding. Parameter names are timm's (`cls_token`, `pos_embed`,
/// `patch_embed.proj.weight`, `blocks.i.…`, `norm.…`).
///
/// `callAsFunction(_:mask:)` follows MAE's `forward_encoder`: embed patches, add positions, keep the
/// unmasked tokens (if a mask is given), prepend CLS (+ its zero position), run the blocks, final norm.
public final class ViTEncoder: Module {
    public let config: ViTConfig
    public let clsToken: Tensor
    public let posEmbed: Tensor
    public let patchEmbed: PatchEmbed
    public let blocks: [Block]
    public let norm: LayerNorm

    public init(_ config: ViTConfig, rng: inout TesseraRNG) {
        precondition(config.imageSize % config.patchSize == 0,
                     "ViTEncoder: image size \(config.imageSize) is not divisible by patch size \(config.patchSize)")
        self.config = config
        patchEmbed = PatchEmbed(patchSize: config.patchSize, channels: config.channels, dim: config.dim, rng: &rng)
        clsToken = Tensor.randn([1, 1, config.dim], std: 0.02, rng: &rng, requiresGrad: true)
        posEmbed = sinCosPositionalEmbedding(dim: config.dim, gridHeight: config.grid, gridWidth: config.grid)
        blocks = (0..<config.depth).map { _ in
            Block(config.dim, heads: config.heads, mlpRatio: config.mlpRatio, eps: config.layerNormEps, rng: &rng)
        }
        norm = LayerNorm(config.dim, eps: config.layerNormEps)
        super.init()
        register("cls_token", clsToken)
        register("pos_embed", posEmbed)   // frozen (requiresGrad false), saved like MAE's
        register("patch_embed", patchEmbed)
        for (i, b) in blocks.enumerated() { register("blocks.\(i)", b) }
        register("norm", norm)
    }

    /// Images [B, C, H, W] → tokens [B, 1 + K, D] after the final norm (K = kept patches, or L).
    /// Square images of another size than the configured one (MSN's focal views) use the positional
    /// table bicubically resized to their grid.
    public func callAsFunction(_ images: Tensor, mask: MaskIndices? = nil, finalNorm: Bool = true) -> Tensor {
        precondition(images.rank == 4 && images.shape[2] == images.shape[3] && images.shape[2] % config.patchSize == 0,
                     "ViTEncoder: images \(images.shape) must be square with a side divisible by \(config.patchSize)")
        let grid = images.shape[2] / config.patchSize
        let pos = grid == config.grid ? posEmbed : interpolatedPositionalEmbedding(posEmbed, grid: config.grid, to: grid)
        var x = patchEmbed(images) + pos.narrow(axis: 1, start: 1, length: grid * grid)
        if let mask { x = x.gatherKept(mask) }
        let B = x.shape[0]
        let cls = Tensor.zeros([B, 1, config.dim]) + (clsToken + pos.narrow(axis: 1, start: 0, length: 1))
        x = concat([cls, x], axis: 1)
        for block in blocks { x = block(x) }
        return finalNorm ? norm(x) : x   // SIM's encoder output skips the final norm
    }
}
