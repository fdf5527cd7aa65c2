import CKernels
import Foundation
#if canImport(Glibc)
import Glibc
#endif

// The runtime settings that only an environment variable set before the libraries load can change:
// the engine sets what is missing and re-executes the program once.

extension Runtime {
    /// Runtime settings that must be in the environment before the libraries load, so a program
    /// that wants them sets them and restarts itself:
    ///
    /// - `OPENBLAS_CORETYPE`: Debian's OpenBLAS 0.3.21 does not recognize recent Intel CPUs and falls
    ///   back to its slowest kernels ("Prescott", about 5x slower GEMM here). When that happened on a
    ///   CPU with AVX-512 (or AVX2) this selects `SkylakeX` (or `Haswell`).
    /// - `OPENBLAS_THREAD_TIMEOUT=4` and `KMP_BLOCKTIME=1` (ms): the BLAS threads and the OpenMP threads
    ///   are two pools on the same cores, and by default each keeps spinning for up to ~0.1–0.2 s
    ///   after its work, taking the cores from the other pool, which runs next (a training step
    ///   alternates GEMMs and kernels). With these both go to sleep (almost) at once (training-step
    ///   measurements in docs/log/benchmarks.md, "Two thread pools, one set of cores").
    ///
    /// - `TESSERA_OMP_COUNTS=1` with `countingParallelRegions` (`tessera bench`): the OpenMP runtime then
    ///   counts parallel regions, barriers and barrier waits (``openMPCounts``); its tool attaches only
    ///   when the runtime starts.
    ///
    /// Missing variables are set and the current program re-executed with the same arguments;
    /// variables the user set are left alone, and `TESSERA_BLAS_AUTOTUNE=0` opts out of all of this.
    public static func restartWithTunedRuntimeIfNeeded(countingParallelRegions: Bool = false) {
        let env = ProcessInfo.processInfo.environment
        guard env["TESSERA_BLAS_AUTOTUNE"] != "0" else { return }
        var wanted: [(String, String)] = []
        if env["OPENBLAS_CORETYPE"] == nil, gemmCore.lowercased() == "prescott" {
            switch cpuLevel {
            case "avx512f": wanted.append(("OPENBLAS_CORETYPE", "SkylakeX"))
            case "avx2": wanted.append(("OPENBLAS_CORETYPE", "Haswell"))
            default: break
            }
        }
        if env["OPENBLAS_THREAD_TIMEOUT"] == nil { wanted.append(("OPENBLAS_THREAD_TIMEOUT", "4")) }
        if env["KMP_BLOCKTIME"] == nil { wanted.append(("KMP_BLOCKTIME", "1")) }
        if countingParallelRegions && env["TESSERA_OMP_COUNTS"] == nil { wanted.append(("TESSERA_OMP_COUNTS", "1")) }
        guard !wanted.isEmpty else { return }
        for (name, value) in wanted { setenv(name, value, 1) }
        let args = CommandLine.arguments
        var cargs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        execv("/proc/self/exe", &cargs)
        // exec failed: carry on as loaded.
        for (name, _) in wanted { unsetenv(name) }
    }
}
