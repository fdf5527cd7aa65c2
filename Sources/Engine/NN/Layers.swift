/// `y = x Wᵀ + b` with `W [out, in]` (PyTorch layout; names `weight`, `bias`).
///
/// Initialized as the official MAE code does for every Linear: Xavier-uniform weight, zero bias.
public final class Linear: Module {
    public let weight: Tensor
    public let bias: Tensor?

    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, rng: inout TesseraRNG) {
        weight = .xavierUniform([outFeatures, inFeatures], rng: &rng, requiresGrad: true)
        self.bias = bias ? .zeros([outFeatures], requiresGrad: true) : nil
        super.init()
        register("weight", weight)
        if let b = self.bias { register("bias", b) }
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { x.linear(weight, bias) }
}

/// LayerNorm over the last axis with elementwise affine (`weight` 1, `bias` 0). MAE uses eps 1e-6.
public final class LayerNorm: Module {
    public let weight: Tensor, bias: Tensor
    public let eps: Float

    public init(_ dim: Int, eps: Float = 1e-6) {
        weight = .ones([dim], requiresGrad: true)
        bias = .zeros([dim], requiresGrad: true)
        self.eps = eps
        super.init()
        register("weight", weight)
        register("bias", bias)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { x.layerNorm(weight: weight, bias: bias, eps: eps) }
}

/// BatchNorm1d over rows `[R, C]` (PyTorch semantics and names: `weight`, `bias`, `running_mean`,
/// `running_var`; momentum 0.1, eps 1e-5 by default). Batch statistics in training, running ones in eval.
public final class BatchNorm1d: Module {
    public let weight: Tensor?, bias: Tensor?
    public let runningMean: Tensor, runningVar: Tensor
    public let eps: Float, momentum: Float
    /// Number of training batches seen: PyTorch's `num_batches_tracked` buffer (int64 there; a float
    /// scalar here, which `load_state_dict` casts), so the state dict loads with strict=True.
    public let numBatchesTracked: Tensor
    /// When set, training statistics cover every process's rows (SyncBatchNorm; see
    /// ``Module/synchronizeBatchNorm(over:)``).
    public var communicator: (any Communicator)?

    public init(_ dim: Int, affine: Bool = true, eps: Float = 1e-5, momentum: Float = 0.1) {
        weight = affine ? .ones([dim], requiresGrad: true) : nil
        bias = affine ? .zeros([dim], requiresGrad: true) : nil
        runningMean = .zeros([dim])
        runningVar = .ones([dim])
        numBatchesTracked = Tensor(scalar: 0)
        self.eps = eps
        self.momentum = momentum
        super.init()
        if let weight, let bias { register("weight", weight); register("bias", bias) }
        registerBuffer("running_mean", runningMean)
        registerBuffer("running_var", runningVar)
        registerBuffer("num_batches_tracked", numBatchesTracked)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let shape = x.shape
        let rows = x.reshaped([-1, shape.last!])
        if isTraining { numBatchesTracked.data[0] += 1 }
        return rows.batchNorm(weight: weight, bias: bias, runningMean: runningMean, runningVar: runningVar,
                              training: isTraining, momentum: momentum, eps: eps, synchronizedOver: communicator).reshaped(shape)
    }
}

/// Transformer MLP: `fc2(gelu(fc1(x)))`, exact-erf GELU fused with fc1's bias.
public final class MLP: Module {
    public let fc1: Linear, fc2: Linear

    public init(_ dim: Int, hidden: Int, rng: inout TesseraRNG) {
        fc1 = Linear(dim, hidden, rng: &rng)
        fc2 = Linear(hidden, dim, rng: &rng)
        super.init()
        register("fc1", fc1)
        register("fc2", fc2)
    }

    /// One ``Tensor/mlp(_:_:_:_:norm:residual:)`` op: the hidden activation is recomputed by the backward,
    /// not saved; with `norm`, the MLP of `norm(x)`, whose rows are recomputed too.
    public func callAsFunction(_ x: Tensor, norm: RowNorm? = nil, residual: Tensor? = nil) -> Tensor {
        x.mlp(fc1.weight, fc1.bias, fc2.weight, fc2.bias, norm: norm, residual: residual)
    }
}

/// Multi-head self-attention: one `qkv` Linear (rows ordered q | k | v, heads major inside each),
/// the fused attention kernel with scale D^-1/2, then `proj`.
public final class Attention: Module {
    public let qkv: Linear, proj: Linear
    public let heads: Int

    public init(_ dim: Int, heads: Int, rng: inout TesseraRNG) {
        precondition(heads > 0 && dim % heads == 0, "Attention: dim \(dim) is not divisible by \(heads) heads")
        // One Xavier over the fused [3·dim, dim] matrix, as MAE's init does.
        qkv = Linear(dim, 3 * dim, rng: &rng)
        proj = Linear(dim, dim, rng: &rng)
        self.heads = heads
        super.init()
        register("qkv", qkv)
        register("proj", proj)
    }

