import CKernels

extension Tensor {
    /// Fused multi-head self-attention on the packed output of one qkv Linear.
    ///
    /// `self` is `qkv [B, N, 3·H·D]` laid out as `[B, N, 3, H, D]` (timm's order); the result is
    /// `softmax(Q Kᵀ · scale) V` with heads concatenated, `[B, N, H·D]`. Only the output and one
    /// log-sum-exp per row are saved; the backward recomputes the probabilities.
    public func fusedAttention(heads H: Int, scale: Float? = nil) -> Tensor {
        let qkv = self
        precondition(rank == 3 && shape[2] % (3 * H) == 0 && H > 0,
                     "fusedAttention: qkv \(shape) is not [B, N, 3·H·D] for \(H) heads")
        let B = shape[0], N = shape[1], D = shape[2] / (3 * H)
        let s = scale ?? 1 / Float(D).squareRoot()
        let out = Tensor(uninitialized: [B, N, H * D]), lse = Tensor(uninitialized: [B, H, N])
        let perThread = Int(ck_attention_scratch_floats(Int64(N), Int64(D)))
        // The products' FLOPs, from the shapes: QKᵀ and PV forward, and with dP, dQ, dK, dV backward.
        let headProducts = UInt64(B * H * N) * UInt64(N * D)
        ck_attention_forward(out.data, lse.data, qkv.data, Scratch.floats(perThread * Runtime.threads),
                             Int64(B), Int64(N), Int64(H), Int64(D), s)
        ck_flop_counter_add(4 * headProducts)
        return out.recorded("fusedAttention", [qkv]) { g in
            ck_attention_backward(qkv.gradTarget(), g, qkv.data, lse.data, Scratch.floats(perThread * Runtime.threads),
                                  Int64(B), Int64(N), Int64(H), Int64(D), s)
            ck_flop_counter_add(10 * headProducts)
        }
    }
}
