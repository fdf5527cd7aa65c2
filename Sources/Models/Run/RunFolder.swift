import Foundation
import TesseraData
import TesseraEngine
#if canImport(Glibc)
import Glibc
#endif

/// Files of a run folder.
public struct RunFolder: Sendable {
    public let path: String
    public init(_ path: String) { self.path = path }
    public var config: String { path + "/config.json" }
    public var metricsCSV: String { path + "/metrics.csv" }
    public var metricsJSONL: String { path + "/metrics.jsonl" }
    public func model(_ tag: String) -> String { path + "/\(tag).safetensors" }
    public func encoder(_ tag: String) -> String { path + "/\(tag).encoder.safetensors" }
    public func trainState(_ tag: String) -> String { path + "/\(tag).train-state.safetensors" }

    /// Tidies what a killed run may have left (called under the folder's lock, before writing):
    /// temporary files of interrupted atomic writes are removed, and a metrics line cut off
    /// mid-write is dropped.
    public func recover() throws {
        let fm = FileManager.default
        for name in (try? fm.contentsOfDirectory(atPath: path)) ?? [] where name.hasPrefix(".") && name.contains(".tmp-") {
            try? fm.removeItem(atPath: path + "/" + name)
        }
        for file in [metricsCSV, metricsJSONL] {
            guard fm.fileExists(atPath: file) else { continue }
            let bytes = try FileIO.readAll(file, limit: 1 << 32)   // never blocks: a FIFO there is one line
            guard let last = bytes.last, last != UInt8(ascii: "\n") else { continue }
            let keep = (bytes.lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 }) ?? 0
            try FileIO.writeAtomically(Array(bytes[0..<keep]), to: file)
        }
    }
}

/// A run folder held by this process: created where missing and locked before anything else is read
/// or written, so that two commands on one `--run` cannot both get past their checks (a second one
/// is refused at once, naming the holder). If the command then fails before its first checkpoint,
/// ``abandon()`` takes away what it added, leaving the file system as it found it.
public final class RunClaim {
    public let folder: RunFolder
    public let lock: FileIO.DirectoryLock
    /// Directories this claim created, outermost first.
    private let created: [String]
    /// Entries of the folder when it was claimed.
    private let existed: Set<String>

    public init(_ folder: RunFolder) throws {
        created = try FileIO.makeDirectory(folder.path)
        existed = Set((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? [])
        do { lock = try FileIO.DirectoryLock(folder.path, recordingHolder: false) } catch {
            for dir in created.reversed() { rmdir(dir) }
            throw error
        }
        self.folder = folder
        RunClaim.openLock.withLock { RunClaim.open[ObjectIdentifier(self)] = Weak(self) }
    }

    deinit { RunClaim.openLock.withLock { RunClaim.open[ObjectIdentifier(self)] = nil } }

    private struct Weak { weak var claim: RunClaim?; init(_ c: RunClaim) { claim = c } }
    private static let openLock = NSLock()
    nonisolated(unsafe) private static var open: [ObjectIdentifier: Weak] = [:]

    /// ``abandon()`` on every claim this process holds: for a process about to exit from a place no
    /// error can be thrown through (memory that cannot be allocated, `BufferPool.onAllocationFailure`),
    /// so that a run that never saved leaves nothing behind there either.
    public static func abandonEveryOpenClaim() {
        for claim in openLock.withLock({ open.values.compactMap(\.claim) }) { claim.abandon() }
    }

    /// Records this process in the lock file: once the command's checks under the lock have passed
    /// (a refused command leaves the folder exactly as it was).
    public func accept() { lock.recordHolder() }

    /// Whether the folder holds a run to continue: its train state, which every save writes first.
    public var holdsRun: Bool { FileManager.default.fileExists(atPath: folder.trainState("last")) }

    /// After a failure: puts the lock file back as it was; when no train state was saved, removes the
    /// files this command added (the lock, configuration, metrics, a checkpoint cut short) and the
    /// directories it created; with a train state on disk everything else stays, to be resumed.
    public func abandon() {
        if let previous = lock.previous { lock.restore(previous.bytes, modified: previous.modified) }   // the last holder's pid, as it was
        guard !holdsRun else { return }
        let fm = FileManager.default
        for name in (try? fm.contentsOfDirectory(atPath: folder.path)) ?? [] where !existed.contains(name) {
            unlink(folder.path + "/" + name)
        }
        for dir in created.reversed() { rmdir(dir) }   // only emptied ones go
    }
}
