import CKernels

// Matrix products on the BLAS (ck_sgemm, the only GEMM entry point).

/// The linear backward shared by `linear` and `linearGELU`:
/// dx[R, I] (=|+=) dy[R, O]·W[O, I], dW[O, I] (=|+=) dyᵀ·x, db[O] (=|+=) Σ_r dy.
func linearBackward(_ dy: UnsafePointer<Float>, x: Tensor, weight: Tensor, bias: Tensor?, R: Int, I: Int, O: Int) {
    ck_linear_backward(x.gradTarget(), weight.gradTarget(), bias?.gradTarget() ?? ck_grad(), dy, x.data, weight.data,
                       Int64(R), Int64(I), Int64(O))
}

extension Tensor {
    /// `y = x · Wᵀ + b` over the last axis, with PyTorch's weight layout `W [out, in]`.
    /// x [..., in] → y [..., out].
    ///
    /// With `norm`, `y = norm(x) · Wᵀ + b` in one op: the same arithmetic as `x.layerNorm(…).linear(W, b)`
    /// (or BatchNorm), bit for bit, but the normalized rows are recomputed by the backward instead of
    /// kept (``RowNorm``). With `residual`, `residual + y` (a transformer block's skip connection): the
    /// same bits as adding the two tensors, without a product tensor that the graph keeps alive.
    public func linear(_ weight: Tensor, _ bias: Tensor? = nil, norm: RowNorm? = nil, residual: Tensor? = nil) -> Tensor {
        let input = ProductInput(source: self, norm: norm)
        precondition(weight.rank == 2 && rank >= 1 && shape.last == weight.shape[1],
                     "linear: input \(shape) does not match weight \(weight.shape) ([out, in])")
        let O = weight.shape[0], I = weight.shape[1], R = count / max(I, 1)
        if let bias { precondition(bias.shape == [O], "linear: bias \(bias.shape) for weight \(weight.shape)") }
        let out = Tensor(uninitialized: Array(shape.dropLast()) + [O])
        withExtendedLifetime(input.values(first: true)) { x in
            ck_linear_forward(out.data, nil, x.data, weight.data, bias?.data, Int64(R), Int64(I), Int64(O), 0)
        }
        addResidual(residual, to: out, rows: R, width: O)
        let inputs = (residual.map { [$0] } ?? []) + input.tensors + [weight] + (bias.map { [$0] } ?? [])
        return out.recorded(norm == nil ? "linear" : "normLinear", inputs) { g in
            // The residual may take g itself unless the product then writes its gradient while reading g
            // (the same tensor as the un-normalized input); a norm's backward writes after the product.
            if let residual {
                if norm == nil && residual === self { residual.receiveGradient(g) } else { residual.receiveGradient(takingOutputGradient: g) }
            }
            withExtendedLifetime(input.values()) { x in
                input.backward { dx in
                    ck_linear_backward(dx, weight.gradTarget(), bias?.gradTarget() ?? ck_grad(), g, x.data, weight.data,
                                       Int64(R), Int64(I), Int64(O))
                }
            }
        }
    }

    /// `gelu(x · Wᵀ + b)` in one op: the bias add and the activation are one pass, and only the
    /// pre-activation is saved (the MLP's first layer).
    public func linearGELU(_ weight: Tensor, _ bias: Tensor?) -> Tensor {
        let x = self
        precondition(weight.rank == 2 && x.shape.last == weight.shape[1],
                     "linearGELU: input \(x.shape) does not match weight \(weight.shape) ([out, in])")
        let O = weight.shape[0], I = weight.shape[1], R = x.count / max(I, 1)
        if let bias { precondition(bias.shape == [O], "linearGELU: bias \(bias.shape) for weight \(weight.shape)") }
        let outShape = Array(x.shape.dropLast()) + [O]
        let pre = Tensor(uninitialized: outShape), out = Tensor(uninitialized: outShape)
        ck_linear_forward(out.data, pre.data, x.data, weight.data, bias?.data, Int64(R), Int64(I), Int64(O), 1)
        let inputs = [x, weight] + (bias.map { [$0] } ?? [])
        return out.recorded("linearGELU", inputs) { g in
            let dpre = Tensor(uninitialized: outShape)   // written whole by the GELU backward
            ck_gelu_backward(ck_grad(data: dpre.data, accumulate: 0), g, pre.data, Int64(R * O))
            linearBackward(dpre.data, x: x, weight: weight, bias: bias, R: R, I: I, O: O)
        }
    }

