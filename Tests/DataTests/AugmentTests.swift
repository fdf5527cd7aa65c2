import Foundation
import TesseraData
import TesseraEngine
import TestSupport
import XCTest
import CImageData

/// The crop-resize kernel against PIL (what torchvision's RandomResizedCrop runs), thread-count
/// independence, crop sampling and the loader's determinism.
final class AugmentTests: XCTestCase {
    func pilFixture() throws -> SafeTensors.File {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "Corpus/fixture_pil_resize", withExtension: "safetensors"))
        return try SafeTensors.read(url.path)
    }

    func testCropResizeMatchesPIL() throws {
        let f = try pilFixture()
        let src = try XCTUnwrap(f["fixture.src"]?.floats()).map { UInt8($0) }
        let set = ImageSet(uniform: src, count: 1, height: 20, width: 24, channels: 3)
        for (name, interp, tol) in [("bicubic_up", Interpolation.bicubic, Float(1)), ("bilinear_up", .bilinear, 1),
                                    ("bicubic_down", .bicubic, 1), ("bilinear_down", .bilinear, 1)] {
            let box = try XCTUnwrap(f["fixture.\(name).box"]?.floats())
            let expected = try XCTUnwrap(f["fixture.\(name)"]?.floats())   // [S, S, 3] uint8 values
            let S = try XCTUnwrap(f["fixture.\(name)"]).shape[0]
            let aug = Augmentation(size: S, mean: [0, 0, 0], std: [1, 1, 1], interpolation: interp)
            let view = CropView(top: box[0], left: box[1], height: box[2], width: box[3], flipped: false, sourceHeight: 20, sourceWidth: 24)
            let out = aug.render(set, indices: [0], views: [view]).array   // [1, 3, S, S] in [0, 1]
            var got = [Float](repeating: 0, count: S * S * 3)
            for c in 0..<3 { for p in 0..<(S * S) { got[p * 3 + c] = (out[c * S * S + p] * 255).rounded() } }
            // PIL's weights are fixed-point (22 bits); ours are float: allow a level of rounding difference.
            assertClose(got, expected, rtol: 0, atol: tol, name)
            // The flip is the mirror image.
            var flipped = view
            flipped.flipped = true
            let mirror = aug.render(set, indices: [0], views: [flipped]).array
            var unmirrored = [Float](repeating: 0, count: mirror.count)
            for row in 0..<(3 * S) {
                for x in 0..<S { unmirrored[row * S + x] = mirror[row * S + S - 1 - x] }
            }
            assertBitIdentical(unmirrored, out, "\(name) flipped")
        }
    }

    func testRenderIsThreadCountIndependentAndNormalizes() {
        var rng = TesseraRNG(seed: 5)
        let px = (0..<(16 * 30 * 26)).map { _ in UInt8(rng.int(below: 256)) }
        let set = ImageSet(uniform: px, count: 16, height: 30, width: 26, channels: 1)
        let aug = Augmentation(size: 12, mean: [0.5], std: [0.25])
        let views = (0..<16).map { _ in aug.sampleView(height: 30, width: 26, rng: &rng) }
        let one = aug.render(set, indices: Array(0..<16), views: views, threads: 1).array
        if Runtime.hasOpenMP {   // without OpenMP both runs are one thread: nothing to compare
            let two = aug.render(set, indices: Array(0..<16), views: views, threads: 3).array
            assertBitIdentical(one, two, "1 vs 3 threads")
        }
        XCTAssertTrue(one.allSatisfy { $0 >= -2.0001 && $0 <= 2.0001 })   // (v − 0.5)/0.25 for v in [0, 1]
    }

    func testCropSamplingFollowsScaleAndRatio() {
        var rng = TesseraRNG(seed: 1)
        let aug = Augmentation(size: 28, mean: [0], std: [1])
        var flips = 0
        for _ in 0..<2000 {
            let c = aug.sampleCrop(height: 28, width: 28, rng: &rng)
            XCTAssertTrue(c.top >= 0 && c.left >= 0 && c.top + c.height <= 28 && c.left + c.width <= 28)
            let area = Float(c.height * c.width) / 784
            XCTAssertGreaterThanOrEqual(area, 0.15)   // 0.2 before rounding each side
            let r = Float(c.width) / Float(c.height)
            XCTAssertTrue(r > 0.5 && r < 2, "ratio \(r)")
            if aug.sampleView(height: 28, width: 28, rng: &rng).flipped { flips += 1 }
        }
        XCTAssertEqual(Double(flips) / 2000, 0.5, accuracy: 0.05)
        // A scale no crop can satisfy falls back to the centre crop clamped to the ratio range.
        var wide = aug
        wide.scale = 5...6
        let c = wide.sampleCrop(height: 10, width: 40, rng: &rng)
        XCTAssertEqual(c.height, 10)
        XCTAssertEqual(c.width, 13)
        XCTAssertEqual(c.left, 13)
    }

    /// The training streams never share a family (a, b), for runs of any length: the view augmentation's
    /// a differs from every other stream's and from itself across epochs; below epoch 98 it is the
    /// historic 2 + epoch (runs keep their bits). The evaluation streams' overlap is the one documented.
    func testTrainingSeedStreamsAreDisjoint() {
        var augmentation = Set<UInt64>()
        for e in 0..<200_000 {
            let a = SeedStream.viewAugmentation(epoch: e, position: 0).family.a
            XCTAssertTrue(augmentation.insert(a).inserted, "epoch \(e)")
            if e < 98 { XCTAssertEqual(a, 2 + UInt64(e)) }
        }
        let others = [SeedStream.epochOrder(epoch: 0).family.a, SeedStream.methodStep(microStep: 0).family.a]
        XCTAssertEqual(Set(others).count, 2)
        for a in others { XCTAssertFalse(augmentation.contains(a), "stream \(a)") }
        XCTAssertEqual(SeedStream.viewAugmentation(epoch: 97, position: 3).seed(9), deriveSeed(9, 99, 3))
        XCTAssertEqual(SeedStream.fewShotPick(split: 1).family.a, SeedStream.viewAugmentation(epoch: 5, position: 1).family.a)
        XCTAssertEqual(SeedStream.fewShotFit(split: 1).family.a, SeedStream.viewAugmentation(epoch: 6, position: 1).family.a)
    }

    func testLoaderIsAFunctionOfSeedEpochAndStep() throws {
        var rng = TesseraRNG(seed: 2)
        let px = (0..<(50 * 8 * 8)).map { _ in UInt8(rng.int(below: 256)) }
        let set = ImageSet(uniform: px, count: 50, height: 8, width: 8, channels: 1, labels: (0..<50).map { $0 % 5 })
        let loader = Loader(set, batchSize: 16, augmentation: Augmentation(size: 8, mean: [0.5], std: [0.5]), seed: 7)
        XCTAssertEqual(loader.stepsPerEpoch, 3)   // the last partial batch is dropped
        let background = try loader.batches(epoch: 1).remaining()
        XCTAssertEqual(background.count, 3)
        let order = loader.order(epoch: 1)
        XCTAssertEqual(Set(order), Set(0..<50))
        XCTAssertNotEqual(order, loader.order(epoch: 2))
        for (s, b) in background.enumerated() {
            let direct = try loader.makeBatch(epoch: 1, step: s, order: order)
            assertBitIdentical(b.images.array, direct.images.array, "step \(s)")
            XCTAssertEqual(b.indices, direct.indices)
            XCTAssertEqual(b.labels, b.indices.map { $0 % 5 })
        }
        let resumed = try loader.batches(epoch: 1, startStep: 2).remaining()
        XCTAssertEqual(resumed.map(\.indices), [background[2].indices])
        // Stopping early releases the producer thread: dropping the epoch after one batch returns.
        assertFinishes(within: 60, "an epoch dropped after its first batch") {
            let it = loader.batches(epoch: 3)
            _ = try it.next()
        }
    }
}

