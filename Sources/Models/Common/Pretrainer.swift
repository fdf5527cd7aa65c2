import Foundation
import Logging
import TesseraData
import TesseraEngine
#if canImport(Glibc)
import Glibc
#endif

/// Why a run stopped early.
public struct TrainingError: Error, CustomStringConvertible {
    public let description: String
    /// In data-parallel training: every process stops with this same error at the same point (a
    /// decision taken on values all processes share), so only the first needs to report it.
    public var onEveryProcess = false
    public init(description: String, onEveryProcess: Bool = false) {
        self.description = description; self.onEveryProcess = onEveryProcess
    }
}

/// Runs the pretraining loop of any ``PretrainingMethod``: AdamW with MAE's parameter groups,
/// per-iteration warmup + cosine learning rate, optional gradient accumulation, a background data
/// loader, progress and metrics, atomic checkpoints every N epochs, full-state resume, and kNN
/// monitoring.
///
/// Determinism: batch (epoch, step) and the method's randomness at global step t are functions of
/// (seed, epoch, step) and (seed, t) only, so resuming after epoch k reproduces the uninterrupted
/// run bit for bit at the same thread count.
///
/// Data parallelism: with a ``Communicator`` of W processes, `config.batchSize` is the global batch;
/// each process takes its slice of every global batch (``EpochShard``), the parameters and state
/// start from rank 0's copy, gradients are averaged over the processes in a fixed order before
/// clipping and the update (so every process holds the same bits throughout), the method's batch
/// statistics are global, and rank 0 alone writes the run folder. A checkpoint does not depend on W:
/// a run resumes with any number of processes.
public final class Pretrainer {
    public let config: PretrainConfig
    public let method: any PretrainingMethod
    public let optimizer: AdamW
    public let loader: Loader
    public let run: RunFolder
    public let evalSets: (train: any ImageDataset, test: any ImageDataset)?
    /// The processes of a data-parallel job (``SingleProcess`` for one).
    public let comm: any Communicator
    /// The run folder's claim (and lock), held by the primary process from ``train(stopAfter:)`` on,
    /// or given before, as `tessera pretrain` does, so that it covers everything the command reads.
    public var claim: RunClaim?
    /// Where the run's header, progress and epoch lines go (info), and each checkpoint written (debug).
    public var logger = Logger(label: "tessera.pretrain")
    /// Completed epochs and optimizer steps.
    public internal(set) var epoch = 0
    public internal(set) var step = 0
    public internal(set) var bestKNN: Float = -1

    /// `workers` decode threads read and augment the training images (the results do not depend on
    /// how many); with `skipUnreadable` an image that cannot be read is replaced by the next one of
    /// the epoch, with a warning, instead of stopping the run.
    public init(config: PretrainConfig, method: any PretrainingMethod, train: any ImageDataset,
                evalSets: (train: any ImageDataset, test: any ImageDataset)?, runFolder: String, workers: Int = 1,
                skipUnreadable: Bool = false, communicator: any Communicator = SingleProcess()) throws {
        self.config = config
        self.method = method
        self.comm = communicator
        let trainSet = config.limit.map { train.prefix($0) } ?? train
        guard trainSet.count >= config.batchSize else {
            let limited = config.limit.map { " (--limit \($0))" } ?? ""
            throw TrainingError(description: "training set has \(trainSet.count) images\(limited), fewer than one batch of \(config.batchSize); lower --batch-size\(limited.isEmpty ? "" : " or raise --limit")")
        }
        let W = communicator.size
        guard config.batchSize % W == 0 else {
            throw TrainingError(description: "--batch-size \(config.batchSize) is the global batch and must be a multiple of the \(W) processes; use \(config.batchSize / W * W + W)")
        }
        loader = Self.loader(config, method: method, data: trainSet, workers: workers,
                             shard: EpochShard(rank: communicator.rank, of: W, globalBatch: config.batchSize))
        guard loader.stepsPerEpoch >= config.accumSteps else {
            throw TrainingError(description: "--accum \(config.accumSteps) needs \(config.accumSteps) batches per step, but an epoch of \(trainSet.count) images has \(loader.stepsPerEpoch) batches of \(config.batchSize); lower --accum or --batch-size")
        }
        method.distribute(over: communicator)
        loader.skipUnreadable = skipUnreadable
        optimizer = AdamW(method.optimizedParameters(), learningRate: Float(config.learningRate), betas: (config.beta1, config.beta2),
                          weightDecay: config.weightDecay, decay: { [method] in method.decays($0, $1) })
        run = RunFolder(runFolder)
        self.evalSets = evalSets
    }

