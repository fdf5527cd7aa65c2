// swift-tools-version: 6.2
//
// Tessera: self-supervised ViT pretraining on CPUs.
//
//   COpenBLAS    system library (pkg-config "openblas"): its CBLAS from Sources/CKernels/gemm.c only, its LAPACK
//                from Sources/Engine/Core/Linalg.swift only.
//   CKernels     hand-written C kernels, forward and backward side by side (internal target).
//   TesseraEngine  Swift tensors, reverse-mode autograd, modules, optimizers (Sources/Engine).
//   TesseraModels  the shared ViT and the pretraining methods (Sources/Models).
//   tessera      the command-line tool (Sources/CLI).
// System libraries: OpenBLAS, LLVM's OpenMP runtime, zlib, libpng and libjpeg-turbo (Debian -dev packages).
//
// OpenMP: the C kernels are built with clang's -fopenmp and linked against Debian's LLVM runtime
// (libomp-dev installs it as libomp5.so; `-lomp` is not on the default search path there). Set
// TESSERA_NO_OPENMP=1 when building to compile every kernel single-threaded; the pragmas then fall
// back to `#pragma omp simd` only (-fopenmp-simd needs no runtime).
//
// GEMM backend: OpenBLAS is linked; oneDNN's dnnl_sgemm is loaded at run time when libdnnl is
// installed (TESSERA_GEMM=auto|openblas|onednn chooses; see README, "Threads and GEMM backend").
import PackageDescription

let useOpenMP = Context.environment["TESSERA_NO_OPENMP"] == nil
let openMPCFlags: [String] = useOpenMP ? ["-fopenmp"] : ["-fopenmp-simd"]
let openMPLink: [LinkerSetting] = useOpenMP ? [.linkedLibrary("omp5", .when(platforms: [.linux]))] : []

let package = Package(
    name: "Tessera",
    products: [
        .library(name: "TesseraEngine", targets: ["TesseraEngine"]),
        .library(name: "TesseraData", targets: ["TesseraData"]),
        .library(name: "TesseraModels", targets: ["TesseraModels"]),
        .executable(name: "tessera", targets: ["tessera"]),
        .executable(name: "tessera-bench", targets: ["TesseraBench"]),
        .executable(name: "tessera-embed-example", targets: ["EmbedEngine"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
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
                .unsafeFlags(openMPCFlags + ["-O3", "-Wall", "-Wno-unknown-pragmas", "-mprefer-vector-width=512"]),
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
        .target(
            name: "TesseraData",
            dependencies: ["TesseraEngine", "CImageData"],
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
            dependencies: ["TesseraEngine", "TesseraData", "TesseraModels",
                           .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "Logging", package: "swift-log")],
            path: "Sources/CLI"
        ),
        .executableTarget(
            name: "TesseraBench",
            dependencies: ["TesseraEngine", "CKernels", "CKernelsRef"],
            path: "Bench/KernelBench"
        ),
        // A program that embeds only the engine (the DocC getting-started example; linked without image libraries).
        .executableTarget(
            name: "EmbedEngine",
            dependencies: ["TesseraEngine"],
            path: "Examples/EmbedEngine"
        ),
        // Naive references of every kernel: plain loops, no OpenMP, no BLAS. Tests and the benchmark only.
        .target(
            name: "CKernelsRef",
            path: "Tests/CKernelsRef",
            cSettings: [.unsafeFlags(["-O2"])]
        ),
        .target(
            name: "TestSupport",
            dependencies: ["TesseraEngine"],
            path: "Tests/TestSupport"
        ),
        .testTarget(
            name: "CKernelsTests",
            dependencies: ["CKernels", "CKernelsRef", "TesseraEngine", "TestSupport"],
            path: "Tests/CKernelsTests",
            resources: [.copy("Fixtures")]
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
            resources: [.copy("Corpus")]
        ),
        .testTarget(
            name: "ModelsTests",
            dependencies: ["TesseraModels", "TesseraData", "TesseraEngine", "TestSupport"],
            path: "Tests/ModelsTests",
            resources: [.copy("Fixtures")]
        ),
        // Runs the built `tessera` binary as a user would: bad input, and a tiny end-to-end run.
        .testTarget(
            name: "CLITests",
            dependencies: ["tessera", "EmbedEngine", "TesseraEngine", "TesseraData", "TesseraModels"],
            path: "Tests/CLITests"
        ),
    ]
)
