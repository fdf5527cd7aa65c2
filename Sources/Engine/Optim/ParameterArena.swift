import CKernels

/// All trainable parameters of a model in one flat buffer, with their gradients in a second one.
///
/// Building an arena copies each parameter into the flat buffer and re-points the tensor at its
/// slice (and its ``Tensor/grad`` at the matching slice of the gradient buffer), so the optimizer,
/// the gradient norm and clipping are each one pass over contiguous memory. Parameters that get
/// weight decay come first; `decayCount` elements of them.
public final class ParameterArena {
    /// The parameters in arena order, with their element offset.
    public let entries: [(name: String, tensor: Tensor, offset: Int)]
    public let values: Storage
    public let gradients: Storage?
    public let count: Int
    /// Elements (from the start) that receive weight decay.
    public let decayCount: Int

    /// MAE / timm rule: no weight decay on 1-D tensors and on anything named `*.bias`.
    public static func defaultDecay(_ name: String, _ t: Tensor) -> Bool {
        !(t.rank <= 1 || name.hasSuffix(".bias"))
    }

    /// - Parameters:
    ///   - parameters: named tensors (usually ``Module/trainableParameters()``).
    ///   - withGradients: allocate and bind a gradient buffer (false for EMA teachers).
    ///   - decay: which tensors receive weight decay.
    public init(_ parameters: [(name: String, tensor: Tensor)], withGradients: Bool = true,
                decay: (String, Tensor) -> Bool = ParameterArena.defaultDecay) {
        let decayed = parameters.filter { decay($0.name, $0.tensor) }
        let rest = parameters.filter { !decay($0.name, $0.tensor) }
        let ordered = decayed + rest
        count = ordered.reduce(0) { $0 + $1.tensor.count }
        decayCount = decayed.reduce(0) { $0 + $1.tensor.count }
        values = Storage(count: count)
        gradients = withGradients ? Storage(count: count) : nil
        var entries: [(String, Tensor, Int)] = []
        var off = 0
        for (name, t) in ordered {
            (values.base + off).update(from: t.data, count: t.count)
            t.storage = values
            t.offset = off
            if let gradients { t.grad = Tensor(storage: gradients, offset: off, shape: t.shape) }
            entries.append((name, t, off))
            off += t.count
        }
        self.entries = entries
    }

    /// Sets every gradient to zero (one memset).
    public func zeroGrad() {
        if let g = gradients { g.base.update(repeating: 0, count: count) }
        for e in entries { e.tensor.gradOverwrites = false }
    }

    /// Starts the gradients of a step without a pass over them: each parameter's first contribution
    /// overwrites its slice (the gradient contract's `accumulate` 0) instead of adding to zeros, which
    /// gives the same values as ``zeroGrad()``. Until ``finishGradients()`` a slice nothing has written
    /// yet still holds the last step's gradient. Measured: the memset was 0.8–2.5 ms of a 500–600 ms MAE
    /// vit-tiny step (`tessera bench`, Zen 4, 2 threads).
    public func startGradients() {
        guard gradients != nil else { return }
        for e in entries { e.tensor.gradOverwrites = true }
    }

    /// Ends what ``startGradients()`` began: the slices no op wrote (a parameter outside this step's
    /// graph) are set to zero, so every gradient reads as after ``zeroGrad()`` and a backward.
    public func finishGradients() {
        for e in entries where e.tensor.gradOverwrites {
            e.tensor.grad?.fill(0)
            e.tensor.gradOverwrites = false
        }
    }

    /// The global L2 norm of the gradients (summed in double over fixed blocks: thread-count independent).
    public func gradientNorm() -> Float {
        guard let g = gradients else { return 0 }
        var scratch = [Double](repeating: 0, count: Int(ck_sum_squares_scratch(Int64(count))))
        return Float(ck_sum_squares(g.base, Int64(count), &scratch).squareRoot())
    }

    /// Every gradient times `s`.
    public func scaleGradients(by s: Float) {
        if let g = gradients { ck_scale(g.base, Int64(count), s) }
    }

    /// Scales the gradients so their global norm is at most `maxNorm` (`clip_grad_norm_`, with its
    /// `1e-6` in the denominator). Returns the norm before clipping.
    @discardableResult
    public func clipGradients(maxNorm: Float) -> Float {
        let norm = gradientNorm()
        let coef = maxNorm / (norm + 1e-6)
        if coef < 1, let g = gradients { ck_scale(g.base, Int64(count), coef) }
        return norm
    }
}

/// `teacher ← m·teacher + (1 − m)·student` for one tensor pair of the same shape.
public func emaUpdate(_ teacher: Tensor, from student: Tensor, momentum m: Float) {
    precondition(teacher.shape == student.shape, "emaUpdate: shapes \(teacher.shape) and \(student.shape) differ")
    ck_ema_update(teacher.data, student.data, Int64(teacher.count), m)
}