    /// The training loader of `config` for `method` on `data`: the method's views of the run's
    /// augmentation, its batch size, seed and decoding, with `workers` decode workers.
    public static func loader(_ config: PretrainConfig, method: any PretrainingMethod, data: any ImageDataset, workers: Int,
                              shard: EpochShard? = nil) -> Loader {
        let l = Loader(data, batchSize: config.batchSize, views: method.viewAugmentations(base: config.augmentation), seed: config.seed,
                       workers: workers, shard: shard)
        l.reducedDecoding = !(config.fullDecode ?? false)
        return l
    }

    public var stepsPerEpoch: Int { loader.stepsPerEpoch / config.accumSteps }
    public var totalSteps: Int { stepsPerEpoch * config.epochs }

    // MARK: the step

    /// What one optimizer step reports.
    public struct StepReport {
        /// The loss of each micro-batch (one unless gradients are accumulated).
        public var losses: [Float]
        /// The method's named scalars of the last micro-batch (monitors, loss terms).
        public var metrics: [(String, Float)]
        /// Images consumed.
        public var images: Int
    }

    /// Learning rate at a (fractional) epoch: linear warmup from 0, then half-cycle cosine to 0.
    public func learningRate(atEpoch e: Double) -> Double {
        Schedule.warmupCosine(iteration: e, base: config.learningRate, warmup: config.warmupEpochs, total: Double(config.epochs))
    }

    /// One optimizer step on `config.accumSteps` micro-batches, exactly as training runs it: the
    /// learning rate and weight decay of this point of the schedule, each micro-batch's loss and
    /// backward (seeded by the global step), gradient clipping, the AdamW update, and the method's
    /// EMA update. Throws, before the update, when a loss is not finite.
    public func step(_ microBatches: [Batch]) throws -> StepReport {
        precondition(microBatches.count == config.accumSteps, "Pretrainer.step: \(microBatches.count) micro-batches for --accum \(config.accumSteps)")
        let inEpoch = step - epoch * stepsPerEpoch
        optimizer.learningRate = Float(learningRate(atEpoch: Double(epoch) + Double(inEpoch * config.accumSteps) / Double(loader.stepsPerEpoch)))
        if let end = config.weightDecayEnd {
            optimizer.weightDecay = Float(Schedule.cosine(progress: Double(step) / Double(max(totalSteps, 1)),
                                                          from: Double(config.weightDecay), to: Double(end)))
        }
        StepProfile.lap("schedules")
        optimizer.arena.startGradients()
        var report = StepReport(losses: [], metrics: [], images: 0)
        for (micro, batch) in microBatches.enumerated() {
            var rng = TesseraRNG(seed: SeedStream.methodStep(microStep: step * config.accumSteps + micro).seed(config.seed))
            let (loss, metrics) = method.trainingLoss(batch, rng: &rng)
            // The global batch's loss and monitors: their mean over the processes (one small collective),
            // so every process takes the same decision below. A monitor that is not a mean over the
            // images (MSN's distinct prototypes) is computed by the method on the global batch.
            let global = comm.mean([loss.item] + metrics.map(\.1))
            let value = global[0]
            guard value.isFinite else {
                let saved = (try? SafeTensors.read(run.trainState("last")))?.metadata
                let last = saved.map { "\(run.model("last")) (epoch \($0["epoch"] ?? "?"), step \($0["step"] ?? "?"); --resume continues from it)" }
                    ?? "none (no checkpoint saved yet)"
                throw TrainingError(description: "loss is \(value) at epoch \(epoch + 1) step \(step + 1); stopping. Last good checkpoint: \(last). Lower --blr or check the data",
                                    onEveryProcess: true)
            }
            (config.accumSteps == 1 ? loss : loss.scaled(by: 1 / Float(config.accumSteps))).backward()
            report.losses.append(value)
            report.metrics = zip(metrics, global.dropFirst()).map { ($0.0, $1) }
            report.images += batch.indices.count * comm.size
        }
        optimizer.arena.finishGradients()
        StepProfile.lap("autograd walk", backward: true)
        averageGradientsOverProcesses()
        StepProfile.lap("gradient averaging")
        if let clip = config.clipGrad { optimizer.arena.clipGradients(maxNorm: clip) }
        StepProfile.lap("gradient clipping")
        optimizer.update()
        StepProfile.lap("AdamW")
        step += 1
        method.afterUpdate(step: step, totalSteps: totalSteps)
        StepProfile.lap("after the update (EMA teachers)")
        return report
    }

    /// A failure this process stages at a given step (`TESSERA_INJECT_FAILURE`, for testing how a
    /// job ends when one of its processes fails).
    public var injectedFailure: InjectedFailure?