    /// A transformer MLP in one op: `gelu(x · W1ᵀ + b1) · W2ᵀ + b2` with exact-erf GELU.
    /// x [..., in], W1 [hidden, in], W2 [out, hidden] → [..., out].
    ///
    /// The same arithmetic as `x.linearGELU(W1, b1).linear(W2, b2)`, bit for bit, but it keeps only the
    /// pre-activation for the backward: the hidden activation (4x the width of the block's stream)
    /// is freed after the forward and recomputed from the pre-activation by the backward, which
    /// needs it for fc2's weight gradient (measured: MAE vit-tiny's peak RSS 1047 → 917 MiB). With bf16
    /// products it never exists in fp32: the forward's fc2 product computes the GELU while it packs its
    /// operand, and the backward's first product writes it as bf16 values for the second
    /// (`ck_gelu_linear_forward`, `ck_gelu_linear_backward`). With `norm`, the MLP of `norm(x)`, whose rows are recomputed too
    /// (``RowNorm``); with `residual`, `residual + mlp(…)` as ``linear(_:_:norm:residual:)``.
    public func mlp(_ fc1Weight: Tensor, _ fc1Bias: Tensor?, _ fc2Weight: Tensor, _ fc2Bias: Tensor?, norm: RowNorm? = nil,
                    residual: Tensor? = nil) -> Tensor {
        let input = ProductInput(source: self, norm: norm), w1 = fc1Weight, w2 = fc2Weight
        precondition(w1.rank == 2 && w2.rank == 2 && rank >= 1 && shape.last == w1.shape[1] && w2.shape[1] == w1.shape[0],
                     "mlp: input \(shape), fc1 \(w1.shape) and fc2 \(w2.shape) do not chain ([hidden, in], [out, hidden])")
        let I = w1.shape[1], H = w1.shape[0], O = w2.shape[0], R = count / max(I, 1)
        if let fc1Bias { precondition(fc1Bias.shape == [H], "mlp: fc1 bias \(fc1Bias.shape) for weight \(w1.shape)") }
        if let fc2Bias { precondition(fc2Bias.shape == [O], "mlp: fc2 bias \(fc2Bias.shape) for weight \(w2.shape)") }
        let lead = Array(shape.dropLast())
        // Scratch for gelu(pre) where fc2's products read it from memory (fp32, or bf16 values in the backward).
        func scratch(backward: Bool) -> Tensor? {
            let floats = Int(ck_gelu_linear_scratch(backward ? 1 : 0, Int64(R), Int64(H)))
            return floats > 0 ? Tensor(uninitialized: [floats]) : nil
        }
        let pre = Tensor(uninitialized: lead + [H]), out = Tensor(uninitialized: lead + [O])
        withExtendedLifetime((input.values(first: true), scratch(backward: false))) { (x, hidden) in
            ck_linear_forward(pre.data, nil, x.data, w1.data, fc1Bias?.data, Int64(R), Int64(I), Int64(H), 0)
            ck_gelu_linear_forward(out.data, pre.data, hidden?.data, w2.data, fc2Bias?.data, Int64(R), Int64(H), Int64(O))
        }
        addResidual(residual, to: out, rows: R, width: O)
        let inputs = (residual.map { [$0] } ?? []) + input.tensors + [w1] + (fc1Bias.map { [$0] } ?? []) + [w2] + (fc2Bias.map { [$0] } ?? [])
        return out.recorded(norm == nil ? "mlp" : "normMLP", inputs) { g in
            // g is read by fc2's backward alone, before fc1's writes any input gradient: the residual may take it.
            residual?.receiveGradient(takingOutputGradient: g)
            let fc1NeedsGrad = input.needsGrad || w1.requiresGrad || (fc1Bias?.requiresGrad ?? false)
            // The pre-activation's gradient, written whole.
            let dPre = fc1NeedsGrad ? Tensor(uninitialized: lead + [H]) : nil
            withExtendedLifetime(w2.requiresGrad ? scratch(backward: true) : nil) { hidden in
                ck_gelu_linear_backward(ck_grad(data: dPre?.data, accumulate: 0), w2.gradTarget(), fc2Bias?.gradTarget() ?? ck_grad(), g, pre.data, hidden?.data,
                                        w2.data, Int64(R), Int64(H), Int64(O))
            }
            guard let dPre else { return }
            withExtendedLifetime(input.values()) { x in
                input.backward { dx in
                    ck_linear_backward(dx, w1.gradTarget(), fc1Bias?.gradTarget() ?? ck_grad(), dPre.data, x.data, w1.data,
                                       Int64(R), Int64(I), Int64(H))
                }
            }
        }
    }

