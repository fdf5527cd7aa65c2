import Foundation
import TesseraDistributed
import TesseraEngine
import TesseraModels

/// The processes this `tessera` runs among: one, or the ranks of an MPI job when an MPI launcher
/// (`mpirun`, `mpiexec`, `srun`) started it as one of several.
enum Processes {
    /// The job's communicator (``SingleProcess`` unless launched by MPI); set once by `main`.
    nonisolated(unsafe) static var comm: any Communicator = SingleProcess()
    nonisolated(unsafe) static var mpi: MPICommunicator?

    /// Joins the MPI job when a launcher started several processes. Each process then defaults to
    /// its share of this machine's cores (threads and decode workers), unless the threads were set.
    /// Other commands (`dataParallel` false) refuse to run as one of several processes.
    static func start(dataParallel: Bool) throws {
        guard let n = MPICommunicator.launchedSize, n > 1 else { return }
        guard dataParallel else {
            throw CLIError("started by an MPI launcher as one of \(n) processes, but only 'tessera pretrain' and 'tessera bench' run data-parallel; run this command without mpirun")
        }
        guard MPICommunicator.isAvailable else {
            throw CLIError("started by an MPI launcher as one of \(n) processes, but this tessera was built without MPI (TESSERA_MPI=off); install libopenmpi-dev and rebuild")
        }
        let c = try MPICommunicator(timeout: ProcessInfo.processInfo.environment["TESSERA_MPI_TIMEOUT"].flatMap(Double.init) ?? 1800)
        mpi = c
        comm = c
        let env = ProcessInfo.processInfo.environment
        if env["TESSERA_THREADS"] == nil && env["OMP_NUM_THREADS"] == nil {
            Runtime.setThreads(max(1, ProcessInfo.processInfo.activeProcessorCount / c.localSize))
        }
    }

    /// Cores per process on this machine (for default worker counts).
    static var coresPerProcess: Int { max(1, ProcessInfo.processInfo.activeProcessorCount / (mpi?.localSize ?? 1)) }

    /// Ends the job after an error: alone, the caller prints it; in an MPI job the first process to
    /// fail prints it with its rank and stops every process (`MPI_Abort`), except for an error every
    /// process reached together, which rank 0 alone prints before all leave normally.
    /// Returns only when this is not an MPI job.
    static func fail(_ message: String, onEveryProcess: Bool) {
        guard let mpi, mpi.size > 1 else { return }
        if onEveryProcess {
            if mpi.rank == 0 { FileHandle.standardError.write(Data(("error: " + message + "\n").utf8)) }
            mpi.finish()
            exit(1)
        }
        mpi.abort(message)
    }

    /// Leaves the MPI job normally.
    static func finish() { mpi?.finish() }

    /// `text` on rank 0, on every process (for what only rank 0 reads: a resumed run's configuration).
    static func fromPrimary(_ text: String?) -> String {
        guard comm.size > 1 else { return text ?? "" }
        let mine = comm.isPrimary ? Array((text ?? "").utf8) : []
        var length = [Int64(mine.count)]
        length.withUnsafeMutableBytes { comm.broadcast($0, from: 0) }
        var bytes = comm.isPrimary ? mine : [UInt8](repeating: 0, count: Int(length[0]))
        bytes.withUnsafeMutableBytes { comm.broadcast($0, from: 0) }
        return String(decoding: bytes, as: UTF8.self)
    }
}