    /// Seconds spent averaging gradients over the processes (the communication of the step).
    public private(set) var reductionSeconds = 0.0

    /// Every gradient replaced by its mean over the processes: a fixed-order sum (the same bits on
    /// every process), then 1/W.
    func averageGradientsOverProcesses() {
        guard comm.size > 1, let g = optimizer.arena.gradients else { return }
        let start = Date()
        comm.sum(UnsafeMutableBufferPointer(start: g.base, count: optimizer.arena.count))
        optimizer.arena.scaleGradients(by: 1 / Float(comm.size))
        reductionSeconds += Date().timeIntervalSince(start)
    }

    // MARK: the loop

    /// The optimizer steps of one epoch as training takes them: the loader's micro-batches (prepared
    /// by its thread and workers while the steps run) in groups of `config.accumSteps`; micro-batches
    /// left after the epoch's last whole step are not used. `tessera bench` times the same loop.
    public struct EpochSteps {
        let batches: BatchStream
        let accumSteps: Int
        /// Seconds spent waiting for the loader so far.
        public private(set) var waitSeconds = 0.0

        /// The next step's micro-batches, or nil at the end of the epoch.
        public mutating func next() throws -> [Batch]? {
            var group: [Batch] = []
            while group.count < accumSteps {
                let start = Date()
                guard let batch = try batches.next() else { return nil }
                waitSeconds += Date().timeIntervalSince(start)
                group.append(batch)
            }
            return group
        }
    }

    /// The steps of `epoch` (from its start).
    public func steps(epoch: Int) -> EpochSteps { EpochSteps(batches: loader.batches(epoch: epoch), accumSteps: config.accumSteps) }

    struct Meter {
        var start = Date()
        var images = 0
        var lossSum = 0.0, lossCount = 0
        /// Seconds the step waited for the loader.
        var dataSeconds = 0.0
        /// The trainer's gradient-reduction seconds when the window started.
        var reductionStart = 0.0

        mutating func add(_ r: StepReport, waited: Double) {
            images += r.images
            for l in r.losses { lossSum += Double(l) }
            lossCount += r.losses.count
            dataSeconds += waited
        }
        var meanLoss: Double { lossSum / Double(max(lossCount, 1)) }
        var imagesPerSecond: Double { Double(images) / max(Date().timeIntervalSince(start), 1e-9) }
        /// The share of the wall time spent waiting for data.
        var dataShare: Double { dataSeconds / max(Date().timeIntervalSince(start), 1e-9) }
        /// The share of the wall time spent reducing gradients, given the trainer's running total.
        func share(of reductionSeconds: Double) -> Double { (reductionSeconds - reductionStart) / max(Date().timeIntervalSince(start), 1e-9) }
    }

    /// Trains from the current epoch to `config.epochs` (or only until `stopAfter` epochs are done,
    /// as if the process were stopped there), its products in `config.precision` (the process's
    /// compute is put back on return). Returns the mean loss of the last epoch.
    @discardableResult
    public func train(stopAfter: Int? = nil) throws -> Double {
        let choice: Runtime.Compute
        do { choice = try Runtime.compute(for: config.precision ?? .fp32) } catch { throw TrainingError(description: "\(error)") }
        return try Runtime.withCompute(choice) { try trainLoop(stopAfter: stopAfter) } ?? .nan
    }

    /// The loop: epochs of steps, a progress line and metrics every `logEvery` steps, and each epoch's
    /// end (``finishEpoch(_:)``: kNN, metrics, checkpoints).
    private func trainLoop(stopAfter: Int?) throws -> Double {
        // One writer per run folder: a claim given before (the CLI's) is kept; one taken here is held
        // until training returns.
        let ownClaim = comm.isPrimary && claim == nil
        defer { if ownClaim { claim = nil } }
        try start(claiming: ownClaim)
        var lastEpochLoss = Double.nan
        let progress = Progress(trainer: self)
        while epoch < min(config.epochs, stopAfter ?? config.epochs) {
            var meter = Meter(), window = Meter(reductionStart: reductionSeconds)
            var steps = steps(epoch: epoch)
            var waited = 0.0
            while let group = try steps.next() {
                if let f = injectedFailure, f.step == step + 1 { try f.trigger(on: group[0], parameters: optimizer.arena.values.base) }
                let r = try step(group)
                meter.add(r, waited: steps.waitSeconds - waited); window.add(r, waited: steps.waitSeconds - waited)
                waited = steps.waitSeconds
                try progress.stepDone(r, window: &window)
            }
            progress.epochDone()
            epoch += 1
            lastEpochLoss = meter.meanLoss
            try finishEpoch(meter)
        }
        return lastEpochLoss
    }

