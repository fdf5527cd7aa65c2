import Foundation
@testable import TesseraData
import TesseraEngine
import XCTest

/// The readers checked for values, on files written by other programs: `.npy` by numpy and a
/// grayscale PNG by Pillow (`scripts/make_reader_fixtures.py`, pixel (n, y, x, c) =
/// (50n + 10y + 3x + 7c) mod 256), and Fashion-MNIST from Debian's package (figures from Python's
/// gzip + numpy on the same files).
final class ReaderKnownAnswerTests: XCTestCase {
    func fixture(_ name: String) throws -> String {
        try XCTUnwrap(Bundle.module.url(forResource: "Photos", withExtension: nil)).path + "/" + name
    }

    /// Image n as HWC bytes from the formula.
    func expected(_ n: Int, height: Int, width: Int, channels: Int) -> [UInt8] {
        var out: [UInt8] = []
        for y in 0..<height { for x in 0..<width { for c in 0..<channels { out.append(UInt8((50 * n + 10 * y + 3 * x + 7 * c) % 256)) } } }
        return out
    }

    func testNumpyWrittenImagesInEveryLayout() throws {
        // uint8 NHWC with int64 labels beside it.
        let nhwc = try XCTUnwrap(DataSource.load(try fixture("known_u8_nhwc.npy"), split: .train) as? NpyImages)
        XCTAssertEqual(nhwc.count, 3)
        XCTAssertEqual(nhwc.channels, 3)
        XCTAssertEqual(nhwc.labels, [2, 0, 1])
        // float32 NCHW in [0, 1]: the same images.
        let nchw = try NpyImages(images: try fixture("known_f32_nchw.npy"))
        XCTAssertEqual(nchw.channels, 3)
        // uint8 NHW: one channel.
        let nhw = try NpyImages(images: try fixture("known_u8_nhw.npy"))
        XCTAssertEqual(nhw.channels, 1)
        XCTAssertNil(nhw.labels)
        for n in 0..<3 {
            let a = try nhwc.decoded(n), b = try nchw.decoded(n)
            XCTAssertEqual(a.height, 4); XCTAssertEqual(a.width, 5)
            XCTAssertEqual(a.pixels, expected(n, height: 4, width: 5, channels: 3), "NHWC image \(n)")
            XCTAssertEqual(b.pixels, expected(n, height: 4, width: 5, channels: 3), "NCHW float image \(n)")
        }
        for n in 0..<2 { XCTAssertEqual(try nhw.decoded(n).pixels, expected(n, height: 4, width: 5, channels: 1), "NHW image \(n)") }
    }

    func testGrayscalePNGPixels() throws {
        let img = try ImageSet.decodeImage(try fixture("known_gray.png"), channels: 1)
        XCTAssertEqual(img.height, 6)
        XCTAssertEqual(img.width, 7)
        XCTAssertEqual(img.pixels, expected(0, height: 6, width: 7, channels: 1))
    }

    /// Every mode an ImageNet-style folder holds, decoded as torchvision's loader reads it with PIL
    /// (`Image.open(f).convert("RGB")`, and `.convert("L")` for 1-channel training): PNG gray, gray +
    /// alpha, RGB, RGBA, palette (with and without a transparent entry), 1-bit, 16-bit gray, gray + alpha and RGB, a
    /// non-sRGB gAMA chunk; JPEG gray, RGB and CMYK (`scripts/make_mode_fixtures.py`, Pillow 13.0).
    /// PNG must match exactly; JPEG within 2 levels (two builds of the same IDCT and upsampling).
    func testEveryImageModeDecodesAsPILDoes() throws {
        let modes = ["png_L", "png_LA", "png_RGB", "png_RGBA", "png_P", "png_P_trns", "png_1", "png_I16", "png_LA16", "png_RGB16", "png_gamma",
                     "jpg_L", "jpg_RGB", "jpg_CMYK"]
        var report: [String] = []
        for mode in modes {
            let file = try fixture("modes/" + mode + (mode.hasPrefix("png") ? ".png" : ".jpg"))
            for (channels, suffix) in [(3, "rgb"), (1, "l")] {
                guard case let .u8(want) = try NpyArray.read(try fixture("modes/\(mode).\(suffix).npy")).values else { return XCTFail("\(mode): not uint8") }
                do {
                    let got = try ImageSet.decodeImage(file, channels: channels)
                    XCTAssertEqual([got.height, got.width], [17, 23], mode)
                    let worst = zip(got.pixels, want).map { abs(Int($0) - Int($1)) }.max() ?? 0
                    let allowed = mode.hasPrefix("png") ? 0 : 2
                    if got.pixels.count != want.count || worst > allowed { report.append("\(mode) \(suffix): differs by up to \(worst)") }
                } catch { report.append("\(mode) \(suffix): \(error)") }
            }
        }
        XCTAssertEqual(report, [], report.joined(separator: "\n"))
    }

