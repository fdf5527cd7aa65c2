import Foundation
import TesseraData
import TesseraEngine

/// The pretraining methods Tessera implements. The CLI's `--method` values, the `method` field of a
/// saved configuration and the factory all derive from this one list.
public enum MethodKind: String, Codable, CaseIterable, Sendable, CustomStringConvertible {
    case mae, rcmae, msn, sim

    /// The type that implements the method.
    public var implementation: any PretrainingMethod.Type {
        switch self {
        case .mae: return MaskedAutoencoder.self
        case .rcmae: return RCMAE.self
        case .msn: return MSN.self
        case .sim: return SIM.self
        }
    }

    /// The method's published optimization recipe (see each method's file).
    public var recipe: TrainingRecipe { implementation.recipe }

    /// The method's name in prose (``PretrainingMethod/title``).
    public var title: String { implementation.title }

    /// The method's recipe in one phrase, for help texts and docs: the optimizer (``TrainingRecipe/summary``)
    /// and the method's defaults beyond it (``PretrainingMethod/recipeDefaults``).
    public var recipeSummary: String {
        let extra = implementation.recipeDefaults
        return recipe.summary + (extra.isEmpty ? "" : ", " + extra)
    }

    /// Whether the method's model file holds a whole MAE (``PretrainingMethod/reportsAutoencoder``).
    public var reportsAutoencoder: Bool { implementation.reportsAutoencoder }

    /// The method a configuration names, initialized from the configuration's seed.
    public func make(_ config: PretrainConfig) -> any PretrainingMethod {
        var rng = TesseraRNG(seed: config.seed)
        return implementation.init(config, rng: &rng)
    }

    /// `mae, rcmae, msn or sim`, for messages.
    public static var choices: String {
        let names = allCases.map(\.rawValue)
        return names.dropLast().joined(separator: ", ") + " or " + names.last!
    }

    public var description: String { rawValue }
}

/// What a method's paper and released code prescribe for its optimizer: the defaults of a
/// ``PretrainConfig`` built for that method, which options on the command line override.
public struct TrainingRecipe: Equatable, Sendable {
    /// Base learning rate; the actual rate is `blr · effective batch / 256`.
    public var blr: Double
    /// AdamW's β₁ and β₂.
    public var betas: (Float, Float)
    /// Weight decay (not on biases and 1-D tensors).
    public var weightDecay: Float
    /// If set, weight decay follows a cosine from `weightDecay` to this over the run.
    public var weightDecayEnd: Float?
    /// If set, the global gradient norm is clipped to this before each update.
    public var clipGrad: Float?

    public init(blr: Double, betas: (Float, Float), weightDecay: Float, weightDecayEnd: Float? = nil, clipGrad: Float? = nil) {
        self.blr = blr; self.betas = betas; self.weightDecay = weightDecay
        self.weightDecayEnd = weightDecayEnd; self.clipGrad = clipGrad
    }

    /// `AdamW (0.9, 0.999), weight decay cosine 0.04 to 0.4, clipping 3, blr 0.001`: the recipe in one
    /// phrase (help texts and docs/cli.md's recipe table are made or checked from it).
    public var summary: String {
        let n = TrainingRecipe.number
        var parts = ["AdamW (\(n(Double(betas.0))), \(n(Double(betas.1))))"]
        parts.append(weightDecayEnd.map { "weight decay cosine \(n(Double(weightDecay))) to \(n(Double($0)))" } ?? "weight decay \(n(Double(weightDecay)))")
        if let clipGrad { parts.append("clipping \(n(Double(clipGrad)))") }
        parts.append("blr \(n(blr))")
        return parts.joined(separator: ", ")
    }

    /// A recipe number as people write it: `0.95`, `3`, `1.5e-4` (below 0.01: mantissa and exponent).
    public static func number(_ x: Double) -> String {
        guard x != 0, abs(x) < 0.01 else { return String(format: "%g", x) }
        let e = Int((log10(abs(x))).rounded(.down)), m = x / pow(10, Double(e))
        return String(format: "%ge%d", (m * 1e5).rounded() / 1e5, e)
    }

    public static func == (a: TrainingRecipe, b: TrainingRecipe) -> Bool {
        a.blr == b.blr && a.betas == b.betas && a.weightDecay == b.weightDecay && a.weightDecayEnd == b.weightDecayEnd
            && a.clipGrad == b.clipGrad
    }
}

