import TesseraEngine

/// A self-supervised pretraining method: turns a batch into a loss.
///
/// The ``Pretrainer`` owns everything else (data, optimizer, schedules, checkpoints, resume,
/// metrics, evaluation), so a method only defines its networks, its views/masking and its loss.
public protocol PretrainingMethod: AnyObject {
    /// The name used on the command line and in checkpoints (`mae`, `rcmae`, `msn`, `sim`).
    var methodName: String { get }
    /// The reported model, saved as `<tag>.safetensors` with official names (for RC-MAE, the teacher).
    var reportedModel: Module { get }
    /// The encoder whose frozen features are evaluated and exported.
    var evaluationEncoder: ViTEncoder { get }
    /// The parameters the optimizer updates.
    func optimizedParameters() -> [(name: String, tensor: Tensor)]
    /// The loss of one batch (builds the autograd graph) and named scalars to log.
    /// `rng` is seeded per step by the trainer (masking, extra views).
    func trainingLoss(_ batch: Batch, rng: inout TesseraRNG) -> (loss: Tensor, metrics: [(String, Float)])
    /// Called after every optimizer update with the run's progress and the optimizer's parameter
    /// arena (EMA teachers update from it).
    func afterUpdate(step: Int, totalSteps: Int, parameters: ParameterArena)
    /// Named tensors that are training state but not the reported model (the student of a
    /// teacher–student method, …), saved with the optimizer state for resume.
    func extraState() -> [(name: String, tensor: Tensor)]
    /// Whether an optimized tensor gets weight decay (default: not 1-D tensors and biases).
    func decays(_ name: String, _ t: Tensor) -> Bool
    /// The view kinds the loader renders per image, given the run's augmentation (default: one view).
    func viewAugmentations(base: Augmentation) -> [Augmentation]
}

extension PretrainingMethod {
    public func afterUpdate(step: Int, totalSteps: Int, parameters: ParameterArena) {}
    public func extraState() -> [(name: String, tensor: Tensor)] { [] }
    public func decays(_ name: String, _ t: Tensor) -> Bool { ParameterArena.defaultDecay(name, t) }
    public func viewAugmentations(base: Augmentation) -> [Augmentation] { [base] }
}

extension MaskedAutoencoder: PretrainingMethod {
    public var methodName: String { "mae" }
    public var reportedModel: Module { self }
    public var evaluationEncoder: ViTEncoder { encoder }
    public func optimizedParameters() -> [(name: String, tensor: Tensor)] { trainableParameters() }

    /// MAE: mask 75% of the patches per image, reconstruct them.
    public func trainingLoss(_ batch: Batch, rng: inout TesseraRNG) -> (loss: Tensor, metrics: [(String, Float)]) {
        let mask = randomMask(batch: batch.images.shape[0], rng: &rng)
        return (self(batch.images, mask: mask).loss, [])
    }
}

/// The method a configuration names, initialized from its seed.
public func makeMethod(_ config: PretrainConfig) -> any PretrainingMethod {
    var rng = TesseraRNG(seed: config.seed)
    switch config.method {
    case "rcmae": return RCMAE(config.mae, options: config.rcmae ?? RCMAEOptions(), rng: &rng)
    case "msn": return MSN(config.mae.encoder, options: config.msn ?? MSNOptions(), rng: &rng)
    case "sim": return SIM(config.mae.encoder, options: config.sim ?? SIMOptions(), rng: &rng)
    default: return MaskedAutoencoder(config.mae, rng: &rng)
    }
}
