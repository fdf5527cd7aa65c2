import Foundation
import TesseraData
import TesseraEngine
import TesseraModels
import TestSupport
import XCTest

final class SIMTests: XCTestCase {
    /// A one-block SIM whose projector/predictor width is `width` (for the loss and monitor tests).
    func tinySIM(width: Int) -> SIM {
        var rng = TesseraRNG(seed: 1)
        var o = SIMOptions()
        o.decoderDim = width
        o.decoderHeads = 2
        return SIM(ViTConfig(imageSize: 8, patchSize: 4, channels: 1, dim: 8, depth: 1, heads: 2), options: o, rng: &rng)
    }

    /// The sin-cos table from its formula, bit for bit, for coordinates that repeat (a grid's rows and
    /// columns, computed once per distinct value) and ones that do not (±0 apart).
    func testSinCosRowFirstIsItsFormulaBitForBit() {
        let ys: [Float] = [0, 0, 1.5, -2.25, 1.5, -0.0, 3.75, 0.1], xs: [Float] = [-1, 2.5, 2.5, -1, 0.3, -0.0, 0, 0.1]
        let dim = 16, K = dim / 4
        let table = sinCosRowFirst(rows: ys, cols: xs, dim: dim)
        for n in 0..<ys.count {
            for k in 0..<K {
                let w = 1.0 / Foundation.pow(10000.0, Double(k) / Double(K))
                let a = Double(ys[n]) * w, b = Double(xs[n]) * w
                let expected = [Float(Foundation.sin(a)), Float(Foundation.cos(a)), Float(Foundation.sin(b)), Float(Foundation.cos(b))]
                for (q, e) in expected.enumerated() {
                    XCTAssertEqual(table[n * dim + q * K + k].bitPattern, e.bitPattern, "row \(n), part \(q), frequency \(k)")
                }
            }
        }
    }

    /// The official relative-position formulas against ground-truth geometry: the centre of each
    /// view-2 patch mapped back to the source image and into view-1 patch-index coordinates.
    func testRelativePositionsMatchCropGeometryWithFlips() {
        var rng = TesseraRNG(seed: 11)
        let W = 40, H = 30, g = 7
        let aug = Augmentation(size: 28, mean: [0], std: [1], scale: 0.08...1)
        var flipsSeen = Set<[Bool]>()
        for _ in 0..<400 {
            let a = aug.sampleView(height: H, width: W, rng: &rng), b = aug.sampleView(height: H, width: W, rng: &rng)
            flipsSeen.insert([a.flipped, b.flipped])
            let r = SIM.relativePositions(view1: a, view2: b, grid: g)
            for row in 0..<g {
                for col in 0..<g {
                    // View-2 output pixel fraction → source coordinates (our views crop, then mirror).
                    let fy = (Double(row) + 0.5) / Double(g), fx = (Double(col) + 0.5) / Double(g)
                    let sy = Double(b.top) + fy * Double(b.height)
                    let sx = Double(b.left) + (b.flipped ? 1 - fx : fx) * Double(b.width)
                    // Source → view-1 output fraction → patch-index coordinate (centre of patch k is k + 0.5).
                    let ay = (sy - Double(a.top)) / Double(a.height)
                    var ax = (sx - Double(a.left)) / Double(a.width)
                    if a.flipped { ax = 1 - ax }
                    XCTAssertEqual(Double(r.rows[row * g + col]), ay * Double(g) - 0.5, accuracy: 1e-4)
                    XCTAssertEqual(Double(r.cols[row * g + col]), ax * Double(g) - 0.5, accuracy: 1e-4)
                }
            }
            XCTAssertEqual(Double(r.logH), Foundation.log(Double(b.height) / Double(a.height)), accuracy: 1e-6)
        }
        XCTAssertEqual(flipsSeen.count, 4, "all four flip combinations covered")
    }

    func testBlockMaskHasExactlyTheCountAndBlocks() {
        var rng = TesseraRNG(seed: 5)
        for _ in 0..<50 {
            let m = SIM.blockMask(grid: 7, count: 29, minPatches: 4, rng: &rng)
            XCTAssertEqual(m.filter { $0 }.count, 29)
        }
        // With a small count, the mask is one rectangle.
        let small = SIM.blockMask(grid: 14, count: 6, minPatches: 6, rng: &rng)
        let cells = small.indices.filter { small[$0] }
        let rows = Set(cells.map { $0 / 14 }), cols = Set(cells.map { $0 % 14 })
        XCTAssertEqual(rows.count * cols.count, cells.count)
    }

