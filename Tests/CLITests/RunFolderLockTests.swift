import Foundation
import XCTest

/// One run folder, one writer: a second process on a folder in use refuses in one line; a lock left
/// by a killed process is taken over.
final class RunFolderLockTests: XCTestCase {
    func testSecondWriterRefusedAndKilledHolderTakenOver() throws {
        let bundle = Bundle(for: RunFolderLockTests.self).bundleURL
        let binary = [bundle.appendingPathComponent("tessera"), bundle.deletingLastPathComponent().appendingPathComponent("tessera")]
            .first { FileManager.default.isExecutableFile(atPath: $0.path) }!
        let dir = NSTemporaryDirectory() + "tessera-lock-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let run = dir + "/run"
        let args = ["pretrain", "--run", run, "--limit", "4096", "--batch-size", "32", "--depth", "2", "--dim", "32", "--heads", "2",
                    "--decoder-dim", "16", "--decoder-depth", "1", "--decoder-heads", "2", "--epochs", "200"]
        func start(_ a: [String]) throws -> (Process, String) {
            let p = Process()
            p.executableURL = binary
            p.arguments = a
            var env = ProcessInfo.processInfo.environment
            env["TESSERA_THREADS"] = "1"
            p.environment = env
            let err = dir + "/err-\(UInt32.random(in: 0..<UInt32.max))"
            FileManager.default.createFile(atPath: err, contents: nil)
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle(forWritingAtPath: err)
            try p.run()
            return (p, err)
        }
        let (holder, _) = try start(args)
        defer { if holder.isRunning { kill(holder.processIdentifier, SIGKILL) } }
        // Wait until the first epoch's checkpoint exists (the holder has the lock from its start).
        let deadline = Date().addingTimeInterval(120)
        while !FileManager.default.fileExists(atPath: run + "/last.safetensors") && Date() < deadline && holder.isRunning { usleep(100_000) }
        XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/last.safetensors"), "the first run wrote no checkpoint")

        let (second, err) = try start(["pretrain", "--run", run, "--resume"])
        second.waitUntilExit()
        let message = String(decoding: FileManager.default.contents(atPath: err) ?? Data(), as: UTF8.self)
        XCTAssertEqual(second.terminationStatus, 1, message)
        XCTAssertTrue(message.contains("is in use by another tessera process (pid \(holder.processIdentifier))"), message)
        XCTAssertEqual(message.split(separator: "\n").filter { $0.hasPrefix("error:") }.count, 1, message)

        kill(holder.processIdentifier, SIGKILL)
        holder.waitUntilExit()
        let (third, err3) = try start(["pretrain", "--run", run, "--resume", "--epochs", "1"])
        third.waitUntilExit()
        XCTAssertEqual(third.terminationStatus, 0, String(decoding: FileManager.default.contents(atPath: err3) ?? Data(), as: UTF8.self))
    }
}
