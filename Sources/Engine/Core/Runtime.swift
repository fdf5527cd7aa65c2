import CKernels
import Foundation

/// Process-wide settings of the engine: thread count, GEMM backend and build facts.
///
/// One knob sets the threads of both the C kernels (OpenMP) and the BLAS, so the two never disagree:
/// `TESSERA_THREADS`, falling back to `OMP_NUM_THREADS`, falling back to the number of cores.
/// `TESSERA_GEMM` picks the matrix-product backend: `auto` (the default: oneDNN's `dnnl_sgemm` when
/// libdnnl is installed, else Tessera's own GEMM on CPUs with AVX-512 or AVX2, else OpenBLAS), `openblas`,
/// `onednn`, or `tessera` (Tessera's own kernel, `ck_matmul`: its AVX-512, AVX2 or portable tile).
/// The engine reads both the first time a tensor is created; ``setThreads(_:)`` changes the threads later.
public enum Runtime {
    nonisolated(unsafe) private static var configured = false

    /// Applies the environment's thread setting once. Called by every tensor creation path.
    @inline(__always) static func ensureConfigured() {
        if !configured { configure() }
    }

    private static func configure() {
        configured = true
        keepFreedMemory()
        let env = ProcessInfo.processInfo.environment
        let requested = env["TESSERA_THREADS"].flatMap(Int.init) ?? env["OMP_NUM_THREADS"].flatMap(Int.init)
        ck_set_num_threads(Int32(max(1, requested ?? ProcessInfo.processInfo.activeProcessorCount)))
        selectGEMM(env["TESSERA_GEMM"])
        startupGEMM = GEMMBackend(rawValue: ck_gemm_choice()) ?? .openBLAS
    }

    /// The matrix-product backends `ck_sgemm` can call.
    public enum GEMMBackend: Int32, Sendable, CaseIterable {
        case openBLAS = 0, oneDNN = 1, tessera = 2
    }

    /// The backend in use.
    public static var gemm: GEMMBackend { ensureConfigured(); return GEMMBackend(rawValue: ck_gemm_choice()) ?? .openBLAS }

    /// The backend `TESSERA_GEMM` chose when the engine started: what every test and run uses unless
    /// it chooses another for its own scope (``withGEMM(_:_:)``).
    public static var defaultGEMM: GEMMBackend { ensureConfigured(); return startupGEMM }
    nonisolated(unsafe) private static var startupGEMM = GEMMBackend.openBLAS

    /// Runs `body` with `ck_sgemm` on `backend`, then puts the previous backend back (however `body`
    /// ends). Returns nil without running `body` when the backend cannot be had (oneDNN not installed).
    /// For tests and benchmarks, from one thread, with no product running.
    public static func withGEMM<T>(_ backend: GEMMBackend, _ body: () throws -> T) rethrows -> T? {
        let before = gemm
        guard ck_gemm_choose(backend.rawValue) == 0 else { return nil }
        defer { _ = ck_gemm_choose(before.rawValue) }
        return try body()
    }

    /// Puts `ck_sgemm` back on ``defaultGEMM`` (and the products in fp32, ``defaultCompute``).
    public static func restoreDefaultGEMM() { _ = setCompute(defaultCompute) }

    // MARK: Precision

    /// The precision of the matrix products: fp32, or bf16 operands with fp32 sums (Tessera's GEMM
    /// only; the rule is in Sources/CKernels/matmul.c). Everything else — LayerNorm, softmax, the
    /// losses, the optimizer and its state, the master weights — stays fp32 either way.
    public enum Precision: String, Codable, Sendable, CaseIterable {
        case fp32, bf16
    }

    /// What a process computes its products with: the GEMM backend and the precision, one value, set
    /// for the process (``setCompute(_:)``) or for a scope (``withCompute(_:_:)``). bf16 runs on
    /// Tessera's GEMM only.
    public struct Compute: Equatable, Sendable, CustomStringConvertible {
        public var gemm: GEMMBackend
        public var precision: Precision
        public init(gemm: GEMMBackend, precision: Precision) { self.gemm = gemm; self.precision = precision }
        public var description: String { "\(gemm) \(precision.rawValue)" }
    }

