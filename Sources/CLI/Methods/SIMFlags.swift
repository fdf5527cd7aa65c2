import ArgumentParser
import TesseraEngine
import TesseraModels

/// SIM's flags (``SIMOptions``): the normalization and UniGrad's weight; the shared mask ratio is its
/// block mask, the decoder's width and heads its projector's and predictor's, `--min-scale` its views'
/// crop scale.
struct SIMFlags: MethodFlags {
    static var kind: MethodKind { .sim }
    static var sharedFlags: Set<SharedFlag> { [.maskRatio, .teacherMomentum, .decoderDim, .decoderHeads] }

    @Option(help: "Normalization in projector and predictor blocks, batch (official) or layer (default \(SIMOptions().norm.rawValue)).")
    var simNorm: String?
    @Option(parsing: .unconditional, help: "UniGrad's weight on the correlation term, given at width 768 and scaled by 768 / width (default \(SIMOptions().negWeight)).")
    var negWeight: Float?

    var given: [String] { [("--sim-norm", simNorm != nil), ("--neg-weight", negWeight != nil)].filter(\.1).map(\.0) }

    func validate() throws {
        if let simNorm, NormKind(rawValue: simNorm) == nil { throw CLIError("--sim-norm must be batch or layer") }
        try Check.number("--neg-weight", negWeight, 0, 1000)
    }

    func apply(_ shared: SharedMethodFlags, minScale: Float?, to config: inout PretrainConfig) {
        var o = config.sim!
        o.decoderDim = shared.decoderDim ?? config.encoder.dim
        if let h = shared.decoderHeads { o.decoderHeads = h }
        if let simNorm { o.norm = NormKind(rawValue: simNorm)! }
        if let r = shared.maskRatio { o.maskRatio = r }
        if let minScale { o.cropScale = minScale...1 }
        if let negWeight { o.negWeight = negWeight }
        if let m = shared.teacherMomentum { o.momentum = m }
        config.sim = o
    }
}
