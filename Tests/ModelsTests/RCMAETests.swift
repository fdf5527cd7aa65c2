import TesseraData
import TesseraEngine
import TesseraModels
import TestSupport
import XCTest

final class RCMAETests: XCTestCase {
    let config = MAEConfig(encoder: ViTConfig(imageSize: 16, patchSize: 4, channels: 1, dim: 32, depth: 1, heads: 2),
                           decoderDim: 16, decoderDepth: 1, decoderHeads: 2)

    func batch(_ seed: UInt64) -> Batch {
        var rng = TesseraRNG(seed: seed)
        return Batch(images: Tensor.randn([4, 1, 16, 16], rng: &rng), labels: nil, indices: [0, 1, 2, 3], views: [], epoch: 0, step: 0)
    }

    func testLossIsMAEPlusGammaConsistencyOverRemovedPatches() {
        var rng = TesseraRNG(seed: 1)
        let rc = RCMAE(config, options: RCMAEOptions(gamma: 0.5), rng: &rng)
        // Identical start: the consistency term is zero and the loss is the student's MAE loss.
        var r1 = TesseraRNG(seed: 7)
        let (loss0, m0) = rc.trainingLoss(batch(3), rng: &r1)
        XCTAssertEqual(m0.first { $0.0 == "consistency" }!.1, 0)
        XCTAssertEqual(loss0.item, m0.first { $0.0 == "mae_loss" }!.1)
        // Perturb the teacher: loss = MAE + γ · masked MSE(student, teacher), same mask for both.
        rc.teacher.decoderPred.bias!.fill(0.3)
        var r2 = TesseraRNG(seed: 7)
        let (loss, metrics) = rc.trainingLoss(batch(3), rng: &r2)
        var r3 = TesseraRNG(seed: 7)
        let mask = rc.student.randomMask(batch: 4, rng: &r3)
        let (mae, sp) = rc.student(batch(3).images, mask: mask)
        let tp = rc.teacher.decode(rc.teacher.encode(batch(3).images, mask: mask), mask: mask)
        let cons = MaskedAutoencoder.maskedPatchMSE(sp, tp, mask: mask).item
        XCTAssertEqual(metrics.first { $0.0 == "consistency" }!.1, cons, accuracy: 1e-6)
        XCTAssertEqual(loss.item, mae.item + 0.5 * cons, accuracy: 1e-5)
        // Gradients reach the student only.
        loss.backward()
        XCTAssertNotNil(rc.student.decoderPred.weight.grad)
        XCTAssertNil(rc.teacher.decoderPred.weight.grad)
    }

    func testEMAUpdateAndMomentumSchedules() {
        var rng = TesseraRNG(seed: 2)
        let rc = RCMAE(config, options: RCMAEOptions(momentum: 0.9, schedule: .constant), rng: &rng)
        _ = AdamW(rc.optimizedParameters(), learningRate: 0.1)   // the student's parameters now live in its arena
        let before = rc.teacher.decoderPred.weight.array
        rc.student.decoderPred.weight.fill(1)
        rc.afterUpdate(step: 1, totalSteps: 10)
        assertClose(rc.teacher.decoderPred.weight.array, before.map { 0.9 * $0 + 0.1 }, rtol: 1e-6, atol: 1e-7, "EMA")
        // Frozen positional tables are not EMA'd (nor trained).
        XCTAssertEqual(rc.teacher.encoder.posEmbed.array, rc.student.encoder.posEmbed.array)
        let cosine = RCMAEOptions()
        XCTAssertEqual(cosine.momentum(step: 0, total: 100), 0.996, accuracy: 1e-12)
        XCTAssertEqual(cosine.momentum(step: 50, total: 100), 0.998, accuracy: 1e-12)
        XCTAssertEqual(cosine.momentum(step: 100, total: 100), 1, accuracy: 1e-12)
        XCTAssertEqual(RCMAEOptions(schedule: .constant).momentum(step: 77, total: 100), 0.996)
    }
}