/// The photometric kernel against torchvision's tensor ops.
final class PhotometricTests: XCTestCase {
    func apply(_ x: [Float], channels C: Int, _ set: (inout [Float]) -> Void) -> [Float] {
        var p: [Float] = [0, 1, 2, 3, 1, 1, 1, 0, 0, 0, 0]
        set(&p)
        var out = x
        var scratch = [Float](repeating: 0, count: 4096)
        ck_photometric_batch(&out, p, 1, Int64(C), 6, &scratch, 1)
        return out
    }

    func testColorOpsMatchTorchvision() throws {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "Corpus/fixture_photometric", withExtension: "safetensors"))
        let f = try SafeTensors.read(url.path)
        func t(_ n: String) -> [Float] { f[n]!.floats()! }
        let img = t("img"), g1 = t("gray1")
        assertClose(apply(img, channels: 3) { $0[4] = 1.3 }, t("brightness"), rtol: 0, atol: 1e-6, "brightness")
        assertClose(apply(img, channels: 3) { $0[5] = 0.6 }, t("contrast"), rtol: 0, atol: 1e-5, "contrast")
        assertClose(apply(img, channels: 3) { $0[6] = 1.4 }, t("saturation"), rtol: 0, atol: 1e-5, "saturation")
        assertClose(apply(img, channels: 3) { $0[7] = 0.07 }, t("hue"), rtol: 0, atol: 1e-5, "hue")
        assertClose(apply(img, channels: 3) { $0[8] = 1 }, t("grayscale"), rtol: 0, atol: 1e-6, "grayscale")
        assertClose(apply(img, channels: 3) { $0[10] = 1 }, t("solarize"), rtol: 0, atol: 0, "solarize")
        let chain = apply(img, channels: 3) { p in
            p[0] = 1; p[1] = 3; p[2] = 0; p[3] = 2   // contrast, hue, brightness, saturation
            p[4] = 0.8; p[5] = 0.7; p[6] = 1.2; p[7] = -0.05
        }
        assertClose(chain, t("chain"), rtol: 0, atol: 1e-5, "jitter chain")
        assertClose(apply(g1, channels: 1) { $0[5] = 1.5 }, t("gray1_contrast"), rtol: 0, atol: 1e-5, "1-channel contrast")
        assertClose(apply(g1, channels: 1) { $0[4] = 0.7 }, t("gray1_brightness"), rtol: 0, atol: 1e-6, "1-channel brightness")
        // Saturation and hue do not apply to one channel.
        XCTAssertEqual(apply(g1, channels: 1) { $0[6] = 0.2; $0[7] = 0.3 }, g1)
    }

    func testBlurKeepsConstantsAndIsSymmetric() {
        let constant = [Float](repeating: 0.25, count: 36)
        assertClose(apply(constant, channels: 1) { $0[9] = 1.5 }, constant, rtol: 0, atol: 1e-6, "constant image")
        var dot = [Float](repeating: 0, count: 36)
        dot[2 * 6 + 2] = 1
        let b = apply(dot, channels: 1) { $0[9] = 0.5 }   // radius ceil(3σ) = 2: every tap stays inside
        XCTAssertEqual(b[2 * 6 + 1], b[2 * 6 + 3], accuracy: 1e-7)
        XCTAssertEqual(b[1 * 6 + 2], b[3 * 6 + 2], accuracy: 1e-7)
        XCTAssertLessThan(b[2 * 6 + 2], 1)
        XCTAssertEqual(b.reduce(0, +), 1, accuracy: 1e-5)
    }
}
