import Foundation
import TesseraEngine
import TestSupport
import XCTest

/// Golden values from PyTorch (Tools/make_fixtures.py), checked without PyTorch.
final class PyTorchFixtureTests: XCTestCase {
    func fixture(_ name: String) throws -> [String: FixtureTensor] {
        let url = try XCTUnwrap(Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures"),
                                "fixture \(name).json missing: run Tools/make_fixtures.py")
        return try loadFixture(url)
    }

    /// Σ out ⊙ probe, then backward: the gradient PyTorch recorded for the same probe.
    func backwardWithProbe(_ out: Tensor, _ probe: FixtureTensor) { (out * probe.tensor).sum().backward() }

    func testPatchifyOrderIsMAEs() throws {
        let f = try fixture("patchify")
        assertBitIdentical(f["imgs3"]!.tensor.patchify(patchSize: 4).array, f["patches3"]!.data, "RGB 8x12 / 4")
        assertBitIdentical(f["imgs1"]!.tensor.patchify(patchSize: 2).array, f["patches1"]!.data, "1 channel 8x8 / 2")
    }

    func testLayerNormEpsAndGradients() throws {
        let f = try fixture("layernorm")
        let x = f["x"]!.tensor, w = f["weight"]!.tensor, b = f["bias"]!.tensor
        for t in [x, w, b] { t.requiresGrad = true }
        let y = x.layerNorm(weight: w, bias: b, eps: 1e-6)
        assertClose(y.array, f["out"]!.data, rtol: 1e-5, atol: 1e-5, "layernorm out")
        backwardWithProbe(y, f["probe"]!)
        assertClose(x.grad!.array, f["dx"]!.data, rtol: 1e-4, atol: 1e-5, "layernorm dx")
        assertClose(w.grad!.array, f["dweight"]!.data, rtol: 1e-4, atol: 1e-5, "layernorm dweight")
        assertClose(b.grad!.array, f["dbias"]!.data, rtol: 1e-4, atol: 1e-5, "layernorm dbias")
    }

    func testGELUIsExactErf() throws {
        let f = try fixture("gelu")
        let x = f["x"]!.tensor
        x.requiresGrad = true
        let y = x.gelu()
        assertClose(y.array, f["out"]!.data, rtol: 1e-6, atol: 1e-6, "gelu out")
        backwardWithProbe(y, f["probe"]!)
        assertClose(x.grad!.array, f["dx"]!.data, rtol: 1e-5, atol: 1e-6, "gelu dx")
    }

    func testAttentionMatchesTimm() throws {
        let f = try fixture("attention")
        let qkv = f["qkv"]!.tensor
        qkv.requiresGrad = true
        let y = qkv.fusedAttention(heads: 2)
        assertClose(y.array, f["out"]!.data, rtol: 1e-5, atol: 1e-5, "attention out")
        backwardWithProbe(y, f["probe"]!)
        assertClose(qkv.grad!.array, f["dqkv"]!.data, rtol: 1e-4, atol: 1e-5, "attention dqkv")
    }

    func testSinCosTableIsMAEs() throws {
        let f = try fixture("sincos")
        assertClose(sinCosPositionalEmbedding(dim: 16, gridHeight: 3, gridWidth: 3).array, f["d16_g3"]!.data,
                    rtol: 0, atol: 1e-7, "sincos D16 G3")
        assertClose(sinCosPositionalEmbedding(dim: 192, gridHeight: 7, gridWidth: 7).array, f["d192_g7"]!.data,
                    rtol: 0, atol: 1e-7, "sincos D192 G7")
    }

