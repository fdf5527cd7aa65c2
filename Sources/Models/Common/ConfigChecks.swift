import Foundation
import TesseraData
import TesseraEngine

/// The checks a ``PretrainConfig`` must pass before anything is built from it: every size, ratio and
/// rate inside the range the kernels and models handle, every divisibility a model's constructor
/// relies on. A configuration comes from the command line (where `tessera pretrain` checks each
/// option first, naming it) and from files (`config.json`, every checkpoint's metadata), which are
/// treated as hostile: ``PretrainConfig/decode(_:)`` runs these checks, so a damaged or crafted
/// checkpoint is one error instead of a trap in a constructor.
///
/// The limits are here once; the command line's early checks use the same ``ConfigLimits``.
public enum ConfigLimits {
    public static let imageSize = 1...4096
    public static let patchesPerImage = 1...4096
    public static let width = 4...4096
    public static let depth = 1...128
    public static let heads = 1...256
    public static let epochs = 1...1_000_000
    public static let batchSize = 1...(1 << 20)
    public static let accumSteps = 1...(1 << 16)
    public static let blr: ClosedRange<Double> = 0...10          // above 0
    public static let weightDecay: ClosedRange<Float> = 0...10
    public static let everyEpochs = 1...1_000_000
    public static let focalViews = 0...64
    public static let prototypes = 2...(1 << 20)
    public static let headHidden = 1...65536
}

