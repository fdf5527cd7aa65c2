import Foundation
import TesseraData
import TesseraEngine
import TestSupport
import XCTest

/// Hostile numbers at every option of every subcommand: whatever the value, `tessera` exits (no
/// signal) with status 0, 1 or 64, and a run that fails leaves no file behind.
final class OptionPropertyTests: XCTestCase {
    var binary: String { Subprocess.product("tessera", besides: OptionPropertyTests.self) }

    /// Runs `tessera args` in `cwd` (where a relative path a value names lands).
    func run(_ args: [String], cwd: String) throws -> Subprocess.Outcome { try Subprocess.run(binary, args, cwd: cwd) }

    /// Every option of every subcommand, from the parser's own description (`--experimental-dump-help`),
    /// so an option added later is covered too.
    func optionsBySubcommand(cwd: String) throws -> [String: [String]] {
        let data = Data(try Subprocess.run(binary, ["--experimental-dump-help"], cwd: cwd).stdout.utf8)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
        let command = try XCTUnwrap(json["command"] as? [String: Any])
        var result: [String: [String]] = [:]
        for sub in (command["subcommands"] as? [[String: Any]]) ?? [] {
            guard let name = sub["commandName"] as? String, name != "help" else { continue }
            let options = ((sub["arguments"] as? [[String: Any]]) ?? []).filter { ($0["kind"] as? String) == "option" }
            result[name] = options.compactMap { (($0["names"] as? [[String: Any]])?.first?["name"] as? String).map { "--" + $0 } }
        }
        return result
    }

    /// Options that take a name, a path or a list (every other option takes a number).
    static let textOptions: Set<String> = ["--method", "--model", "--data", "--eval-data", "--run", "--interpolation", "--momentum-schedule",
                                           "--sim-norm", "--pooling", "--few-shot", "--split", "--out", "--noise", "--save-noise",
                                           "--loader-workers"]

