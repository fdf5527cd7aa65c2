import Foundation
import TesseraData
import TesseraEngine
import TesseraModels
import TestSupport
import XCTest

/// The `tessera` executable, run as a subprocess.
final class CLITests: XCTestCase {
    var binary: URL { product("tessera") }

    /// An executable of this package: in the products directory, which holds (or is) the test bundle.
    func product(_ name: String) -> URL {
        let bundle = Bundle(for: CLITests.self).bundleURL
        let candidates = [bundle.appendingPathComponent(name), bundle.deletingLastPathComponent().appendingPathComponent(name)]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[1]
    }

    /// Runs a program (under the tests' deadline); its status and standard output.
    func run(_ executable: String, _ args: [String]) throws -> (status: Int32, stdout: String) {
        let r = try Subprocess.run(executable, args)
        return (r.status, r.stdout)
    }

    /// A program that depends only on TesseraEngine trains, round-trips safetensors, and loads no image library.
    func testEngineOnlyProgramLinksNoImageLibraries() throws {
        let example = product("tessera-embed-example").path
        let r = try run(example, [])
        XCTAssertEqual(r.status, 0, r.stdout)
        XCTAssertTrue(r.stdout.contains("identical"), r.stdout)
        let ldd = try run("/usr/bin/ldd", [example])
        XCTAssertEqual(ldd.status, 0, ldd.stdout)
        XCTAssertTrue(ldd.stdout.contains("libopenblas"), ldd.stdout)   // the check sees the dependencies
        for lib in ["libpng", "libjpeg", "libz."] {
            XCTAssertFalse(ldd.stdout.contains(lib), "\(lib) is linked into an engine-only program:\n\(ldd.stdout)")
        }
        // The tessera command, which decodes images, does link them.
        XCTAssertTrue(try run("/usr/bin/ldd", [binary.path]).stdout.contains("libpng"))
    }

