import CKernels

// LayerNorm, BatchNorm1d, GELU, L2-normalize and MAE's per-row standardization.

extension Tensor {
    /// LayerNorm over the last axis (biased variance; `eps` inside the square root).
    /// Backward reads the input and the saved mean/rstd.
    public func layerNorm(weight: Tensor?, bias: Tensor?, eps: Float) -> Tensor {
        let x = self, (R, C) = rowsAndColumns
        if let weight { precondition(weight.shape == [C], "layerNorm: weight \(weight.shape) for input \(shape)") }
        if let bias { precondition(bias.shape == [C], "layerNorm: bias \(bias.shape) for input \(shape)") }
        let out = Tensor(uninitialized: shape), mean = Tensor(uninitialized: [R]), rstd = Tensor(uninitialized: [R])
        ck_layernorm_forward(out.data, mean.data, rstd.data, x.data, weight?.data, bias?.data, Int64(R), Int64(C), eps)
        let inputs = [x] + [weight, bias].compactMap { $0 }
        return out.recorded("layerNorm", inputs) { g in
            withLayerNormScratch(R, C) { scratch in
                ck_layernorm_backward(x.gradTarget(), weight?.gradTarget() ?? ck_grad(), bias?.gradTarget() ?? ck_grad(),
                                      g, x.data, weight?.data, mean.data, rstd.data, scratch, Int64(R), Int64(C))
            }
        }
    }

    /// BatchNorm1d over the rows of a [R, C] tensor. In training it uses (and returns gradients
    /// through) the batch statistics and updates the running ones; in eval it uses the running ones.
    public func batchNorm(weight: Tensor?, bias: Tensor?, runningMean: Tensor?, runningVar: Tensor?,
                          training: Bool, momentum: Float = 0.1, eps: Float = 1e-5,
                          synchronizedOver comm: (any Communicator)? = nil) -> Tensor {
        if let comm, training { return syncBatchNorm(weight: weight, bias: bias, runningMean: runningMean, runningVar: runningVar,
                                                     momentum: momentum, eps: eps, comm: comm) }
        let x = self
        precondition(rank == 2, "batchNorm: expects [rows, channels], got \(shape)")
        let R = shape[0], C = shape[1]
        precondition(training || (runningMean != nil && runningVar != nil), "batchNorm: eval mode needs running statistics")
        precondition(!training || R > 1, "batchNorm: training needs more than one row, got \(shape)")
        for t in [weight, bias, runningMean, runningVar].compactMap({ $0 }) {
            precondition(t.shape == [C], "batchNorm: parameter \(t.shape) for input \(shape)")
        }
        let out = Tensor(uninitialized: shape), mean = Tensor(uninitialized: [C]), rstd = Tensor(uninitialized: [C])
        ck_batchnorm_forward(out.data, mean.data, rstd.data, runningMean?.data, runningVar?.data, x.data,
                             weight?.data, bias?.data, Int64(R), Int64(C), eps, momentum, training ? 1 : 0)
        let inputs = [x] + [weight, bias].compactMap { $0 }
        return out.recorded("batchNorm", inputs) { g in
            ck_batchnorm_backward(x.gradTarget(), weight?.gradTarget() ?? ck_grad(), bias?.gradTarget() ?? ck_grad(),
                                  g, x.data, weight?.data, mean.data, rstd.data, Int64(R), Int64(C), training ? 1 : 0)
        }
    }

    /// Training-mode BatchNorm1d whose statistics cover the rows of every process (PyTorch's
    /// SyncBatchNorm): the column sums of each phase are summed over `comm`, so W processes with R
    /// rows each normalize exactly as one process with W·R rows would (up to rounding). Backward
    /// sums Σdy and Σdy·x̂ over the processes the same way (see ``Communicator`` for the gradient
    /// contract). Every process must have the same number of rows.
    func syncBatchNorm(weight: Tensor?, bias: Tensor?, runningMean: Tensor?, runningVar: Tensor?, momentum: Float, eps: Float,
                       comm: any Communicator) -> Tensor {
        let x = self, R = shape[0], C = shape[1]
        let count = Float(R * comm.size)
        var partial = [Float](repeating: 0, count: C)
        ck_column_sums(&partial, x.data, nil, Int64(R), Int64(C))
        let mean = comm.sum(partial).map { $0 / count }
        ck_column_sums(&partial, x.data, mean, Int64(R), Int64(C))
        let variance = comm.sum(partial).map { $0 / count }
        let rstd = variance.map { 1 / ($0 + eps).squareRoot() }
        if let runningMean, let runningVar {
            for j in 0..<C {
                runningMean.data[j] = (1 - momentum) * runningMean.data[j] + momentum * mean[j]
                let unbiased = count > 1 ? variance[j] * count / (count - 1) : variance[j]
                runningVar.data[j] = (1 - momentum) * runningVar.data[j] + momentum * unbiased
            }
        }
        let out = Tensor(uninitialized: shape)
        ck_batchnorm_apply(out.data, x.data, mean, rstd, weight?.data, bias?.data, Int64(R), Int64(C))
        let inputs = [x] + [weight, bias].compactMap { $0 }
        return out.recorded("syncBatchNorm", inputs) { g in
            var sdy = [Float](repeating: 0, count: C), sdyx = sdy
            ck_batchnorm_backward_sums(&sdy, &sdyx, g, x.data, mean, rstd, Int64(R), Int64(C))
            // The parameters' gradients are this process's own (the trainer averages them).
            if let bias { vectorAccumulate(bias.gradTarget(), sdy) }
            if let weight { vectorAccumulate(weight.gradTarget(), sdyx) }
            let both = comm.sum(sdy + sdyx)
            if x.requiresGrad {
                ck_batchnorm_backward_apply(x.gradTarget(), g, x.data, weight?.data, mean, rstd, Array(both[0..<C]), Array(both[C...]),
                                            count, Int64(R), Int64(C))
            }
        }
    }