    func testHostileValuesAtEveryOption() throws {
        let root = NSTemporaryDirectory() + "tessera-options-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        try FileManager.default.createDirectory(atPath: root + "/inputs", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }

        // Inputs: a tiny labeled .npy set, a checkpoint trained on it, an image folder.
        var rng = TesseraRNG(seed: 7)
        let px = (0..<(24 * 16 * 16)).map { _ in rng.uniform() }
        try FileIO.writeAtomically(NpyArray.serialize(floats: px, shape: [24, 16, 16]), to: root + "/inputs/tiny.npy")
        try FileIO.writeAtomically(NpyArray.serialize(int64s: (0..<24).map { Int64($0 % 3) }, shape: [24]), to: root + "/inputs/tiny-labels.npy")
        for i in 0..<6 {
            let path = root + "/inputs/folder/c\(i % 2)/\(i).png"
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try FileIO.writeAtomically(ImageSet.encodePNG((0..<64).map { UInt8(($0 * 7 + i * 13) % 256) }, width: 8, height: 8, channels: 1), to: path)
        }
        let model = ["--depth", "1", "--dim", "8", "--heads", "1", "--decoder-dim", "8", "--decoder-depth", "1", "--decoder-heads", "1"]
        let tiny = ["--data", root + "/inputs/tiny.npy", "--epochs", "1", "--batch-size", "8", "--limit", "16"] + model
        let trained = try run(["pretrain", "--run", root + "/inputs/run"] + tiny, cwd: root + "/inputs")
        XCTAssertEqual(trained.status, 0, trained.stderr)
        let checkpoint = root + "/inputs/run/last.safetensors"

        // What each subcommand needs besides the option under test (the option, given last, wins).
        let base: [String: [String]] = [
            "pretrain": ["pretrain", "--run", "run"] + tiny,
            "eval": ["eval", checkpoint, "--data", root + "/inputs/tiny.npy", "--few-shot", "none"],
            "embed": ["embed", checkpoint, "--data", root + "/inputs/tiny.npy", "--out", "f.npy"],
            "reconstruct": ["reconstruct", checkpoint, "--data", root + "/inputs/tiny.npy", "--count", "2", "--out", "r.png"],
            "inspect": ["inspect", checkpoint],
            "bench": ["bench", "--rounds", "1", "--steps", "1", "--image-size", "16"],
            "pack": ["pack", root + "/inputs/folder", "shards"],
        ]
        let benchTail = ["--"] + model + ["--batch-size", "4"]
        let hostile = ["nan", "inf", "-inf", "-1", "0", "1e12", "99999999999999999999", "-0.5", "abc", ""]
        let ordinary = ["3", "0.5"]
        var gen = TesseraRNG(seed: UInt64(ProcessInfo.processInfo.environment["TESSERA_PROPERTY_SEED"] ?? "") ?? 42)
        var tried = 0
        let options = try optionsBySubcommand(cwd: root)
        XCTAssertEqual(Set(options.keys), Set(base.keys), "a subcommand without a base invocation here")
        for (sub, names) in options.sorted(by: { $0.key < $1.key }) {
            for option in names {
                // Each option: three hostile values drawn at random (seeded by TESSERA_PROPERTY_SEED, default
                // 42) and one ordinary one; TESSERA_PROPERTY_ALL=1 (by hand) tries every value.
                var values = (0..<(quickTier ? 1 : 3)).map { _ in hostile[gen.int(below: hostile.count)] }
                if !quickTier { values.append(ordinary[gen.int(below: ordinary.count)]) }
                if ProcessInfo.processInfo.environment["TESSERA_PROPERTY_ALL"] == "1" { values = hostile + ordinary }
                for value in values {
                    let cwd = root + "/cwd-\(tried)"
                    try FileManager.default.createDirectory(atPath: cwd, withIntermediateDirectories: true)
                    let args = base[sub]! + [option, value] + (sub == "bench" ? benchTail : [])
                    let r = try run(args, cwd: cwd)
                    let label = "tessera " + args.joined(separator: " ")
                    XCTAssertTrue(r.exited, "\(label): killed by signal \(r.status)\n\(r.stderr.suffix(1500))")
                    XCTAssertTrue([0, 1, 64].contains(r.status), "\(label): exit status \(r.status)\n\(r.stderr.suffix(1500))")
                    // A numeric option refuses what is not a number, and every refusal of a numeric value
                    // names the option (docs/reliability.md: "the message names the option, the range and
                    // the value").
                    let numeric = !Self.textOptions.contains(option)
                    if numeric && ["nan", "inf", "-inf", "abc", ""].contains(value) {
                        XCTAssertNotEqual(r.status, 0, "\(label): accepted a value that is not a finite number")
                    }
                    if r.status != 0 {
                        let lines = r.stderr.split(separator: "\n").filter { !$0.hasPrefix("warning:") }
                        XCTAssertEqual(lines.count, 1, "\(label): not one line:\n\(r.stderr.suffix(1500))")
                        if numeric { XCTAssertTrue(lines.first?.contains(option) ?? false, "\(label): the message does not name \(option): \(r.stderr)") }
                        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: cwd), [], "\(label): left files behind")
                    }
                    try? FileManager.default.removeItem(atPath: cwd)
                    tried += 1
                }
            }
        }
        print("option property test: \(tried) invocations over \(options.values.map(\.count).reduce(0, +)) options")
    }

    /// A checkpoint used with data of other channels, or a resume asked to change the run, stops with
    /// one line naming both sides; data of another size is resized with a warning naming both sizes.
    func testMismatchesNameBothSides() throws {
        let root = NSTemporaryDirectory() + "tessera-mismatch-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        var rng = TesseraRNG(seed: 3)
        try FileIO.writeAtomically(NpyArray.serialize(floats: (0..<(24 * 16 * 16)).map { _ in rng.uniform() }, shape: [24, 16, 16]), to: root + "/gray16.npy")
        try FileIO.writeAtomically(NpyArray.serialize(int64s: (0..<24).map { Int64($0 % 3) }, shape: [24]), to: root + "/gray16-labels.npy")
        try FileIO.writeAtomically(NpyArray.serialize(floats: (0..<(24 * 8 * 8 * 3)).map { _ in rng.uniform() }, shape: [24, 8, 8, 3]), to: root + "/rgb8.npy")
        try FileIO.writeAtomically(NpyArray.serialize(int64s: (0..<24).map { Int64($0 % 3) }, shape: [24]), to: root + "/rgb8-labels.npy")
        try FileIO.writeAtomically(NpyArray.serialize(floats: (0..<(24 * 8 * 8)).map { _ in rng.uniform() }, shape: [24, 8, 8]), to: root + "/gray8.npy")
        try FileIO.writeAtomically(NpyArray.serialize(int64s: (0..<24).map { Int64($0 % 3) }, shape: [24]), to: root + "/gray8-labels.npy")
        let trained = try run(["pretrain", "--run", root + "/run", "--data", root + "/gray16.npy", "--epochs", "1", "--batch-size", "8",
                               "--depth", "1", "--dim", "8", "--heads", "1", "--decoder-dim", "8", "--decoder-depth", "1", "--decoder-heads", "1"], cwd: root)
        XCTAssertEqual(trained.status, 0, trained.stderr)
        let ckpt = root + "/run/last.safetensors"
        for args in [["eval", ckpt, "--data", root + "/rgb8.npy"], ["embed", ckpt, "--data", root + "/rgb8.npy", "--out", root + "/f.npy"],
                     ["reconstruct", ckpt, "--data", root + "/rgb8.npy", "--out", root + "/r.png"]] {
            let r = try run(args, cwd: root)
            XCTAssertEqual(r.status, 1, r.stderr)
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains("rgb8.npy has 3-channel images, but \(ckpt) was trained on 1-channel images"), r.stderr)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/f.npy") || FileManager.default.fileExists(atPath: root + "/r.png"))
        let resized = try run(["embed", ckpt, "--data", root + "/gray8.npy", "--out", root + "/g.npy"], cwd: root)
        XCTAssertEqual(resized.status, 0, resized.stderr)
        XCTAssertTrue(resized.stderr.contains("warning: \(root)/gray8.npy has 8x8 images, \(ckpt) was trained on 16x16; they are resized"), resized.stderr)
        let changed = try run(["pretrain", "--run", root + "/run", "--resume", "--method", "msn"], cwd: root)
        XCTAssertEqual(changed.status, 1)
        XCTAssertTrue(changed.stderr.contains("--method cannot change a run being resumed"), changed.stderr)
    }
}
