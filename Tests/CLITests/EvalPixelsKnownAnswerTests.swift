import Foundation
import TesseraData
import TesseraEngine
import TestSupport
import XCTest

/// `tessera eval --pixels` on a labeled set whose answer is known: RGB images whose class is the
/// channel that is bright, in train/ and test/ ImageFolders; three of the twelve test images are
/// filed under a class they do not look like. Every probe must then score exactly 9/12.
final class EvalPixelsKnownAnswerTests: XCTestCase {
    func testPixelProbesScoreTheKnownAnswer() throws {
        let binary = Subprocess.product("tessera", besides: EvalPixelsKnownAnswerTests.self)
        let dir = NSTemporaryDirectory() + "tessera-pixels-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var rng = TesseraRNG(seed: 11)
        let classes = ["red", "green", "blue"]
        /// An 8×8 RGB image that looks like class `looks`: its channel bright (about 200), the others dark (about 40).
        func write(looks: Int, filedAs: Int, split: String, index: Int) throws {
            var px = [UInt8](repeating: 0, count: 8 * 8 * 3)
            for p in 0..<64 { for c in 0..<3 { px[p * 3 + c] = UInt8((c == looks ? 190 : 30) + rng.int(below: 21)) } }
            let path = "\(dir)/\(split)/\(classes[filedAs])/\(index).png"
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try FileIO.writeAtomically(ImageSet.encodePNG(px, width: 8, height: 8, channels: 3), to: path)
        }
        for i in 0..<30 { try write(looks: i % 3, filedAs: i % 3, split: "train", index: i) }
        for i in 0..<12 {
            // Test images 0, 1, 2 are filed one class on from what they look like.
            try write(looks: i % 3, filedAs: i < 3 ? (i + 1) % 3 : i % 3, split: "test", index: i)
        }
        let r = try Subprocess.run(binary, ["eval", "--pixels", "--data", dir, "--few-shot", "1,2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let out = r.stdout
        XCTAssertTrue(out.contains("(30 train / 12 test, 192 values per image)"), out)
        for row in ["kNN (k=20)         75.00%", "linear probe       75.00%", "1-shot logistic    75.00% ± 0.00", "2-shot logistic    75.00% ± 0.00"] {
            XCTAssertTrue(out.contains(row), "'\(row)' not in:\n\(out)")
        }
        // RankMe of twelve test images: at most 12 (their count), and above 1 (three distinct clusters).
        let rankLine = try XCTUnwrap(out.split(separator: "\n").first { $0.hasPrefix("feature rank") })
        let rank = try XCTUnwrap(Double(rankLine.split(separator: " ", omittingEmptySubsequences: true)[2]))
        XCTAssertGreaterThan(rank, 1.5, out)
        XCTAssertLessThanOrEqual(rank, 12, out)
    }
}
