import ArgumentParser
import TesseraModels

/// MAE's flags: only shared ones (the mask ratio, the decoder, the norm-pix target), which set ``MAEConfig``.
struct MAEFlags: MethodFlags {
    static var kind: MethodKind { .mae }
    static var sharedFlags: Set<SharedFlag> { [.maskRatio, .decoderDim, .decoderDepth, .decoderHeads, .noNormPix] }
    static func refusalHint(_ flag: SharedFlag) -> String? { flag == .teacherMomentum ? "MAE has no teacher" : nil }
    var given: [String] { [] }

    func apply(_ shared: SharedMethodFlags, minScale: Float?, to config: inout PretrainConfig) {
        if let r = shared.maskRatio { config.mae!.maskRatio = r }
    }
}
