import Foundation
import TesseraEngine

/// A checkpoint read back that cannot be used: not written by Tessera, or its configuration does not
/// describe its tensors. One line naming the file and the problem.
public struct CheckpointError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A checkpoint written by `tessera pretrain` (or ``Pretrainer``), read back from Swift: the model
/// file of any method (`last.safetensors`, `epoch-N.safetensors`) or an encoder-only file
/// (`last.encoder.safetensors`).
///
/// It holds the run's configuration and the trained encoder — the one the method reports: MAE's
/// encoder, RC-MAE's and MSN's EMA teacher, SIM's online encoder — and, for a full MAE or RC-MAE file,
/// the whole autoencoder (reconstructions). Features of a dataset are then what `tessera embed` writes:
///
/// ```swift
/// let checkpoint = try Checkpoint(contentsOf: "runs/msn/last.safetensors")
/// let splits = try EvaluationSplits.load("fashion-mnist", channels: checkpoint.config.encoder.channels)
/// let features = try checkpoint.encoder.features(of: splits.test, augmentation: checkpoint.config.augmentation)
/// ```
///
/// The file is read as hostile: its configuration must describe its tensors (shapes and depths)
/// before any model is built, so a damaged or edited file is an error, not a huge allocation.
public struct Checkpoint {
    /// The file read.
    public let path: String
    /// The file's metadata (`config`, `epoch`, `step`, …).
    public let metadata: [String: String]
    /// The configuration the run trained with.
    public let config: PretrainConfig
    /// The trained encoder, in evaluation mode.
    public let encoder: ViTEncoder
    /// The whole MAE (encoder and decoder) when the file holds one: MAE and RC-MAE model files.
    public let autoencoder: MaskedAutoencoder?
    /// The first tensor holding NaN or an infinity, if any (a diverged run's checkpoint): whatever is
    /// computed from it means nothing.
    public let nonFiniteTensor: String?

    /// Reads a checkpoint and builds its models.
    public init(contentsOf path: String) throws {
        self.path = path
        let file = try SafeTensors.read(path)
        metadata = file.metadata
        guard let text = file.metadata["config"] else {
            throw CheckpointError("\(path): no Tessera configuration in the metadata; only checkpoints written by 'tessera pretrain' can be read")
        }
        config = try PretrainConfig.decode(text)
        // The configuration sizes the models built below: it must describe these tensors before
        // anything is allocated (a small file claiming a huge model is one line, not an OOM kill).
        let autoencoderModel = config.method.reportsAutoencoder && file["decoder_pred.weight"] != nil ? config.maeModel : nil
        let holdsAutoencoder = autoencoderModel != nil
        try Self.checkShapes(file, config, autoencoder: holdsAutoencoder, path: path)
        var rng = TesseraRNG(seed: 0)
        if holdsAutoencoder {
            let m = MaskedAutoencoder(autoencoderModel!, rng: &rng)
            try loadWeights(file, into: m)
            autoencoder = m
            encoder = m.encoder
        } else {
            // An encoder-only file, or the encoder part of a method's model file (MSN: + fc.*, prototypes;
            // SIM: + projector and predictor). Every encoder tensor must be there (a strict load).
            let e = ViTEncoder(config.encoder, rng: &rng)
            let names = Set(e.stateDict().map(\.name))
            try loadWeights(SafeTensors.File(tensors: file.tensors.filter { names.contains($0.name) }, metadata: file.metadata), into: e)
            autoencoder = nil
            encoder = e
        }
        encoder.eval()
        // Scanned in the loaded model, where the values already are (no copy of the file's tensors).
        let loaded: Module = autoencoder ?? encoder
        nonFiniteTensor = loaded.stateDict().first { t in
            UnsafeBufferPointer(start: t.tensor.data, count: t.tensor.count).contains { !$0.isFinite }
        }?.name
    }

    /// Throws unless the tensors that fix the encoder's (and, for a full autoencoder, the decoder's)
    /// sizes have the shapes `config` gives them, and the stacks have the depth it says.
    static func checkShapes(_ file: SafeTensors.File, _ config: PretrainConfig, autoencoder: Bool, path: String) throws {
        let e = config.encoder, L = e.patches, p = e.patchSize, C = e.channels
        func mismatch(_ what: String) -> CheckpointError {
            CheckpointError("\(path): its configuration does not match its tensors (\(what)); the file is damaged or was edited")
        }
        func need(_ name: String, _ shape: [Int]) throws {
            let found = file[name]?.shape
            guard found == shape else {
                throw mismatch("\(name) is \(found.map { "\($0)" } ?? "missing"), the configuration makes it \(shape)")
            }
        }
        func stack(_ prefix: String, depth: Int, dim: Int) throws {
            try need("\(prefix).\(depth - 1).mlp.fc1.weight", [Int(Float(dim) * e.mlpRatio), dim])
            if let extra = file.tensors.first(where: { $0.name.hasPrefix("\(prefix).\(depth).") }) {
                throw mismatch("\(extra.name) is beyond the configured depth \(depth)")
            }
        }
        try need("patch_embed.proj.weight", [e.dim, C, p, p])
        try need("pos_embed", [1, L + 1, e.dim])
        try stack("blocks", depth: e.depth, dim: e.dim)
        if autoencoder, let m = config.mae {
            try need("decoder_pos_embed", [1, L + 1, m.decoderDim])
            try need("decoder_pred.weight", [p * p * C, m.decoderDim])
            try stack("decoder_blocks", depth: m.decoderDepth, dim: m.decoderDim)
        }
    }
}