/// A self-supervised pretraining method: turns a batch into a loss.
///
/// The ``Pretrainer`` owns everything else (data, optimizer, schedules, checkpoints, resume,
/// metrics, evaluation), so a method only defines its networks, its views/masking, its loss and
/// its ``recipe``.
public protocol PretrainingMethod: AnyObject {
    /// Which method this is (its name on the command line and in checkpoints).
    static var kind: MethodKind { get }
    /// The method's optimizer recipe: the defaults of a ``PretrainConfig`` for it.
    static var recipe: TrainingRecipe { get }
    /// The method's name in prose: `MAE`, `RC-MAE`, … (default: its kind's name in capitals).
    static var title: String { get }
    /// The method's defaults beyond the optimizer, in a phrase read from its options' defaults (`mask
    /// ratio 0.75, norm-pix loss`), for help texts; the default: none.
    static var recipeDefaults: String { get }
    /// Builds the method's networks from a configuration (sizes and the method's options).
    init(_ config: PretrainConfig, rng: inout TesseraRNG)
    /// The reported model, saved as `<tag>.safetensors` with official names (for RC-MAE, the teacher).
    var reportedModel: Module { get }
    /// The encoder whose frozen features are evaluated and exported.
    var evaluationEncoder: ViTEncoder { get }
    /// Whether the reported model is a whole ``MaskedAutoencoder`` (encoder and the decoder that
    /// reconstructs the pixels), so that its model file loads into one (default: false).
    static var reportsAutoencoder: Bool { get }
    /// Range checks of the method's own options in `config` (its part of ``PretrainConfig/validate()``),
    /// each a ``ConfigError`` naming the field and its option; the default checks nothing.
    static func validateOptions(of config: PretrainConfig) throws
    /// Puts the method's default options into a new configuration (``PretrainConfig/init(method:mae:augmentation:)``),
    /// given the model's sizes (`model`: the encoder's, already in `config`, and MAE's decoder's); the default adds none.
    static func addDefaultOptions(to config: inout PretrainConfig, model: MAEConfig)
    /// The fraction of patches the method masks in `config` (``PretrainConfig/maskRatio``); the default: none.
    static func maskRatio(of config: PretrainConfig) -> Float?
    /// The parameters the optimizer updates.
    func optimizedParameters() -> [(name: String, tensor: Tensor)]
    /// The loss of one batch (builds the autograd graph) and named scalars to log.
    /// `rng` is seeded per step by the trainer (masking, extra views).
    func trainingLoss(_ batch: Batch, rng: inout TesseraRNG) -> (loss: Tensor, metrics: [(String, Float)])
    /// Called after every optimizer update with the run's progress (EMA teachers update here).
    func afterUpdate(step: Int, totalSteps: Int)
    /// Named tensors that are training state but not the reported model (the student of a
    /// teacher–student method, …), saved with the optimizer state for resume.
    func extraState() -> [(name: String, tensor: Tensor)]
    /// Whether an optimized tensor gets weight decay (default: not 1-D tensors and biases).
    func decays(_ name: String, _ t: Tensor) -> Bool
    /// The view kinds the loader renders per image, given the run's augmentation (default: one view).
    func viewAugmentations(base: Augmentation) -> [Augmentation]
    /// A one-line summary of the method's parts beyond the encoder, for the run's header.
    var partsSummary: String { get }
    /// Makes the method's batch statistics (BatchNorm, Sinkhorn, ME-MAX, UniGrad's correlation,
    /// monitors) cover the global batch of `comm`'s processes; called once by the trainer. The
    /// default (MAE, RC-MAE: no batch statistics) does nothing.
    func distribute(over comm: any Communicator)
}

extension PretrainingMethod {
    /// The method's name on the command line and in checkpoints.
    public var methodName: String { Self.kind.rawValue }
    public static var reportsAutoencoder: Bool { false }
    public static var title: String { kind.rawValue.uppercased() }
    public static var recipeDefaults: String { "" }
    public static func validateOptions(of config: PretrainConfig) throws {}
    public static func addDefaultOptions(to config: inout PretrainConfig, model: MAEConfig) {}
    public static func maskRatio(of config: PretrainConfig) -> Float? { nil }
    public func afterUpdate(step: Int, totalSteps: Int) {}
    public func extraState() -> [(name: String, tensor: Tensor)] { [] }
    public func decays(_ name: String, _ t: Tensor) -> Bool { ParameterArena.defaultDecay(name, t) }
    public func viewAugmentations(base: Augmentation) -> [Augmentation] { [base] }
    public func distribute(over comm: any Communicator) {}
}

/// An exponential-moving-average copy of a network (the teacher or target of RC-MAE, MSN and SIM).
///
/// At creation the teacher takes every tensor of the student's state (parameters and buffers) and
/// is frozen; ``update(momentum:)`` then moves each tracked parameter toward the student's:
/// `teacher ← m·teacher + (1 − m)·student`. The teacher must have the student's module tree.
public struct EMATeacher {
    /// (teacher, student) parameter pairs that the update moves.
    public let pairs: [(teacher: Tensor, student: Tensor)]

    /// - Parameters:
    ///   - teacher: a module with the student's structure; its state is overwritten and frozen.
    ///   - student: the trained network.
    ///   - frozenToo: also average the student's frozen parameters (the official SIM code's momentum
    ///     update runs over every parameter; MSN's and RC-MAE's over the trained ones).
    public init(teacher: Module, student: Module, frozenToo: Bool = false) {
        let t = teacher.stateDict(), s = student.stateDict()
        precondition(t.count == s.count && zip(t, s).allSatisfy { $0.name == $1.name && $0.tensor.shape == $1.tensor.shape },
                     "EMATeacher: teacher and student have different structures")
        for (a, b) in zip(t, s) {
            a.tensor.copy(from: b.tensor)
            a.tensor.requiresGrad = false
        }
        pairs = zip(teacher.namedParameters(), student.namedParameters())
            .filter { frozenToo || $0.1.tensor.requiresGrad }
            .map { ($0.0.tensor, $0.1.tensor) }
    }

    /// `teacher ← m·teacher + (1 − m)·student` over every tracked parameter.
    public func update(momentum m: Float) {
        for (t, s) in pairs { emaUpdate(t, from: s, momentum: m) }
    }
}
