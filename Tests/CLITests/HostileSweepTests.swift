import Foundation
import TesseraData
import TesseraEngine
import TestSupport
import XCTest

/// The defects of issue #36's hostile sweep, each as a user meets it through the `tessera` binary:
/// every case must end in one line and a non-zero status (or succeed with the right answer) within
/// a time bound, and leave the file system as it found it. Each test here failed on the main before
/// its fix (docs/reliability.md, "Hostile sweep").
final class HostileSweepTests: XCTestCase {
    let binary = Subprocess.product("tessera", besides: HostileSweepTests.self)

    func tessera(_ args: [String], timeout: Double = 120) throws -> Subprocess.Outcome {
        try Subprocess.run(binary, args, env: ["TESSERA_THREADS": "2"], timeout: timeout, hangExpected: true)
    }

    /// Exited by itself with status 1 and one line on stderr, "error: …" naming `mentions`.
    func assertRefused(_ r: Subprocess.Outcome, mentions: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertFalse(r.timedOut, "hung (killed after \(Int(r.seconds)) s)", file: file, line: line)
        XCTAssertTrue(r.exited, "ended by signal \(r.status); stderr: \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.status, 1, "stdout: \(r.stdout) stderr: \(r.stderr)", file: file, line: line)
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("error: ") }
        XCTAssertEqual(errors.count, 1, "stderr: \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.contains(mentions), "'\(mentions)' not in: \(r.stderr)", file: file, line: line)
    }

    func assertSucceeded(_ r: Subprocess.Outcome, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertFalse(r.timedOut, "hung (killed after \(Int(r.seconds)) s)", file: file, line: line)
        XCTAssertTrue(r.exited && r.status == 0, "status \(r.status); stderr: \(r.stderr)", file: file, line: line)
    }

    func scratch() throws -> String { try scratchDirectory("sweep") }

    /// Separable 16×16 images: class c has a bright band in rows 5c…5c+4.
    func bandImage(_ c: Int, _ i: Int, channels: Int = 1) -> [UInt8] {
        var rng = TesseraRNG(seed: UInt64(i * 31 + c))
        return (0..<(16 * 16 * channels)).map { p in UInt8((p / channels / 16 / 5 == c % 3 ? 200 : 30) + rng.int(below: 40)) }
    }

    /// `count` labeled images as `DIR/NAME.npy` (+ `-labels.npy`), uint8 `[count, 16, 16(, channels)]`.
    @discardableResult
    func npy(_ dir: String, _ name: String, count: Int = 48, channels: Int = 1) throws -> String {
        let px = (0..<count).flatMap { bandImage($0 % 3, $0, channels: channels).map(Float.init) }.map { $0 / 255 }
        let shape = channels == 1 ? [count, 16, 16] : [count, 16, 16, channels]
        try FileIO.writeAtomically(NpyArray.serialize(floats: px, shape: shape), to: "\(dir)/\(name).npy")
        try FileIO.writeAtomically(NpyArray.serialize(int64s: (0..<count).map { Int64($0 % 3) }, shape: [count]), to: "\(dir)/\(name)-labels.npy")
        return "\(dir)/\(name).npy"
    }

    /// PNGs in `root/<class>/<i>.png`, `perClass` each; the band follows the class's position in `bands`.
    func folder(_ root: String, classes: [String], bands: [String] = ["a", "b", "c"], perClass: Int = 8) throws {
        for cls in classes {
            try FileManager.default.createDirectory(atPath: root + "/" + cls, withIntermediateDirectories: true)
            for i in 0..<perClass {
                try FileIO.writeAtomically(ImageSet.encodePNG(bandImage(bands.firstIndex(of: cls) ?? 0, i), width: 16, height: 16, channels: 1),
                                           to: "\(root)/\(cls)/\(i).png")
            }
        }
    }

    let tiny = ["--depth", "1", "--dim", "32", "--heads", "2", "--decoder-dim", "16", "--decoder-depth", "1", "--decoder-heads", "2",
                "--batch-size", "16", "--epochs", "1"]

    /// A finished one-epoch run on 48 images in `dir/run`.
    func finishedRun(_ dir: String) throws -> (run: String, data: String) {
        let data = try npy(dir, "tiny")
        let r = try tessera(["pretrain", "--data", data, "--run", dir + "/run"] + tiny)
        assertSucceeded(r)
        return (dir + "/run", data)
    }

    /// Holds an exclusive lock on `RUN/.tessera.lock` as a running `tessera pretrain` does.
    func holdLock(_ run: String) throws -> Int32 {
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
        let fd = open(run + "/.tessera.lock", O_RDWR | O_CREAT, 0o644)
        XCTAssertGreaterThanOrEqual(fd, 0)
        XCTAssertEqual(flock(fd, LOCK_EX | LOCK_NB), 0)
        _ = pwrite(fd, "4242\n", 5, 0)
        return fd
    }

    // MARK: 1. the lock protects a run from its first instant

    /// A second `pretrain` on a folder in use is refused before it reads anything (it used to read
    /// the data and build the model first, and take the lock later: started in that window, it took
    /// the lock after the first run finished and overwrote it).
    func testTheLockIsTakenBeforeAnythingIsRead() throws {
        let dir = try scratch()
        let run = dir + "/run"
        let fd = try holdLock(run)
        defer { close(fd) }
        // Data that does not exist: only a command that locks first names the lock, not the data.
        assertRefused(try tessera(["pretrain", "--data", dir + "/absent.npy", "--run", run] + tiny), mentions: "in use by another tessera process (pid 4242)")
        assertRefused(try tessera(["pretrain", "--run", run, "--resume"]), mentions: "in use by another tessera process")
    }

    // MARK: 2. outputs: never renamed over what is not a regular file

    func testOutputsAreNotRenamedOverSpecialFilesOrSymlinks() throws {
        let dir = try scratch()
        let (run, _) = try finishedRun(dir)
        let fifo = dir + "/out.npy"
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        assertRefused(try tessera(["embed", run + "/last.encoder.safetensors", "--out", fifo]), mentions: "not a regular file")
        var st = stat()
        XCTAssertEqual(lstat(fifo, &st), 0)
        XCTAssertEqual(st.st_mode & S_IFMT, S_IFIFO, "the FIFO was replaced")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out-labels.npy"), "a failed embed left its labels file")
        let recon = try tessera(["reconstruct", run + "/last.safetensors", "--count", "2", "--out", dir + "/grid.png", "--save-noise", fifo])
        assertRefused(recon, mentions: "not a regular file")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/grid.png"), "a failed reconstruct left its PNG")

        // A symlink is followed: the file it points to is replaced, the link stays.
        try FileManager.default.createDirectory(atPath: dir + "/elsewhere", withIntermediateDirectories: true)
        try Data("old".utf8).write(to: URL(fileURLWithPath: dir + "/elsewhere/target.npy"))
        try FileManager.default.createSymbolicLink(atPath: dir + "/link.npy", withDestinationPath: dir + "/elsewhere/target.npy")
        assertSucceeded(try tessera(["embed", run + "/last.encoder.safetensors", "--out", dir + "/link.npy"]))
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: dir + "/link.npy"), dir + "/elsewhere/target.npy")
        XCTAssertEqual(try NpyArray.read(dir + "/elsewhere/target.npy").shape, [48, 32])