    /// x [B, N, dim] → [B, N, dim]; with `norm`, the attention of `norm(x)`, whose rows the `qkv`
    /// product recomputes in its backward instead of keeping them; with `residual`, `residual` plus
    /// the attention, added by `proj`.
    public func callAsFunction(_ x: Tensor, norm: RowNorm? = nil, residual: Tensor? = nil) -> Tensor {
        x.linear(qkv.weight, qkv.bias, norm: norm).fusedAttention(heads: heads).linear(proj.weight, proj.bias, residual: residual)
    }
}

/// A normalization over the channels of token rows `[…, D]`.
public protocol TokenNorm: Module {
    func callAsFunction(_ x: Tensor) -> Tensor
    /// The normalization for a product that applies it to its own input (``RowNorm``), in place of
    /// `callAsFunction` for one forward; nil where the product cannot (then call the module).
    func productNorm() -> RowNorm?
}
extension LayerNorm: TokenNorm {
    public func productNorm() -> RowNorm? { .layer(weight: weight, bias: bias, eps: eps) }
}
/// BatchNorm1d over every token of the batch (SIM's `PermuteBN`): statistics per channel across B·N rows.
extension BatchNorm1d: TokenNorm {
    /// In training on one process (counting the batch, as `callAsFunction` does); nil in eval mode or
    /// when synchronized over processes.
    public func productNorm() -> RowNorm? {
        guard isTraining && communicator == nil else { return nil }
        numBatchesTracked.data[0] += 1
        return .batch(weight: weight, bias: bias, eps: eps, runningMean: runningMean, runningVar: runningVar, momentum: momentum)
    }
}

/// Which normalization a ``Block`` uses.
public enum NormKind: String, Codable, Sendable, CaseIterable {
    case layer, batch
}

/// Pre-norm ViT block (timm): `x + attn(norm1(x))`, then `x + mlp(norm2(x))`. LayerNorm by default;
/// BatchNorm over tokens for SIM's projector and predictor.
public final class Block: Module {
    public let norm1: any TokenNorm, attn: Attention, norm2: any TokenNorm, mlp: MLP

    public init(_ dim: Int, heads: Int, mlpRatio: Float = 4, eps: Float = 1e-6, norm: NormKind = .layer, rng: inout TesseraRNG) {
        func makeNorm() -> any TokenNorm { norm == .layer ? LayerNorm(dim, eps: eps) : BatchNorm1d(dim) }
        norm1 = makeNorm()
        attn = Attention(dim, heads: heads, rng: &rng)
        norm2 = makeNorm()
        mlp = MLP(dim, hidden: Int(Float(dim) * mlpRatio), rng: &rng)
        super.init()
        register("norm1", norm1 as Module)
        register("attn", attn)
        register("norm2", norm2 as Module)
        register("mlp", mlp)
    }

    /// The products normalize their own input where the norm allows it (``RowNorm``: the normalized
    /// rows are not kept for the backward), else norm then product, and add the skip connection
    /// themselves; the same bits either way.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let h = norm1.productNorm().map { attn(x, norm: $0, residual: x) } ?? attn(norm1(x), residual: x)
        return norm2.productNorm().map { mlp(h, norm: $0, residual: h) } ?? mlp(norm2(h), residual: h)
    }
}

/// Patch embedding stored as the Conv2d of timm's `PatchEmbed` (`proj.weight [D, C, p, p]`,
/// `proj.bias [D]`) and computed as a matmul on patchified images. The conv weight becomes the
/// matmul weight by the same permutation as patchify: `W_lin[d, (i·p + j)·C + c] = W[d, c, i, j]`.
public final class PatchEmbed: Module {
    public let proj: Conv2dWeights
    public let patchSize: Int, channels: Int, dim: Int

    public init(patchSize: Int, channels: Int, dim: Int, rng: inout TesseraRNG) {
        proj = Conv2dWeights(out: dim, in: channels, kernel: patchSize, rng: &rng)
        self.patchSize = patchSize
        self.channels = channels
        self.dim = dim
        super.init()
        register("proj", proj)
    }

    /// Images [B, C, H, W] → tokens [B, L, D], L = (H/p)·(W/p) in row-major patch order.
    public func callAsFunction(_ images: Tensor) -> Tensor {
        callAsFunction(patches: images.patchify(patchSize: patchSize))
    }

    /// Already-patchified images [B, L, p·p·C] → tokens [B, L, D].
    public func callAsFunction(patches: Tensor) -> Tensor {
        let w = proj.weight.patchify(patchSize: patchSize).reshaped([dim, patchSize * patchSize * channels])
        return patches.linear(w, proj.bias)
    }
}

/// The parameters of a square-kernel Conv2d (`weight [out, in, k, k]`, `bias [out]`).
/// Weight: Xavier-uniform on the flattened `[out, in·k·k]` view (MAE); bias: PyTorch's Conv2d default
/// U(−1/√fan_in, 1/√fan_in), which MAE never re-initializes.
public final class Conv2dWeights: Module {
    public let weight: Tensor, bias: Tensor

    public init(out: Int, in channels: Int, kernel: Int, rng: inout TesseraRNG) {
        weight = .xavierUniform([out, channels, kernel, kernel], rng: &rng, requiresGrad: true)
        let bound = 1 / Float(channels * kernel * kernel).squareRoot()
        bias = .uniform([out], low: -bound, high: bound, rng: &rng, requiresGrad: true)
        super.init()
        register("weight", weight)
        register("bias", bias)
    }
}
