import Foundation
import TesseraData
import TesseraEngine
@testable import TesseraModels
import TestSupport
import XCTest

/// SIM against a PyTorch reference of the official `forward_sim` and UniGrad loss
/// (Tools/sim_reference.py; fixture by Tools/make_sim_fixture.py): the same weights, views, visible
/// patches and crop boxes give the same geometry, loss terms and gradients, with BatchNorm (the
/// official projector and predictor) and with LayerNorm.
final class SIMParityTests: XCTestCase {
    let config = ViTConfig(imageSize: 16, patchSize: 4, channels: 1, dim: 32, depth: 2, heads: 2)

    func fixture() throws -> SafeTensors.File { try ModelFixtures.file("sim_tiny") }
    func tensor(_ f: SafeTensors.File, _ name: String) throws -> Tensor { try ModelFixtures.tensor(f, name) }

    func options(_ norm: NormKind) -> SIMOptions {
        var o = SIMOptions()
        o.decoderHeads = 2; o.projectorDepth = 1; o.predictorDepth = 2; o.norm = norm; o.maskRatio = 0.5
        return o
    }

    /// The crop boxes of the fixture as Tessera's views, and SIM.relativePositions against the official formula.
    func geometry(_ f: SafeTensors.File) throws -> [(rows: [Float], cols: [Float], logH: Float, logW: Float)] {
        let boxes = try tensor(f, "fixture.boxes").array   // [B, 2, 5]: top, left, height, width, flipped
        let rows = try tensor(f, "fixture.rows").array, cols = try tensor(f, "fixture.cols").array
        let B = boxes.count / 10, L = config.patches
        return (0..<B).map { b in
            func view(_ v: Int) -> CropView {
                let x = Array(boxes[(b * 2 + v) * 5 ..< (b * 2 + v) * 5 + 5])
                return CropView(top: x[0], left: x[1], height: x[2], width: x[3], flipped: x[4] > 0, sourceHeight: 28, sourceWidth: 28)
            }
            let r = SIM.relativePositions(view1: view(0), view2: view(1), grid: config.grid)
            assertClose(r.rows, Array(rows[b * L ..< (b + 1) * L]), rtol: 1e-5, atol: 1e-5, "rows of image \(b)")
            assertClose(r.cols, Array(cols[b * L ..< (b + 1) * L]), rtol: 1e-5, atol: 1e-5, "columns of image \(b)")
            return r
        }
    }

    func testLossAndGradientsMatchTheOfficialForward() throws {
        let f = try fixture()
        let relative = try geometry(f)
        let x1 = try tensor(f, "fixture.view1"), x2 = try tensor(f, "fixture.view2")
        let order = try tensor(f, "fixture.order").array.map { Int32($0) }
        let mask = MaskIndices(order: order, batch: x1.shape[0], keep: 8)
        for norm in [NormKind.batch, .layer] {
            var rng = TesseraRNG(seed: 0)
            let sim = SIM(config, options: options(norm), rng: &rng)
            XCTAssertEqual(sim.maskedCount, 8)
            // Every tensor of both branches, by name: the reference's names are Tessera's.
            let prefix = norm.rawValue + "."
            let names = Set(f.tensors.map(\.name).filter { $0.hasPrefix(prefix) && !$0.contains("fixture.") && !$0.contains("grad.") }
                .map { String($0.dropFirst(prefix.count)) })
            XCTAssertEqual(Set(sim.online.stateDict().map(\.name) + sim.extraState().map(\.name)), names, "\(norm)")
            var online: [String: Tensor] = [:], target: [String: Tensor] = [:]
            for (name, _) in sim.online.stateDict() { online[name] = try tensor(f, prefix + name) }
            for (name, _) in sim.target.stateDict() { target[name] = try tensor(f, prefix + "mm." + name) }
            try sim.online.load(stateDict: online)
            try sim.target.load(stateDict: target)

            let r = sim.loss(view1: x1, view2: x2, mask: mask, relative: relative)
            assertClose([r.loss.item], try tensor(f, prefix + "fixture.loss").array, rtol: 1e-5, atol: 1e-6, "\(norm) loss")
            assertClose([r.positive], try tensor(f, prefix + "fixture.pos").array, rtol: 1e-5, atol: 1e-5, "\(norm) positive term")
            assertClose([r.negative], try tensor(f, prefix + "fixture.neg").array, rtol: 1e-5, atol: 1e-5, "\(norm) negative term")
            r.loss.backward()
            var checked = 0
            for (name, p) in sim.optimizedParameters() {
                guard f[prefix + "grad." + name] != nil else {
                    // Unused by SIM's forward (the encoder's final norm): no gradient on either side.
                    XCTAssertTrue(p.grad.map { $0.array.allSatisfy { $0 == 0 } } ?? true, "\(norm): \(name) has a gradient")
                    continue
                }
                let g = try XCTUnwrap(p.grad, "no gradient for \(name)")
                assertClose(g.array, try tensor(f, prefix + "grad." + name).array, rtol: 2e-3, atol: 2e-5, "\(norm) grad \(name)")
                checked += 1
            }
            XCTAssertEqual(checked, f.tensors.filter { $0.name.hasPrefix(prefix + "grad.") }.count, "\(norm): gradients compared")
        }
    }
}
