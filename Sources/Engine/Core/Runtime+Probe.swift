import CKernels
import Foundation
#if canImport(Glibc)
import Glibc
#endif

// The probe layer `tessera bench` and `tessera-bench` measure with (the kernels' side is probe.c):
// matrix-product FLOPs and the per-shape profile, OpenMP's own counts, the FMA and bf16 peaks, the
// sgemm rate and the process's resource counters. Nothing here changes a result.

// MARK: - GEMM accounting (for benchmarks)

extension Runtime {
    /// Floating-point operations issued by the matrix products since ``resetMatmulFlops()``
    /// (2·M·N·K per product, counted at the one GEMM entry point).
    public static var matmulFlops: UInt64 { ck_flop_counter_read() }
    public static func resetMatmulFlops() { ck_flop_counter_reset() }

    /// One distinct matrix product of a profiled stretch of work (see ``profileGEMMs(_:)``).
    public struct GEMMShape: Sendable {
        /// op(A)[M, K] · op(B)[K, N]; `transA`/`transB` say whether A or B is read transposed.
        public var M: Int, N: Int, K: Int, transA: Bool, transB: Bool
        /// "product", or with a fused epilogue: "product+bias", "product+bias-grad".
        public var op: String
        /// "tessera", "openblas" or "onednn".
        public var backend: String
        public var calls: Int
        /// Wall time of all calls.
        public var seconds: Double
        /// FLOPs of all calls (2·M·N·K each).
        public var flops: Double { 2 * Double(M) * Double(N) * Double(K) * Double(calls) }
    }

    /// Starts (clearing it) or stops the per-shape GEMM profile: each product reads the clock before
    /// and after. Call from the thread that runs ops.
    public static func profileGEMMs(_ on: Bool) { ck_gemm_profile(on ? 1 : 0) }

    /// The products recorded since ``profileGEMMs(_:)`` was turned on, in first-call order.
    public static var gemmProfile: [GEMMShape] {
        (0..<ck_gemm_profile_count()).map { i in
            let r = ck_gemm_profile_row(i)
            return GEMMShape(M: Int(r.M), N: Int(r.N), K: Int(r.K), transA: r.trans_a != 0, transB: r.trans_b != 0,
                             op: String(cString: r.op), backend: String(cString: r.backend),
                             calls: Int(r.calls), seconds: r.seconds)
        }
    }

    /// OpenMP's work since the process started, as its runtime counts it (ck_omp_counts).
    public struct OpenMPCounts: Sendable {
        /// Parallel regions opened, and barriers passed (each once, however many threads pass it).
        public var regions: Int, barriers: Int
        /// Seconds spent waiting in barriers, all threads together.
        public var waitSeconds: Double
    }

    /// The counts so far, or nil in a process whose OpenMP runtime does not count (started without
    /// `TESSERA_OMP_COUNTS=1`: see ``restartWithTunedRuntimeIfNeeded(countingParallelRegions:)``).
    public static var openMPCounts: OpenMPCounts? {
        guard ck_omp_counts_available() != 0 else { return nil }
        let c = ck_omp_counts_read()
        return OpenMPCounts(regions: Int(c.regions), barriers: Int(c.barriers), waitSeconds: c.wait_seconds)
    }

    /// GFLOP/s of this machine's multiply-add units at the current thread count: every thread runs
    /// independent FMA chains in the widest vectors its CPU level has (16 floats on AVX-512, 8 on
    /// AVX2, 4 on baseline) for about `seconds` (a ceiling no real kernel reaches).
    public static func fmaPeak(seconds: Double = 0.2) -> Double {
        _ = ck_fma_peak_run(1000)   // wake the threads
        return peakRate(seconds: seconds, ck_fma_peak_run)
    }

    /// The bf16 peak in GFLOP/s: every thread runs 12 independent chains of `vdpbf16ps` (64 FLOPs each)
    /// for about `seconds`. Nil on a CPU without AVX512-BF16.
    public static func bf16Peak(seconds: Double = 0.2) -> Double? {
        guard ck_bf16_peak_run(1000) > 0 else { return nil }   // also wakes the threads
        return peakRate(seconds: seconds, ck_bf16_peak_run)
    }

    /// GFLOP/s of a peak loop (`run(iterations)` returns the FLOPs done), doubling the iterations until
    /// one run takes `seconds`.
    private static func peakRate(seconds: Double, _ run: (Int64) -> UInt64) -> Double {
        var iterations: Int64 = 1 << 20
        while true {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let flops = run(iterations)
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
            if dt >= seconds || iterations >= 1 << 34 { return Double(flops) / dt / 1e9 }
            iterations *= 2
        }
    }

    /// GFLOP/s of one `n × n × n` single-precision product `A·Bᵀ` on the current GEMM backend and
    /// thread count: the machine's reference rate for the share a training step reaches.
    public static func sgemmRate(size n: Int = 2048) -> Double {
        var rng = TesseraRNG(seed: 7)
        let a = (0..<(n * n)).map { _ in rng.uniform(-1, 1) }
        var c = [Float](repeating: 0, count: n * n)
        let t0 = DispatchTime.now().uptimeNanoseconds
        ck_sgemm(0, 1, Int64(n), Int64(n), Int64(n), 1, a, Int64(n), a, Int64(n), 0, &c, Int64(n))
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
        return 2 * Double(n) * Double(n) * Double(n) / seconds / 1e9
    }
}

/// The median of measurements (the mean of the middle two for an even count); benchmarks quote it.
public func median(_ xs: [Double]) -> Double {
    precondition(!xs.isEmpty, "median: no values")
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : 0.5 * (s[s.count / 2 - 1] + s[s.count / 2])
}

/// The process's resource counters (getrusage): what `tessera bench` reports beside the step time.
public struct ResourceUsage: Sendable {
    /// Minor page faults so far (pages mapped in without I/O, each one zero-filled or copied by the kernel).
    public var minorFaults: Int
    /// The most resident memory the process has held, in bytes.
    public var peakResidentBytes: Int

    /// The counters now.
    public static func now() -> ResourceUsage {
        var u = rusage()
        getrusage(Int32(RUSAGE_SELF.rawValue), &u)
        return ResourceUsage(minorFaults: Int(u.ru_minflt), peakResidentBytes: Int(u.ru_maxrss) * 1024)
    }
}