    /// Exact-erf GELU (`torch.nn.GELU()`). Backward reads the input.
    public func gelu() -> Tensor {
        let x = self
        let out = Tensor(uninitialized: shape)
        ck_gelu_forward(out.data, x.data, Int64(count))
        return out.recorded("gelu", [x]) { g in
            ck_gelu_backward(x.gradTarget(), g, x.data, Int64(x.count))
        }
    }

    /// Rows scaled to unit L2 norm: `x / max(‖x‖, eps)` (`F.normalize`). Backward reads the output.
    public func l2Normalized(eps: Float = 1e-12) -> Tensor {
        let x = self, (R, C) = rowsAndColumns
        let out = Tensor(uninitialized: shape), norm = Tensor(uninitialized: [R])
        ck_l2norm_forward(out.data, norm.data, x.data, Int64(R), Int64(C), eps)
        let y = out.savedForBackward
        return out.recorded("l2Normalized", [x]) { g in
            ck_l2norm_backward(x.gradTarget(), g, y.data, norm.data, Int64(R), Int64(C), eps)
        }
    }

    /// Per-row standardization with the *unbiased* variance and `eps` inside the square root:
    /// MAE's norm-pix target `(x − mean) / √(var + eps)`. Backward reads the output.
    public func standardizedRows(eps: Float = 1e-6) -> Tensor {
        let x = self, (R, C) = rowsAndColumns
        precondition(C >= 2, "standardizedRows: needs at least 2 columns, got \(shape)")
        let out = Tensor(uninitialized: shape), mean = Tensor(uninitialized: [R]), rstd = Tensor(uninitialized: [R])
        ck_standardize_forward(out.data, mean.data, rstd.data, x.data, Int64(R), Int64(C), eps)
        let y = out.savedForBackward
        return out.recorded("standardizedRows", [x]) { g in
            ck_standardize_backward(x.gradTarget(), g, y.data, rstd.data, Int64(R), Int64(C))
        }
    }

    /// The per-row mean and reciprocal standard deviation that ``standardizedRows(eps:)`` uses
    /// (unbiased variance), over the last axis; no autograd.
    public func rowStatistics(eps: Float = 1e-6) -> (mean: [Float], rstd: [Float]) {
        let (R, C) = rowsAndColumns
        precondition(C >= 2, "rowStatistics: needs at least 2 columns, got \(shape)")
        let scratch = Tensor(uninitialized: shape)
        var mean = [Float](repeating: 0, count: R), rstd = mean
        ck_standardize_forward(scratch.data, &mean, &rstd, data, Int64(R), Int64(C), eps)
        return (mean, rstd)
    }
}

/// `target (=|+=) values` for a gradient of a few values (the ``ck_grad`` contract).
func vectorAccumulate(_ target: ck_grad, _ values: [Float]) {
    guard let d = target.data else { return }
    for (i, v) in values.enumerated() { if target.accumulate != 0 { d[i] += v } else { d[i] = v } }
}

/// A normalization of a product's input rows that the product applies itself
/// (``Tensor/linear(_:_:norm:residual:)``, ``Tensor/mlp(_:_:_:_:norm:residual:)``): the same arithmetic as the
/// normalization op followed by the product, bit for bit, but the normalized rows are not kept from the
/// forward to the backward. The backward recomputes them from the input and the saved statistics
/// (two floats per row or column): two `[rows, width]` tensors fewer per transformer block
/// (norm1 → qkv, norm2 → fc1), about a sixth of its activations.
public enum RowNorm {
    /// ``Tensor/layerNorm(weight:bias:eps:)``.
    case layer(weight: Tensor?, bias: Tensor?, eps: Float)
    /// Training-mode ``Tensor/batchNorm(weight:bias:runningMean:runningVar:training:momentum:eps:synchronizedOver:)``
    /// on one process: batch statistics, the running ones updated once by the forward.
    case batch(weight: Tensor?, bias: Tensor?, eps: Float, runningMean: Tensor?, runningVar: Tensor?, momentum: Float)

