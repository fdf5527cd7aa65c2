import CKernels
import Foundation

/// Process-wide settings of the engine: thread count and build facts.
///
/// One knob sets the threads of both the C kernels (OpenMP) and the BLAS, so the two never disagree:
/// `TESSERA_THREADS`, falling back to `OMP_NUM_THREADS`, falling back to the number of cores.
/// The engine reads it the first time a tensor is created; ``setThreads(_:)`` changes it later.
public enum Runtime {
    nonisolated(unsafe) private static var configured = false

    /// Applies the environment's thread setting once. Called by every tensor creation path.
    @inline(__always) static func ensureConfigured() {
        if !configured { configure() }
    }

    private static func configure() {
        configured = true
        let env = ProcessInfo.processInfo.environment
        let requested = env["TESSERA_THREADS"].flatMap(Int.init) ?? env["OMP_NUM_THREADS"].flatMap(Int.init)
        ck_set_num_threads(Int32(max(1, requested ?? ProcessInfo.processInfo.activeProcessorCount)))
    }

    /// Sets the number of threads used by the kernels and the BLAS.
    public static func setThreads(_ n: Int) {
        precondition(n >= 1, "Runtime.setThreads: thread count must be >= 1, got \(n)")
        configured = true
        ck_set_num_threads(Int32(n))
    }

    /// The number of threads kernels and the BLAS currently use.
    public static var threads: Int { ensureConfigured(); return Int(ck_get_num_threads()) }
    /// Whether the C kernels were built with OpenMP.
    public static var hasOpenMP: Bool { ck_has_openmp() != 0 }
    /// The instruction set the dispatched kernels run on ("avx512f", "avx2" or "baseline").
    public static var cpuLevel: String { String(cString: ck_cpu_level()) }
    /// The GEMM backend's own description.
    public static var gemmBackend: String { String(cString: ck_gemm_backend()) }
}
