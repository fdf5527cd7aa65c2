import Foundation
import TesseraEngine
import TestSupport
import XCTest

/// Nothing lost when a run is killed: a tiny pretraining run is killed with SIGKILL at random
/// moments (during steps and during checkpoint writes) and resumed each time. After every kill each
/// checkpoint on disk reads back; after the run completes no temporary file is left, and the final
/// weights and train state equal an uninterrupted run's bit for bit.
///
/// CI kills 20 times; `TESSERA_CRASH_KILLS=200 swift test --filter CrashConsistencyTests` by hand.
final class CrashConsistencyTests: XCTestCase {
    var binary: String { Subprocess.product("tessera", besides: CrashConsistencyTests.self) }

    /// A run in the background, its standard error in `errors` (for the failure messages).
    func start(_ args: [String], errors: String? = nil) throws -> Process { try Subprocess.start(binary, args, stderr: errors) }

    func text(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    func tensors(_ path: String) throws -> [String: [Float]] {
        var out: [String: [Float]] = [:]
        for (name, e) in try SafeTensors.read(path).tensors { out[name] = e.floats() ?? e.int64s().map { $0.map(Float.init) } }
        return out
    }

    func testKilledRunsResumeToTheUninterruptedResult() throws {
        let kills = Int(ProcessInfo.processInfo.environment["TESSERA_CRASH_KILLS"] ?? "") ?? (quickTier ? 3 : 20)
        let dir = NSTemporaryDirectory() + "tessera-crash-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let options = ["--limit", "64", "--batch-size", "16", "--epochs", "60", "--depth", "1", "--dim", "16", "--heads", "1",
                       "--decoder-dim", "16", "--decoder-depth", "1", "--decoder-heads", "1", "--log-every", "1"]
        let reference = try start(["pretrain", "--run", dir + "/reference"] + options)
        Subprocess.wait(reference, "the reference run")
        XCTAssertEqual(reference.terminationStatus, 0)
        let expected = try ["last.safetensors", "last.train-state.safetensors"].map { try tensors(dir + "/reference/" + $0) }

        var rng = TesseraRNG(seed: UInt64(ProcessInfo.processInfo.environment["TESSERA_CRASH_SEED"] ?? "") ?? 1)
        var killed = 0, duringWrites = 0, completedRuns = 0, series = 0
        while killed < kills {
            // One series: a fresh run folder, killed and resumed until it completes.
            let run = dir + "/crash-\(series)"
            series += 1
            while true {
                let resuming = FileManager.default.fileExists(atPath: run + "/last.train-state.safetensors")
                let errors = dir + "/stderr-\(series)"
                let p = try start(["pretrain", "--run", run] + (resuming ? ["--resume"] : options), errors: errors)
                // Killed at a random moment (startup, steps, checkpoint writes), or left to finish once
                // enough kills are done.
                if killed >= kills {   // the series' last run, to the end
                    Subprocess.wait(p, "the run that completes series \(series)")
                    XCTAssertEqual(p.terminationStatus, 0, "series \(series): the last resumed run failed: \(text(errors))")
                    break
                }
                // Every other kill waits for a checkpoint write in flight (a temporary file in the
                // folder) and strikes then; the others at a random moment.
                let aimAtWrite = killed % 2 == 1
                let deadline = Date().addingTimeInterval(aimAtWrite ? 30 : Double(rng.uniform(0.05, 1.5)))
                while p.isRunning && Date() < deadline {
                    if aimAtWrite, ((try? FileManager.default.contentsOfDirectory(atPath: run)) ?? []).contains(where: { $0.contains(".tmp-") }) { break }
                    usleep(aimAtWrite ? 200 : 2000)
                }
                if p.isRunning {
                    kill(p.processIdentifier, SIGKILL)
                    p.waitUntilExit()
                    killed += 1
                    let names = (try? FileManager.default.contentsOfDirectory(atPath: run)) ?? []
                    if names.contains(where: { $0.contains(".tmp-") }) { duringWrites += 1 }
                    for name in names where name.hasSuffix(".safetensors") && !name.hasPrefix(".") {
                        XCTAssertNoThrow(try SafeTensors.read(run + "/" + name), "\(name) unreadable after kill \(killed)")
                    }
                    continue
                }
                // A kill that landed after the last save had finished (aimed at its temporary file, it
                // struck as the process was leaving) leaves a finished run, which --resume rightly
                // refuses to train further: that series is complete.
                let finished = resuming && p.terminationStatus == 1 && text(errors).contains("epochs already")
                XCTAssertTrue(p.terminationStatus == 0 || finished, "series \(series): a resumed run failed: \(text(errors))")
                break
            }
            completedRuns += 1
            let names = try FileManager.default.contentsOfDirectory(atPath: run)
            XCTAssertFalse(names.contains { $0.contains(".tmp-") }, "temporary files left: \(names)")
            // The metrics survive the kills whole: every line of the CSV has all its fields, and the
            // JSON lines each parse.
            let csv = try String(contentsOfFile: run + "/metrics.csv", encoding: .utf8).split(separator: "\n")
            XCTAssertEqual(csv.first, "kind,epoch,step,loss,lr,images_per_s,knn")
            for line in csv { XCTAssertEqual(line.split(separator: ",", omittingEmptySubsequences: false).count, 7, "metrics.csv: '\(line)'") }
            for line in try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8).split(separator: "\n") {
                XCTAssertNoThrow(try JSONSerialization.jsonObject(with: Data(line.utf8)), "metrics.jsonl: '\(line)'")
            }
            for (i, file) in ["last.safetensors", "last.train-state.safetensors"].enumerated() {
                let got = try tensors(run + "/" + file)
                XCTAssertEqual(Set(got.keys), Set(expected[i].keys), file)
                for (name, values) in expected[i] {
                    XCTAssertTrue(got[name].map { zip($0, values).allSatisfy { $0.bitPattern == $1.bitPattern } } ?? false,
                                  "\(file): \(name) differs from the uninterrupted run (series \(series))")
                }
            }
        }
        print("crash consistency: \(killed) kills (\(duringWrites) during a checkpoint write), \(completedRuns) runs completed, all equal to the uninterrupted run")
        // The kills that matter most are those inside a write: with enough kills (CI's 20: 11, 13 and 14
        // of them landed inside one in three runs), at least half of the aimed ones must.
        if kills >= 8 { XCTAssertGreaterThanOrEqual(duringWrites, kills / 4, "too few kills landed inside a checkpoint write") }
    }

    /// A non-finite loss stops the run with one line naming the last good checkpoint, which is intact
    /// and resumes to the uninterrupted result.
    func testNonFiniteLossStopsWithTheLastGoodCheckpoint() throws {
        let dir = NSTemporaryDirectory() + "tessera-nan-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let options = ["--limit", "64", "--batch-size", "16", "--epochs", "3", "--depth", "1", "--dim", "16", "--heads", "1",
                       "--decoder-dim", "16", "--decoder-depth", "1", "--decoder-heads", "1"]
        let reference = try start(["pretrain", "--run", dir + "/reference"] + options)
        Subprocess.wait(reference, "the reference run")
        XCTAssertEqual(reference.terminationStatus, 0)

        // Step 9 is the first of epoch 3 (4 steps per epoch): its loss becomes NaN.
        let run = dir + "/run"
        let r = try Subprocess.run(binary, ["pretrain", "--run", run] + options, env: ["TESSERA_INJECT_FAILURE": "0:9:nan"])
        let message = r.stderr
        XCTAssertEqual(r.status, 1, message)
        XCTAssertEqual(message.split(separator: "\n").count, 1, message)
        XCTAssertTrue(message.contains("loss is nan at epoch 3 step 9"), message)
        XCTAssertTrue(message.contains("Last good checkpoint: \(run)/last.safetensors (epoch 2, step 8; --resume continues from it)"), message)
        XCTAssertEqual(try SafeTensors.read(run + "/last.safetensors").metadata["step"], "8")

        let resumed = try start(["pretrain", "--run", run, "--resume"])
        Subprocess.wait(resumed, "the resumed run")
        XCTAssertEqual(resumed.terminationStatus, 0)
        let expected = try tensors(dir + "/reference/last.safetensors"), got = try tensors(run + "/last.safetensors")
        for (name, values) in expected {
            XCTAssertTrue(got[name].map { zip($0, values).allSatisfy { $0.bitPattern == $1.bitPattern } } ?? false, "\(name) differs after resume")
        }
    }
}