    func testAdamWMatchesTorchOptim() throws {
        let f = try fixture("adamw")
        let w = f["w_init"]!.tensor, b = f["b_init"]!.tensor
        w.requiresGrad = true; b.requiresGrad = true
        let opt = AdamW([("w", w), ("layer.bias", b)], learningRate: 1e-2, betas: (0.9, 0.95), weightDecay: 0.05)
        for step in 0..<3 {
            opt.zeroGrad()
            w.grad!.copy(from: f["gw\(step)"]!.tensor)
            b.grad!.copy(from: f["gb\(step)"]!.tensor)
            opt.update()
            assertClose(w.array, f["w\(step)"]!.data, rtol: 1e-5, atol: 1e-6, "AdamW weight after step \(step + 1)")
            assertClose(b.array, f["b\(step)"]!.data, rtol: 1e-5, atol: 1e-6, "AdamW bias after step \(step + 1)")
        }
    }

    func testSoftmaxFamilyAndCrossEntropy() throws {
        let f = try fixture("softmax")
        for (name, op) in [("softmax", { (x: Tensor) in x.softmax() }), ("log_softmax", { $0.logSoftmax() }),
                           ("cross_entropy", { crossEntropy(logits: $0, target: f["target"]!.tensor) })] {
            let x = f["x"]!.tensor
            x.requiresGrad = true
            let y = op(x)
            assertClose(y.array, f[name]!.data, rtol: 1e-5, atol: 1e-5, "\(name) out")
            backwardWithProbe(y, f["r_\(name)"]!)
            assertClose(x.grad!.array, f["dx_\(name)"]!.data, rtol: 1e-4, atol: 1e-5, "\(name) dx")
        }
    }

    func testNormPixTargetUsesUnbiasedVariance() throws {
        let f = try fixture("normpix")
        assertClose(f["x"]!.tensor.standardizedRows(eps: 1e-6).array, f["out"]!.data, rtol: 1e-5, atol: 1e-5, "norm-pix")
    }

    func testBatchNormTrainAndEval() throws {
        let f = try fixture("batchnorm")
        let bn = BatchNorm1d(5)
        bn.weight!.copy(from: f["weight"]!.tensor)
        bn.bias!.copy(from: f["bias"]!.tensor)
        let x = f["x"]!.tensor
        x.requiresGrad = true
        let y = bn(x)
        assertClose(y.array, f["out"]!.data, rtol: 1e-5, atol: 1e-5, "batchnorm train out")
        backwardWithProbe(y, f["probe"]!)
        assertClose(x.grad!.array, f["dx"]!.data, rtol: 1e-4, atol: 1e-5, "batchnorm dx")
        assertClose(bn.weight!.grad!.array, f["dweight"]!.data, rtol: 1e-4, atol: 1e-5, "batchnorm dweight")
        assertClose(bn.bias!.grad!.array, f["dbias"]!.data, rtol: 1e-4, atol: 1e-5, "batchnorm dbias")
        assertClose(bn.runningMean.array, f["running_mean"]!.data, rtol: 1e-5, atol: 1e-6, "running_mean")
        assertClose(bn.runningVar.array, f["running_var"]!.data, rtol: 1e-5, atol: 1e-6, "running_var (unbiased)")
        bn.eval()
        assertClose(withNoGrad { bn(x) }.array, f["out_eval"]!.data, rtol: 1e-5, atol: 1e-5, "batchnorm eval out")
    }

    func testRandomMaskingAndUnshuffleMatchMAE() throws {
        let f = try fixture("masking")
        let m = MaskIndices(noise: f["noise"]!.tensor, keep: 4)
        XCTAssertEqual(m.mask, f["mask"]!.data)
        XCTAssertEqual(m.idsRestore.map(Float.init), f["ids_restore"]!.data)
        XCTAssertEqual(m.idsKeep.map(Float.init), f["ids_keep"]!.data)
        assertBitIdentical(f["x"]!.tensor.gatherKept(m).array, f["x_masked"]!.data, "x_masked")
        let u = f["decoder_in"]!.tensor.unshuffled(m, maskToken: f["mask_token"]!.tensor)
        assertBitIdentical(u.array, f["unshuffled"]!.data, "unshuffle")
    }
}
