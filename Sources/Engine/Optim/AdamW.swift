import CKernels

/// AdamW with decoupled weight decay ([Loshchilov & Hutter, 2019](https://arxiv.org/abs/1711.05101)),
/// matching `torch.optim.AdamW`, as one fused pass over a ``ParameterArena``.
///
/// Weight decay applies to the arena's decay group only (by default every tensor except 1-D ones
/// and biases, as MAE's `add_weight_decay`).
public final class AdamW {
    public let arena: ParameterArena
    /// Learning rate; set it every step from a schedule.
    public var learningRate: Float
    public var beta1: Float, beta2: Float, eps: Float
    /// Decoupled weight decay coefficient (MAE: 0.05).
    public var weightDecay: Float
    /// Number of steps taken (the bias corrections use step + 1 on the next call).
    public private(set) var step: Int = 0
    /// First and second moment estimates, in arena order.
    public let m: Storage, v: Storage

    public init(_ parameters: [(name: String, tensor: Tensor)], learningRate: Float, betas: (Float, Float) = (0.9, 0.999),
                eps: Float = 1e-8, weightDecay: Float = 0.01,
                decay: (String, Tensor) -> Bool = ParameterArena.defaultDecay) {
        precondition(learningRate >= 0, "AdamW: learning rate must be >= 0, got \(learningRate)")
        precondition((0..<1).contains(betas.0) && (0..<1).contains(betas.1), "AdamW: betas must be in [0, 1), got \(betas)")
        arena = ParameterArena(parameters, decay: decay)
        self.learningRate = learningRate
        (beta1, beta2) = betas
        self.eps = eps
        self.weightDecay = weightDecay
        m = Storage(count: arena.count)
        v = Storage(count: arena.count)
    }

    /// Zeroes every gradient; call once per step before the forward pass.
    public func zeroGrad() { arena.zeroGrad() }

    /// Applies one update with the current gradients.
    public func update() {
        step += 1
        ck_adamw_step(arena.values.base, m.base, v.base, arena.gradients!.base, Int64(arena.count), Int64(arena.decayCount),
                      learningRate, beta1, beta2, eps, weightDecay, Int64(step))
    }

    /// Restores the step counter (checkpoint resume).
    public func restore(step: Int) { self.step = step }
}
