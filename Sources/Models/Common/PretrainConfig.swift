import Foundation
import TesseraData
import TesseraEngine

/// Everything about a pretraining run except the model's weights: saved as `config.json` in the run
/// folder and in every checkpoint's metadata (format ``formatVersion``; ``decode(_:)`` reads every
/// earlier one too).
///
/// ``init(method:mae:augmentation:)`` starts from the method's ``TrainingRecipe`` and default
/// options, so a configuration built in code trains with the same optimizer as `tessera pretrain
/// --method …` with no other options.
public struct PretrainConfig: Codable, Equatable, Sendable {
    /// The layout of the saved configuration: 2 since 2026-12-07 (the encoder at the top, MAE's options
    /// only in MAE's and RC-MAE's); a file without it is version 1, whose `mae` held the encoder for
    /// every method.
    public var formatVersion = PretrainConfig.currentFormat
    public static let currentFormat = 2
    public var method: MethodKind = .mae
    public var model = "vit-tiny"
    /// The encoder's sizes (every method).
    public var encoder: ViTConfig
    /// MAE's decoder, mask ratio and target (methods `mae` and `rcmae`; nil for the others).
    public var mae: MAEOptions?
    /// RC-MAE's options (method `rcmae`).
    public var rcmae: RCMAEOptions?
    /// Training data (a `DataSource` spec) and the labeled sets used by probes.
    public var data = "fashion-mnist"
    public var evalData: String?
    public var epochs = 10
    public var warmupEpochs: Double = 1
    public var batchSize = 256
    public var accumSteps = 1
    /// Base learning rate; the actual rate is `blr · batchSize · accumSteps / 256`.
    public var blr: Double = 1.5e-4
    public var weightDecay: Float = 0.05
    /// If set, weight decay follows a cosine from `weightDecay` to this over the run (MSN: 0.04 → 0.4).
    public var weightDecayEnd: Float?
    /// If set, the global gradient norm is clipped to this before each update (MSN: 3).
    public var clipGrad: Float?
    /// MSN's options (method `msn`).
    public var msn: MSNOptions?
    /// SIM's options (method `sim`).
    public var sim: SIMOptions?
    public var beta1: Float = 0.9, beta2: Float = 0.95
    public var seed: UInt64 = 0
    public var augmentation: Augmentation
    /// Save a checkpoint every this many epochs (and always at the end).
    public var saveEvery = 1
    /// kNN accuracy on the eval set every this many epochs (0: never); keeps best.safetensors.
    public var knnEvery = 0
    /// Use only the first `limit` training images (quick runs, tests).
    public var limit: Int?
    public var logEvery = 20
    /// Decode every JPEG whole at full size (torchvision's way) instead of reduced in the DCT domain
    /// and cropped to what the views need (``Loader/reducedDecoding``); nil means false.
    public var fullDecode: Bool?
    /// The precision of the matrix products (nil, as in configurations written before it existed:
    /// fp32). bf16 rounds the products' operands to bf16 and sums in fp32; all else stays fp32.
    public var precision: Runtime.Precision?

    /// A configuration for `method` with its recipe (optimizer) and its default options, for a model of
    /// `mae`'s sizes: its encoder, and its decoder where the method has one (MAE, RC-MAE).
    public init(method: MethodKind = .mae, mae: MAEConfig, augmentation: Augmentation) {
        self.method = method
        self.encoder = mae.encoder
        self.augmentation = augmentation
        recipe = method.recipe
        method.implementation.addDefaultOptions(to: &self, model: mae)
    }

    /// The whole MAE (encoder and ``mae``) of a method that has one.
    public var maeModel: MAEConfig? { mae.map { MAEConfig(encoder: encoder, options: $0) } }

    /// The optimizer settings, as a recipe (setting it overwrites all of them).
    public var recipe: TrainingRecipe {
        get { TrainingRecipe(blr: blr, betas: (beta1, beta2), weightDecay: weightDecay, weightDecayEnd: weightDecayEnd, clipGrad: clipGrad) }
        set {
            blr = newValue.blr; (beta1, beta2) = newValue.betas; weightDecay = newValue.weightDecay
            weightDecayEnd = newValue.weightDecayEnd; clipGrad = newValue.clipGrad
        }
    }

    /// The fraction of patches the method masks (MAE and RC-MAE: `mae.maskRatio`, SIM: its option;
    /// nil for MSN, whose anchor masking is `msn.patchDrop`).
    public var maskRatio: Float? { method.implementation.maskRatio(of: self) }

    public var effectiveBatch: Int { batchSize * accumSteps }
    public var learningRate: Double { blr * Double(effectiveBatch) / 256 }

    public func json() -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try! enc.encode(self), as: UTF8.self)
    }

    /// Reads a saved configuration (`config.json`, a checkpoint's metadata) and checks it
    /// (``validate()``): a damaged or crafted one is an error, never a model built from it.
    public static func decode(_ text: String) throws -> PretrainConfig {
        let config: PretrainConfig
        do { config = try JSONDecoder().decode(PretrainConfig.self, from: upgraded(Data(text.utf8))) } catch let e as ConfigError {
            throw ConfigError("configuration is not a valid Tessera config (\(e.message))")
        } catch {
            throw ConfigError("configuration is not a valid Tessera config (\(error))")
        }
        do { try config.validate() } catch let e as ConfigError {
            throw ConfigError("configuration is not a valid Tessera config (\(e.message))")
        }
        return config
    }

    /// A saved configuration in the current layout: version 1 (no `formatVersion`: the encoder inside
    /// `mae`, which every method carried) has its encoder moved to the top and keeps `mae` only where
    /// the method is an MAE (``PretrainingMethod/reportsAutoencoder``); the current version is read as it
    /// is, and a newer one refused before its fields are read (they may not be this version's).
    static func upgraded(_ json: Data) throws -> Data {
        guard var object = try JSONSerialization.jsonObject(with: json) as? [String: Any] else { throw ConfigError("not a JSON object") }
        if let version = object["formatVersion"] {
            guard let v = version as? Int, v <= currentFormat else {
                throw ConfigError("configuration format \(version) is newer than this Tessera's (\(currentFormat)); update Tessera to read it")
            }
            return json
        }
        guard var mae = object["mae"] as? [String: Any], let encoder = mae["encoder"] else {
            throw ConfigError("a version 1 configuration needs mae.encoder")
        }
        mae["encoder"] = nil
        object["encoder"] = encoder
        let method = (object["method"] as? String).flatMap(MethodKind.init(rawValue:)) ?? .mae
        object["mae"] = method.reportsAutoencoder ? mae : nil
        object["formatVersion"] = currentFormat
        return try JSONSerialization.data(withJSONObject: object)
    }
}
