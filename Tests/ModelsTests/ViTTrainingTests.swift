import TesseraData
import TesseraEngine
import TesseraModels
import TestSupport
import XCTest

/// A tiny ViT encoder with a linear head, trained on one fixed batch.
final class ViTTrainingTests: XCTestCase {
    override class func setUp() { GEMMChoiceGuard.install() }
    let config = ViTConfig(imageSize: 8, patchSize: 4, channels: 1, dim: 16, depth: 2, heads: 2)

    /// Trains `steps` AdamW steps on a fixed batch and returns the losses and final parameters.
    func train(seed: UInt64, steps: Int, mask: Bool = false) -> (losses: [Float], params: [Float]) {
        var rng = TesseraRNG(seed: seed)
        let encoder = ViTEncoder(config, rng: &rng)
        let head = Linear(config.dim, 4, rng: &rng)
        let images = Tensor.randn([16, 1, 8, 8], rng: &rng)
        let labels = (0..<16).map { $0 % 4 }
        let params = encoder.trainableParameters() + head.trainableParameters().map { ("head." + $0.name, $0.tensor) }
        let opt = AdamW(params, learningRate: 3e-3, betas: (0.9, 0.95), weightDecay: 0.05)
        var losses: [Float] = []
        for _ in 0..<steps {
            opt.zeroGrad()
            let m = mask ? MaskIndices.random(batch: 16, patches: config.patches, maskRatio: 0.5, rng: &rng) : nil
            let features = encoder(images, mask: m).select(axis: 1, index: 0)
            let loss = crossEntropy(logits: head(features), labels: labels)
            loss.backward()
            opt.arena.clipGradients(maxNorm: 5)
            opt.update()
            losses.append(loss.item)
        }
        return (losses, Array(UnsafeBufferPointer(start: opt.arena.values.base, count: opt.arena.count)))
    }

    func testParameterNamesAndCount() {
        var rng = TesseraRNG(seed: 0)
        let enc = ViTEncoder(ViTConfig(), rng: &rng)
        let names = enc.namedParameters().map(\.name)
        XCTAssertEqual(Array(names.prefix(5)), ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "blocks.0.norm1.weight"])
        XCTAssertEqual(names.last, "norm.bias")
        XCTAssertTrue(names.contains("blocks.11.attn.qkv.weight"))
        // ViT-Ti/16 encoder at 224: 5,524,416 elements with pos_embed (mae_rcmae.md §1c).
        XCTAssertEqual(enc.parameterCount, 5_524_416)
        XCTAssertFalse(enc.posEmbed.requiresGrad)
    }

    func testLossDecreasesOnAFixedBatch() {
        let (losses, _) = train(seed: 1, steps: 30)
        XCTAssertLessThan(losses.last!, 0.5 * losses.first!, "losses: \(losses)")
    }

    func testSameSeedIsBitIdentical() {
        let a = train(seed: 7, steps: 5, mask: true), b = train(seed: 7, steps: 5, mask: true)
        assertBitIdentical(a.losses, b.losses, "losses")
        assertBitIdentical(a.params, b.params, "parameters")
    }

    func testOneAndTwoThreadsAgree() {
        let one = withThreads(1) { train(seed: 3, steps: 5, mask: true) }
        let two = withThreads(2) { train(seed: 3, steps: 5, mask: true) }
        assertBitIdentical(one.losses, two.losses, "losses at 1 vs 2 threads")
        assertBitIdentical(one.params, two.params, "parameters at 1 vs 2 threads")
    }

    /// Products in bf16 (Tessera's GEMM): the same bits at 1 and 2 threads, and a training that differs
    /// from fp32's only by bf16's rounding (so bf16 was in effect, and it trains the same).
    func testBF16ProductsAgreeAcrossThreadsAndStayNearFP32() throws {
        let bf16 = Runtime.Compute(gemm: .tessera, precision: .bf16)
        let one = try XCTUnwrap(Runtime.withCompute(bf16) { withThreads(1) { train(seed: 3, steps: 5, mask: true) } })
        let two = try XCTUnwrap(Runtime.withCompute(bf16) { withThreads(2) { train(seed: 3, steps: 5, mask: true) } })
        assertBitIdentical(one.losses, two.losses, "bf16 losses at 1 vs 2 threads")
        assertBitIdentical(one.params, two.params, "bf16 parameters at 1 vs 2 threads")
        let fp32 = try XCTUnwrap(Runtime.withCompute(.init(gemm: .tessera, precision: .fp32)) { train(seed: 3, steps: 5, mask: true) })
        XCTAssertNotEqual(one.losses, fp32.losses, "bf16 products must round their operands")
        assertClose(one.losses, fp32.losses, rtol: 2e-2, atol: 0, "bf16 against fp32 losses")
    }
}
