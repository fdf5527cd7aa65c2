import Foundation
import XCTest

/// Programs of this package run as subprocesses by the tests (`tessera`, `TesseraMPICheck`, `mpirun`).
public enum Subprocess {
    /// How a finished program ended and what it printed.
    public struct Outcome {
        /// False when a signal ended it (then `status` is the signal number).
        public let exited: Bool
        public let status: Int32
        public let stdout: String, stderr: String
        public let seconds: Double
        /// True when `run`'s timeout killed it.
        public var timedOut = false
    }

    /// The path of executable `name` of this package: in the products directory, which holds (or
    /// is) the bundle of `testClass`.
    public static func product(_ name: String, besides testClass: AnyClass) -> String {
        let bundle = Bundle(for: testClass).bundleURL
        let candidates = [bundle.appendingPathComponent(name), bundle.deletingLastPathComponent().appendingPathComponent(name)]
        return (candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[1]).path
    }

    /// Starts `path args` with standard input empty, `TESSERA_THREADS=1` and `env` added to this
    /// process's environment, in `cwd` when given; its output goes to `stdout`/`stderr` (files) or nowhere.
    public static func start(_ path: String, _ args: [String], env: [String: String] = [:], cwd: String? = nil,
                             stdout: String? = nil, stderr: String? = nil) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        var e = ProcessInfo.processInfo.environment
        e["TESSERA_THREADS"] = "1"
        for (k, v) in env { e[k] = v }
        p.environment = e
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        p.standardInput = FileHandle.nullDevice
        func sink(_ path: String?) -> FileHandle {
            guard let path else { return FileHandle.nullDevice }
            FileManager.default.createFile(atPath: path, contents: nil)
            return FileHandle(forWritingAtPath: path)!
        }
        p.standardOutput = sink(stdout)
        p.standardError = sink(stderr)
        try p.run()
        return p
    }

    /// How long a program a test starts may run before it counts as hung (seconds).
    public static let deadline = 600.0

    /// Waits for `p` to end; one still running after `seconds` is killed (SIGKILL) and fails the test
    /// with `label` (the command), instead of stalling the suite. Returns false when it was killed.
    @discardableResult
    public static func wait(_ p: Process, within seconds: Double = deadline, _ label: @autoclosure () -> String,
                            file: StaticString = #filePath, line: UInt = #line) -> Bool {
        let started = Date()
        while p.isRunning && Date().timeIntervalSince(started) < seconds { usleep(20_000) }
        guard p.isRunning else { p.waitUntilExit(); return true }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        XCTFail("still running after \(Int(seconds)) s, killed: \(label())", file: file, line: line)
        return false
    }

    /// Runs `path args` to the end (see ``start(_:_:env:cwd:stdout:stderr:)``); output goes through
    /// temporary files, so nothing needs draining while it runs. A program still running after
    /// `timeout` seconds is killed (SIGKILL): the outcome then has `exited` false and `timedOut` true,
    /// and the test fails naming the command (unless `hangExpected`, for tests that check it themselves).
    public static func run(_ path: String, _ args: [String], env: [String: String] = [:], cwd: String? = nil,
                           timeout: Double = deadline, hangExpected: Bool = false,
                           file: StaticString = #filePath, line: UInt = #line) throws -> Outcome {
        let base = NSTemporaryDirectory() + "tessera-subprocess-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        defer { for s in [".out", ".err"] { try? FileManager.default.removeItem(atPath: base + s) } }
        let started = Date()
        let p = try start(path, args, env: env, cwd: cwd, stdout: base + ".out", stderr: base + ".err")
        var timedOut = false
        while p.isRunning && Date().timeIntervalSince(started) < timeout { usleep(20_000) }
        if p.isRunning {
            timedOut = true
            kill(p.processIdentifier, SIGKILL)
            if !hangExpected { XCTFail("still running after \(Int(timeout)) s, killed: \(([path] + args).joined(separator: " "))", file: file, line: line) }
        }
        p.waitUntilExit()
        func text(_ path: String) -> String { String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self) }
        return Outcome(exited: p.terminationReason == .exit, status: p.terminationStatus, stdout: text(base + ".out"),
                       stderr: text(base + ".err"), seconds: Date().timeIntervalSince(started), timedOut: timedOut)
    }
}
