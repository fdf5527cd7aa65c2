import Foundation
import TesseraData
import TesseraEngine

/// Everything about a pretraining run except the model: saved as `config.json` in the run folder
/// and in every checkpoint's metadata.
///
/// ``init(method:mae:augmentation:)`` starts from the method's ``TrainingRecipe`` and default
/// options, so a configuration built in code trains with the same optimizer as `tessera pretrain
/// --method …` with no other options.
public struct PretrainConfig: Codable, Equatable, Sendable {
    public var method: MethodKind = .mae
    public var model = "vit-tiny"
    /// Encoder sizes (every method) and MAE's decoder, mask ratio and loss (`mae`, `rcmae`).
    public var mae: MAEConfig
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

    /// A configuration for `method` with its recipe (optimizer) and its default options.
    public init(method: MethodKind = .mae, mae: MAEConfig, augmentation: Augmentation) {
        self.method = method
        self.mae = mae
        self.augmentation = augmentation
        recipe = method.recipe
        method.implementation.addDefaultOptions(to: &self)
    }

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
        do { config = try JSONDecoder().decode(PretrainConfig.self, from: Data(text.utf8)) } catch {
            throw ConfigError("configuration is not a valid Tessera config (\(error))")
        }
        do { try config.validate() } catch let e as ConfigError {
            throw ConfigError("configuration is not a valid Tessera config (\(e.message))")
        }
        return config
    }
}
