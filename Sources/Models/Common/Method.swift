import TesseraEngine

/// A self-supervised pretraining method: a module that turns a batch into a loss.
///
/// The ``Pretrainer`` owns everything else (data, optimizer, schedules, checkpoints, resume,
/// metrics, evaluation), so a method only defines its model, its views/masking and its loss.
public protocol PretrainingMethod: Module {
    /// The name used on the command line and in checkpoints (`mae`, `rcmae`, `msn`, `sim`).
    var methodName: String { get }
    /// The encoder whose frozen features are evaluated and exported.
    var evaluationEncoder: ViTEncoder { get }
    /// The loss of one batch (builds the autograd graph) and named scalars to log.
    /// `rng` is seeded per step by the trainer (masking, extra views).
    func trainingLoss(_ batch: Batch, rng: inout TesseraRNG) -> (loss: Tensor, metrics: [(String, Float)])
    /// Called after every optimizer update with the run's progress (EMA teachers update here).
    func afterUpdate(step: Int, totalSteps: Int)
    /// Named tensors that are training state but not model weights (EMA teacher, …), saved with the
    /// optimizer state for resume.
    func extraState() -> [(name: String, tensor: Tensor)]
}

extension PretrainingMethod {
    public func afterUpdate(step: Int, totalSteps: Int) {}
    public func extraState() -> [(name: String, tensor: Tensor)] { [] }
}

extension MaskedAutoencoder: PretrainingMethod {
    public var methodName: String { "mae" }
    public var evaluationEncoder: ViTEncoder { encoder }

    public func trainingLoss(_ batch: Batch, rng: inout TesseraRNG) -> (loss: Tensor, metrics: [(String, Float)]) {
        let mask = randomMask(batch: batch.images.shape[0], rng: &rng)
        return (self(batch.images, mask: mask).loss, [])
    }
}