    func testUniGradLossValueAndGradient() {
        var rng = TesseraRNG(seed: 2)
        let sim = tinySIM(width: 8)
        let p = Tensor.randn([6, 8], rng: &rng, requiresGrad: true), t = Tensor.randn([6, 8], rng: &rng)
        let (loss, _, _, _) = sim.unigrad(p, t)
        // Closed form in double.
        let P = p.array.map(Double.init), T = t.array.map(Double.init)
        var C = [Double](repeating: 0, count: 64)
        for n in 0..<6 { for i in 0..<8 { for j in 0..<8 { C[i * 8 + j] += T[n * 8 + i] * T[n * 8 + j] / 6 } } }
        var pos = 0.0, neg = 0.0
        for n in 0..<6 {
            for i in 0..<8 { pos += (P[n * 8 + i] - T[n * 8 + i]) * (P[n * 8 + i] - T[n * 8 + i]) }
            for i in 0..<8 { for j in 0..<8 { neg += P[n * 8 + i] * C[i * 8 + j] * P[n * 8 + j] } }
        }
        let w = 0.02 * 768 / 8
        let expected = (pos / 6 + w * neg / 6) / 8
        XCTAssertEqual(Double(loss.item), expected, accuracy: 1e-4 * expected)
        // d/dp = (2(p − t) + 2w·C p) / (N·D), C symmetric.
        loss.backward()
        var g = [Double](repeating: 0, count: 48)
        for n in 0..<6 { for i in 0..<8 {
            var cp = 0.0
            for j in 0..<8 { cp += C[i * 8 + j] * P[n * 8 + j] }
            g[n * 8 + i] = (2 * (P[n * 8 + i] - T[n * 8 + i]) + 2 * w * cp) / 48
        } }
        assertClose(p.grad!.array, g.map(Float.init), rtol: 1e-4, atol: 1e-6, "d loss / d p")
    }

    /// The collapse monitors against closed forms: participation ratios of C and of C − μμᵀ, and the
    /// shared-energy share ‖μ‖² / tr C.
    func testTargetSpreadMonitors() {
        let sim = tinySIM(width: 4)
        func spread(_ rows: [[Float]]) -> SIM.TargetSpread {
            sim.unigrad(Tensor.zeros([rows.count, 4]), Tensor(rows.flatMap { $0 }, shape: [rows.count, 4])).spread
        }
        // Every token the same vector: rank 1, nothing varies, all energy shared.
        let same = spread(Array(repeating: [1, -1, 2, 0.5], count: 8))
        XCTAssertEqual(same.rank, 1, accuracy: 1e-5)
        XCTAssertEqual(same.centeredRank, 0, accuracy: 1e-5)
        XCTAssertEqual(same.shared, 1, accuracy: 1e-5)
        // ±2·e_k for k = 0…3: C = 2·I, mean 0.
        let iso = spread((0..<8).map { n in (0..<4).map { $0 == n % 4 ? (n < 4 ? 2 : -2) : 0 } })
        XCTAssertEqual(iso.rank, 4, accuracy: 1e-5)
        XCTAssertEqual(iso.centeredRank, 4, accuracy: 1e-5)
        XCTAssertEqual(iso.shared, 0, accuracy: 1e-6)
        // (√3, 0, 0, 0) and (0, 1, 0, 0): C = diag(3, 1, 0, 0) / 2 gives 4 / 2.5 = 1.6; μ = (√3, 1, 0, 0) / 2,
        // ‖μ‖² = 1 of tr C = 2; two points differ along one direction only, so the centered ratio is 1.
        let two = spread([[Float(3).squareRoot(), 0, 0, 0], [0, 1, 0, 0]])
        XCTAssertEqual(two.rank, 1.6, accuracy: 1e-5)
        XCTAssertEqual(two.centeredRank, 1, accuracy: 1e-5)
        XCTAssertEqual(two.shared, 0.5, accuracy: 1e-6)
    }

    func testTrainsAndResumesBitExactly() throws {
        var rng = TesseraRNG(seed: 42)
        let n = 32
        let px = (0..<(n * 20 * 20)).map { i -> UInt8 in UInt8(truncatingIfNeeded: ((i / 20) % 20) * 9 + rng.int(below: 40)) }
        let set = ImageSet(uniform: px, count: n, height: 20, width: 20, channels: 1, labels: (0..<n).map { $0 % 2 })
        let vit = ViTConfig(imageSize: 16, patchSize: 4, channels: 1, dim: 32, depth: 1, heads: 2)
        var o = SIMOptions()
        o.decoderHeads = 2; o.projectorDepth = 1; o.predictorDepth = 1
        var c = PretrainConfig(method: .sim, mae: MAEConfig(encoder: vit, decoderDim: 16, decoderDepth: 1, decoderHeads: 2),
                               augmentation: Augmentation(size: 16, mean: [0.4], std: [0.3]))
        c.sim = o
        c.epochs = 4; c.batchSize = 8; c.blr = 2e-3; c.logEvery = 1000   // SIM's recipe clips at 1
        let (straight, _) = try assertResumeIsBitExact(c, set: set, stopAfter: 2, name: "sim", in: self) {
            var r = TesseraRNG(seed: 0)
            return SIM(vit, options: o, rng: &r)
        }
        let base = straight.run.path
        let csv = try String(contentsOfFile: base + "/metrics.csv", encoding: .utf8)
        let losses = csv.split(separator: "\n").filter { $0.hasPrefix("epoch,") }.map { Double($0.split(separator: ",")[3])! }
        XCTAssertEqual(losses.count, 4)
        XCTAssertLessThan(losses.last!, losses.first!, "\(losses)")
        // The frozen patch projection did not move; the checkpoint holds the online network.
        let sim = straight.method as! SIM
        XCTAssertFalse(sim.online.branch.encoder.patchEmbed.proj.weight.requiresGrad)
        let file = try SafeTensors.read(base + "/last.safetensors")
        XCTAssertNotNil(file["decoder_pos_mlp.weight"])
        XCTAssertNotNil(file["projector_decoder_blocks.0.norm1.running_mean"])
    }
}
