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

        With --data, the steps train on that dataset instead, and the data loader is timed alone first \
        (read + decode + augment, images/s for each --loader-workers count, alternating), then the \
        training loop's share of time spent waiting for data with --workers decode workers.

        Example: tessera bench --rounds 5 -- --method mae --depth 6 --image-size 28 --channels 1
        Example: tessera bench --data /data/imagenet --loader-workers 1,2 -- --patch-size 16 --batch-size 64
        """)

    @Option(parsing: .unconditional, help: "Rounds (alternating training steps and sgemm).") var rounds = 5
    @Option(parsing: .unconditional, help: "Timed training steps per round.") var steps = 5
    @Option(parsing: .unconditional, help: "Side of the synthetic images.") var imageSize = 28
    @Option(parsing: .unconditional, help: "Channels of the synthetic images.") var channels = 1
    @Option(help: "Train on this data (as pretrain's --data) and time its loader alone too.") var data: String?
    @Option(help: "Decode worker counts to time the loader with, comma-separated.") var loaderWorkers = "1,2"
    @Flag(help: "With --data: time the loader alone, not the training step.") var loaderOnly = false
    @OptionGroup var runtime: RuntimeOptions
    @Argument(parsing: .postTerminator, help: "tessera pretrain options") var pretrainArguments: [String] = []

    /// Every report line of the benchmark: printed by rank 0 alone when it runs under mpirun.
    func print(_ line: String) { if Processes.comm.isPrimary { Swift.print(line) } }

    func run() throws {
        try runtime.apply()
        if loaderOnly && data == nil { throw CLIError("--loader-only needs --data") }
        try Check.integer("--rounds", rounds, 1...10_000)
        try Check.integer("--steps", steps, 1...10_000)
        try Check.integer("--image-size", imageSize, 1...4096)
        guard channels == 1 || channels == 3 else { throw CLIError("--channels must be 1 or 3, got \(channels)") }
        let options: Pretrain
        do { options = try Pretrain.parse(pretrainArguments) } catch {
            throw CLIError("after --: \(Pretrain.message(for: error)) (see 'tessera pretrain --help')")
        }
        let workerCounts = try loaderWorkers.split(separator: ",", omittingEmptySubsequences: false).map { s in
            guard let v = Int(s), (1...256).contains(v) else { throw CLIError("--loader-workers must be a list of counts 1…256, got '\(loaderWorkers)'") }
            return v
        }
        let set: any ImageDataset
        if let data {
            let t0 = Date()
            set = try DataSource.load(data, split: .train, channels: options.channels, limit: options.limit)
            print(String(format: "data: %@, indexed in %.2f s", set.summary, Date().timeIntervalSince(t0)))
        } else {
            // Two steps' worth of synthetic images, used alternately.
            var rng = TesseraRNG(seed: 1)
            let n = max(options.batchSize * options.accum * 2, 8)
            let px = (0..<(n * imageSize * imageSize * channels)).map { _ in UInt8(rng.int(below: 256)) }
            set = ImageSet(uniform: px, count: n, height: imageSize, width: imageSize, channels: channels, labels: nil)
        }
        let config = try options.buildConfig(train: set)
        // The products in the configuration's precision (--precision after --; auto resolved for this CPU).
        do { Runtime.setCompute(try Runtime.compute(for: config.precision ?? .fp32)) } catch { throw CLIError("--precision: \(error)") }
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("tessera-bench-\(getpid())").path
        let comm = Processes.comm
        let trainer = try Pretrainer(config: config, method: config.method.make(config), train: set, evalSets: nil, runFolder: scratch,
                                     workers: runtime.workers(for: set), communicator: comm)
        trainer.synchronizeState()
        if data != nil { try timeLoader(set, trainer: trainer, workerCounts: workerCounts) }
        if loaderOnly { return }
        let loader = trainer.loader, order = loader.order(epoch: 0)
        let groups = try (0..<2).map { g in
            try (0..<config.accumSteps).map { try loader.makeBatch(epoch: 0, step: g * config.accumSteps + $0, order: order) }
        }
        var next = 0
        func trainStep() throws {
            _ = try trainer.step(groups[next % 2])
            next += 1
        }

        let e = config.encoder
        print("tessera bench: \(config.method) \(config.model) (encoder \(e.dim)/\(e.depth)/\(e.heads), patch \(e.patchSize) on \(e.imageSize)x\(e.imageSize)x\(e.channels)), batch \(config.batchSize) x \(config.accumSteps), \(Runtime.threads) threads"
              + (comm.size > 1 ? " in each of \(comm.size) processes (\(config.batchSize / comm.size) images each)" : ""))
        print("BLAS: \(Runtime.computeDescription); \(rounds) rounds of \(steps) steps, alternating with a 2048³ sgemm")
        try trainStep()   // warm up: allocations, BLAS buffers
        _ = Runtime.sgemmRate()
        var stepTimes: [Double] = [], flops: [Double] = [], rates: [Double] = [], peaks: [Double] = [], bf16Peaks: [Double] = []
        let bf16 = Runtime.compute.precision == .bf16
        var faults: [Double] = [], commShares: [Double] = []
        var shapes: [String: Runtime.GEMMShape] = [:], shapeOrder: [String] = []
        var outside: [String: StepProfile.Row] = [:], outsideOrder: [String] = []
        var ompRegions = 0, ompBarriers = 0, ompWait = 0.0
        let counting = Runtime.openMPCounts != nil
        for r in 0..<rounds {
            Runtime.resetMatmulFlops()
            let f0 = ResourceUsage.now().minorFaults, c0 = trainer.reductionSeconds
            Runtime.profileGEMMs(true)
            let omp0 = Runtime.openMPCounts
            StepProfile.start()
            let t0 = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<steps { try trainStep() }
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9 / Double(steps)
            for row in StepProfile.stop() {
                if var old = outside[row.name] {
                    old.forwardSeconds += row.forwardSeconds; old.backwardSeconds += row.backwardSeconds
                    old.productSeconds += row.productSeconds; old.calls += row.calls
                    outside[row.name] = old
                } else { outside[row.name] = row; outsideOrder.append(row.name) }
            }
            if let a = omp0, let b = Runtime.openMPCounts {
                ompRegions += b.regions - a.regions; ompBarriers += b.barriers - a.barriers; ompWait += b.waitSeconds - a.waitSeconds
            }
            Runtime.profileGEMMs(false)
            for g in Runtime.gemmProfile {
                let key = "\(g.M)x\(g.N)x\(g.K) \(g.transA) \(g.transB) \(g.op) \(g.backend)"
                if var old = shapes[key] { old.calls += g.calls; old.seconds += g.seconds; shapes[key] = old } else { shapes[key] = g; shapeOrder.append(key) }
            }
            faults.append(Double(ResourceUsage.now().minorFaults - f0) / Double(steps))
            commShares.append((trainer.reductionSeconds - c0) / Double(steps) / dt)
            stepTimes.append(dt)
            flops.append(Double(Runtime.matmulFlops) / Double(steps))
            rates.append(Runtime.sgemmRate())
            peaks.append(Runtime.fmaPeak())
            if bf16, let p = Runtime.bf16Peak() { bf16Peaks.append(p) }
            print(String(format: "round %d: %.1f ms/step, %.0f images/s, %.0f minor faults/step, sgemm %.1f GFLOP/s, FMA peak %.1f GFLOP/s", r + 1, dt * 1e3,
                         Double(config.effectiveBatch) / dt, faults.last!, rates.last!, peaks.last!)
                  + (bf16Peaks.count == r + 1 ? String(format: ", bf16 peak %.1f GFLOP/s", bf16Peaks.last!) : "")
                  + (comm.size > 1 ? String(format: ", gradient averaging %.1f%% of the step", commShares.last! * 100) : ""))
        }
        let t = median(stepTimes), f = median(flops), sg = median(rates), peak = median(peaks)
        let modelRate = f / t / 1e9
        print(String(format: "median: %.1f ms/step, %.0f images/s, %.2f GFLOP per step (matrix products), %.1f GFLOP/s = %.0f%% of the sgemm rate (%.1f GFLOP/s) = %.0f%% of the FMA peak (%.1f GFLOP/s)",
                     t * 1e3, Double(config.effectiveBatch) / t, f / 1e9, modelRate, 100 * modelRate / sg, sg, 100 * modelRate / peak, peak)
              + (bf16Peaks.isEmpty ? "" : String(format: " = %.0f%% of the bf16 peak (%.1f GFLOP/s; products in bf16)", 100 * modelRate / median(bf16Peaks), median(bf16Peaks))))
        if comm.size > 1 {
            print(String(format: "data parallel: %d processes, gradient averaging (fixed-order sum of %d values) %.1f%% of the step (median)",
                         comm.size, trainer.optimizer.arena.count, median(commShares) * 100))
        }
        printShapeTable(shapeOrder.map { shapes[$0]! }, steps: rounds * steps, stepSeconds: t, peak: bf16Peaks.isEmpty ? peak : median(bf16Peaks),
                        peakName: bf16Peaks.isEmpty ? "FMA" : "bf16")
        printOutsideTable(outsideOrder.map { outside[$0]! }, steps: rounds * steps)
        let n = Double(rounds * steps)
        if counting {
            print(String(format: "OpenMP (counted by its runtime): %.0f parallel regions and %.0f barriers per step; threads waited in barriers %.1f ms per step, all %d threads together (%.1f%% of their time)",
                         Double(ompRegions) / n, Double(ompBarriers) / n, 1e3 * ompWait / n, Runtime.threads,
                         100 * ompWait / n / (t * Double(Runtime.threads))))
        } else {
            print("OpenMP: regions and barriers not counted (the runtime counts them in a process started with TESSERA_OMP_COUNTS=1, which tessera bench sets unless TESSERA_BLAS_AUTOTUNE=0)")
        }
        let pool = BufferPool.shared.highWater
        print(String(format: "memory: peak RSS %.0f MiB, %.0f minor page faults per step (median); tensor buffers of 64 KiB and more: at most %.0f MiB in use at once, %.0f MiB held (in use plus kept for reuse)",
                     Double(ResourceUsage.now().peakResidentBytes) / 1048576, median(faults), Double(pool.live) / 1048576, Double(pool.held) / 1048576))
        if data != nil {
            // The loop as training runs it: the loader's thread and workers prepare batches while the steps run.
            let w = trainer.loader.workers
            var epochSteps = trainer.steps(epoch: 0), n = 0
            let t0 = Date()
            while n < rounds * steps, let group = try epochSteps.next() { _ = try trainer.step(group); n += 1 }
            let total = Date().timeIntervalSince(t0)
            print(String(format: "training loop with %d decode worker%@: %.0f images/s over %d steps, %.1f%% of the time waiting for data",
                         w, w == 1 ? "" : "s", Double(n * config.effectiveBatch) / total, n, 100 * epochSteps.waitSeconds / total))
        }
    }

    /// Images/s of the loader alone (read, decode, augment every view) for each worker count, in
    /// alternating rounds of two batches each.
    private func timeLoader(_ set: any ImageDataset, trainer: Pretrainer, workerCounts: [Int]) throws {
        let config = trainer.config
        let loaders = workerCounts.map { Pretrainer.loader(config, method: trainer.method, data: set, workers: $0) }
        let views = loaders[0].viewAugmentations
        let order = loaders[0].order(epoch: 0), stepsAvailable = loaders[0].stepsPerEpoch
        guard stepsAvailable >= 1 else { throw CLIError("the data has fewer images than one batch of \(config.batchSize)") }
        var rates = [[Double]](repeating: [], count: loaders.count)
        _ = try loaders[0].makeBatch(epoch: 0, step: 0, order: order)   // warm up: file cache, allocations
        // Each loader reads its own pass over the epoch, as training does (tar shards: streamed).
        var steps = [Int](repeating: 0, count: loaders.count)
        var readers = loaders.map { $0.epochReader(epoch: 0, order: order) }
        for _ in 0..<rounds {
            for (i, l) in loaders.enumerated() {
                if steps[i] + 2 > stepsAvailable { readers[i]?.cancel(); readers[i] = l.epochReader(epoch: 0, order: order); steps[i] = 0 }
                let t0 = Date()
                var images = 0
                for _ in 0..<2 { images += try l.makeBatch(epoch: 0, step: steps[i] % stepsAvailable, order: order, reader: readers[i]).indices.count; steps[i] += 1 }
                rates[i].append(Double(images) / Date().timeIntervalSince(t0))
            }
        }
        for r in readers { r?.cancel() }
        let sizes = views.map { "\($0.size)" }.joined(separator: "+")
        print("loader alone (read + decode + \(views.count) view\(views.count == 1 ? "" : "s") of \(sizes) px, batch \(config.batchSize), \(rounds) alternating rounds, median):")
        for (i, w) in workerCounts.enumerated() {
            let r = median(rates[i])
            print(String(format: "  %2d worker%@ %8.1f images/s  (%.1f per worker)", w, w == 1 ? " " : "s", r, r / Double(w)))
        }
    }

    /// The step's time outside its matrix products, by op (forward and backward) and by the step's
    /// other parts, the most time first (StepProfile: clock reads as each op ends, products subtracted).
    /// Means over all profiled steps, so the rows add up to the mean step.
    private func printOutsideTable(_ rows: [StepProfile.Row], steps: Int) {
        let n = Double(steps)
        let products = rows.reduce(0) { $0 + $1.productSeconds }
        let total = products + rows.reduce(0) { $0 + $1.seconds }, stepSeconds = total / n
        let rest = rows.filter { $0.seconds / n >= 5e-6 }.sorted { $0.seconds > $1.seconds }
        print(String(format: "outside the products (per step, the mean of %d: %.2f ms = %.1f%% of the step; the products %.2f ms = %.1f%%; clock reads as each op ends, its products subtracted; an op's forward holds the Swift since the op before it):",
                     steps, 1e3 * (total - products) / n, 100 * (total - products) / total, 1e3 * products / n, 100 * products / total))
        // What the fused ops hold besides their products.
        let holds = ["normMLP": " (LayerNorm, biases, GELU)", "mlp": " (biases, GELU)", "normLinear": " (LayerNorm, bias)",
                     "linear": " (bias)", "fusedAttention": " (QKᵀ, softmax, PV per head)"]
        print("  op or part of the step                       forward ms  backward ms   total ms  %step")
        for r in rest {
            let fwd = r.forwardSeconds / n, bwd = r.backwardSeconds / n
            let name = (r.name + (holds[r.name] ?? "")).padding(toLength: 44, withPad: " ", startingAt: 0)
            print("  " + name + String(format: " %10.2f %12.2f %10.2f %5.1f%%", 1e3 * fwd, 1e3 * bwd, 1e3 * (fwd + bwd), 100 * (fwd + bwd) / stepSeconds))
        }
    }

    /// The step's matrix products by shape, the most time first: C[M, N] = op(A)[M, K] · op(B)[K, N]
    /// (ᵀ: read transposed), per step, with the rate as a share of the FMA peak (the bf16 peak when the
    /// products are in bf16).
    private func printShapeTable(_ rows: [Runtime.GEMMShape], steps: Int, stepSeconds: Double, peak: Double, peakName: String) {
        let total = rows.reduce(0) { $0 + $1.seconds }
        print(String(format: "GEMMs by shape (per step; %.0f%% of the step's time, profiled with a clock read around each product; %%peak of the %@ peak):",
                     100 * total / Double(steps) / stepSeconds, peakName))
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
