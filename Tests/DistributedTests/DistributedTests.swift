import Foundation
import TesseraEngine
import TestSupport
import XCTest

/// Data-parallel training under `mpirun` on this machine: every job is a subprocess with a deadline
/// (MPI is initialized once per process, never inside the XCTest process).
final class DistributedTests: XCTestCase {
    func product(_ name: String) -> String { Subprocess.product(name, besides: DistributedTests.self) }

    typealias Outcome = Subprocess.Outcome

    /// Open MPI as root on one machine (shared memory, out-of-band on loopback, no single-copy
    /// mechanism in containers).
    static let openMPIEnvironment = ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                                     "OMPI_MCA_btl_vader_single_copy_mechanism": "none", "OMPI_MCA_btl": "self,vader",
                                     "OMPI_MCA_pml": "ob1", "OMPI_MCA_oob_tcp_if_include": "lo"]

    /// `mpirun -np ranks` with a rank's threads free to use every core.
    static func mpirun(_ ranks: Int) -> [String] { ["mpirun", "-np", "\(ranks)", "--oversubscribe", "--bind-to", "none"] }

    /// Runs `program args` under `mpirun -np ranks` (ranks 1: directly), within `timeout` seconds.
    func launch(_ ranks: Int, _ program: String, _ args: [String], env: [String: String] = [:], timeout: Int = 180) throws -> Outcome {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/mpirun") else {
            throw XCTSkip("mpirun is not installed (Debian: openmpi-bin; scripts/test.sh installs it)")
        }
        return try Subprocess.run("/usr/bin/timeout", ["--kill-after=10", "\(timeout)"] + (ranks > 1 ? Self.mpirun(ranks) : []) + [program] + args,
                                  env: Self.openMPIEnvironment.merging(env) { $1 })
    }

    func tempDir() throws -> String {
        let d = NSTemporaryDirectory() + "tessera-dist-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: d) }
        return d
    }

    /// A tiny run of `method`: 24 Fashion-MNIST images, global batch 8, 3 steps per epoch, products in
    /// `precision`. fp32 by default: the tests comparing W processes with one bound the difference of
    /// two summation orders by fp32's rounding. In bf16 that difference (1e-7 relative after a step)
    /// flips the bf16 rounding of a few operands in the next step, each by bf16's step of 2⁻⁸
    /// (measured: first moments 7e-5 to 2e-3 apart after 3 steps) — the run still trains the same.
    func pretrain(_ method: String, run: String, epochs: Int = 1, precision: String = "fp32", extra: [String] = []) -> [String] {
        var a = ["pretrain", "--method", method, "--run", run, "--depth", "2", "--dim", "32", "--heads", "2", "--decoder-dim", "32",
                 "--decoder-depth", "1", "--decoder-heads", "2", "--limit", "24", "--batch-size", "8", "--epochs", "\(epochs)",
                 "--warmup-epochs", "0", "--blr", "0.01", "--log-every", "1", "--seed", "11", "--precision", precision]
        if method == "msn" { a += ["--focal-views", "2", "--prototypes", "16", "--head-hidden", "32"] }
        return a + extra
    }

    /// The largest absolute difference between two checkpoints' tensors (same names and shapes).
    func maxDifference(_ a: String, _ b: String) throws -> Float {
        let x = try SafeTensors.read(a), y = try SafeTensors.read(b)
        XCTAssertEqual(x.tensors.map(\.name), y.tensors.map(\.name))
        var worst: Float = 0
        for (name, e) in x.tensors {
            guard let u = e.floats(), let v = y[name]?.floats() else { continue }
            for (p, q) in zip(u, v) { worst = max(worst, abs(p - q)) }
        }
        return worst
    }

    /// ‖a − b‖ / ‖b‖ over the tensors of two checkpoints whose names start with `prefix`.
    func relativeDifference(_ a: String, _ b: String, prefix: String) throws -> Double {
        let x = try SafeTensors.read(a), y = try SafeTensors.read(b)
        var d = 0.0, n = 0.0
        for (name, e) in x.tensors where name.hasPrefix(prefix) {
            guard let u = e.floats(), let v = y[name]?.floats() else { continue }
            for (p, q) in zip(u, v) { d += Double(p - q) * Double(p - q); n += Double(q) * Double(q) }
        }
        XCTAssertGreaterThan(n, 0, "no tensor named \(prefix)… in \(a)")
        return (d / max(n, 1e-300)).squareRoot()
    }

    func bytes(_ path: String) -> Data { FileManager.default.contents(atPath: path) ?? Data() }

    func assertSucceeded(_ r: Outcome, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 0, "status \(r.status)\n\(r.stdout.suffix(2000))\n\(r.stderr.suffix(2000))", file: file, line: line)
    }

    // MARK: collectives

    /// The fixed-order sum gives every rank the same bits (equal to the rank-order sum), and
    /// SyncBatchNorm, Sinkhorn, ME-MAX and UniGrad on W processes match one process with the whole
    /// batch (relative 1e-5): `TesseraMPICheck` on 2 and 3 processes.
    func testCollectivesMatchOneProcess() throws {
        for ranks in [2, 3] {
            let r = try launch(ranks, product("TesseraMPICheck"), [], timeout: 120)
            assertSucceeded(r)
            let lines = r.stdout.split(separator: "\n")
            XCTAssertEqual(lines.filter { $0.hasPrefix("ok ") }.count, 8, r.stdout)
            for name in ["sum-300001", "sync-batchnorm", "sinkhorn", "msn-loss", "unigrad"] {
                XCTAssertTrue(lines.contains { $0.hasPrefix("ok \(name) ") }, "\(name) on \(ranks) ranks:\n\(r.stdout)")
            }
        }
    }

    // MARK: training

    /// Every method, 3 steps: 2 processes × 4 images train as 1 process × 8, and two identical
    /// 2-process runs write byte-identical checkpoints. Rank 0 alone writes, and records the world size.
    ///
    /// The two orders of summation differ by rounding: AdamW's first moments (the averaged gradients)
    /// agree to 1e-5 relative (measured 2e-7–4e-6). Parameters are checked loosely (0.5·lr per step):
    /// AdamW moves every element by about lr·g/(|g| + ε), so an element whose gradient is near zero
    /// (|g| ~ ε) moves by a rounding-sensitive fraction of lr (measured up to 0.07·lr per step); a
    /// wrong mask, view or statistic moves elements by up to 2·lr per step.
    func testEachMethodTwoProcessesTrainAsOne() throws {
        let dir = try tempDir()
        let tessera = product("tessera")
        for method in ["mae", "rcmae", "msn", "sim"] {
            let one = try launch(1, tessera, pretrain(method, run: "\(dir)/\(method)-1"))
            assertSucceeded(one)
            let two = try launch(2, tessera, pretrain(method, run: "\(dir)/\(method)-2"))
            assertSucceeded(two)
            XCTAssertTrue(two.stdout.contains("2 processes × 4 images"), two.stdout)
            XCTAssertEqual(two.stdout.components(separatedBy: "epoch 1/1 done").count, 2, "one process reports:\n\(two.stdout)")
            let again = try launch(2, tessera, pretrain(method, run: "\(dir)/\(method)-2b"))
            assertSucceeded(again)

            let lr: Float = 0.01 * 8 / 256
            let d = try maxDifference("\(dir)/\(method)-1/last.safetensors", "\(dir)/\(method)-2/last.safetensors")
            let m = try relativeDifference("\(dir)/\(method)-1/last.train-state.safetensors", "\(dir)/\(method)-2/last.train-state.safetensors", prefix: "exp_avg.")
            XCTAssertLessThanOrEqual(m, 1e-5, "\(method): 2 × 4 vs 1 × 8: the first moments (gradient averages) differ by \(m) relative")
            XCTAssertLessThanOrEqual(d, 0.5 * lr * 3, "\(method): 2 × 4 vs 1 × 8 differ by \(d)")
            for f in ["last.safetensors", "last.train-state.safetensors", "last.encoder.safetensors"] {
                XCTAssertEqual(bytes("\(dir)/\(method)-2/\(f)"), bytes("\(dir)/\(method)-2b/\(f)"), "\(method): two 2-process runs differ in \(f)")
            }
            let meta = try SafeTensors.read("\(dir)/\(method)-2/last.safetensors").metadata
            XCTAssertEqual(meta["world_size"], "2")
            XCTAssertEqual(meta["samples"], "24")
        }
        // Products in bf16: two identical 2-process runs still write the same bytes.
        for run in ["bf16", "bf16b"] { assertSucceeded(try launch(2, tessera, pretrain("mae", run: "\(dir)/\(run)", precision: "bf16"))) }
        for f in ["last.safetensors", "last.train-state.safetensors"] {
            XCTAssertEqual(bytes("\(dir)/bf16/\(f)"), bytes("\(dir)/bf16b/\(f)"), "bf16: two 2-process runs differ in \(f)")
        }
        XCTAssertTrue(try String(contentsOfFile: dir + "/bf16/config.json", encoding: .utf8).contains("\"precision\" : \"bf16\""))
    }

    /// A run saved by 2 processes resumes with 1, and one saved by 1 resumes with 2; both end where
    /// an uninterrupted run does (within rounding). The interruption is a failure staged before the
    /// first step of epoch 2, after epoch 1's checkpoint.
    func testResumeWithAnotherNumberOfProcesses() throws {
        let dir = try tempDir()
        let tessera = product("tessera")
        for method in ["mae", "msn"] {
            let whole = try launch(1, tessera, pretrain(method, run: "\(dir)/\(method)-whole", epochs: 2))
            assertSucceeded(whole)
            for (first, second) in [(2, 1), (1, 2)] {
                let run = "\(dir)/\(method)-\(first)to\(second)"
                let stopped = try launch(first, tessera, pretrain(method, run: run, epochs: 2), env: ["TESSERA_INJECT_FAILURE": "0:4"])
                XCTAssertNotEqual(stopped.status, 0)
                XCTAssertTrue(stopped.stderr.contains("injected failure"), stopped.stderr)
                XCTAssertEqual(try SafeTensors.read(run + "/last.safetensors").metadata["world_size"], "\(first)")
                let resumed = try launch(second, tessera, ["pretrain", "--run", run, "--resume"])
                assertSucceeded(resumed)
                XCTAssertTrue(resumed.stdout.contains("resumed \(run) at epoch 1, step 3"), resumed.stdout)
                let lr: Float = 0.01 * 8 / 256
                let d = try maxDifference("\(dir)/\(method)-whole/last.safetensors", run + "/last.safetensors")
                let m = try relativeDifference("\(dir)/\(method)-whole/last.train-state.safetensors", run + "/last.train-state.safetensors", prefix: "exp_avg.")
                XCTAssertLessThanOrEqual(m, 1e-5, "\(method): saved with \(first), resumed with \(second): first moments differ by \(m) relative")
                XCTAssertLessThanOrEqual(d, 0.5 * lr * 6, "\(method): saved with \(first), resumed with \(second): differs by \(d)")
            }
        }
    }

    // MARK: failures

    /// A process that fails (an error, or killed) ends the whole job with a non-zero status well
    /// before the deadline, and an error names the rank.
    func testFailureOnOneRankEndsTheJob() throws {
        let dir = try tempDir()
        let tessera = product("tessera")
        let failed = try launch(2, tessera, pretrain("mae", run: "\(dir)/error", epochs: 2), env: ["TESSERA_INJECT_FAILURE": "1:2"], timeout: 120)
        XCTAssertNotEqual(failed.status, 0)
        XCTAssertNotEqual(failed.status, 124, "the job hung until the deadline")
        XCTAssertLessThan(failed.seconds, 60)
        XCTAssertTrue(failed.stderr.contains("error: rank 1 of 2: injected failure"), failed.stderr)

        let killed = try launch(2, tessera, pretrain("mae", run: "\(dir)/crash", epochs: 2), env: ["TESSERA_INJECT_FAILURE": "1:2:crash"], timeout: 120)
        XCTAssertNotEqual(killed.status, 0)
        XCTAssertNotEqual(killed.status, 124, "the job hung until the deadline")
        XCTAssertLessThan(killed.seconds, 60)
    }

    /// A non-finite loss on one rank's share stops every rank at the same step (the loss is averaged
    /// first), printed once, with the last good checkpoint intact; the job resumes from it.
    func testNonFiniteLossUnderMPIStopsEveryRankOnce() throws {
        let dir = try tempDir()
        let tessera = product("tessera")
        let run = "\(dir)/nan"
        // 3 steps per epoch: step 5 is the second of epoch 2, after epoch 1's checkpoint.
        let r = try launch(2, tessera, pretrain("mae", run: run, epochs: 2), env: ["TESSERA_INJECT_FAILURE": "1:5:nan"], timeout: 120)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertNotEqual(r.status, 124, "the job hung until the deadline")
        let errors = r.stderr.split(separator: "\n").filter { $0.contains("loss is nan") }
        XCTAssertEqual(errors.count, 1, "printed by one rank only: \(r.stderr)")
        XCTAssertTrue(r.stderr.contains("loss is nan at epoch 2 step 5") && r.stderr.contains("(epoch 1, step 3; --resume continues from it)"), r.stderr)
        XCTAssertEqual(try SafeTensors.read(run + "/last.train-state.safetensors").metadata["step"], "3")
        assertSucceeded(try launch(2, tessera, ["pretrain", "--run", run, "--resume"]))
    }

    /// A rank that stops answering (SIGSTOP: alive, but silent) ends the job at the collective deadline
    /// (`TESSERA_MPI_TIMEOUT`) with one line naming the collective, instead of hanging.
    func testASilentRankEndsTheJobAtTheCollectiveDeadline() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/mpirun") else { throw XCTSkip("mpirun is not installed") }
        let dir = try tempDir()
        let err = dir + "/stderr"
        let job = try Subprocess.start("/usr/bin/mpirun", Array(Self.mpirun(2).dropFirst()) + [product("tessera")]
                                       + pretrain("mae", run: "\(dir)/silent", epochs: 200),
                                       env: Self.openMPIEnvironment.merging(["TESSERA_MPI_TIMEOUT": "5"]) { $1 }, stderr: err)
        // Once both ranks train (the first checkpoint exists), stop one of them.
        let started = Date()
        while job.isRunning && !FileManager.default.fileExists(atPath: "\(dir)/silent/last.safetensors") && Date().timeIntervalSince(started) < 120 {
            usleep(50_000)
        }
        let ranks = children(of: job.processIdentifier)
        XCTAssertEqual(ranks.count, 2, "the job's ranks")
        guard job.isRunning, let silent = ranks.last else { return XCTFail("the job ended before a rank could be stopped") }
        kill(silent, SIGSTOP)
        let stopped = Date()
        let ended = Subprocess.wait(job, within: 90, "a job with a stopped rank")
        for rank in ranks { kill(rank, SIGKILL) }
        XCTAssertTrue(ended, "the job did not end at the collective deadline")
        XCTAssertLessThan(Date().timeIntervalSince(stopped), 60)
        XCTAssertNotEqual(job.terminationStatus, 0)
        let text = (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
        XCTAssertTrue(text.contains("no answer from the other ranks within 5 s"), text)
    }

    /// Processes whose parameters drift apart (one rank's nudged by 1e-3 before step 2) are caught by the
    /// checksum compared at the save: the job stops with one line naming the rank, and no checkpoint
    /// of the diverged state is written.
    func testDivergedProcessesAreCaughtAtTheSave() throws {
        let dir = try tempDir()
        let run = "\(dir)/diverged"
        let r = try launch(2, product("tessera"), pretrain("mae", run: run, epochs: 2), env: ["TESSERA_INJECT_FAILURE": "1:2:diverge"], timeout: 120)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertNotEqual(r.status, 124, "the job hung until the deadline")
        XCTAssertTrue(r.stderr.contains("processes 1 hold different parameters than rank 0 at step 3"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: run + "/last.train-state.safetensors"), "the diverged state was saved")
    }

    /// A global batch that the processes cannot share equally is refused with one line.
    func testBatchMustDivideAmongProcesses() throws {
        let dir = try tempDir()
        let r = try launch(2, product("tessera"), pretrain("mae", run: "\(dir)/odd", extra: ["--batch-size", "9"]), timeout: 120)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--batch-size 9 is the global batch and must be a multiple of the 2 processes"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/odd/last.safetensors"))
    }

    // MARK: killed jobs

    /// The pids whose parent is `pid` (from /proc).
    func children(of pid: Int32) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { child in
            guard let stat = try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 2 && Int32(fields[1]) == pid
        }
    }

    /// A 2-process run killed again and again (SIGKILL to one random rank while it trains or saves;
    /// mpirun then ends the other) and resumed with 2 processes each time ends bit-identical to an
    /// uninterrupted 2-process run; every checkpoint reads back after every kill.
    func testKilledTwoProcessRunsResumeToTheUninterruptedResult() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/mpirun") else { throw XCTSkip("mpirun is not installed") }
        let dir = try tempDir()
        let tessera = product("tessera")
        let options = ["--limit", "64", "--batch-size", "16", "--epochs", "150", "--depth", "1", "--dim", "16", "--heads", "1",
                       "--decoder-dim", "16", "--decoder-depth", "1", "--decoder-heads", "1", "--seed", "5"]
        assertSucceeded(try launch(2, tessera, ["pretrain", "--run", dir + "/reference"] + options))
        func job(_ args: [String]) throws -> Process {
            try Subprocess.start("/usr/bin/mpirun", Array(Self.mpirun(2).dropFirst()) + [tessera] + args, env: Self.openMPIEnvironment)
        }
        let kills = Int(ProcessInfo.processInfo.environment["TESSERA_MPI_CRASH_KILLS"] ?? "") ?? (quickTier ? 1 : 5)
        var rng = TesseraRNG(seed: 3)
        var killed = 0, duringWrites = 0
        let run = dir + "/crash"
        func writing() -> Bool { ((try? FileManager.default.contentsOfDirectory(atPath: run)) ?? []).contains { $0.contains(".tmp-") } }
        while true {
            let resuming = FileManager.default.fileExists(atPath: run + "/last.train-state.safetensors")
            let p = try job(["pretrain", "--run", run] + (resuming ? ["--resume"] : options))
            if killed < kills {
                // Wait until both ranks run, then a random moment of training, or (the first kill, and
                // every other one after it) the moment rank 0 has a checkpoint write in flight (reported).
                let aimAtWrite = killed % 2 == 0
                let started = Date(), deadline = started.addingTimeInterval(aimAtWrite ? 30 : Double(rng.uniform(1.0, 3.0)))
                while p.isRunning && Date() < deadline {
                    if aimAtWrite, Date().timeIntervalSince(started) > 0.5, writing() { break }
                    usleep(aimAtWrite ? 200 : 5000)
                }
                let ranks = children(of: p.processIdentifier)
                if p.isRunning, !ranks.isEmpty {
                    if writing() { duringWrites += 1 }
                    kill(ranks[rng.int(below: ranks.count)], SIGKILL)
                    let end = Date().addingTimeInterval(60)
                    while p.isRunning && Date() < end { usleep(10_000) }
                    XCTAssertFalse(p.isRunning, "mpirun did not end after a rank was killed")
                    if p.isRunning { p.terminate(); p.waitUntilExit() }
                    if p.terminationStatus == 0 { break }   // the job had just finished: the kill came too late
                    killed += 1
                    for name in (try? FileManager.default.contentsOfDirectory(atPath: run)) ?? [] where name.hasSuffix(".safetensors") && !name.hasPrefix(".") {
                        XCTAssertNoThrow(try SafeTensors.read(run + "/" + name), "\(name) unreadable after kill \(killed)")
                    }
                    continue
                }
            }
            Subprocess.wait(p, "a resumed 2-process run")
            if p.terminationStatus == 0 { break }
            XCTFail("a resumed 2-process run failed (status \(p.terminationStatus))")
            return
        }
        XCTAssertGreaterThan(killed, 0, "no kill landed while the job trained")
        // Not required here (CI run 4 of 2026-12-06: 0 of 3): a rank killed while rank 0 writes is
        // followed by mpirun's own kill of rank 0 only later, so "inside a write" is not under the
        // test's control; the single-process crash test requires it.
        let names = try FileManager.default.contentsOfDirectory(atPath: run)
        XCTAssertFalse(names.contains { $0.contains(".tmp-") }, "temporary files left: \(names)")
        print("2-process crash consistency: \(killed) kills (\(duringWrites) during a checkpoint write), final checkpoint bit-identical")
        for f in ["last.safetensors", "last.train-state.safetensors"] {
            XCTAssertEqual(bytes(dir + "/reference/" + f), bytes(run + "/" + f), "\(f) differs from the uninterrupted 2-process run after \(killed) kills")
        }
    }
}