    /// Before the first step: the folder claimed and tidied, the configuration and the metrics header
    /// written (rank 0), every process given rank 0's state, and the run's header line.
    private func start(claiming: Bool) throws {
        if comm.isPrimary {
            if claiming { claim = try RunClaim(run) }
            claim?.accept()
            try run.recover()
            try FileIO.writeAtomically(config.json() + "\n", to: run.config)
            if !FileManager.default.fileExists(atPath: run.metricsCSV) {
                try FileIO.appendLine("kind,epoch,step,loss,lr,images_per_s,knn", to: run.metricsCSV)
            }
        }
        synchronizeState()
        let processes = comm.size == 1 ? "" : ", \(comm.size) processes × \(config.batchSize / comm.size) images"
        if comm.isPrimary {
            logger.info("\(method.methodName) on \(loader.dataset.summary), \(loader.workers) decode worker\(loader.workers == 1 ? "" : "s"): effective batch \(config.effectiveBatch) (\(config.batchSize) × \(config.accumSteps) accumulation\(processes)), lr \(String(format: "%.3g", config.learningRate)) (blr \(config.blr)), \(stepsPerEpoch) steps/epoch, \(config.epochs) epochs, \(Runtime.threads) threads")
        }
    }

    /// What the loop shows and logs after each step (rank 0): the method's monitors every step
    /// (metrics.jsonl), and every `logEvery` steps and at the epoch's end a progress line (rewritten
    /// in place on a terminal) and a metrics row of the window since the last.
    private struct Progress {
        unowned let trainer: Pretrainer
        let tty: Bool
        let runStart = Date()
        let stepsAtStart: Int

        init(trainer: Pretrainer) {
            self.trainer = trainer
            tty = trainer.comm.isPrimary && isatty(STDERR_FILENO) != 0
            stepsAtStart = trainer.step
        }

        func stepDone(_ r: StepReport, window: inout Meter) throws {
            let t = trainer, config = t.config
            guard t.comm.isPrimary else { return }
            if !r.metrics.isEmpty {   // the method's monitors (MSN collapse, RC-MAE terms), every step
                try MetricsLog(path: t.run.metricsJSONL).append(MetricsRecord(kind: "monitor", fields: [
                    ("epoch", .integer(t.epoch)), ("step", .integer(t.step)), ("loss", .number(Double(r.losses.last!)))] + MetricsRecord.numbers(r.metrics)))
            }
            let inEpoch = t.step - t.epoch * t.stepsPerEpoch
            guard inEpoch % config.logEvery == 0 || inEpoch == t.stepsPerEpoch else { return }
            let ips = window.imagesPerSecond, wloss = window.meanLoss, lr = Double(t.optimizer.learningRate)
            let eta = Date().timeIntervalSince(runStart) / Double(max(t.step - stepsAtStart, 1)) * Double(t.totalSteps - t.step)
            var line = String(format: "epoch %d/%d step %d/%d loss %.4f lr %.3e %.0f img/s data %.0f%% ETA %@",
                              t.epoch + 1, config.epochs, inEpoch, t.stepsPerEpoch, wloss, lr, ips, window.dataShare * 100, formatDuration(eta))
            if t.comm.size > 1 { line += String(format: " comm %.0f%%", window.share(of: t.reductionSeconds) * 100) }
            for (k, v) in r.metrics { line += String(format: " %@ %.4g", k, v) }
            if tty { FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8)) } else { t.logger.info("\(line)") }
            try t.logMetrics(kind: "step", loss: wloss, lr: lr, ips: ips, knn: nil, extra: r.metrics)
            window = Meter(reductionStart: t.reductionSeconds)
        }

        /// Ends the terminal's progress line.
        func epochDone() { if tty { FileHandle.standardError.write(Data("\n".utf8)) } }
    }

    /// The end of an epoch: kNN on the evaluation sets when due (rank 0 alone; the others wait), the
    /// epoch's line and metrics row, the checkpoint when due (after the processes agree on the state),
    /// and `best` when the kNN improved.
    private func finishEpoch(_ meter: Meter) throws {
        let primary = comm.isPrimary, ips = meter.imagesPerSecond   // the steps' rate, before the kNN
        var knn: Float?
        if primary, config.knnEvery > 0, epoch % config.knnEvery == 0 || epoch == config.epochs, let evalSets {
            let enc = method.evaluationEncoder
            let trF = try enc.features(of: evalSets.train, augmentation: config.augmentation, workers: loader.workers)
            let teF = try enc.features(of: evalSets.test, augmentation: config.augmentation, workers: loader.workers)
            knn = Probes.knn(train: trF, test: teF)
        }
        if primary {
            logger.info("\(String(format: "epoch %d/%d done: loss %.4f, %.0f img/s, %.1f%% of the time waiting for data", epoch, config.epochs, meter.meanLoss, ips, meter.dataShare * 100) + (knn.map { String(format: ", kNN %.2f%%", $0 * 100) } ?? ""))")
            try logMetrics(kind: "epoch", loss: meter.meanLoss, lr: Double(optimizer.learningRate), ips: ips, knn: knn, extra: [])
        }
        if epoch % config.saveEvery == 0 || epoch == config.epochs {
            try verifyProcessesAgree()
            if primary { try saveCheckpoint(tag: "last") }
        }
        if primary, let knn, knn > bestKNN {
            bestKNN = knn
            try saveCheckpoint(tag: "best", includeTrainState: false)
        }
    }

    func logMetrics(kind: String, loss: Double, lr: Double, ips: Double, knn: Float?, extra: [(String, Float)]) throws {
        let k = knn.map { String(format: "%.4f", $0) } ?? ""
        try FileIO.appendLine("\(kind),\(epoch),\(step),\(String(format: "%.6f", loss)),\(String(format: "%.6e", lr)),\(String(format: "%.1f", ips)),\(k)", to: run.metricsCSV)
        var fields: [(name: String, value: MetricsRecord.Value)] = [("epoch", .integer(epoch)), ("step", .integer(step)), ("loss", .number(loss)),
                                                                    ("lr", .number(lr)), ("images_per_s", .number(ips))]
        if let knn { fields.append(("knn", .number(Double(knn)))) }
        try MetricsLog(path: run.metricsJSONL).append(MetricsRecord(kind: kind, fields: fields + MetricsRecord.numbers(extra)))
    }
}