/// A configuration that cannot train: a field out of range, sizes that do not fit together, or a saved
/// configuration (`config.json`, a checkpoint's metadata) that is not a valid one. One line naming the
/// field (and the option that sets it).
public struct ConfigError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The range checks every configuration passes (``PretrainConfig/validate()``, and each method's
/// ``PretrainingMethod/validateOptions(of:)``): each throws a ``ConfigError`` naming the field.
public enum ConfigRule {
    public static func need(_ ok: Bool, _ what: @autoclosure () -> String) throws {
        if !ok { throw ConfigError(what()) }
    }
    public static func int(_ name: String, _ v: Int, _ r: ClosedRange<Int>) throws {
        try need(r.contains(v), "\(name) must be \(r.lowerBound)…\(r.upperBound), got \(v)")
    }
    public static func real<T: BinaryFloatingPoint>(_ name: String, _ v: T, _ r: ClosedRange<T>, lowOpen: Bool = false,
                                                     highOpen: Bool = false) throws {
        let ok = v.isFinite && (lowOpen ? v > r.lowerBound : v >= r.lowerBound) && (highOpen ? v < r.upperBound : v <= r.upperBound)
        try need(ok, "\(name) must be in \(lowOpen ? "(" : "[")\(r.lowerBound), \(r.upperBound)\(highOpen ? ")" : "]"), got \(v)")
    }
    public static func range(_ name: String, _ v: ClosedRange<Float>, _ r: ClosedRange<Float>) throws {
        try need(v.lowerBound.isFinite && v.upperBound.isFinite && v.lowerBound > r.lowerBound && v.upperBound <= r.upperBound,
                 "\(name) must lie in (\(r.lowerBound), \(r.upperBound)], got \(v)")
    }
    public static func photometric(_ name: String, _ p: Photometric?) throws {
        guard let p else { return }
        for (field, v) in [("jitterProbability", p.jitterProbability), ("grayscaleProbability", p.grayscaleProbability),
                           ("blurProbability", p.blurProbability), ("solarizeProbability", p.solarizeProbability)] {
            try real("\(name).\(field)", v, 0...1)
        }
        for (field, v) in [("brightness", p.brightness), ("contrast", p.contrast), ("saturation", p.saturation)] {
            try real("\(name).\(field)", v, 0...10)
        }
        try real("\(name).hue", p.hue, 0...0.5)
        try range("\(name).blurSigma", p.blurSigma, 0...100)
    }
}

extension PretrainConfig {
    /// Throws a ``ConfigError`` naming the first field out of range (and the option that sets it).
    public func validate() throws {
        typealias R = ConfigRule
        func need(_ ok: Bool, _ what: @autoclosure () -> String) throws { try R.need(ok, what()) }
        func int(_ name: String, _ v: Int, _ r: ClosedRange<Int>) throws { try R.int(name, v, r) }
        func real<T: BinaryFloatingPoint>(_ name: String, _ v: T, _ r: ClosedRange<T>, lowOpen: Bool = false, highOpen: Bool = false) throws {
            try R.real(name, v, r, lowOpen: lowOpen, highOpen: highOpen)
        }
        func range(_ name: String, _ v: ClosedRange<Float>, _ r: ClosedRange<Float>) throws { try R.range(name, v, r) }
        func photometric(_ name: String, _ p: Photometric?) throws { try R.photometric(name, p) }

        // The encoder (--image-size, --patch-size, --channels, --dim, --depth, --heads).
        let e = encoder
        try int("encoder.imageSize (--image-size)", e.imageSize, ConfigLimits.imageSize)
        try int("encoder.patchSize (--patch-size)", e.patchSize, 1...e.imageSize)
        try need(e.imageSize % e.patchSize == 0, "image size \(e.imageSize) is not divisible by patch size \(e.patchSize); pass --patch-size with a divisor of \(e.imageSize) or --image-size")
        try need(ConfigLimits.patchesPerImage.contains(e.patches),
                 "image size \(e.imageSize) with patch size \(e.patchSize) makes \(e.patches) patches per image, more than \(ConfigLimits.patchesPerImage.upperBound); raise --patch-size")
        try need(e.channels == 1 || e.channels == 3, "encoder.channels (--channels) must be 1 or 3, got \(e.channels)")
        try int("encoder.depth (--depth)", e.depth, ConfigLimits.depth)
        try real("encoder.mlpRatio", e.mlpRatio, 0...64, lowOpen: true)
        try need(Int(Float(e.dim) * e.mlpRatio) >= 1, "encoder.mlpRatio \(e.mlpRatio) leaves no hidden unit")
        try real("encoder.layerNormEps", e.layerNormEps, 0...1, lowOpen: true)
        try int("encoder width (--dim)", e.dim, ConfigLimits.width)
        try int("encoder heads (--heads)", e.heads, ConfigLimits.heads)
        try need(e.dim % e.heads == 0 && e.dim % 4 == 0, "encoder width \(e.dim) must be a multiple of 4 and of its head count \(e.heads); adjust --dim/--heads")

        // Schedule and optimizer.
        try int("epochs (--epochs)", epochs, ConfigLimits.epochs)
        try real("warmupEpochs (--warmup-epochs)", warmupEpochs, 0...1_000_000)
        try int("batchSize (--batch-size)", batchSize, ConfigLimits.batchSize)
        try int("accumSteps (--accum)", accumSteps, ConfigLimits.accumSteps)
        try real("blr (--blr)", blr, ConfigLimits.blr, lowOpen: true)
        try real("weightDecay (--weight-decay)", weightDecay, ConfigLimits.weightDecay)
        if let weightDecayEnd { try real("weightDecayEnd", weightDecayEnd, ConfigLimits.weightDecay) }
        if let clipGrad { try real("clipGrad", clipGrad, 0...1e30, lowOpen: true) }
        try real("beta1", beta1, 0...1, highOpen: true)
        try real("beta2", beta2, 0...1, highOpen: true)
        try int("saveEvery (--save-every)", saveEvery, ConfigLimits.everyEpochs)
        try int("knnEvery (--knn-every)", knnEvery, 0...ConfigLimits.everyEpochs.upperBound)
        if let limit { try int("limit (--limit)", limit, 1...Int(Int32.max)) }
        try int("logEvery (--log-every)", logEvery, 1...Int(Int32.max))

        // Augmentation: the training view is the encoder's image size; one mean and std per channel.
        try need(augmentation.size == e.imageSize, "augmentation.size \(augmentation.size) differs from the image size \(e.imageSize)")
        try range("augmentation.scale (--min-scale)", augmentation.scale, 0...1)
        try range("augmentation.ratio", augmentation.ratio, 0...100)
        try need(augmentation.mean.count == e.channels && augmentation.std.count == e.channels,
                 "augmentation.mean and .std need \(e.channels) values, got \(augmentation.mean.count) and \(augmentation.std.count)")
        for m in augmentation.mean { try real("augmentation.mean", m, -1e6...1e6) }
        for s in augmentation.std { try real("augmentation.std", s, 0...1e6, lowOpen: true) }
        try photometric("augmentation.photometric", augmentation.photometric)

        // The method's own options (each method's file).
        try method.implementation.validateOptions(of: self)
    }
}
