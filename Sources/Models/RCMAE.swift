import Foundation
import TesseraData
import TesseraEngine

/// Options of RC-MAE (Lee et al., 2023): the consistency weight and the teacher's EMA momentum.
public struct RCMAEOptions: Codable, Equatable, Sendable {
    /// Weight γ of the reconstruction-consistency term.
    public var gamma: Float = 1
    /// Starting EMA momentum of the teacher.
    public var momentum: Double = 0.996
    /// `cosine`: momentum rises to 1 over the whole run on a half cosine (the paper's statement).
    /// `constant`: stays at `momentum` (what the released code effectively does: it indexes the
    /// schedule with the step inside the epoch).
    public var schedule: Schedule = .cosine

    public enum Schedule: String, Codable, Sendable, CaseIterable { case cosine, constant }

    public init(gamma: Float = 1, momentum: Double = 0.996, schedule: Schedule = .cosine) {
        self.gamma = gamma; self.momentum = momentum; self.schedule = schedule
    }

    /// Teacher momentum after `step` of `total` optimizer steps.
    public func momentum(step: Int, total: Int) -> Double {
        switch schedule {
        case .constant: return momentum
        case .cosine: return TesseraEngine.Schedule.cosine(progress: Double(step) / Double(max(total, 1)), from: momentum, to: 1)
        }
    }
}

/// RC-MAE: an MAE student plus an EMA teacher of the whole MAE (encoder and decoder). The teacher
/// sees the same batch with the same mask; the student is trained on
/// `MAE loss + γ · MSE(student prediction, teacher prediction)` over the removed patches.
/// The teacher is the reported model: it is what the checkpoint holds under MAE's names.
public final class RCMAE: PretrainingMethod {
    public static var kind: MethodKind { .rcmae }
    public static var reportsAutoencoder: Bool { true }
    /// RC-MAE trains with MAE's recipe (Lee et al., 2023, Appendix: the MAE hyper-parameters).
    public static var recipe: TrainingRecipe { MaskedAutoencoder.recipe }
    public static var title: String { "RC-MAE" }
    public static var recipeDefaults: String {
        let o = RCMAEOptions(), n = TrainingRecipe.number
        return MaskedAutoencoder.recipeDefaults + ", consistency weight \(n(Double(o.gamma))), teacher momentum \(n(o.momentum)) (\(o.schedule.rawValue))"
    }

    /// MAE's checks, then the teacher's options (``PretrainConfig/validate()``).
    public static func addDefaultOptions(to config: inout PretrainConfig, model: MAEConfig) {
        MaskedAutoencoder.addDefaultOptions(to: &config, model: model)
        config.rcmae = RCMAEOptions()
    }
    public static func maskRatio(of config: PretrainConfig) -> Float? { config.mae?.maskRatio }
    public static func validateOptions(of config: PretrainConfig) throws {
        try MaskedAutoencoder.validateOptions(of: config)
        guard let o = config.rcmae else { throw ConfigError("method rcmae without its rcmae options") }
        try ConfigRule.real("rcmae.gamma (--gamma)", o.gamma, 0...1000)
        try ConfigRule.real("rcmae.momentum (--teacher-momentum)", o.momentum, 0...1)
    }

    public let options: RCMAEOptions
    public let student: MaskedAutoencoder
    public let teacher: MaskedAutoencoder
    private let ema: EMATeacher

    public init(_ config: MAEConfig, options: RCMAEOptions = RCMAEOptions(), rng: inout TesseraRNG) {
        self.options = options
        student = MaskedAutoencoder(config, rng: &rng)
        var unused = TesseraRNG(seed: 0)
        teacher = MaskedAutoencoder(config, rng: &unused)
        ema = EMATeacher(teacher: teacher, student: student)   // identical start, never trained
        teacher.eval()
    }

    public convenience init(_ config: PretrainConfig, rng: inout TesseraRNG) {
        self.init(config.maeModel!, options: config.rcmae ?? RCMAEOptions(), rng: &rng)
    }

    public var reportedModel: Module { teacher }
    public var evaluationEncoder: ViTEncoder { teacher.encoder }
    public func optimizedParameters() -> [(name: String, tensor: Tensor)] { student.trainableParameters() }
    public func extraState() -> [(name: String, tensor: Tensor)] { student.stateDict().map { ("student." + $0.name, $0.tensor) } }
    public var partsSummary: String { student.partsSummary + ", EMA teacher" }

    public func trainingLoss(_ batch: Batch, rng: inout TesseraRNG) -> (loss: Tensor, metrics: [(String, Float)]) {
        let images = batch.images
        let mask = student.randomMask(for: batch, rng: &rng)
        let (maeLoss, studentPred) = student(images, mask: mask)
        let teacherPred = withNoGrad { teacher.decode(teacher.encode(images, mask: mask), mask: mask) }
        let consistency = MaskedAutoencoder.maskedPatchMSE(studentPred, teacherPred, mask: mask)
        let loss = maeLoss + consistency.scaled(by: options.gamma)
        return (loss, [("mae_loss", maeLoss.item), ("consistency", consistency.item)])
    }

    /// `teacher ← m·teacher + (1 − m)·student` over every trained tensor.
    public func afterUpdate(step: Int, totalSteps: Int) {
        ema.update(momentum: Float(options.momentum(step: step, total: totalSteps)))
    }
}