    /// The backend and precision in use.
    public static var compute: Compute {
        Compute(gemm: gemm, precision: ck_gemm_precision() == Int32(CK_PRECISION_BF16) ? .bf16 : .fp32)
    }

    /// What the engine started with: ``defaultGEMM`` in fp32.
    public static var defaultCompute: Compute { Compute(gemm: defaultGEMM, precision: .fp32) }

    /// Makes `choice` the process's compute. False (nothing changed) when it cannot be had: oneDNN not
    /// installed, or bf16 on another backend than Tessera's GEMM. From one thread, with no product running.
    @discardableResult
    public static func setCompute(_ choice: Compute) -> Bool {
        ensureConfigured()
        guard choice.precision == .fp32 || choice.gemm == .tessera else { return false }
        guard ck_gemm_choose(choice.gemm.rawValue) == 0 else { return false }
        ck_gemm_set_precision(choice.precision == .bf16 ? Int32(CK_PRECISION_BF16) : Int32(CK_PRECISION_FP32))
        return true
    }

    /// Runs `body` with `choice` as the compute, then puts the previous one back (however `body` ends).
    /// Returns nil without running `body` when `choice` cannot be had (``setCompute(_:)``).
    public static func withCompute<T>(_ choice: Compute, _ body: () throws -> T) rethrows -> T? {
        let before = compute
        guard setCompute(choice) else { return nil }
        defer { setCompute(before) }
        return try body()
    }

    /// What this CPU offers for bf16 products, from CPUID (never from a timing, so the choice is the
    /// same on every run).
    public enum BF16Offer: Sendable {
        /// No bf16 product instructions: bf16 runs the portable tile, an emulation far slower than fp32.
        case none
        /// AVX512-BF16 at twice the fp32 FMA rate (AMD Zen 4 and later).
        case fullRate
        /// AVX512-BF16 at half the fp32 FMA rate (Intel without AMX): fp32 is faster.
        case halfRate
        /// AMX tiles, granted by the kernel. Tessera has no AMX tile yet: its bf16 products would run
        /// the AVX512-BF16 tile at half the fp32 rate, so `auto` stays fp32 there.
        case amx
    }

    /// This CPU's ``BF16Offer``.
    public static var bf16Offer: BF16Offer {
        switch ck_cpu_bf16_products() {
        case 1: .fullRate
        case -1: .halfRate
        case 2: .amx
        default: .none
        }
    }

    /// The bf16 tile this process's bf16 products run on ("AVX512-BF16 14x32", "portable bf16 14x32").
    public static var bf16Tile: String { String(cString: ck_matmul_bf16_tile_name()) }

    /// The precision `auto` means here: bf16 where the CPU multiplies bf16 faster than fp32
    /// (``BF16Offer/fullRate``) and the products may run on Tessera's GEMM (`TESSERA_GEMM` unset, `auto`
    /// or `tessera`), fp32 elsewhere.
    public static var autoPrecision: Precision {
        bf16Offer == .fullRate && gemmRequestAllowsTessera ? .bf16 : .fp32
    }

    /// Whether `TESSERA_GEMM` leaves the products to Tessera's GEMM: unset, `auto` or `tessera`.
    private static var gemmRequestAllowsTessera: Bool { ensureConfigured(); return ["auto", "", "tessera"].contains(gemmRequest) }
    nonisolated(unsafe) private static var gemmRequest = "auto"

    /// The compute for `precision`: fp32 on the current backend, or bf16 on Tessera's GEMM. Throws a
    /// one-line message when bf16 is asked for while `TESSERA_GEMM` names another backend.
    public static func compute(for precision: Precision) throws -> Compute {
        ensureConfigured()
        guard precision == .bf16 else { return Compute(gemm: gemm, precision: .fp32) }
        guard gemmRequestAllowsTessera else {
            throw PrecisionError("bf16 products run on Tessera's GEMM, but TESSERA_GEMM=\(gemmRequest); unset it or use --precision fp32")
        }
        return Compute(gemm: .tessera, precision: .bf16)
    }

