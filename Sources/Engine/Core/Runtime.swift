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
}
