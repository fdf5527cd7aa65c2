import Foundation
import TesseraData
import TesseraEngine
import TesseraModels
import TestSupport
import XCTest

/// MAE against PyTorch (Tools/make_model_fixtures.py builds the official architecture from
/// Tools/mae_reference.py and saves it with the `safetensors` package).
final class MAETests: XCTestCase {
    let tinyConfig = MAEConfig(encoder: ViTConfig(imageSize: 16, patchSize: 4, channels: 1, dim: 32, depth: 2, heads: 2),
                               decoderDim: 16, decoderDepth: 1, decoderHeads: 2)

    func fixture() throws -> SafeTensors.File { try ModelFixtures.file("mae_tiny") }
    func tensor(_ f: SafeTensors.File, _ name: String) throws -> Tensor { try ModelFixtures.tensor(f, name) }

    func testStateDictNamesAndShapesAreTheOfficialOnes() throws {
        let f = try fixture()
        var rng = TesseraRNG(seed: 0)
        let model = MaskedAutoencoder(tinyConfig, rng: &rng)
        let torchNames = f.tensors.map(\.name).filter { !$0.hasPrefix("fixture.") && !$0.hasPrefix("grad.") }
        XCTAssertEqual(Set(model.stateDict().map(\.name)), Set(torchNames))
        for (name, t) in model.stateDict() { XCTAssertEqual(t.shape, f[name]?.shape, name) }
        // Frozen sin-cos tables equal PyTorch's bit for bit.
        XCTAssertEqual(model.encoder.posEmbed.array, try tensor(f, "pos_embed").array)
        XCTAssertEqual(model.decoderPosEmbed.array, try tensor(f, "decoder_pos_embed").array)
    }

    func testLossPredictionsAndGradientsMatchPyTorch() throws {
        let f = try fixture()
        var rng = TesseraRNG(seed: 0)
        let model = MaskedAutoencoder(tinyConfig, rng: &rng)
        var state: [String: Tensor] = [:]
        for (name, _) in model.stateDict() { state[name] = try tensor(f, name) }
        try model.load(stateDict: state)
        let images = try tensor(f, "fixture.images")
        let mask = MaskIndices(noise: try tensor(f, "fixture.noise"), keep: tinyConfig.keptPatches)
        XCTAssertEqual(mask.mask, try tensor(f, "fixture.mask").array)
        let (loss, pred) = model(images, mask: mask)
        assertClose(pred.array, try tensor(f, "fixture.pred").array, rtol: 1e-4, atol: 1e-5, "pred")
        assertClose([loss.item], try tensor(f, "fixture.loss").array, rtol: 1e-5, atol: 1e-6, "loss")
        loss.backward()
        var checked = 0
        for (name, p) in model.trainableParameters() {
            let g = try XCTUnwrap(p.grad, "no gradient for \(name)")
            assertClose(g.array, try tensor(f, "grad." + name).array, rtol: 2e-3, atol: 2e-5, "grad \(name)")
            checked += 1
        }
        XCTAssertEqual(checked, f.tensors.filter { $0.name.hasPrefix("grad.") }.count)

        var pixConfig = tinyConfig
        pixConfig.normPixLoss = false
        let pixModel = MaskedAutoencoder(pixConfig, rng: &rng)
        try pixModel.load(stateDict: state)
        assertClose([pixModel(images, mask: mask).loss.item], try tensor(f, "fixture.loss_pix").array, rtol: 1e-5, atol: 1e-6, "pixel loss")
    }

    func testNamedConfigurations() {
        var rng = TesseraRNG(seed: 0)
        let tiny = MaskedAutoencoder(MAEConfig.named("vit-tiny")!, rng: &rng)
        // RC-MAE tiny decoder 128/2/4 at 224/16: 182 tensors, 6,070,336 elements (mae_rcmae.md §1c).
        XCTAssertEqual(tiny.stateDict().count, 182)
        XCTAssertEqual(tiny.parameterCount, 6_070_336)
        XCTAssertEqual(MAEConfig.named("vit-tiny")!.keptPatches, 49)
        XCTAssertNil(MAEConfig.named("vit-huge"))
    }
}