func formatDuration(_ s: Double) -> String {
    guard s.isFinite, s >= 0 else { return "--:--" }
    let t = Int(s.rounded())
    return t >= 3600 ? String(format: "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60) : String(format: "%d:%02d", t / 60, t % 60)
}

/// Copies a checkpoint's tensors into a module (names and shapes must match exactly).
public func loadWeights(_ file: SafeTensors.File, into module: Module, strict: Bool = true) throws {
    var state: [String: Tensor] = [:]
    for (name, entry) in file.tensors {
        guard let v = entry.floats() else { throw TrainingError(description: "tensor '\(name)' has dtype \(entry.dtype.rawValue), which cannot be loaded as float32") }
        state[name] = Tensor(v, shape: entry.shape)
    }
    do { try module.load(stateDict: state, strict: strict) } catch let e as EngineError {
        throw TrainingError(description: "checkpoint does not fit the model: \(e)")
    }
}

/// A failure staged on purpose: `TESSERA_INJECT_FAILURE=rank:step[:crash|:nan|:diverge]` makes process
/// `rank` fail when it is about to run optimizer step `step` (1-based): with an error; with `crash` by
/// killing itself (SIGKILL); with `nan` by giving the step a non-finite loss (one pixel of its batch
/// set to NaN); with `diverge` by nudging one of its parameters, so that it no longer holds rank 0's
/// bits. Tests use it to check that a failing process ends the whole job, that a non-finite loss stops
/// the run with its last good checkpoint intact, and that diverged processes are caught at the save.
public struct InjectedFailure: Sendable {
    public enum Kind: String, Sendable { case error, crash, nan, diverge }
    public let step: Int
    public let kind: Kind

    /// The failure the environment stages for process `rank`, if any.
    public static func fromEnvironment(rank: Int) -> InjectedFailure? {
        guard let spec = ProcessInfo.processInfo.environment["TESSERA_INJECT_FAILURE"] else { return nil }
        let parts = spec.split(separator: ":")
        guard parts.count >= 2, Int(parts[0]) == rank, let s = Int(parts[1]) else { return nil }
        return InjectedFailure(step: s, kind: parts.count > 2 ? Kind(rawValue: String(parts[2])) ?? .error : .error)
    }

    /// Fails now, poisons `batch` for `nan`, or nudges the first of the process's `parameters` for `diverge`.
    func trigger(on batch: Batch, parameters: UnsafeMutablePointer<Float>) throws {
        switch kind {
        case .crash: kill(getpid(), SIGKILL)
        case .nan: batch.viewImages[0].data[0] = .nan; return
        case .diverge: parameters[0] += 1e-3; return
        case .error: break
        }
        throw TrainingError(description: "injected failure before step \(step) (TESSERA_INJECT_FAILURE)")
    }
}
