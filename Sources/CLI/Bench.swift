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
        the summary gives medians. TESSERA_GEMM=auto|tessera|openblas|onednn picks the GEMM backend. The kernel \
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
        var shapes: [String: Runtime.GEMMShape] = [:], shapeOrder: [String] = []
        for r in 0..<rounds {
            Runtime.resetMatmulFlops()
            let f0 = ResourceUsage.now().minorFaults
            Runtime.profileGEMMs(true)
            let t0 = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<steps { try trainStep() }
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9 / Double(steps)
            Runtime.profileGEMMs(false)
            for g in Runtime.gemmProfile {
                let key = "\(g.M)x\(g.N)x\(g.K) \(g.transA) \(g.transB) \(g.op) \(g.backend)"
                if var old = shapes[key] { old.calls += g.calls; old.seconds += g.seconds; shapes[key] = old } else { shapes[key] = g; shapeOrder.append(key) }
            }
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
        printShapeTable(shapeOrder.map { shapes[$0]! }, steps: rounds * steps, stepSeconds: t, peak: peak)
        print(String(format: "memory: peak RSS %.0f MiB, %.0f minor page faults per step (median)",
                     Double(ResourceUsage.now().peakResidentBytes) / 1048576, median(faults)))
    }

    /// The step's matrix products by shape, the most time first: C[M, N] = op(A)[M, K] · op(B)[K, N]
    /// (ᵀ: read transposed), per step, with the rate as a share of the FMA peak.
    private func printShapeTable(_ rows: [Runtime.GEMMShape], steps: Int, stepSeconds: Double, peak: Double) {
        let total = rows.reduce(0) { $0 + $1.seconds }
        print(String(format: "GEMMs by shape (per step; %.0f%% of the step's time, profiled with a clock read around each product):", 100 * total / Double(steps) / stepSeconds))
        print("       M      N      K  A B  op                   calls   ms/step   GFLOP/s  %peak  %step  backend")
        for g in rows.sorted(by: { $0.seconds > $1.seconds }) {
            let rate = g.seconds > 0 ? g.flops / g.seconds / 1e9 : 0
            let ms = 1e3 * g.seconds / Double(steps)
            print(String(format: "%8d %6d %6d  %@ %@  %-19@ %6.1f %9.2f %9.1f %5.0f%% %5.1f%%  %@", g.M, g.N, g.K,
                         g.transA ? "T" : "N", g.transB ? "T" : "N", g.op, Double(g.calls) / Double(steps), ms,
                         rate, 100 * rate / peak, 100 * ms / 1e3 / stepSeconds, g.backend))
        }
    }
}