    var parameters: [Tensor] {
        switch self {
        case let .layer(w, b, _), let .batch(w, b, _, _, _, _): return [w, b].compactMap { $0 }
        }
    }
}

/// The input rows of a product: a tensor, or its normalization (``RowNorm``), computed by the forward
/// and again by the backward instead of kept.
struct ProductInput {
    let source: Tensor
    let norm: RowNorm?
    /// Row statistics (LayerNorm: per row; BatchNorm: per column): LayerNorm's are written by the
    /// forward's computation and read by the backward's; BatchNorm's rewritten with the same values.
    private let mean: Tensor?, rstd: Tensor?
    let rows: Int, width: Int

    init(source: Tensor, norm: RowNorm?) {
        self.source = source
        self.norm = norm
        (rows, width) = source.rowsAndColumns
        for p in norm?.parameters ?? [] { precondition(p.shape == [width], "norm: parameter \(p.shape) for input \(source.shape)") }
        switch norm {
        case .layer: mean = Tensor(uninitialized: [rows]); rstd = Tensor(uninitialized: [rows])
        case .batch:
            precondition(rows > 1, "batchNorm: training needs more than one row, got \(source.shape)")
            mean = Tensor(uninitialized: [width]); rstd = Tensor(uninitialized: [width])
        case nil: mean = nil; rstd = nil
        }
    }

    /// The tensors the op's gradient flows to (the op's recorded inputs).
    var tensors: [Tensor] { [source] + (norm?.parameters ?? []) }
    /// Whether any of them needs a gradient, i.e. whether the rows' gradient is wanted.
    var needsGrad: Bool { tensors.contains { $0.requiresGrad } }

    /// The rows: the source itself, or its normalization in a new tensor. `first`: the forward's
    /// computation, the one that computes LayerNorm's row statistics and updates BatchNorm's running
    /// statistics; later ones (the backward's) normalize with LayerNorm's saved statistics.
    func values(first: Bool = false) -> Tensor {
        guard let norm, let mean, let rstd else { return source }
        let out = Tensor(uninitialized: source.shape)
        switch norm {
        case let .layer(w, b, eps):
            if first {
                ck_layernorm_forward(out.data, mean.data, rstd.data, source.data, w?.data, b?.data, Int64(rows), Int64(width), eps)
            } else {
                ck_layernorm_apply(out.data, source.data, w?.data, b?.data, mean.data, rstd.data, Int64(rows), Int64(width))
            }
        case let .batch(w, b, eps, runningMean, runningVar, momentum):
            ck_batchnorm_forward(out.data, mean.data, rstd.data, first ? runningMean?.data : nil, first ? runningVar?.data : nil,
                                 source.data, w?.data, b?.data, Int64(rows), Int64(width), eps, momentum, 1)
        }
        return out
    }

    /// Runs `write` with the target for the rows' gradient, then passes that gradient on: straight
    /// into the source's gradient, or into a buffer the normalization's backward reads.
    func backward(_ write: (ck_grad) -> Void) {
        guard let norm, let mean, let rstd else { write(source.gradTarget()); return }
        guard needsGrad else { write(ck_grad()); return }
        withExtendedLifetime(Tensor(uninitialized: source.shape)) { dRows in   // written whole (accumulate 0)
            write(ck_grad(data: dRows.data, accumulate: 0))
            switch norm {
            case let .layer(w, b, _):
                withLayerNormScratch(rows, width) { scratch in
                    ck_layernorm_backward(source.gradTarget(), w?.gradTarget() ?? ck_grad(), b?.gradTarget() ?? ck_grad(),
                                          dRows.data, source.data, w?.data, mean.data, rstd.data, scratch, Int64(rows), Int64(width))
                }
            case let .batch(w, b, _, _, _, _):
                // The input's gradient goes through a buffer and is then added, as it did through
                // BatchNorm1d's reshape: the sum with the residual's gradient rounds the same way.
                let dx = source.requiresGrad ? Tensor(uninitialized: source.shape) : nil
                ck_batchnorm_backward(ck_grad(data: dx?.data, accumulate: 0), w?.gradTarget() ?? ck_grad(), b?.gradTarget() ?? ck_grad(),
                                      dRows.data, source.data, w?.data, mean.data, rstd.data, Int64(rows), Int64(width), 1)
                if let dx { source.receiveGradient(dx.data) }
            }
        }
    }
}

/// Runs `body` with the scratch of ck_layernorm_backward for R rows of C (the parameter gradients'
/// partial sums), a pooled buffer the call owns.
func withLayerNormScratch(_ R: Int, _ C: Int, _ body: (UnsafeMutablePointer<Float>) -> Void) {
    withExtendedLifetime(Tensor(uninitialized: [max(Int(ck_layernorm_backward_scratch(Int64(R), Int64(C))), 1)])) { body($0.data) }
}
