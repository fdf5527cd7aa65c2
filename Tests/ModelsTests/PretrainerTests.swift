import Foundation
import TesseraData
import TesseraEngine
import TesseraModels
import TestSupport
import XCTest

/// The training loop: resume reproduces the uninterrupted run bit for bit; checkpoints load in a
/// fresh model; the loss goes down on real data.
final class PretrainerTests: XCTestCase {
    func tinyConfig(epochs: Int) -> PretrainConfig {
        let mae = MAEConfig(encoder: ViTConfig(imageSize: 16, patchSize: 4, channels: 1, dim: 32, depth: 2, heads: 2),
                            decoderDim: 16, decoderDepth: 1, decoderHeads: 2)
        var c = PretrainConfig(mae: mae, augmentation: Augmentation(size: 16, mean: [0.5], std: [0.25]))
        c.epochs = epochs
        c.warmupEpochs = 1
        c.batchSize = 8
        c.blr = 1e-2
        c.logEvery = 1000
        return c
    }

    func syntheticSet(_ n: Int) -> ImageSet {
        var rng = TesseraRNG(seed: 42)
        let px = (0..<(n * 20 * 20)).map { i -> UInt8 in UInt8(truncatingIfNeeded: (i % 20) * 12 + rng.int(below: 16)) }
        return ImageSet(uniform: px, count: n, height: 20, width: 20, channels: 1, labels: (0..<n).map { $0 % 3 })
    }

    func tempDir(_ name: String) -> String {
        let d = NSTemporaryDirectory() + "tessera-\(name)-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: d) }
        return d
    }

    func makeTrainer(_ config: PretrainConfig, _ set: ImageSet, _ dir: String) throws -> Pretrainer {
        let t = try Pretrainer(config: config, method: config.method.make(config), train: set, evalSets: nil, runFolder: dir)
        t.logger.logLevel = .warning
        return t
    }

    func weights(_ t: Pretrainer) -> [Float] {
        Array(UnsafeBufferPointer(start: t.optimizer.arena.values.base, count: t.optimizer.arena.count))
    }

    func testResumeAfterAnEpochReproducesTheUninterruptedRunBitForBit() throws {
        let set = syntheticSet(40)
        let straight = try makeTrainer(tinyConfig(epochs: 3), set, tempDir("straight"))
        try straight.train()

        let dir = tempDir("resumed")
        let first = try makeTrainer(tinyConfig(epochs: 3), set, dir)
        try first.train(stopAfter: 1)
        let second = try makeTrainer(tinyConfig(epochs: 3), set, dir)
        try second.resume()
        XCTAssertEqual(second.epoch, 1)
        XCTAssertEqual(second.step, 5)
        try second.train()
        XCTAssertEqual(second.step, straight.step)
        assertBitIdentical(weights(second), weights(straight), "weights after resume")
        assertBitIdentical(Array(UnsafeBufferPointer(start: second.optimizer.v.base, count: second.optimizer.arena.count)),
                           Array(UnsafeBufferPointer(start: straight.optimizer.v.base, count: straight.optimizer.arena.count)), "second moments")

        // The saved model loads strictly into a fresh model; the encoder file has only encoder names.
        let run = RunFolder(dir)
        let file = try SafeTensors.read(run.model("last"))
        XCTAssertEqual(file.metadata["format"], "pt")
        XCTAssertEqual(file.metadata["method"], "mae")
        XCTAssertEqual(file.metadata["epoch"], "3")
        XCTAssertEqual(try SafeTensors.read(run.trainState("last")).metadata["step"], "15")
        var rng = TesseraRNG(seed: 9)
        let fresh = MaskedAutoencoder(tinyConfig(epochs: 3).maeModel!, rng: &rng)
        try loadWeights(file, into: fresh)
        XCTAssertEqual(fresh.decoderPred.weight.array, (second.method.reportedModel as! MaskedAutoencoder).decoderPred.weight.array)
        let enc = try SafeTensors.read(run.encoder("last"))
        XCTAssertTrue(enc.tensors.allSatisfy { !$0.name.hasPrefix("decoder") && $0.name != "mask_token" })
        XCTAssertNotNil(enc["blocks.1.mlp.fc2.weight"])
        // A different configuration is refused on resume.
        var other = tinyConfig(epochs: 3)
        other.blr = 2e-2
        let mismatched = try makeTrainer(other, set, dir)
        XCTAssertThrowsError(try mismatched.resume()) { XCTAssertTrue("\($0)".contains("different configuration")) }
    }

    func testRCMAEResumeIsBitExactAndTheTeacherIsTheReportedModel() throws {
        let set = syntheticSet(40)
        var c = tinyConfig(epochs: 3)
        c.method = .rcmae
        c.rcmae = RCMAEOptions(momentum: 0.9)
        let straight = try makeTrainer(c, set, tempDir("rc-straight"))
        try straight.train()
        let dir = tempDir("rc-resumed")
        try makeTrainer(c, set, dir).train(stopAfter: 1)
        let second = try makeTrainer(c, set, dir)
        try second.resume()
        try second.train()
        assertBitIdentical(weights(second), weights(straight), "student after resume")
        let t1 = (second.method as! RCMAE).teacher.stateDict().flatMap { $0.tensor.array }
        let t2 = (straight.method as! RCMAE).teacher.stateDict().flatMap { $0.tensor.array }
        assertBitIdentical(t1, t2, "teacher after resume")
        // The checkpoint holds the teacher under MAE's names; the student differs from it.
        let file = try SafeTensors.read(RunFolder(dir).model("last"))
        XCTAssertEqual(file["decoder_pred.weight"]?.floats(), (second.method as! RCMAE).teacher.decoderPred.weight.array)
        XCTAssertNotEqual(file["decoder_pred.weight"]?.floats(), (second.method as! RCMAE).student.decoderPred.weight.array)
        XCTAssertEqual(file.metadata["method"], "rcmae")
    }