    /// A program built on the library products alone (`Checkpoint`, `ViTEncoder.features`) loads a
    /// model file of each of the four methods and an encoder-only file, and writes the same features as
    /// `tessera embed`, byte for byte; a file that is not a Tessera checkpoint is one line.
    func testLibraryProgramEmbedsEveryMethodsCheckpointAsTesseraEmbed() throws {
        let dir = try tempDir()
        let data = try tinyData(dir)
        let common = ["--data", data, "--batch-size", "16", "--depth", "1", "--dim", "32", "--heads", "2", "--epochs", "1"]
        let decoder = ["--decoder-dim", "16", "--decoder-depth", "1", "--decoder-heads", "2"]
        let runs: [(String, [String])] = [("mae", decoder), ("rcmae", decoder), ("msn", ["--focal-views", "2", "--focal-size", "8", "--prototypes", "16"]),
                                          ("sim", ["--decoder-heads", "2"])]
        let example = product("tessera-embed-checkpoint-example").path
        for (method, options) in runs {
            let r = try tessera(["pretrain", "--method", method, "--run", dir + "/" + method] + options + common)
            XCTAssertEqual(r.status, 0, r.stderr)
            // The encoder read from the model file holds exactly the encoder-only file's tensors (the one
            // the method reports: MAE's, RC-MAE's and MSN's teacher, SIM's online encoder).
            let exported = try SafeTensors.read("\(dir)/\(method)/last.encoder.safetensors")
            let loaded = try Checkpoint(contentsOf: "\(dir)/\(method)/last.safetensors").encoder.stateDict()
            XCTAssertEqual(loaded.map(\.name).sorted(), exported.tensors.map(\.name).sorted(), method)
            for (name, tensor) in loaded {
                XCTAssertEqual(tensor.array, exported[name]?.floats(), "\(method): \(name)")
            }
            for file in ["last.safetensors", "last.encoder.safetensors"] {
                let ck = "\(dir)/\(method)/\(file)", viaCLI = "\(dir)/\(method)-\(file)-cli.npy", viaLibrary = "\(dir)/\(method)-\(file)-lib.npy"
                let e = try tessera(["embed", ck, "--data", data, "--out", viaCLI])
                XCTAssertEqual(e.status, 0, e.stderr)
                let l = try run(example, [ck, data, viaLibrary])
                XCTAssertEqual(l.status, 0, "\(ck): \(l.stdout)")
                XCTAssertTrue(l.stdout.hasPrefix("\(method) checkpoint, epoch 1"), l.stdout)
                let a = try Data(contentsOf: URL(fileURLWithPath: viaCLI)), b = try Data(contentsOf: URL(fileURLWithPath: viaLibrary))
                XCTAssertEqual(a.count, 128 + 48 * 32 * 4, "\(ck)")   // [48, 32] float32 after the .npy header
                XCTAssertEqual(a, b, "\(ck): the library's features differ from tessera embed's")
            }
        }
        // A full MAE file loads the decoder too; the others hold an encoder alone.
        XCTAssertNotNil(try Checkpoint(contentsOf: dir + "/rcmae/last.safetensors").autoencoder)
        XCTAssertNil(try Checkpoint(contentsOf: dir + "/msn/last.safetensors").autoencoder)
        XCTAssertThrowsError(try Checkpoint(contentsOf: data)) { XCTAssertTrue("\($0)".contains("tiny.npy"), "\($0)") }
        let bad = try run(example, [dir + "/mae/config.json", data, dir + "/x.npy"])
        XCTAssertEqual(bad.status, 1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/x.npy"))
    }

    struct Result { let status: Int32; let stdout: String; let stderr: String }

    /// Runs `tessera args` on 2 threads under the tests' deadline (output through files: a child that
    /// writes much to stderr cannot block on a pipe nobody reads).
    func tessera(_ args: [String], env: [String: String] = [:]) throws -> Result {
        let r = try Subprocess.run(binary.path, args, env: ["TESSERA_THREADS": "2"].merging(env) { $1 })
        return Result(status: r.status, stdout: r.stdout, stderr: r.stderr)
    }

    func tempDir() throws -> String { try scratchDirectory("cli") }

    /// A small labeled `.npy` dataset: 48 images 16×16, 3 classes (a bright band at different heights).
    func tinyData(_ dir: String) throws -> String {
        var rng = TesseraRNG(seed: 3)
        var px: [Float] = []
        var labels: [Float] = []
        for i in 0..<48 {
            let c = i % 3
            labels.append(Float(c))
            for y in 0..<16 { for _ in 0..<16 { px.append((y / 5 == c ? 0.8 : 0.1) + rng.uniform(0, 0.2)) } }
        }
        try FileIO.writeAtomically(NpyArray.serialize(floats: px, shape: [48, 16, 16]), to: dir + "/tiny.npy")
        // Labels as int64, as numpy saves them by default.
        try FileIO.writeAtomically(NpyArray.serialize(int64s: labels.map { Int64($0) }, shape: [48]), to: dir + "/tiny-labels.npy")
        return dir + "/tiny.npy"
    }

    /// One line on stderr starting with "error:", a non-zero status.
    func assertOneLineError(_ r: Result, mentions: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNotEqual(r.status, 0, "status", file: file, line: line)
        let lines = r.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "stderr: \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.hasPrefix("error: "), r.stderr, file: file, line: line)
        XCTAssertTrue(r.stderr.contains(mentions), "'\(mentions)' not in: \(r.stderr)", file: file, line: line)
    }

    func testBadInputGivesOneLineAndLeavesNothing() throws {
        let dir = try tempDir()
        assertOneLineError(try tessera(["pretrain", "--data", dir + "/missing.npy", "--run", dir + "/r1"]), mentions: "missing.npy")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/r1"))
        assertOneLineError(try tessera(["pretrain", "--data", "fashion-mnist:" + dir + "/nowhere", "--run", dir + "/r2"]), mentions: "apt-get install dataset-fashion-mnist")
        let data = try tinyData(dir)
        assertOneLineError(try tessera(["pretrain", "--data", data, "--patch-size", "5", "--run", dir + "/r3"]), mentions: "not divisible by patch size 5")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/r3"))
        assertOneLineError(try tessera(["pretrain", "--bogus-flag"]), mentions: "--bogus-flag")
        assertOneLineError(try tessera(["pretrain", "--data", data, "--batch-size", "8", "--run", "/proc/tessera-run"]), mentions: "/proc")
        try Data("not a checkpoint".utf8).write(to: URL(fileURLWithPath: dir + "/bad.safetensors"))
        assertOneLineError(try tessera(["eval", dir + "/bad.safetensors"]), mentions: "bad.safetensors")
        assertOneLineError(try tessera(["inspect", dir + "/none.safetensors"]), mentions: "none.safetensors")
        assertOneLineError(try tessera(["pretrain", "--model", "vit-huge"]), mentions: "vit-tiny")
        XCTAssertEqual(try tessera(["--help"]).status, 0)
    }

    /// An ImageFolder of PNGs packed into tar shards trains; a corrupt image stops the run with one
    /// line naming it, or is skipped with --skip-unreadable.
    func testImageFolderAndTarShardsTrain() throws {
        let dir = try tempDir()
        var rng = TesseraRNG(seed: 5)
        for i in 0..<24 {
            let px = (0..<(16 * 16)).map { p in UInt8((p / 16 / 5 == i % 3 ? 200 : 30) + rng.int(below: 40)) }
            let path = dir + "/folder/class\(i % 3)/\(i).png"
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try FileIO.writeAtomically(ImageSet.encodePNG(px, width: 16, height: 16, channels: 1), to: path)
        }
        let pack = try tessera(["pack", dir + "/folder", dir + "/shards", "--shard-size", "10"])
        XCTAssertEqual(pack.status, 0, pack.stderr)
        XCTAssertTrue(pack.stdout.contains("packed 24 images"), pack.stdout)
        assertOneLineError(try tessera(["pack", dir + "/folder", dir + "/shards"]), mentions: "already holds .tar shards")
        let common = ["--channels", "1", "--image-size", "16", "--depth", "1", "--dim", "32", "--heads", "2",
                      "--decoder-dim", "16", "--decoder-depth", "1", "--decoder-heads", "2", "--epochs", "1", "--workers", "2"]
        let shards = try tessera(["pretrain", "--data", dir + "/shards", "--run", dir + "/r-shards", "--batch-size", "8"] + common)
        XCTAssertEqual(shards.status, 0, shards.stderr)
        XCTAssertTrue(shards.stdout.contains("tar shards") && shards.stdout.contains("24 images, 3 classes"), shards.stdout)
        try FileIO.writeAtomically([0x89, 0x50, 0x4e, 0x47, 0, 1, 2], to: dir + "/folder/class1/99-broken.png")
        // One batch of all 25 images: the broken one is sampled.
        assertOneLineError(try tessera(["pretrain", "--data", dir + "/folder", "--run", dir + "/r-broken", "--batch-size", "25"] + common),
                           mentions: "99-broken.png")
        let skipped = try tessera(["pretrain", "--data", dir + "/folder", "--run", dir + "/r-skip", "--batch-size", "25", "--skip-unreadable"] + common)
        XCTAssertEqual(skipped.status, 0, skipped.stderr)
        XCTAssertTrue(skipped.stderr.contains("99-broken.png"), skipped.stderr)
    }

    func testTinyRunEndToEnd() throws {
        let dir = try tempDir()
        let data = try tinyData(dir)
        let run = dir + "/run"
        let common = ["--data", data, "--run", run, "--batch-size", "16", "--depth", "1", "--dim", "32", "--heads", "2",
                      "--decoder-dim", "16", "--decoder-depth", "1", "--decoder-heads", "2", "--blr", "0.01", "--knn-every", "1"]
        let first = try tessera(["pretrain", "--epochs", "1"] + common)
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertTrue(first.stdout.contains("effective batch 16"), first.stdout)
        // Same run folder without --resume is refused; with --resume it continues.
        assertOneLineError(try tessera(["pretrain", "--epochs", "2"] + common), mentions: "--resume")
        // --resume takes the saved configuration; only --epochs (and --threads) apply.
        let second = try tessera(["pretrain", "--run", run, "--resume", "--epochs", "2"])
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertTrue(second.stdout.contains("resumed"), second.stdout)
        XCTAssertTrue(second.stdout.contains("kNN"), second.stdout)
        for f in ["config.json", "metrics.csv", "metrics.jsonl", "last.safetensors", "last.encoder.safetensors", "last.train-state.safetensors",
                  "best.safetensors", "best.encoder.safetensors"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/" + f), f)
        }
        let eval = try tessera(["eval", run + "/last.safetensors", "--few-shot", "1"])
        XCTAssertEqual(eval.status, 0, eval.stderr)
        XCTAssertTrue(eval.stdout.contains("kNN"), eval.stdout)
        XCTAssertTrue(eval.stdout.contains("linear probe"), eval.stdout)
        XCTAssertTrue(try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8).contains("\"kind\":\"eval\""))
        let px = try tessera(["eval", "--pixels", "--data", data, "--few-shot", "1"])
        XCTAssertEqual(px.status, 0, px.stderr)
        XCTAssertTrue(px.stdout.contains("raw pixels") && px.stdout.contains("kNN"), px.stdout)
        let recon = try tessera(["reconstruct", run + "/last.safetensors", "--count", "3", "--out", dir + "/r.png", "--save-noise", dir + "/noise.npy"])
        XCTAssertEqual(recon.status, 0, recon.stderr)
        let png = try ImageSet.decodeImage(dir + "/r.png", channels: 1)
        XCTAssertEqual([png.width, png.height], [4 * 112 + 5 * 2, 3 * 112 + 4 * 2])   // 4 panels × 3 images, 7x upscaled
        let again = try tessera(["reconstruct", run + "/last.safetensors", "--count", "3", "--out", dir + "/r2.png", "--noise", dir + "/noise.npy"])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/r.png")), try Data(contentsOf: URL(fileURLWithPath: dir + "/r2.png")))
        let emb = try tessera(["embed", run + "/last.encoder.safetensors", "--split", "train", "--out", dir + "/f.npy"])
        XCTAssertEqual(emb.status, 0, emb.stderr)
        XCTAssertEqual(try NpyArray.read(dir + "/f.npy").shape, [48, 32])
        guard case let .i64(l) = try NpyArray.read(dir + "/f-labels.npy").values else { return XCTFail("labels are not int64") }
        XCTAssertEqual(l, (0..<48).map { Int64($0 % 3) })
        let inspect = try tessera(["inspect", run + "/last.safetensors"])
        XCTAssertTrue(inspect.stdout.contains("decoder_pred.weight"), inspect.stdout)
        XCTAssertTrue(inspect.stdout.contains("format: pt"), inspect.stdout)
        // A checkpoint whose saved configuration is damaged (patch size 0) is one line, not a trap.
        let file = try SafeTensors.read(run + "/last.safetensors")
        var json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(file.metadata["config"]!.utf8)) as? [String: Any])
        var encoder = try XCTUnwrap(json["encoder"] as? [String: Any])
        encoder["patchSize"] = 0; json["encoder"] = encoder
        var metadata = file.metadata
        metadata["config"] = String(decoding: try JSONSerialization.data(withJSONObject: json), as: UTF8.self)
        try SafeTensors.write(SafeTensors.File(tensors: file.tensors, metadata: metadata), to: dir + "/damaged.safetensors")
        for command in [["eval"], ["embed", "--out", dir + "/d.npy"], ["reconstruct", "--out", dir + "/d.png"]] {
            assertOneLineError(try tessera([command[0], dir + "/damaged.safetensors"] + command.dropFirst()), mentions: "encoder.patchSize")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/d.npy"))
    }

    func testOtherMethodsTrainAndEvaluate() throws {
        let dir = try tempDir()
        let data = try tinyData(dir)
        let common = ["--data", data, "--batch-size", "16", "--depth", "1", "--dim", "32", "--heads", "2", "--epochs", "1"]
        let rc = try tessera(["pretrain", "--method", "rcmae", "--run", dir + "/rc", "--decoder-dim", "16", "--decoder-depth", "1",
                              "--decoder-heads", "2", "--momentum-schedule", "constant"] + common)
        XCTAssertEqual(rc.status, 0, rc.stderr)
        XCTAssertTrue(rc.stdout.contains("consistency"), rc.stdout)
        let msn = try tessera(["pretrain", "--method", "msn", "--run", dir + "/msn", "--focal-views", "2", "--focal-size", "8",
                               "--prototypes", "16", "--head-hidden", "32", "--teacher-momentum", "0.99"] + common)
        XCTAssertEqual(msn.status, 0, msn.stderr)
        XCTAssertTrue(msn.stdout.contains(" np "), msn.stdout)
        let sim = try tessera(["pretrain", "--method", "sim", "--run", dir + "/sim", "--decoder-heads", "2",
                               "--min-scale", "0.3", "--neg-weight", "0.01", "--teacher-momentum", "0.99"] + common)
        XCTAssertEqual(sim.status, 0, sim.stderr)
        for ck in [dir + "/rc/last.safetensors", dir + "/msn/last.safetensors", dir + "/msn/last.encoder.safetensors", dir + "/sim/last.safetensors"] {
            let e = try tessera(["eval", ck, "--few-shot", "none", "--no-linear"])
            XCTAssertEqual(e.status, 0, "\(ck): \(e.stderr)")
        }
        // Each run trained with its method's recipe: the library's defaults and the CLI's agree.
        for (method, run) in [(MethodKind.rcmae, "rc"), (.msn, "msn"), (.sim, "sim")] {
            let saved = try PretrainConfig.decode(String(contentsOfFile: dir + "/\(run)/config.json", encoding: .utf8))
            let library = PretrainConfig(method: method, mae: MAEConfig(encoder: saved.encoder, options: saved.mae ?? MAEOptions(decoderDim: 16, decoderDepth: 1, decoderHeads: 2)), augmentation: saved.augmentation)
            XCTAssertEqual(saved.method, method)
            XCTAssertEqual(saved.recipe, library.recipe, "\(method)")
            XCTAssertEqual(saved.recipe, method.implementation.recipe, "\(method)")
        }
        XCTAssertEqual(MethodKind.msn.recipe, TrainingRecipe(blr: 1e-3, betas: (0.9, 0.999), weightDecay: 0.04, weightDecayEnd: 0.4, clipGrad: 3))
        XCTAssertEqual(MethodKind.sim.recipe, TrainingRecipe(blr: 1e-3, betas: (0.9, 0.95), weightDecay: 0.05, clipGrad: 1))
        let simSaved = try PretrainConfig.decode(String(contentsOfFile: dir + "/sim/config.json", encoding: .utf8))
        XCTAssertEqual(simSaved.maskRatio, 0.6)
        // The method options given on the command line reach the method (not the shared base crop).
        XCTAssertEqual(simSaved.sim?.cropScale, 0.3...1)
        XCTAssertEqual(simSaved.sim?.negWeight, 0.01)
        XCTAssertEqual(simSaved.sim?.momentum, 0.99)
        XCTAssertEqual(try PretrainConfig.decode(String(contentsOfFile: dir + "/msn/config.json", encoding: .utf8)).msn?.momentum, 0.99)
        assertOneLineError(try tessera(["pretrain", "--neg-weight", "0.01", "--run", dir + "/x"] + common), mentions: "--neg-weight")
        assertOneLineError(try tessera(["pretrain", "--teacher-momentum", "0.99", "--run", dir + "/x"] + common), mentions: "--teacher-momentum")
        assertOneLineError(try tessera(["pretrain", "--method", "msn", "--mask-ratio", "0.5", "--run", dir + "/x"] + common), mentions: "--patch-drop")
        assertOneLineError(try tessera(["pretrain", "--method", "msn", "--focal-size", "10", "--run", dir + "/x"] + common), mentions: "--focal-size")
        assertOneLineError(try tessera(["reconstruct", dir + "/msn/last.safetensors"]), mentions: "full model")
    }

    func testBenchReportsThroughputAndFlopShare() throws {
        let r = try tessera(["bench", "--rounds", "1", "--steps", "1", "--image-size", "16", "--", "--depth", "1", "--dim", "32",
                             "--heads", "2", "--decoder-dim", "16", "--decoder-heads", "2", "--batch-size", "8"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("median:") && r.stdout.contains("of the sgemm rate"), r.stdout)
        assertOneLineError(try tessera(["bench", "--", "--method", "nope"]), mentions: "--method")
    }

    /// The step outside its products: the rows add up to the step (products included), name the ops
    /// and the step's parts, and the OpenMP runtime's own counts of regions and barriers are there.
    func testBenchSplitsTheStepOutsideTheProducts() throws {
        let r = try tessera(["bench", "--rounds", "1", "--steps", "2", "--image-size", "16", "--threads", "2", "--", "--depth", "1", "--dim", "32",
                             "--heads", "2", "--decoder-dim", "16", "--decoder-heads", "2", "--batch-size", "8"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        func number(_ line: String, after label: String) -> Double? {
            guard let range = line.range(of: label) else { return nil }
            return Double(line[range.upperBound...].prefix { $0.isNumber || $0 == "." })
        }
        let median = try XCTUnwrap(lines.first { $0.hasPrefix("median:") }.flatMap { number($0, after: "median: ") }, r.stdout)
        let header = try XCTUnwrap(lines.first { $0.hasPrefix("outside the products") }, r.stdout)
        let outside = try XCTUnwrap(number(header, after: "the mean of 2: "), header)
        let products = try XCTUnwrap(number(header, after: "; the products "), header)
        XCTAssertEqual(outside + products, median, accuracy: 0.01 * median + 0.2, header)   // one timeline, no gaps
        XCTAssertGreaterThan(outside, 0, header)
        let start = try XCTUnwrap(lines.firstIndex(of: header))
        let rows = lines[(start + 2)...].prefix { $0.hasPrefix("  ") }
        for name in ["fusedAttention", "normMLP", "AdamW"] {
            XCTAssertTrue(rows.contains { $0.hasPrefix("  " + name) }, "no row \(name) in\n\(rows.joined(separator: "\n"))")
        }
        // Each row's total is its forward plus its backward; the rows (and the products) add up to the step.
        var sum = products
        for row in rows {
            let f = row.split(separator: " ").suffix(4).compactMap { Double($0.replacingOccurrences(of: "%", with: "")) }
            XCTAssertEqual(f.count, 4, row)
            XCTAssertEqual(f[0] + f[1], f[2], accuracy: 0.011, row)
            sum += f[2]
        }
        XCTAssertEqual(sum, median, accuracy: 0.02 * median + 0.5, r.stdout)
        let omp = try XCTUnwrap(lines.first { $0.hasPrefix("OpenMP") }, r.stdout)
        if Runtime.hasOpenMP {
            let regions = try XCTUnwrap(number(omp, after: "runtime): "), omp)
            let barriers = try XCTUnwrap(number(omp, after: "regions and "), omp)
            XCTAssertGreaterThan(regions, 0, omp)
            XCTAssertGreaterThan(barriers, 0, omp)   // a region run by one thread (its `if` false) waits in none
        } else {
            XCTAssertTrue(omp.contains("not counted"), omp)
        }
    }
}