    /// A precision that cannot be had here, in one line.
    public struct PrecisionError: Error, CustomStringConvertible {
        public let description: String
        public init(_ d: String) { description = d }
    }

    /// The products' backend and precision in one line, for the run's log and `tessera bench`:
    /// ``gemmBackend``, then "; products in bf16 (AVX512-BF16 14x32)" or "; products in fp32".
    public static var computeDescription: String {
        gemmBackend + (compute.precision == .bf16 ? "; products in bf16 (\(bf16Tile))" : "; products in fp32")
    }

    /// Why the `TESSERA_GEMM` request could not be met (nil when it was); the engine then uses OpenBLAS.
    /// The `tessera` tool reports it as an error instead of running.
    public static var gemmSetupError: String? { ensureConfigured(); return gemmError }
    nonisolated(unsafe) private static var gemmError: String?

    private static func selectGEMM(_ request: String?) {
        gemmRequest = (request ?? "auto").lowercased()
        switch gemmRequest {
        case "auto", "":
            // oneDNN when installed; otherwise Tessera's GEMM where it was measured against OpenBLAS
            // (AVX-512: 1.07-1.45x on nine training shapes, 0.72-0.98x on a tenth; AVX2, an AMD EPYC:
            // steps 1.10x MAE vit-tiny, 0.97x vit-small, 1.07x MSN, 1.06x SIM; docs/log/benchmarks.md),
            // where it also gives the same bits at any thread count (a BLAS splits sums by thread
            // count). Baseline CPUs keep OpenBLAS: the portable tile was never meant to race it.
            if ck_gemm_use_onednn(1) != 0, cpuLevel != "baseline" { ck_gemm_use_tessera(1) }
        case "openblas":
            _ = ck_gemm_use_onednn(0)
            ck_gemm_use_tessera(0)
        case "tessera":
            ck_gemm_use_tessera(1)
        case "onednn":
            if ck_gemm_use_onednn(1) != 0 {
                gemmError = "TESSERA_GEMM=onednn but no libdnnl could be loaded; install it (apt-get install libdnnl2) or set TESSERA_GEMM=auto"
            }
        default:
            gemmError = "TESSERA_GEMM=\(request!) is not a GEMM backend; use auto, openblas, onednn or tessera"
        }
    }

    /// Op outputs are allocated and freed every step. glibc hands large blocks straight back to the
    /// kernel (mmap/munmap), so each step page-faults and zero-fills its whole working set again
    /// (measured: 25% of a vit-tiny MAE step in `clear_page_erms` and page faults). Keeping freed
    /// blocks in the heap makes the next step reuse them: +38% images/s on that step.
    private static func keepFreedMemory() {
        ck_keep_freed_memory()
    }

    /// Makes standard output line-buffered, so progress lines reach a pipe or a log file as they
    /// are printed.
    public static func lineBufferStandardOutput() {
        ck_stdout_line_buffered()
    }

    /// Sets the number of threads used by the kernels and the BLAS.
    public static func setThreads(_ n: Int) {
        precondition(n >= 1, "Runtime.setThreads: thread count must be >= 1, got \(n)")
        ensureConfigured()   // the allocator setting must not be skipped when threads are set first
        ck_set_num_threads(Int32(n))
    }

    /// The number of threads kernels and the BLAS currently use.
    public static var threads: Int { ensureConfigured(); return Int(ck_get_num_threads()) }
    /// Whether the C kernels were built with OpenMP.
    public static var hasOpenMP: Bool { ck_has_openmp() != 0 }
    /// The instruction set the dispatched kernels run on ("avx512f", "avx2" or "baseline").
    public static var cpuLevel: String { String(cString: ck_cpu_level()) }
    /// The GEMM backend's own description.
    public static var gemmBackend: String { ensureConfigured(); return String(cString: ck_gemm_backend()) }

    /// The BLAS kernel family in use (OpenBLAS core name).
    public static var gemmCore: String { String(cString: ck_gemm_core_name()) }

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
