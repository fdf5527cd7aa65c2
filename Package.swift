// swift-tools-version: 6.2
//
// Tessera: self-supervised ViT pretraining on CPUs.
//
//   COpenBLAS    system library (pkg-config "openblas"): its CBLAS from Sources/CKernels/gemm.c only, its LAPACK
//                from Sources/Engine/Core/Linalg.swift only.
//   CKernels     hand-written C kernels, forward and backward side by side (internal target).
//   TesseraEngine  Swift tensors, reverse-mode autograd, modules, optimizers (Sources/Engine).
//   TesseraModels  the shared ViT and the pretraining methods (Sources/Models).
//   TesseraDistributed  data-parallel training over MPI (Sources/Distributed, C shim Sources/CMPIShim).
//   tessera      the command-line tool (Sources/CLI).
// System libraries: OpenBLAS, LLVM's OpenMP runtime, zlib, libpng and libjpeg-turbo (Debian -dev packages).
//
// OpenMP: the C kernels are built with clang's -fopenmp and linked against Debian's LLVM runtime
// (libomp-dev installs it as libomp5.so; `-lomp` is not on the default search path there). Set
// TESSERA_NO_OPENMP=1 when building to compile every kernel single-threaded; the pragmas then fall
// back to `#pragma omp simd` only (-fopenmp-simd needs no runtime).
//
// GEMM backend: Tessera's own (Sources/CKernels/matmul.c), OpenBLAS (linked), or oneDNN's dnnl_sgemm
// (loaded at run time when libdnnl is installed); TESSERA_GEMM=auto|tessera|openblas|onednn chooses
// (docs/benchmarks.md, "Threads, backends and runtime settings").
import PackageDescription

// scripts/docs.sh sets TESSERA_DOCS=1 to add swift-docc-plugin; ordinary builds do not resolve it.
let docsPlugin: [Package.Dependency] = Context.environment["TESSERA_DOCS"] == nil ? []
    : [.package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0")]

let useOpenMP = Context.environment["TESSERA_NO_OPENMP"] == nil
let openMPCFlags: [String] = useOpenMP ? ["-fopenmp"] : ["-fopenmp-simd"]
// TESSERA_CPU=avx2|baseline builds the kernels for that one instruction set, without run-time
// dispatch, so the tests can run every variant of CK_CLONES on one machine (scripts/test.sh does).
let cpuVariant = Context.environment["TESSERA_CPU"]
let cpuVariantFlags: [String] = switch cpuVariant {
case "avx2": ["-DCK_NO_CLONES", "-DCK_BUILD_LEVEL=\"avx2\"", "-march=haswell"]
case "baseline": ["-DCK_NO_CLONES", "-DCK_BUILD_LEVEL=\"baseline\""]
default: []
}

// MPI (data-parallel training across processes, Sources/Distributed): TESSERA_MPI=openmpi (default;
// Debian's libopenmpi-dev, pkg-config "ompi-c"), mpich (libmpich-dev, pkg-config "mpich") or off
// (no MPI library: `tessera` then runs one process only and says so under mpirun).
let mpi = Context.environment["TESSERA_MPI"] ?? "openmpi"
let mpiPkgConfig: String? = switch mpi {
case "off": nil
case "mpich": "mpich"
default: "ompi-c"
}
let mpiTargets: [Target] = mpiPkgConfig.map { pc in
    [.systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: pc,
                    providers: [.apt([pc == "mpich" ? "libmpich-dev" : "libopenmpi-dev"])])]
} ?? []

// The op table's tests walk production-sized arrays element by element: built optimized even in a
// debug `swift test`, or they take minutes.
let optimizedTests: [SwiftSetting] = [.unsafeFlags(["-O"])]
let openMPLink: [LinkerSetting] = useOpenMP ? [.linkedLibrary("omp5", .when(platforms: [.linux]))] : []

