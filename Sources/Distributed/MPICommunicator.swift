import CMPIShim
import Foundation
import TesseraEngine

/// The processes of an MPI job (`mpirun -np N tessera …`, `srun tessera …`) as a ``Communicator``:
/// the collectives of `Sources/CMPIShim`, each with a deadline.
///
/// A collective that fails or finds no answer from the other ranks within ``timeout`` seconds ends
/// the whole job: this process prints one line naming its rank and the cause, then calls
/// `MPI_Abort`, which stops every rank (mpirun then exits non-zero).
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    /// This process's index and the number of processes among those of the job on this machine.
    public let localRank: Int, localSize: Int
    /// Seconds a collective waits for the other ranks before the job is ended.
    public var timeout: Double
    /// Values per piece of a large sum (the scratch memory is two pieces).
    public var bucket = 1 << 20
    /// Seconds spent in collectives since creation (communication plus waiting for other ranks).
    public private(set) var seconds = 0.0

    /// Whether this build has MPI (`TESSERA_MPI` was not `off`).
    public static var isAvailable: Bool { tmpi_compiled() != 0 }

    /// The MPI library's own version line ("Open MPI v4.1.4, …", "MPICH Version: 4.0.2"), or "".
    public static var libraryVersion: String {
        var buf = [CChar](repeating: 0, count: 512)
        tmpi_library_version(&buf, Int32(buf.count))
        return text(buf)
    }

    /// The number of processes an MPI launcher started this one among, from the environment the
    /// launchers set (Open MPI's `OMPI_COMM_WORLD_SIZE`, MPICH/Hydra's and SLURM PMI's `PMI_SIZE`,
    /// PMIx's `PMIX_RANK` with SLURM's `SLURM_NTASKS`), or nil when no launcher did. `TESSERA_MPI=0`
    /// in the environment ignores the launcher.
    public static var launchedSize: Int? {
        let env = ProcessInfo.processInfo.environment
        if env["TESSERA_MPI"] == "0" { return nil }
        for key in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"] { if let n = env[key].flatMap(Int.init) { return n } }
        if env["PMIX_RANK"] != nil || env["SLURM_STEP_ID"] != nil, let n = env["SLURM_NTASKS"].flatMap(Int.init) { return n }
        return nil
    }

    /// Initializes MPI (once per process) and joins the job.
    public init(timeout: Double = 1800) throws {
        precondition(tmpi_initialized() == 0, "MPICommunicator: MPI is initialized once per process")
        var r: Int32 = 0, s: Int32 = 1, lr: Int32 = 0, ls: Int32 = 1
        var error = [CChar](repeating: 0, count: 512)
        let rc = tmpi_init(&r, &s, &lr, &ls, &error, Int32(error.count))
        guard rc == Int32(TMPI_OK) else { throw DistributedError(text(error)) }
        rank = Int(r); size = Int(s); localRank = Int(lr); localSize = Int(ls)
        self.timeout = timeout
    }

    /// Leaves the job normally (`MPI_Finalize`); call once, at the end of the program.
    public func finish() { tmpi_finalize() }

    /// Ends every rank of the job: prints `error: rank R: message` and calls `MPI_Abort`.
    public func abort(_ message: String, code: Int32 = 1) -> Never {
        FileHandle.standardError.write(Data("error: rank \(rank) of \(size): \(message)\n".utf8))
        tmpi_abort(code)
        exit(code)
    }

    private func run(_ body: (UnsafeMutablePointer<CChar>, Int32) -> Int32) {
        let start = Date()
        var error = [CChar](repeating: 0, count: 512)
        let rc = error.withUnsafeMutableBufferPointer { body($0.baseAddress!, Int32($0.count)) }
        seconds += Date().timeIntervalSince(start)
        if rc != Int32(TMPI_OK) { abort(text(error) + "; ending the job") }
    }

    public func sum(_ values: UnsafeMutableBufferPointer<Float>) {
        guard size > 1, let base = values.baseAddress else { return }
        run { tmpi_sum_float(base, Int64(values.count), Int64(bucket), timeout, $0, $1) }
    }

    public func sum(_ values: UnsafeMutableBufferPointer<Double>) {
        guard size > 1, let base = values.baseAddress else { return }
        run { tmpi_sum_double(base, Int64(values.count), Int64(bucket), timeout, $0, $1) }
    }

    public func broadcast(_ bytes: UnsafeMutableRawBufferPointer, from root: Int) {
        guard size > 1, let base = bytes.baseAddress else { return }
        run { tmpi_broadcast(base, Int64(bytes.count), Int32(root), timeout, $0, $1) }
    }

    public func allGather(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        guard size > 1 else { return Array(bytes) }
        var out = [UInt8](repeating: 0, count: bytes.count * size)
        out.withUnsafeMutableBytes { o in
            run { tmpi_allgather(bytes.baseAddress, o.baseAddress, Int64(bytes.count), timeout, $0, $1) }
        }
        return out
    }

}

/// Why a distributed job could not start.
public struct DistributedError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// The C string in `buffer`.
private func text(_ buffer: [CChar]) -> String { buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) } }
