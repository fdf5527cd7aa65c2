import Foundation
import TesseraData
import TesseraEngine
@testable import TesseraModels
import XCTest

/// A configuration read from a file (config.json, a checkpoint's metadata) is checked before
/// anything is built from it: each damaged field is one line naming it, never a trap in a constructor.
final class ConfigCheckTests: XCTestCase {
    func valid(_ method: MethodKind) -> PretrainConfig {
        var mae = MAEConfig.named("vit-tiny")!
        mae.encoder.imageSize = 28; mae.encoder.patchSize = 4; mae.encoder.channels = 1
        return PretrainConfig(method: method, mae: mae, augmentation: Augmentation(size: 28, mean: [0.29], std: [0.35]))
    }

    func testEveryMethodsDefaultsAreValidAndRoundTrip() throws {
        for m in MethodKind.allCases {
            let c = valid(m)
            XCTAssertNoThrow(try c.validate(), "\(m)")
            XCTAssertEqual(try PretrainConfig.decode(c.json()), c)
        }
    }

    /// The seeds the config fuzzer starts from (Tools/fuzz/seeds) are configurations `tessera pretrain` wrote:
    /// one per method in the current format and in format 1 (`config_v1_*`).
    func testFuzzSeedsDecode() throws {
        let seeds = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Tools/fuzz/seeds").standardized
        let files = try FileManager.default.contentsOfDirectory(atPath: seeds.path).filter { $0.hasPrefix("config_") }
        XCTAssertEqual(files.count, 8)
        XCTAssertEqual(files.filter { $0.hasPrefix("config_v1_") }.count, 4)
        for f in files { XCTAssertNoThrow(try PretrainConfig.decode(String(contentsOf: seeds.appendingPathComponent(f), encoding: .utf8)), f) }
    }

    func testDamagedFieldsAreOneLineErrors() throws {
        let cases: [(MethodKind, String, (inout PretrainConfig) -> Void)] = [
            (.mae, "encoder.patchSize (--patch-size) must be 1…28, got 0", { $0.encoder.patchSize = 0 }),
            (.mae, "not divisible by patch size 5", { $0.encoder.patchSize = 5 }),
            (.mae, "patches per image", { $0.encoder.imageSize = 4096; $0.encoder.patchSize = 1; $0.augmentation.size = 4096 }),
            (.mae, "channels", { $0.encoder.channels = 2 }),
            (.mae, "encoder.depth", { $0.encoder.depth = 0 }),
            (.mae, "encoder width 190", { $0.encoder.dim = 190 }),
            (.mae, "encoder heads", { $0.encoder.heads = 0 }),
            (.mae, "decoder width 128 must be a multiple of 4 and of its head count 3", { $0.mae!.decoderHeads = 3 }),
            (.mae, "mlpRatio", { $0.encoder.mlpRatio = -1 }),
            (.mae, "layerNormEps", { $0.encoder.layerNormEps = .nan }),
            (.mae, "mask-ratio", { $0.mae!.maskRatio = 1 }),
            (.mae, "keeps no patch", { $0.mae!.maskRatio = 0.999 }),
            (.mae, "epochs", { $0.epochs = 0 }),
            (.mae, "batchSize", { $0.batchSize = -4 }),
            (.mae, "blr", { $0.blr = 0 }),
            (.mae, "weightDecay", { $0.weightDecay = .infinity }),
            (.mae, "beta2", { $0.beta2 = 1 }),
            (.mae, "clipGrad", { $0.clipGrad = -1 }),
            (.mae, "logEvery", { $0.logEvery = 0 }),
            (.mae, "augmentation.size", { $0.augmentation.size = 32 }),
            (.mae, "augmentation.std", { $0.augmentation.std = [0] }),
            (.mae, "need 1 values", { $0.augmentation.mean = [0.1, 0.2, 0.3] }),
            (.rcmae, "rcmae.gamma", { $0.rcmae!.gamma = .nan }),
            (.rcmae, "without its rcmae options", { $0.rcmae = nil }),
            (.msn, "--focal-size 10 must be a positive multiple", { $0.msn!.focalSize = 10 }),
            (.msn, "msn.prototypes", { $0.msn!.prototypes = 1 }),
            (.msn, "msn.temperature", { $0.msn!.temperature = 0 }),
            (.msn, "msn.photometric.hue", { $0.msn!.photometric!.hue = 2 }),
            (.sim, "SIM width 192 must be a multiple of 4 and of --decoder-heads 5", { $0.sim!.decoderHeads = 5 }),
            (.sim, "sim.predictorDepth", { $0.sim!.predictorDepth = 0 }),
            (.sim, "keeps no patch", { $0.sim!.maskRatio = 0.999 }),
        ]
        for (method, mentions, damage) in cases {
            var c = valid(method)
            damage(&c)
            XCTAssertThrowsError(try c.validate(), mentions) { error in
                let m = "\(error)"
                XCTAssertTrue(m.contains(mentions), "'\(mentions)' not in: \(m)")
                XCTAssertFalse(m.contains("\n"), m)
            }
            // Through JSON, as read from a file (NaN and infinity cannot be written in JSON at all).
            if let text = try? JSONEncoder().encode(c) {
                XCTAssertThrowsError(try PretrainConfig.decode(String(decoding: text, as: UTF8.self)), mentions) { error in
                    XCTAssertTrue("\(error)".hasPrefix("configuration is not a valid Tessera config ("), "\(error)")
                }
            }
        }
    }
}