    /// Debian's files: 60,000 / 10,000 images, 6,000 / 1,000 per class, the first labels, and the
    /// first image's pixel sum and centre value.
    func testFashionMNISTFromTheInstalledFiles() throws {
        guard FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") else {
            throw XCTSkip("dataset-fashion-mnist is not installed")
        }
        let train = try DataSource.load("fashion-mnist", split: .train), test = try DataSource.load("fashion-mnist", split: .test)
        XCTAssertEqual(train.count, 60000)
        XCTAssertEqual(test.count, 10000)
        XCTAssertEqual(Array(try XCTUnwrap(train.labels).prefix(5)), [9, 0, 0, 3, 0])
        XCTAssertEqual(Array(try XCTUnwrap(test.labels).prefix(5)), [9, 2, 1, 1, 6])
        for (set, perClass) in [(train, 6000), (test, 1000)] {
            var counts = [Int](repeating: 0, count: 10)
            for l in set.labels! { counts[l] += 1 }
            XCTAssertEqual(counts, [Int](repeating: perClass, count: 10))
        }
        for (set, sum, centre) in [(train, 76247, 217), (test, 33456, 110)] {
            let img = try set.decoded(0)
            XCTAssertEqual(img.height, 28); XCTAssertEqual(img.width, 28)
            XCTAssertEqual(img.pixels.reduce(0) { $0 + Int($1) }, sum)
            XCTAssertEqual(Int(img.pixels[14 * 28 + 14]), centre)
        }
    }
}

extension ReaderKnownAnswerTests {
    /// IDX with 4 dimensions `[N, H, W, C]` (written here byte by byte: magic `00 00 08 04`, big-endian
    /// dimensions): HWC pixels as stored, 3 channels, labels from a rank-1 file.
    func testIDXWithFourDimensions() throws {
        let dir = NSTemporaryDirectory() + "tessera-idx-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func be32(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 255), UInt8(v >> 16 & 255), UInt8(v >> 8 & 255), UInt8(v & 255)] }
        let pixels = (0..<2).flatMap { expected($0, height: 4, width: 5, channels: 3) }
        try FileIO.writeAtomically([0, 0, 8, 4] + be32(2) + be32(4) + be32(5) + be32(3) + pixels, to: dir + "/images.idx")
        try FileIO.writeAtomically([0, 0, 8, 1] + be32(2) + [7, 3], to: dir + "/labels.idx")
        let set = try ImageSet.idx(images: dir + "/images.idx", labels: dir + "/labels.idx")
        XCTAssertEqual(set.count, 2)
        XCTAssertEqual(set.channels, 3)
        XCTAssertEqual(set.labels, [7, 3])
        for n in 0..<2 { XCTAssertEqual(try set.decoded(n).pixels, expected(n, height: 4, width: 5, channels: 3), "image \(n)") }
    }

    /// Normalization, exactly: the evaluation transform of a square image at its own size leaves the
    /// pixels where they are, and each value is (v/255 − mean_c)/std_c (to float rounding).
    func testNormalizationValues() {
        let values: [UInt8] = [0, 51, 102, 153, 204, 255]
        var hwc: [UInt8] = []   // 2×2 RGB: pixel p, channel c = values[(p + c) mod 6]
        for p in 0..<4 { for c in 0..<3 { hwc.append(values[(p + c) % 6]) } }
        let set = ImageSet(uniform: hwc, count: 1, height: 2, width: 2, channels: 3)
        let mean: [Float] = [0.485, 0.456, 0.406], std: [Float] = [0.229, 0.224, 0.225]
        let aug = Augmentation(size: 2, mean: mean, std: std).evaluation
        var rng = TesseraRNG(seed: 0)
        let view = aug.sampleView(height: 2, width: 2, rng: &rng)
        let out = aug.render(set, indices: [0], views: [view], threads: 1).array   // [1, 3, 2, 2], CHW
        for c in 0..<3 {
            for p in 0..<4 {
                let want = (Double(values[(p + c) % 6]) / 255 - Double(mean[c])) / Double(std[c])
                XCTAssertEqual(Double(out[c * 4 + p]), want, accuracy: 1e-5, "channel \(c) pixel \(p)")
            }
        }
    }
}