let package = Package(
    name: "Tessera",
    products: [
        .library(name: "TesseraEngine", targets: ["TesseraEngine"]),
        .library(name: "TesseraData", targets: ["TesseraData"]),
        .library(name: "TesseraModels", targets: ["TesseraModels"]),
        .library(name: "TesseraDistributed", targets: ["TesseraDistributed"]),
        .executable(name: "tessera", targets: ["tessera"]),
        .executable(name: "tessera-bench", targets: ["TesseraBench"]),
        .executable(name: "tessera-embed-example", targets: ["EmbedEngine"]),
        .executable(name: "tessera-embed-checkpoint-example", targets: ["EmbedCheckpoint"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
    ] + docsPlugin,
    targets: mpiTargets + [
        .systemLibrary(
            name: "COpenBLAS",
            path: "Sources/COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        .target(
            name: "CKernels",
            dependencies: ["COpenBLAS"],
            path: "Sources/CKernels",
            exclude: ["README.md"],
            cSettings: [
                .unsafeFlags(openMPCFlags + ["-O3", "-Wall", "-Wno-unknown-pragmas", "-mprefer-vector-width=512"] + cpuVariantFlags),
            ],
            linkerSettings: openMPLink + [.linkedLibrary("dl"), .linkedLibrary("m")]
        ),
        // Image decoding (zlib, libpng, libjpeg-turbo) and augmentation in C, apart from the kernels.
        .target(
            name: "CImageData",
            path: "Sources/CImageData",
            cSettings: [.unsafeFlags(openMPCFlags + ["-O3", "-Wall", "-Wno-unknown-pragmas"])],
            linkerSettings: openMPLink + [.linkedLibrary("m"), .linkedLibrary("z"), .linkedLibrary("png16"), .linkedLibrary("jpeg")]
        ),
        .target(
            name: "TesseraEngine",
            dependencies: ["CKernels", "COpenBLAS"],
            path: "Sources/Engine"
        ),
        // The MPI calls of data-parallel training: a C shim over standard MPI-3 (Swift cannot import
        // MPI_COMM_WORLD and friends, which are macros), built without MPI when TESSERA_MPI=off.
        .target(
            name: "CMPIShim",
            dependencies: mpiPkgConfig == nil ? [] : ["CMPI"],
            path: "Sources/CMPIShim",
            cSettings: [.unsafeFlags(["-O2", "-Wall"] + (mpiPkgConfig == nil ? ["-DTESSERA_NO_MPI"] : []))]
        ),
        // Data-parallel training over MPI: the Communicator of several processes, launch detection.
        .target(
            name: "TesseraDistributed",
            dependencies: ["TesseraEngine", "CMPIShim"],
            path: "Sources/Distributed"
        ),
        .target(
            name: "TesseraData",
            dependencies: ["TesseraEngine", "CImageData", .product(name: "Logging", package: "swift-log")],
            path: "Sources/Data"
        ),
        .target(
            name: "TesseraModels",
            dependencies: ["TesseraEngine", "TesseraData", .product(name: "Logging", package: "swift-log")],
            path: "Sources/Models"
        ),
        // The command-line tool: pretrain, eval, embed, reconstruct, inspect, bench.
        .executableTarget(
            name: "tessera",
            dependencies: ["TesseraEngine", "TesseraData", "TesseraModels", "TesseraDistributed",
                           .product(name: "ArgumentParser", package: "swift-argument-parser"), .product(name: "Logging", package: "swift-log")],
            path: "Sources/CLI"
        ),
        .executableTarget(
            name: "TesseraBench",
            dependencies: ["TesseraEngine", "CKernels", "KernelOps"],
            path: "Bench/KernelBench"
        ),
        // A program that embeds only the engine (the DocC getting-started example; linked without image libraries).
        .executableTarget(
            name: "EmbedEngine",
            dependencies: ["TesseraEngine"],
            path: "Examples/EmbedEngine"
        ),
        // A program that loads a trained checkpoint of any method and embeds images through the library
        // products alone (no command-line code), as `tessera embed` does.
        .executableTarget(
            name: "EmbedCheckpoint",
            dependencies: ["TesseraModels", "TesseraData", "TesseraEngine"],
            path: "Examples/EmbedCheckpoint"
        ),
        // Naive references of every kernel, forward and backward: plain loops, double accumulation, no
        // OpenMP, no BLAS. The op table's reference column.
        .target(
            name: "CKernelsRef",
            path: "Tests/CKernelsRef",
            cSettings: [.unsafeFlags(["-O2"])]
        ),
        // The op table: every kernel's shapes, reference and tolerance (tests and tessera-bench).
        .target(
            name: "KernelOps",
            dependencies: ["CKernels", "CKernelsRef", "TesseraEngine"],
            path: "Tests/KernelOps",
            swiftSettings: optimizedTests
        ),
        .target(
            name: "TestSupport",
            dependencies: ["TesseraEngine"],
            path: "Tests/TestSupport",
            swiftSettings: optimizedTests
        ),
        .testTarget(
            name: "CKernelsTests",
            dependencies: ["CKernels", "CKernelsRef", "KernelOps", "TesseraEngine", "TestSupport"],
            path: "Tests/CKernelsTests",
            resources: [.copy("Fixtures")],
            swiftSettings: optimizedTests
        ),
        .testTarget(
            name: "EngineTests",
            dependencies: ["TesseraEngine", "CKernels", "TestSupport"],
            path: "Tests/EngineTests"
        ),
        .testTarget(
            name: "DataTests",
            dependencies: ["TesseraData", "TesseraEngine", "CImageData", "TestSupport"],
            path: "Tests/DataTests",
            resources: [.copy("Corpus"), .copy("Photos")]
        ),
        .testTarget(
            name: "ModelsTests",
            dependencies: ["TesseraModels", "TesseraData", "TesseraEngine", "TestSupport"],
            path: "Tests/ModelsTests",
            resources: [.copy("Fixtures")]
        ),
        // Run under mpirun by DistributedTests: the collectives against single-process references.
        .executableTarget(
            name: "TesseraMPICheck",
            dependencies: ["TesseraDistributed", "TesseraModels", "TesseraEngine"],
            path: "Tests/MPICheck"
        ),
        // Runs `tessera` and TesseraMPICheck under mpirun (subprocesses with timeouts).
        .testTarget(
            name: "DistributedTests",
            dependencies: ["tessera", "TesseraMPICheck", "TesseraEngine", "TestSupport"],
            path: "Tests/DistributedTests"
        ),
        // Runs the built `tessera` binary as a user would: bad input, and a tiny end-to-end run.
        .testTarget(
            name: "CLITests",
            dependencies: ["tessera", "EmbedEngine", "EmbedCheckpoint", "TesseraEngine", "TesseraData", "TesseraModels", "TestSupport"],
            path: "Tests/CLITests"
        ),
    ]
)