    /// `out += residual` (a product's skip connection): `product + residual`, the bits of `residual + product`.
    private func addResidual(_ residual: Tensor?, to out: Tensor, rows R: Int, width O: Int) {
        guard let residual else { return }
        precondition(residual.shape == out.shape, "residual \(residual.shape) does not match the product's output \(out.shape)")
        ck_copy_rows(out.data, Int64(O), residual.data, Int64(O), Int64(R), Int64(O), 1)
    }

    /// Matrix product. `a [..., M, K] · b [K, N] → [..., M, N]`, or batched
    /// `a [Bt, M, K] · b [Bt, K, N] → [Bt, M, N]` when both have rank 3.
    public func matmul(_ other: Tensor) -> Tensor {
        let a = self, b = other
        if b.rank == 2 {
            precondition(a.rank >= 1 && a.shape.last == b.shape[0], "matmul: \(a.shape) · \(b.shape): inner dims differ")
            let K = b.shape[0], N = b.shape[1], M = a.count / max(K, 1)
            let out = Tensor(uninitialized: Array(a.shape.dropLast()) + [N])
            ck_sgemm(0, 0, Int64(M), Int64(N), Int64(K), 1, a.data, Int64(K), b.data, Int64(N), 0, out.data, Int64(N))
            return out.recorded("matmul", [a, b]) { g in
                if a.requiresGrad {
                    let da = a.gradTarget()
                    ck_sgemm(0, 1, Int64(M), Int64(K), Int64(N), 1, g, Int64(N), b.data, Int64(N), Float(da.accumulate), da.data, Int64(K))
                }
                if b.requiresGrad {
                    let db = b.gradTarget()
                    ck_sgemm(1, 0, Int64(K), Int64(N), Int64(M), 1, a.data, Int64(K), g, Int64(N), Float(db.accumulate), db.data, Int64(N))
                }
            }
        }
        precondition(a.rank == 3 && b.rank == 3 && a.shape[0] == b.shape[0] && a.shape[2] == b.shape[1],
                     "matmul: \(a.shape) · \(b.shape): expected [..., M, K]·[K, N] or [B, M, K]·[B, K, N]")
        let Bt = a.shape[0], M = a.shape[1], K = a.shape[2], N = b.shape[2]
        let out = Tensor(uninitialized: [Bt, M, N])
        for i in 0..<Bt {
            ck_sgemm(0, 0, Int64(M), Int64(N), Int64(K), 1, a.data + i * M * K, Int64(K), b.data + i * K * N, Int64(N),
                     0, out.data + i * M * N, Int64(N))
        }
        return out.recorded("bmm", [a, b]) { g in
            // One beta for all slices: every slice is written once, so a fresh buffer is overwritten whole.
            let da = a.gradTarget(), db = b.gradTarget()
            for i in 0..<Bt {
                if let d = da.data {
                    ck_sgemm(0, 1, Int64(M), Int64(K), Int64(N), 1, g + i * M * N, Int64(N), b.data + i * K * N, Int64(N),
                             Float(da.accumulate), d + i * M * K, Int64(K))
                }
                if let d = db.data {
                    ck_sgemm(1, 0, Int64(K), Int64(N), Int64(M), 1, a.data + i * M * K, Int64(K), g + i * M * N, Int64(N),
                             Float(db.accumulate), d + i * K * N, Int64(N))
                }
            }
        }
    }
}
