import Foundation
import TesseraEngine
import TestSupport
import XCTest

/// One run folder, one writer: a second process on a folder in use refuses in one line; a lock left
/// by a killed process is taken over.
final class RunFolderLockTests: XCTestCase {
    func testSecondWriterRefusedAndKilledHolderTakenOver() throws {
        let binary = Subprocess.product("tessera", besides: RunFolderLockTests.self)
        let dir = NSTemporaryDirectory() + "tessera-lock-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let run = dir + "/run"
        let args = ["pretrain", "--run", run, "--limit", "4096", "--batch-size", "32", "--depth", "2", "--dim", "32", "--heads", "2",
                    "--decoder-dim", "16", "--decoder-depth", "1", "--decoder-heads", "2", "--epochs", "200"]
        let holder = try Subprocess.start(binary, args)
        defer { if holder.isRunning { kill(holder.processIdentifier, SIGKILL) } }
        // Wait until the first epoch's checkpoint exists (the holder has the lock from its start).
        let deadline = Date().addingTimeInterval(120)
        while !FileManager.default.fileExists(atPath: run + "/last.safetensors") && Date() < deadline && holder.isRunning { usleep(100_000) }
        XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/last.safetensors"), "the first run wrote no checkpoint")

        let second = try Subprocess.run(binary, ["pretrain", "--run", run, "--resume"])
        let message = second.stderr
        XCTAssertEqual(second.status, 1, message)
        XCTAssertTrue(message.contains("is in use by another tessera process (pid \(holder.processIdentifier))"), message)
        XCTAssertEqual(message.split(separator: "\n").filter { $0.hasPrefix("error:") }.count, 1, message)

        kill(holder.processIdentifier, SIGKILL)
        Subprocess.wait(holder, "the killed holder")
        // One epoch more than the killed holder saved (a resume to fewer epochs than done is refused).
        let done = try XCTUnwrap(Int(SafeTensors.read(run + "/last.train-state.safetensors").metadata["epoch"] ?? ""))
        let third = try Subprocess.run(binary, ["pretrain", "--run", run, "--resume", "--epochs", "\(done + 1)"])
        XCTAssertEqual(third.status, 0, third.stderr)
    }
}