    func testSameSeedSameBitsAndLossDecreases() throws {
        let set = syntheticSet(64)
        var c = tinyConfig(epochs: 6)
        c.blr = 3e-2
        let a = try makeTrainer(c, set, tempDir("a")), b = try makeTrainer(c, set, tempDir("b"))
        try a.train()
        try b.train()
        assertBitIdentical(weights(a), weights(b), "same seed")
        let csv = try String(contentsOfFile: RunFolder(a.run.path).metricsCSV, encoding: .utf8)
        let epochLosses = csv.split(separator: "\n").filter { $0.hasPrefix("epoch,") }.map { Double($0.split(separator: ",")[3])! }
        XCTAssertEqual(epochLosses.count, 6)
        XCTAssertLessThan(epochLosses.last!, epochLosses.first! * 0.95, "loss did not decrease: \(epochLosses)")
    }

    /// MAE whose loss turns NaN in its second epoch.
    final class FailsInSecondEpoch: PretrainingMethod {
        static var kind: MethodKind { .mae }
        static var recipe: TrainingRecipe { MaskedAutoencoder.recipe }
        let mae: MaskedAutoencoder
        init(_ config: PretrainConfig, rng: inout TesseraRNG) { mae = MaskedAutoencoder(config.maeModel!, rng: &rng) }
        var partsSummary: String { mae.partsSummary }
        var reportedModel: Module { mae }
        var evaluationEncoder: ViTEncoder { mae.encoder }
        func optimizedParameters() -> [(name: String, tensor: Tensor)] { mae.trainableParameters() }
        func trainingLoss(_ batch: Batch, rng: inout TesseraRNG) -> (loss: Tensor, metrics: [(String, Float)]) {
            let l = mae.trainingLoss(batch, rng: &rng).loss
            return (batch.epoch == 1 ? l.scaled(by: .nan) : l, [])
        }
    }

    func testNonFiniteLossStopsAndNamesTheLastGoodCheckpoint() throws {
        let c = tinyConfig(epochs: 3)
        var rng = TesseraRNG(seed: 0)
        let dir = tempDir("nan")
        let t = try Pretrainer(config: c, method: FailsInSecondEpoch(c, rng: &rng), train: syntheticSet(40), evalSets: nil, runFolder: dir)
        t.logger.logLevel = .warning
        XCTAssertThrowsError(try t.train()) { e in
            let m = "\(e)"
            XCTAssertTrue(m.contains("loss is nan at epoch 2 step 6"), m)
            XCTAssertTrue(m.contains(RunFolder(dir).model("last")), m)
        }
        // The epoch-1 checkpoint is intact.
        XCTAssertEqual(try SafeTensors.read(RunFolder(dir).model("last")).metadata["epoch"], "1")
    }

    func testGradientAccumulationTakesOneStepPerAccumulatedBatch() throws {
        var c = tinyConfig(epochs: 1)
        c.batchSize = 4
        c.accumSteps = 2
        let t = try makeTrainer(c, syntheticSet(40), tempDir("accum"))
        XCTAssertEqual(c.effectiveBatch, 8)
        XCTAssertEqual(c.learningRate, c.blr * 8 / 256, accuracy: 1e-15)
        try t.train()
        XCTAssertEqual(t.step, 5)             // 10 micro-batches of 4 → 5 updates
        XCTAssertEqual(t.optimizer.step, 5)
    }
}

/// metrics.jsonl's records: valid JSON whatever a name or a text holds (quotes, control characters,
/// non-ASCII), non-finite numbers as null, the same record the same line.
final class MetricsRecordTests: XCTestCase {
    func testRecordsAreValidJSONWhateverTheyHold() throws {
        let hostile = "runs/a\"b\\c\u{7}\n\u{1F600}/data"
        let record = MetricsRecord(kind: "eval", fields: [("data", .text(hostile)), ("epoch", .integer(3)), ("knn", .number(0.5)),
                                                          ("loss", .number(.nan)), ("lr", .number(-.infinity)), ("fewshot_1", .numbers([0.25, .nan])),
                                                          ("held_out", .flag(false)), ("missing", .null)]
                                   + MetricsRecord.numbers([("np \"x\"", 2), ("max_t", 0.125)]))
        let line = try record.jsonLine()
        XCTAssertFalse(line.contains("\n"), line)
        XCTAssertEqual(try record.jsonLine(), line)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        XCTAssertEqual(object["kind"] as? String, "eval")
        XCTAssertEqual(object["data"] as? String, hostile)
        XCTAssertEqual(object["epoch"] as? Int, 3)
        XCTAssertEqual(object["knn"] as? Double, 0.5)
        XCTAssertTrue(object["loss"] is NSNull && object["lr"] is NSNull && object["missing"] is NSNull)
        XCTAssertEqual((object["fewshot_1"] as? [Any])?.count, 2)
        XCTAssertTrue((object["fewshot_1"] as? [Any])?.last is NSNull)
        XCTAssertEqual(object["held_out"] as? Bool, false)
        XCTAssertEqual(object["np \"x\""] as? Double, 2)
        XCTAssertEqual(object["max_t"] as? Double, 0.125)
    }
}
