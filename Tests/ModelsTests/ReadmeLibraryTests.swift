import Foundation
import TesseraData
import TesseraEngine
import TesseraModels
import TestSupport
import XCTest

/// docs/engine.md's library example (a pretraining run from Swift) with a small synthetic set in place of Fashion-MNIST and a tiny
/// encoder: it must compile, train with MSN's recipe, and write a checkpoint.
final class ReadmeLibraryTests: XCTestCase {
    func testReadmeLibraryExampleTrainsWithTheMethodsRecipe() throws {
        var rng = TesseraRNG(seed: 1)
        let n = 32
        let px = (0..<(n * 16 * 16)).map { _ in UInt8(rng.int(below: 256)) }
        let train = ImageSet(uniform: px, count: n, height: 16, width: 16, channels: 1, labels: nil)
        var mae = MAEConfig.named("vit-tiny")!
        mae.encoder.imageSize = 16; mae.encoder.patchSize = 4; mae.encoder.channels = 1; mae.encoder.depth = 1
        mae.encoder.dim = 32; mae.encoder.heads = 2
        let stats = try train.channelStatistics()
        var config = PretrainConfig(method: .msn, mae: mae,
                                    augmentation: Augmentation(size: 16, mean: stats.mean, std: stats.std))
        config.epochs = 1; config.batchSize = 16
        config.msn!.focalSize = 8; config.msn!.prototypes = 16; config.msn!.hiddenDim = 32
        XCTAssertEqual(config.recipe, MSN.recipe)
        let dir = NSTemporaryDirectory() + "tessera-readme-\(getpid())"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let trainer = try Pretrainer(config: config, method: config.method.make(config), train: train,
                                     evalSets: nil, runFolder: dir)
        trainer.logger.logLevel = .warning   // no progress lines in the test log
        try trainer.train()
        XCTAssertEqual(trainer.optimizer.beta2, 0.999)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/last.safetensors"))
    }
}
