import ArgumentParser
import CKernels
import Foundation
import TesseraEngine
import TesseraModels

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Training-step throughput of a method and configuration on this machine, with model FLOP/s and its share of the sgemm rate.",
        discussion: """
        Options after `--` are `tessera pretrain` options (method, model, sizes, batch). \
        Synthetic images of --image-size and --channels stand in for data, so no dataset is needed. \
        Each round times --steps training steps and then a 2048³ sgemm, alternating; the table gives \
        medians. TESSERA_GEMM=auto|openblas|onednn picks the GEMM backend. The kernel table is `tessera-bench`.

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
        var rng = TesseraRNG(seed: 1)
        let n = max(options.batchSize * 2, 8)
        let px = (0..<(n * imageSize * imageSize * channels)).map { _ in UInt8(rng.int(below: 256)) }
        let set = ImageSet(uniform: px, count: n, height: imageSize, width: imageSize, channels: channels, labels: nil)
        let config = try options.buildConfig(train: set)
        let method = makeMethod(config)
        let optimizer = AdamW(method.optimizedParameters(), learningRate: Float(config.learningRate), betas: (config.beta1, config.beta2),
                              weightDecay: config.weightDecay, decay: { [method] in method.decays($0, $1) })
        let loader = Loader(set, batchSize: config.batchSize, views: method.viewAugmentations(base: config.augmentation), seed: 0)
        let order = loader.order(epoch: 0)
        let batches = (0..<2).map { loader.makeBatch(epoch: 0, step: $0, order: order) }

        func trainStep(_ i: Int) {
            var r = TesseraRNG(seed: UInt64(i))
            optimizer.zeroGrad()
            let (loss, _) = method.trainingLoss(batches[i % 2], rng: &r)
            loss.backward()
            if let clip = config.clipGrad { optimizer.arena.clipGradients(maxNorm: clip) }
            optimizer.update()
            method.afterUpdate(step: i + 1, totalSteps: 1000, parameters: optimizer.arena)
        }
        // sgemm reference: C[2048, 2048] = A·Bᵀ.
        let g = 2048
        var a = (0..<(g * g)).map { _ in rng.uniform(-1, 1) }, b = a
        var c = [Float](repeating: 0, count: g * g)
        func sgemmRate() -> Double {
            let t0 = DispatchTime.now().uptimeNanoseconds
            ck_sgemm(0, 1, Int64(g), Int64(g), Int64(g), 1, &a, Int64(g), &b, Int64(g), 0, &c, Int64(g))
            return 2 * Double(g * g) * Double(g) / (Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9) / 1e9
        }

        print("tessera bench: \(config.method) \(config.model) (encoder \(config.mae.encoder.dim)/\(config.mae.encoder.depth)/\(config.mae.encoder.heads), patch \(config.mae.encoder.patchSize) on \(imageSize)x\(imageSize)x\(channels)), batch \(config.batchSize), \(Runtime.threads) threads")
        print("BLAS: \(Runtime.gemmBackend); \(rounds) rounds of \(steps) steps, alternating with a \(g)³ sgemm")
        trainStep(0)   // warm up: allocations, BLAS buffers
        _ = sgemmRate()
        var stepTimes: [Double] = [], flops: [Double] = [], rates: [Double] = []
        for r in 0..<rounds {
            ck_flop_counter_reset()
            let t0 = DispatchTime.now().uptimeNanoseconds
            for s in 0..<steps { trainStep(1 + r * steps + s) }
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9 / Double(steps)
            stepTimes.append(dt)
            flops.append(Double(ck_flop_counter_read()) / Double(steps))
            rates.append(sgemmRate())
            print(String(format: "round %d: %.1f ms/step, %.0f images/s, sgemm %.1f GFLOP/s", r + 1, dt * 1e3, Double(config.batchSize) / dt, rates.last!))
        }
        func median(_ v: [Double]) -> Double { let s = v.sorted(); return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2 }
        let t = median(stepTimes), f = median(flops), sg = median(rates)
        let modelRate = f / t / 1e9
        print(String(format: "median: %.1f ms/step, %.0f images/s, %.2f GFLOP per step (matrix products), %.1f GFLOP/s = %.0f%% of the sgemm rate (%.1f GFLOP/s)",
                     t * 1e3, Double(config.batchSize) / t, f / 1e9, modelRate, 100 * modelRate / sg, sg))
    }
}
