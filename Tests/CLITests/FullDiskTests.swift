import Foundation
import TesseraEngine
import TestSupport
import XCTest

/// A full disk: a run folder on a small tmpfs (mounted by the test, so root only). The first
/// checkpoint fits; the second cannot (an atomic write needs room for the old file and the new one):
/// the run stops with one line naming the file and the space it needed, the previous checkpoint is
/// intact and resumable, and no temporary file is left.
final class FullDiskTests: XCTestCase {
    func testSavingOnAFullDiskKeepsThePreviousCheckpoint() throws {
        guard getuid() == 0 else { throw XCTSkip("mounting a tmpfs needs root; the full-disk test is skipped") }
        let mountPoint = NSTemporaryDirectory() + "tessera-full-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: mountPoint) }
        // One checkpoint set of this model is about 180 KB (train state 108 KB); 256 KB holds one set
        // but not the second train state's temporary file beside it.
        func shell(_ args: [String]) throws -> Int32 { try Subprocess.run(args[0], Array(args.dropFirst())).status }
        guard try shell(["/bin/mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", mountPoint]) == 0 else {
            throw XCTSkip("cannot mount a tmpfs here (a container without CAP_SYS_ADMIN?); the full-disk test is skipped")
        }
        defer { _ = try? shell(["/bin/umount", mountPoint]) }

        let binary = Subprocess.product("tessera", besides: FullDiskTests.self)
        func tessera(_ args: [String]) throws -> Subprocess.Outcome { try Subprocess.run(binary, args) }
        let run = mountPoint + "/run"
        let r = try tessera(["pretrain", "--run", run, "--limit", "64", "--batch-size", "16", "--epochs", "3", "--depth", "1", "--dim", "16",
                             "--heads", "1", "--decoder-dim", "16", "--decoder-depth", "1", "--decoder-heads", "1"])
        XCTAssertEqual(r.status, 1, r.stderr)
        let lines = r.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("\(run)/last.train-state.safetensors: no space left on the device ("), r.stderr)
        XCTAssertTrue(r.stderr.contains("bytes to write,") && r.stderr.contains("the previous file is unchanged"), r.stderr)
        let names = try FileManager.default.contentsOfDirectory(atPath: run)
        XCTAssertFalse(names.contains { $0.contains(".tmp-") }, "temporary files left: \(names)")
        let state = try SafeTensors.read(run + "/last.train-state.safetensors")
        XCTAssertEqual(state.metadata["epoch"], "1", "the epoch-1 checkpoint is not the one on disk")
        XCTAssertNoThrow(try SafeTensors.read(run + "/last.safetensors"))
        // The checkpoint on disk resumes (the resume's own first save hits the same full disk).
        let resumed = try tessera(["pretrain", "--run", run, "--resume"])
        XCTAssertTrue(resumed.stderr.contains("no space left"), resumed.stderr)
        XCTAssertEqual(resumed.status, 1)
        XCTAssertEqual(try SafeTensors.read(run + "/last.train-state.safetensors").metadata["epoch"], "1")
    }
}
