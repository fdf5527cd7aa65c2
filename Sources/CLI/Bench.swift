import ArgumentParser
import Foundation
import TesseraData
import TesseraEngine
import TesseraModels

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Training-step throughput of a method and configuration on this machine, with model FLOP/s and its share of the sgemm rate.",
        discussion: """
        Options after `--` are `tessera pretrain` options (method, model, sizes, batch). \
        Synthetic images of --image-size and --channels stand in for data, so no dataset is needed. \
        Each timed step is the training loop's own step (Pretrainer.step: schedules, forward, backward, \
        clipping, AdamW, EMA). Each round times --steps steps, then a 2048³ sgemm on the selected \
        backend, then the FMA peak (independent multiply-add chains on every thread), alternating; \
        the summary gives medians. TESSERA_GEMM=auto|openblas|onednn picks the GEMM backend. The kernel \
        table is `tessera-bench`.

        Example: tessera bench --rounds 5 -- --method mae --depth 6 --image-size 28 --channels 1
        """)

    @Option(help: "Rounds (alternating training steps and sgemm).") var rounds = 5
    @Option(help: "Timed training steps per round.") var steps = 5
    @Option(help: "Side of the synthetic images.") var imageSize = 28
    @Option(help: "Channels of the synthetic images.") var channels = 1
    @OptionGroup var runtime: RuntimeOptions
    @Argument(parsing: .postTerminator, help: "tessera pretrain options") var pretrainArguments: [String] = []

    func run() throws {
        try runtime.apply()
        guard rounds >= 1, steps >= 1, imageSize >= 1, channels == 1 || channels == 3 else {
            throw CLIError("--rounds, --steps and --image-size must be positive and --channels 1 or 3")
        }
        let options: Pretrain
        do { options = try Pretrain.parse(pretrainArguments) } catch {
            throw CLIError("after --: \(Pretrain.message(for: error)) (see 'tessera pretrain --help')")
        }
        // Two steps' worth of synthetic images, used alternately.
        var rng = TesseraRNG(seed: 1)
        let n = max(options.batchSize * options.accum * 2, 8)
        let px = (0..<(n * imageSize * imageSize * channels)).map { _ in UInt8(rng.int(below: 256)) }
        let set = ImageSet(uniform: px, count: n, height: imageSize, width: imageSize, channels: channels, labels: nil)
        let config = try options.buildConfig(train: set)
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("tessera-bench-\(getpid())").path
        let trainer = try Pretrainer(config: config, method: config.method.make(config), train: set, evalSets: nil, runFolder: scratch)
        let loader = trainer.loader, order = loader.order(epoch: 0)
        let groups = (0..<2).map { g in
            (0..<config.accumSteps).map { loader.makeBatch(epoch: 0, step: g * config.accumSteps + $0, order: order) }
        }
        var next = 0
        func trainStep() throws {
            _ = try trainer.step(groups[next % 2])
            next += 1
        }

        let e = config.mae.encoder
        print("tessera bench: \(config.method) \(config.model) (encoder \(e.dim)/\(e.depth)/\(e.heads), patch \(e.patchSize) on \(imageSize)x\(imageSize)x\(channels)), batch \(config.batchSize) x \(config.accumSteps), \(Runtime.threads) threads")
        print("BLAS: \(Runtime.gemmBackend); \(rounds) rounds of \(steps) steps, alternating with a 2048³ sgemm")
        try trainStep()   // warm up: allocations, BLAS buffers
        _ = Runtime.sgemmRate()
        var stepTimes: [Double] = [], flops: [Double] = [], rates: [Double] = [], peaks: [Double] = []
        var faults: [Double] = []
        for r in 0..<rounds {
            Runtime.resetMatmulFlops()
            let f0 = ResourceUsage.now().minorFaults
            let t0 = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<steps { try trainStep() }
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9 / Double(steps)
            faults.append(Double(ResourceUsage.now().minorFaults - f0) / Double(steps))
            stepTimes.append(dt)
            flops.append(Double(Runtime.matmulFlops) / Double(steps))
            rates.append(Runtime.sgemmRate())
            peaks.append(Runtime.fmaPeak())
            print(String(format: "round %d: %.1f ms/step, %.0f images/s, %.0f minor faults/step, sgemm %.1f GFLOP/s, FMA peak %.1f GFLOP/s", r + 1, dt * 1e3,
                         Double(config.effectiveBatch) / dt, faults.last!, rates.last!, peaks.last!))
        }
        let t = median(stepTimes), f = median(flops), sg = median(rates), peak = median(peaks)
        let modelRate = f / t / 1e9
        print(String(format: "median: %.1f ms/step, %.0f images/s, %.2f GFLOP per step (matrix products), %.1f GFLOP/s = %.0f%% of the sgemm rate (%.1f GFLOP/s) = %.0f%% of the FMA peak (%.1f GFLOP/s)",
                     t * 1e3, Double(config.effectiveBatch) / t, f / 1e9, modelRate, 100 * modelRate / sg, sg, 100 * modelRate / peak, peak))
        print(String(format: "memory: peak RSS %.0f MiB, %.0f minor page faults per step (median)",
                     Double(ResourceUsage.now().peakResidentBytes) / 1048576, median(faults)))
    }
}