        // The run folder's lock file: a symlink there is refused, its target untouched.
        let victim = dir + "/victim.txt"
        try Data("precious".utf8).write(to: URL(fileURLWithPath: victim))
        try FileManager.default.createDirectory(atPath: dir + "/run2", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: dir + "/run2/.tessera.lock", withDestinationPath: victim)
        assertRefused(try tessera(["pretrain", "--data", dir + "/tiny.npy", "--run", dir + "/run2"] + tiny), mentions: ".tessera.lock")
        XCTAssertEqual(try String(contentsOfFile: victim, encoding: .utf8), "precious")
    }

    // MARK: 3. labels: classes by name, the test split never silently the training set

    func testTestClassesAreMatchedByName() throws {
        let dir = try scratch()
        try folder(dir + "/d1/train", classes: ["a", "b", "c"])
        try folder(dir + "/d1/test", classes: ["c"])   // one class, which is the third of the training split
        let r = try tessera(["eval", "--pixels", "--data", dir + "/d1", "--few-shot", "none", "--no-linear"])
        assertSucceeded(r)
        XCTAssertTrue(r.stdout.contains("kNN (k=20)") && r.stdout.contains("100.00%"), r.stdout)

        try folder(dir + "/d2/train", classes: ["a", "b"])
        try folder(dir + "/d2/test", classes: ["a", "b", "c"])   // a class the training split has not
        assertRefused(try tessera(["eval", "--pixels", "--data", dir + "/d2", "--few-shot", "none"]), mentions: "'c'")
    }

    func testAMissingTestSplitIsSaidAloud() throws {
        let dir = try scratch()
        let data = try npy(dir, "flat")
        let r = try tessera(["eval", "--pixels", "--data", data, "--few-shot", "none", "--no-linear"])
        assertSucceeded(r)
        XCTAssertTrue(r.stderr.contains("warning:") && r.stderr.contains("no test split"), r.stderr)
        XCTAssertTrue(r.stdout.contains("not held out"), r.stdout)

        // A folder with train/ only: its test split is not the folder itself read as one class "train".
        try folder(dir + "/only/train", classes: ["a", "b", "c"])
        let t = try tessera(["eval", "--pixels", "--data", dir + "/only", "--few-shot", "none", "--no-linear"])
        assertSucceeded(t)
        XCTAssertTrue(t.stderr.contains("no test split"), t.stderr)
        XCTAssertTrue(t.stdout.contains("24 train / 24 test"), t.stdout)
    }

    func testAStaleShardIndexIsNotTrusted() throws {
        let dir = try scratch()
        try folder(dir + "/src/train", classes: ["a", "b", "c"])
        try folder(dir + "/src/test", classes: ["a", "b", "c"])
        for split in ["train", "test"] { assertSucceeded(try tessera(["pack", dir + "/src/" + split, dir + "/shards/" + split])) }
        // The training shard replaced by a pack of the same images in another order: same byte size.
        assertSucceeded(try tessera(["pack", dir + "/src/train", dir + "/other", "--seed", "7"]))
        let shard = "/shards/train/shard-000000.tar"
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: dir + shard)[.size] as? Int,
                       try FileManager.default.attributesOfItem(atPath: dir + "/other/shard-000000.tar")[.size] as? Int)
        try FileManager.default.removeItem(atPath: dir + shard)
        try FileManager.default.copyItem(atPath: dir + "/other/shard-000000.tar", toPath: dir + shard)
        let r = try tessera(["eval", "--pixels", "--data", dir + "/shards", "--few-shot", "none", "--no-linear"])
        assertSucceeded(r)
        XCTAssertTrue(r.stdout.contains("kNN (k=20)") && r.stdout.contains("100.00%"), r.stdout)
    }

    // MARK: 4. traps become one line

    func testMismatchedChannelsBatchSizeAndCountersAreOneLine() throws {
        let dir = try scratch()
        let (run, data) = try finishedRun(dir)
        let rgb = try npy(dir, "rgb", channels: 3)
        assertRefused(try tessera(["pretrain", "--data", data, "--eval-data", rgb, "--knn-every", "1", "--run", dir + "/r-knn"] + tiny),
                      mentions: "3-channel")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/r-knn"))
        assertRefused(try tessera(["pretrain", "--method", "msn", "--data", data, "--run", dir + "/r-msn", "--batch-size", "1", "--depth", "1",
                                   "--dim", "32", "--heads", "2", "--epochs", "1", "--limit", "4"]), mentions: "--batch-size")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/r-msn"))

        // Counters a hostile train state claims.
        let state = run + "/last.train-state.safetensors"
        let original = try SafeTensors.read(state)
        for (key, value) in [("epoch", "-1"), ("step", "\(Int64.max)")] {
            var meta = original.metadata
            meta[key] = value
            try SafeTensors.write(.init(tensors: original.tensors, metadata: meta), to: state)
            assertRefused(try tessera(["pretrain", "--run", run, "--resume", "--epochs", "2"]), mentions: "last.train-state.safetensors")
        }
        try SafeTensors.write(original, to: state)
        // The data changed channels since the run started.
        try FileManager.default.removeItem(atPath: data)
        try FileManager.default.copyItem(atPath: rgb, toPath: data)
        assertRefused(try tessera(["pretrain", "--run", run, "--resume", "--epochs", "2"]), mentions: "3-channel")
    }

    // MARK: 5. no hangs

    func testFIFOsAndSymlinkLoopsDoNotHang() throws {
        let dir = try scratch()
        try folder(dir + "/f/train", classes: ["a", "b", "c"])
        try folder(dir + "/f/test", classes: ["a", "b", "c"])
        XCTAssertEqual(mkfifo(dir + "/f/test/b/zz.png", 0o644), 0)
        assertRefused(try tessera(["eval", "--pixels", "--data", dir + "/f", "--few-shot", "none"], timeout: 60), mentions: "zz.png")
        XCTAssertEqual(mkfifo(dir + "/ck.safetensors", 0o644), 0)
        assertRefused(try tessera(["inspect", dir + "/ck.safetensors"], timeout: 60), mentions: "ck.safetensors")
        assertRefused(try tessera(["eval", dir + "/ck.safetensors"], timeout: 60), mentions: "ck.safetensors")
        // A FIFO where the run folder keeps its metrics (read at start to drop a cut line, then appended to).
        try FileManager.default.createDirectory(atPath: dir + "/fifo-run", withIntermediateDirectories: true)
        XCTAssertEqual(mkfifo(dir + "/fifo-run/metrics.csv", 0o644), 0)
        assertRefused(try tessera(["pretrain", "--data", try npy(dir, "t"), "--run", dir + "/fifo-run"] + tiny, timeout: 60), mentions: "metrics.csv")

        try folder(dir + "/loops", classes: ["a", "b"])
        for (link, to) in [("a/x", "."), ("a/y", "."), ("b/up", "..")] {
            try FileManager.default.createSymbolicLink(atPath: dir + "/loops/" + link, withDestinationPath: to)
        }
        let r = try tessera(["pretrain", "--data", dir + "/loops", "--run", dir + "/r-loops", "--batch-size", "8", "--epochs", "1",
                             "--depth", "1", "--dim", "32", "--heads", "2", "--decoder-dim", "16", "--decoder-depth", "1", "--decoder-heads", "2",
                             "--channels", "1"], timeout: 60)
        assertSucceeded(r)
        XCTAssertTrue(r.stdout.contains("16 images, 2 classes"), r.stdout)
    }

    // MARK: 6. a truncated shard is not a shorter valid one

    func testATruncatedShardIsRefused() throws {
        let dir = try scratch()
        try folder(dir + "/src", classes: ["a", "b", "c"])
        assertSucceeded(try tessera(["pack", dir + "/src", dir + "/shards"]))
        let shard = dir + "/shards/shard-000000.tar"
        // Cut at the boundary after the sixth member, then in the middle of the next header.
        var members: [Int] = []
        try TarReader.scan(shard) { _, offset, size, _ in members.append(offset + (size + 511) / 512 * 512); return true }
        let bytes = try FileIO.readAll(shard)
        for cut in [members[5], members[5] + 200] {
            try FileIO.writeAtomically(Array(bytes[0..<cut]), to: shard)
            try? FileManager.default.removeItem(atPath: shard + ".idx")
            assertRefused(try tessera(["pretrain", "--data", dir + "/shards", "--run", dir + "/r", "--channels", "1", "--image-size", "16", "--batch-size", "2"] + tiny.dropLast(4)),
                          mentions: "truncated")
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/r"))
        }
    }

    // MARK: 7. hostile sizes are bounded before anything is allocated

    func testHostileSizesAreRefusedBeforeAllocating() throws {
        let dir = try scratch()
        let (run, _) = try finishedRun(dir)
        // A small checkpoint whose configuration claims a model of 128 blocks 4096 wide (about 26 GB).
        let file = try SafeTensors.read(run + "/last.safetensors")
        var json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(file.metadata["config"]!.utf8)) as? [String: Any])
        var encoder = try XCTUnwrap(json["encoder"] as? [String: Any])
        encoder["depth"] = 128; encoder["dim"] = 4096; encoder["heads"] = 64; json["encoder"] = encoder
        var meta = file.metadata
        meta["config"] = String(decoding: try JSONSerialization.data(withJSONObject: json), as: UTF8.self)
        try SafeTensors.write(.init(tensors: file.tensors, metadata: meta), to: dir + "/huge.safetensors")
        for command in [["eval"], ["embed", "--out", dir + "/e.npy"], ["reconstruct", "--out", dir + "/e.png"]] {
            let r = try tessera([command[0], dir + "/huge.safetensors"] + command.dropFirst(), timeout: 60)
            assertRefused(r, mentions: "does not match")
            XCTAssertLessThan(r.seconds, 20)
        }
        // A grid of 256 images at 64x: about 1 GB of pixels for this 16-pixel model, refused up front.
        try npy(dir, "many", count: 256)
        assertRefused(try tessera(["reconstruct", run + "/last.safetensors", "--data", dir + "/many.npy", "--count", "256", "--scale", "64",
                                   "--out", dir + "/big.png"], timeout: 60), mentions: "--scale")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/big.png"))
    }

    // MARK: 8. runs that would train nothing are refused

    func testRunsThatWouldTrainNothingAreRefused() throws {
        let dir = try scratch()
        let (run, data) = try finishedRun(dir)
        assertRefused(try tessera(["pretrain", "--data", data, "--run", dir + "/r-accum", "--accum", "4"] + tiny), mentions: "--accum")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/r-accum"))
        let config = try Data(contentsOf: URL(fileURLWithPath: run + "/config.json"))
        assertRefused(try tessera(["pretrain", "--run", run, "--resume", "--epochs", "1"]), mentions: "--epochs")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: run + "/config.json")), config, "a refused resume rewrote config.json")
        // The training data shrank: another number of steps per epoch.
        try npy(dir, "tiny", count: 40)
        assertRefused(try tessera(["pretrain", "--run", run, "--resume", "--epochs", "2"]), mentions: "steps per epoch")
    }

    // MARK: 10. no folder state that neither a resume nor a new start accepts

    /// A model file without the train state that every save writes first (a kill inside a first save,
    /// or a copy by hand): `--resume` has nothing to continue, so a new start takes the folder over.
    func testAnInterruptedFirstSaveIsNoDeadEnd() throws {
        let dir = try scratch()
        let (run, data) = try finishedRun(dir)
        try FileManager.default.removeItem(atPath: run + "/last.train-state.safetensors")
        assertRefused(try tessera(["pretrain", "--run", run, "--resume", "--epochs", "2"]), mentions: "drop --resume")
        let fresh = try tessera(["pretrain", "--data", data, "--run", run] + tiny)
        assertSucceeded(fresh)
        XCTAssertTrue(fresh.stderr.contains("warning:") && fresh.stderr.contains("replaces it"), fresh.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/last.train-state.safetensors"))
    }

    /// A kill inside a finished run's last save, after its train state and before its model files
    /// (found by the crash test's kills aimed at writes): `--resume` completes the save from the train
    /// state instead of refusing a run that has trained all its epochs, or leaving the model a save behind.
    func testAFinishedRunsCutLastSaveIsCompletedOnResume() throws {
        let dir = try scratch()
        let data = try npy(dir, "tiny")
        let run = dir + "/run"
        assertSucceeded(try tessera(["pretrain", "--data", data, "--run", run] + tiny))
        let epochOne = try Data(contentsOf: URL(fileURLWithPath: run + "/last.safetensors"))
        assertSucceeded(try tessera(["pretrain", "--run", run, "--resume", "--epochs", "2"]))
        try epochOne.write(to: URL(fileURLWithPath: run + "/last.safetensors"))   // as if killed before the model file's rename
        let r = try tessera(["pretrain", "--run", run, "--resume"])
        assertSucceeded(r)
        XCTAssertTrue(r.stdout.contains("cut its last save short"), r.stdout)
        let state = try SafeTensors.read(run + "/last.train-state.safetensors"), model = try SafeTensors.read(run + "/last.safetensors")
        XCTAssertEqual(model.metadata["step"], state.metadata["step"])
        for (name, entry) in model.tensors { XCTAssertEqual(entry.floats(), state["model." + name]?.floats(), name) }
        // Now complete: a resume with nothing to train is refused as before.
        assertRefused(try tessera(["pretrain", "--run", run, "--resume"]), mentions: "--epochs")
    }

    /// A checkpoint whose weights are not finite is evaluated with a warning that says so.
    func testNonFiniteWeightsAreSaid() throws {
        let dir = try scratch()
        let (run, _) = try finishedRun(dir)
        let file = try SafeTensors.read(run + "/last.encoder.safetensors")
        let tensors = file.tensors.map { t -> (name: String, entry: SafeTensors.Entry) in
            guard t.name == "norm.weight", var v = t.entry.floats() else { return t }
            v[0] = .nan
            return (t.name, .init(floats: v, shape: t.entry.shape))
        }
        try SafeTensors.write(.init(tensors: tensors, metadata: file.metadata), to: dir + "/nan.safetensors")
        let r = try tessera(["eval", dir + "/nan.safetensors", "--few-shot", "none", "--no-linear"])
        XCTAssertTrue(r.stderr.contains("warning:") && r.stderr.contains("NaN"), r.stderr)
    }

    /// `eval` prints its results, then appends them to the run's metrics: a run folder that cannot take
    /// them (read-only storage; here the metrics file is a directory) is a warning, not a failed command.
    func testEvalSucceedsWhenTheRunFolderCannotRecordIt() throws {
        let dir = try scratch()
        let (run, _) = try finishedRun(dir)
        try FileManager.default.removeItem(atPath: run + "/metrics.jsonl")
        try FileManager.default.createDirectory(atPath: run + "/metrics.jsonl", withIntermediateDirectories: false)
        let r = try tessera(["eval", run + "/last.safetensors", "--few-shot", "none", "--no-linear"])
        assertSucceeded(r)
        XCTAssertTrue(r.stdout.contains("kNN"), r.stdout)
        XCTAssertTrue(r.stderr.contains("warning:") && r.stderr.contains("not recorded"), r.stderr)
    }

    // MARK: 11. names that are not UTF-8

    /// File and class folder names are bytes to the file system: one that is not valid UTF-8 (Latin-1
    /// from an old archive) is read like any other, not reported as missing.
    func testNamesThatAreNotUTF8AreRead() throws {
        let dir = try scratch()
        func create(_ path: [UInt8], _ contents: [UInt8]?) {
            let c = (path + [0]).map { CChar(bitPattern: $0) }
            if let contents {
                let fd = open(c, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
                XCTAssertGreaterThanOrEqual(fd, 0)
                XCTAssertEqual(write(fd, contents, contents.count), contents.count)
                close(fd)
            } else {
                XCTAssertEqual(mkdir(c, 0o755), 0)
            }
        }
        for split in ["train", "test"] {
            try folder(dir + "/d/" + split, classes: ["a", "b"])
            let latin1 = Array((dir + "/d/" + split + "/").utf8) + [0xE9, UInt8(ascii: "t"), 0xE9]   // "été" in Latin-1
            create(latin1, nil)
            for i in 0..<8 { create(latin1 + Array("/\(i).png".utf8), try ImageSet.encodePNG(bandImage(2, i), width: 16, height: 16, channels: 1)) }
        }
        create(Array((dir + "/d/train/a/").utf8) + [0xFF, 0xFE] + Array(".png".utf8), try ImageSet.encodePNG(bandImage(0, 9), width: 16, height: 16, channels: 1))
        let r = try tessera(["eval", "--pixels", "--data", dir + "/d", "--few-shot", "none", "--no-linear"])
        assertSucceeded(r)
        XCTAssertTrue(r.stdout.contains("25 train / 24 test") && r.stdout.contains("100.00%"), r.stdout)
        let pack = try tessera(["pack", dir + "/d/train", dir + "/shards"])
        assertSucceeded(pack)
        XCTAssertTrue(pack.stdout.contains("packed 25 images"), pack.stdout)
    }

    // MARK: 9. failed commands leave nothing

    func testFailedCommandsLeaveNothingBehind() throws {
        let dir = try scratch()
        try folder(dir + "/src", classes: ["a", "b"])
        try FileIO.writeAtomically([0x89, 0x50, 0x4e, 0x47, 0, 1, 2], to: dir + "/src/a/0.png")   // in the first batch of 16
        assertRefused(try tessera(["pretrain", "--data", dir + "/src", "--run", dir + "/out/run", "--channels", "1"] + tiny), mentions: "0.png")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/out"), "a failed first epoch left the run folder")

        // pack: an image that cannot be read half way leaves no shard, and the rerun works.
        try folder(dir + "/p", classes: ["a", "b"])
        XCTAssertEqual(mkfifo(dir + "/p/b/9.png", 0o644), 0)
        assertRefused(try tessera(["pack", dir + "/p", dir + "/packed", "--shard-size", "2", "--no-shuffle"], timeout: 60), mentions: "9.png")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/packed"), "a failed pack left shards")
        try FileManager.default.removeItem(atPath: dir + "/p/b/9.png")
        assertSucceeded(try tessera(["pack", dir + "/p", dir + "/packed", "--shard-size", "2"]))
    }
}
