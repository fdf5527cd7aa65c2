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

/// Files of a run folder.
public struct RunFolder: Sendable {
    public let path: String
    public init(_ path: String) { self.path = path }
    public var config: String { path + "/config.json" }
    public var metricsCSV: String { path + "/metrics.csv" }
    public var metricsJSONL: String { path + "/metrics.jsonl" }
    public func model(_ tag: String) -> String { path + "/\(tag).safetensors" }
    public func encoder(_ tag: String) -> String { path + "/\(tag).encoder.safetensors" }
    public func trainState(_ tag: String) -> String { path + "/\(tag).train-state.safetensors" }
}

/// A run folder held by this process: created where missing and locked before anything else is read
/// or written, so that two commands on one `--run` cannot both get past their checks (a second one
/// is refused at once, naming the holder). If the command then fails before its first checkpoint,
/// ``abandon()`` takes away what it added, leaving the file system as it found it.
public final class RunClaim {
    public let folder: RunFolder
    public let lock: FileIO.DirectoryLock
    /// Directories this claim created, outermost first.
    private let created: [String]
    /// Entries of the folder when it was claimed.
    private let existed: Set<String>

    public init(_ folder: RunFolder) throws {
        created = try FileIO.makeDirectory(folder.path)
        existed = Set((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? [])
        do { lock = try FileIO.DirectoryLock(folder.path, recordingHolder: false) } catch {
            for dir in created.reversed() { rmdir(dir) }
            throw error
        }
        self.folder = folder
        RunClaim.openLock.withLock { RunClaim.open[ObjectIdentifier(self)] = Weak(self) }
    }

    deinit { RunClaim.openLock.withLock { RunClaim.open[ObjectIdentifier(self)] = nil } }

    private struct Weak { weak var claim: RunClaim?; init(_ c: RunClaim) { claim = c } }
    private static let openLock = NSLock()
    nonisolated(unsafe) private static var open: [ObjectIdentifier: Weak] = [:]

    /// ``abandon()`` on every claim this process holds: for a process about to exit from a place no
    /// error can be thrown through (memory that cannot be allocated, `BufferPool.onAllocationFailure`),
    /// so that a run that never saved leaves nothing behind there either.
    public static func abandonEveryOpenClaim() {
        for claim in openLock.withLock({ open.values.compactMap(\.claim) }) { claim.abandon() }
    }

    /// Records this process in the lock file: once the command's checks under the lock have passed
    /// (a refused command leaves the folder exactly as it was).
    public func accept() { lock.recordHolder() }

    /// Whether the folder holds a run to continue: its train state, which every save writes first.
    public var holdsRun: Bool { FileManager.default.fileExists(atPath: folder.trainState("last")) }

    /// After a failure: puts the lock file back as it was; when no train state was saved, removes the
    /// files this command added (the lock, configuration, metrics, a checkpoint cut short) and the
    /// directories it created; with a train state on disk everything else stays, to be resumed.
    public func abandon() {
        if let previous = lock.previous { lock.restore(previous.bytes, modified: previous.modified) }   // the last holder's pid, as it was
        guard !holdsRun else { return }
        let fm = FileManager.default
        for name in (try? fm.contentsOfDirectory(atPath: folder.path)) ?? [] where !existed.contains(name) {
            unlink(folder.path + "/" + name)
        }
        for dir in created.reversed() { rmdir(dir) }   // only emptied ones go
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
    public var logger = Logger(label: "tessera.pretrain")
    /// Where progress lines go (stdout unless replaced).
    public var print: (String) -> Void = { Swift.print($0) }
    /// Completed epochs and optimizer steps.
    public private(set) var epoch = 0
    public private(set) var step = 0
    public private(set) var bestKNN: Float = -1

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

    // MARK: checkpoints

    /// Images the run has trained on (all processes together).
    public var samplesConsumed: Int { step * config.effectiveBatch }

    func metadata() -> [String: String] {
        ["format": "pt", "method": method.methodName, "config": config.json(), "epoch": "\(epoch)", "step": "\(step)",
         "producer": "tessera", "world_size": "\(comm.size)", "samples": "\(samplesConsumed)"]
    }

    /// Gives every process rank 0's parameters, buffers, optimizer moments and counters (at the
    /// start of a data-parallel run, and after rank 0 resumed from a checkpoint).
    public func synchronizeState() {
        guard comm.size > 1 else { return }
        for (_, t) in method.reportedModel.stateDict() { comm.broadcast(t) }
        for (_, t) in method.extraState() { comm.broadcast(t) }
        let arena = optimizer.arena
        for storage in [arena.values, optimizer.m, optimizer.v] {
            comm.broadcast(UnsafeMutableRawBufferPointer(start: storage.base, count: arena.count * MemoryLayout<Float>.stride), from: 0)
        }
        var counters: [Int64] = [Int64(step), Int64(epoch), Int64(optimizer.step), Int64(bestKNN.bitPattern)]
        counters.withUnsafeMutableBytes { comm.broadcast($0, from: 0) }
        step = Int(counters[0]); epoch = Int(counters[1]); optimizer.restore(step: Int(counters[2]))
        bestKNN = Float(bitPattern: UInt32(counters[3]))
    }

    /// A checksum of the trained state, equal on every process unless they diverged.
    func stateChecksum() -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        let arena = optimizer.arena
        for storage in [arena.values, optimizer.m, optimizer.v] {
            let words = UnsafeRawPointer(storage.base).bindMemory(to: UInt32.self, capacity: arena.count)
            for i in 0..<arena.count { h = (h ^ UInt64(words[i])) &* 0x100_0000_01b3 }
        }
        return h
    }

    /// Checks that every process holds the same state (a deterministic reduction keeps them equal).
    func verifyProcessesAgree() throws {
        guard comm.size > 1 else { return }
        let c = stateChecksum()
        let all = comm.allGather([Int32(truncatingIfNeeded: c), Int32(truncatingIfNeeded: c >> 32)])
        let disagreeing = (0..<comm.size).filter { all[2 * $0] != all[0] || all[2 * $0 + 1] != all[1] }
        guard disagreeing.isEmpty else {
            throw TrainingError(description: "processes \(disagreeing.map(String.init).joined(separator: ", ")) hold different parameters than rank 0 at step \(step); the job is not deterministic (mixed builds or CPUs?)",
                                onEveryProcess: true)
        }
    }

    /// Writes `<tag>.train-state`, then `<tag>` (full model) and `<tag>.encoder`, each atomically.
    ///
    /// The train state holds everything a resume needs (the reported model's tensors as `model.<name>`,
    /// the AdamW moments, the method's extra state and the step), so resuming reads that one file, and
    /// a run killed between two of the three writes resumes from whichever train state is on disk.
    public func saveCheckpoint(tag: String, includeTrainState: Bool = true) throws {
        let meta = metadata()
        if includeTrainState {
            var tensors: [(name: String, entry: SafeTensors.Entry)] = method.reportedModel.stateDict().map {
                ("model." + $0.name, .init(floats: $0.tensor.array, shape: $0.tensor.shape))
            }
            for (name, t, off) in optimizer.arena.entries {
                tensors.append(("exp_avg." + name, .init(floats: Array(UnsafeBufferPointer(start: optimizer.m.base + off, count: t.count)), shape: t.shape)))
                tensors.append(("exp_avg_sq." + name, .init(floats: Array(UnsafeBufferPointer(start: optimizer.v.base + off, count: t.count)), shape: t.shape)))
            }
            for (name, t) in method.extraState() { tensors.append(("extra." + name, .init(floats: t.array, shape: t.shape))) }
            tensors.append(("optimizer.step", .init(int64s: [Int64(optimizer.step)], shape: [])))
            try SafeTensors.write(.init(tensors: tensors, metadata: meta), to: run.trainState(tag))
        }
        try SafeTensors.write(.init(tensors: method.reportedModel.stateDict().map { ($0.name, .init(floats: $0.tensor.array, shape: $0.tensor.shape)) }, metadata: meta),
                              to: run.model(tag))
        try SafeTensors.write(.init(tensors: method.evaluationEncoder.stateDict().map { ($0.name, .init(floats: $0.tensor.array, shape: $0.tensor.shape)) },
                                    metadata: meta), to: run.encoder(tag))
        logger.debug("checkpoint written", metadata: ["path": "\(run.model(tag))", "epoch": "\(epoch)", "step": "\(step)"])
    }

    /// Restores weights, optimizer moments, step counters and extra state from `<tag>.train-state`
    /// (the weights from `<tag>` itself when the train state predates holding them).
    public func resume(tag: String = "last") throws {
        let state = try SafeTensors.read(run.trainState(tag))
        let embedded = state.tensors.contains { $0.name.hasPrefix("model.") }
        let model = embedded ? SafeTensors.File(tensors: state.tensors.filter { $0.name.hasPrefix("model.") }
                                                    .map { (String($0.name.dropFirst(6)), $0.entry) }, metadata: state.metadata)
                             : try SafeTensors.read(run.model(tag))
        guard model.metadata["step"] == state.metadata["step"], let stepText = model.metadata["step"], let s = Int(stepText),
              let e = Int(model.metadata["epoch"] ?? "") else {
            throw TrainingError(description: "\(run.path): \(tag).safetensors and \(tag).train-state.safetensors are from different steps; start a new run or restore both files")
        }
        // Checkpoints are written at epoch ends: the step is the epochs done times the steps per epoch.
        guard e >= 0, e <= ConfigLimits.epochs.upperBound, s >= 0, s == e * stepsPerEpoch else {
            let was = e > 0 && s > 0 && s % e == 0 && s / e <= Int(Int32.max) ? s / e : nil
            if let was, was != stepsPerEpoch {
                throw TrainingError(description: "\(run.trainState(tag)) was saved after \(e) epoch\(e == 1 ? "" : "s") of \(was) steps, but the training data now gives \(stepsPerEpoch) steps per epoch; the data changed since the run started: resume with the data it was trained on")
            }
            throw TrainingError(description: "\(run.trainState(tag)): epoch \(e) and step \(s) are not a point of this run (\(stepsPerEpoch) steps per epoch); the file is damaged: restore it or start a new run")
        }
        if let c = model.metadata["config"] {
            let saved = try PretrainConfig.decode(c)
            // More epochs may be asked for on resume (the remaining schedule then stretches), the
            // logging, saving and monitoring cadence may change, and so may the products' precision
            // (a choice of arithmetic, not of the run); everything that shapes the run must match.
            func shape(_ c: PretrainConfig) -> PretrainConfig {
                var c = c
                c.epochs = 0; c.logEvery = 0; c.saveEvery = 0; c.knnEvery = 0; c.evalData = nil; c.precision = nil
                return c
            }
            guard shape(saved) == shape(config) else {
                throw TrainingError(description: "\(run.path): the checkpoint was trained with a different configuration (see config.json); resume with the same options")
            }
        }
        try loadWeights(model, into: method.reportedModel)
        for (name, t, off) in optimizer.arena.entries {
            guard let m = state["exp_avg." + name]?.floats(), let v = state["exp_avg_sq." + name]?.floats(), m.count == t.count, v.count == t.count else {
                throw TrainingError(description: "\(run.trainState(tag)): optimizer state for '\(name)' is missing or has the wrong size")
            }
            (optimizer.m.base + off).update(from: m, count: t.count)
            (optimizer.v.base + off).update(from: v, count: t.count)
        }
        for (name, t) in method.extraState() {
            guard let v = state["extra." + name]?.floats(), v.count == t.count else {
                throw TrainingError(description: "\(run.trainState(tag)): state '\(name)' is missing or has the wrong size")
            }
            t.data.update(from: v, count: t.count)
        }
        guard let st = state["optimizer.step"]?.int64s()?.first, st >= 0, st <= Int64(s) else {
            throw TrainingError(description: "\(run.trainState(tag)): optimizer.step is missing or not within 0…\(s); the file is damaged: restore it or start a new run")
        }
        optimizer.restore(step: Int(st))
        step = s
        epoch = e
    }

    /// Tidies what a killed run may have left (called under the folder's lock, before writing):
    /// temporary files of interrupted atomic writes are removed, and a metrics line cut off
    /// mid-write is dropped.
    func recoverFolder() throws {
        let fm = FileManager.default
        for name in (try? fm.contentsOfDirectory(atPath: run.path)) ?? [] where name.hasPrefix(".") && name.contains(".tmp-") {
            try? fm.removeItem(atPath: run.path + "/" + name)
        }
        for path in [run.metricsCSV, run.metricsJSONL] {
            guard fm.fileExists(atPath: path) else { continue }
            let bytes = try FileIO.readAll(path, limit: 1 << 32)   // never blocks: a FIFO there is one line
            guard let last = bytes.last, last != UInt8(ascii: "\n") else { continue }
            let keep = (bytes.lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 }) ?? 0
            try FileIO.writeAtomically(Array(bytes[0..<keep]), to: path)
        }
    }

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
            var rng = TesseraRNG(seed: deriveSeed(config.seed, 100, UInt64(step * config.accumSteps + micro)))
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

    struct Meter {
        var start = Date()
        var images = 0
        var lossSum = 0.0, lossCount = 0
        /// Seconds the step waited for the loader.
        var dataSeconds = 0.0
        /// The trainer's gradient-reduction seconds when the window started.
        var reductionStart = 0.0

        mutating func add(_ r: StepReport) {
            images += r.images
            for l in r.losses { lossSum += Double(l) }
            lossCount += r.losses.count
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

    private func trainLoop(stopAfter: Int?) throws -> Double {
        let primary = comm.isPrimary
        // One writer per run folder: a claim given before (the CLI's) is kept; one taken here is held
        // until training returns.
        let ownClaim = primary && claim == nil
        defer { if ownClaim { claim = nil } }
        if primary {
            if ownClaim { claim = try RunClaim(run) }
            claim?.accept()
            try recoverFolder()
            try FileIO.writeAtomically(config.json() + "\n", to: run.config)
            if !FileManager.default.fileExists(atPath: run.metricsCSV) {
                try FileIO.appendLine("kind,epoch,step,loss,lr,images_per_s,knn", to: run.metricsCSV)
            }
        }
        synchronizeState()
        let print: (String) -> Void = primary ? self.print : { _ in }
        let tty = primary && isatty(STDERR_FILENO) != 0
        let processes = comm.size == 1 ? "" : ", \(comm.size) processes × \(config.batchSize / comm.size) images"
        print("\(method.methodName) on \(loader.dataset.summary), \(loader.workers) decode worker\(loader.workers == 1 ? "" : "s"): effective batch \(config.effectiveBatch) (\(config.batchSize) × \(config.accumSteps) accumulation\(processes)), lr \(String(format: "%.3g", config.learningRate)) (blr \(config.blr)), \(stepsPerEpoch) steps/epoch, \(config.epochs) epochs, \(Runtime.threads) threads")
        var lastEpochLoss = Double.nan
        let runStart = Date()
        let stepsAtStart = step
        while epoch < min(config.epochs, stopAfter ?? config.epochs) {
            var meter = Meter(), window = Meter()
            window.reductionStart = reductionSeconds
            let batches = loader.batches(epoch: epoch)
            var group: [Batch] = []
            // Micro-batches left over after the epoch's last whole step are not used.
            var waitStart = Date()
            while let batch = try batches.next() {
                let waited = Date().timeIntervalSince(waitStart)
                meter.dataSeconds += waited; window.dataSeconds += waited
                defer { waitStart = Date() }
                group.append(batch)
                guard group.count == config.accumSteps else { continue }
                if let f = injectedFailure, f.step == step + 1 { try f.trigger(on: group[0], parameters: optimizer.arena.values.base) }
                let r = try step(group)
                group.removeAll()
                meter.add(r); window.add(r)
                if primary, !r.metrics.isEmpty {   // the method's monitors (MSN collapse, RC-MAE terms), every step
                    try MetricsLog(path: run.metricsJSONL).append(MetricsRecord(kind: "monitor", fields: [
                        ("epoch", .integer(epoch)), ("step", .integer(step)), ("loss", .number(Double(r.losses.last!)))] + MetricsRecord.numbers(r.metrics)))
                }
                let inEpoch = step - epoch * stepsPerEpoch
                if inEpoch % config.logEvery == 0 || inEpoch == stepsPerEpoch {
                    let ips = window.imagesPerSecond, wloss = window.meanLoss
                    let eta = Date().timeIntervalSince(runStart) / Double(max(step - stepsAtStart, 1)) * Double(totalSteps - step)
                    var line = String(format: "epoch %d/%d step %d/%d loss %.4f lr %.3e %.0f img/s data %.0f%% ETA %@",
                                      epoch + 1, config.epochs, inEpoch, stepsPerEpoch, wloss, Double(optimizer.learningRate), ips,
                                      window.dataShare * 100, formatDuration(eta))
                    if comm.size > 1 { line += String(format: " comm %.0f%%", window.share(of: reductionSeconds) * 100) }
                    for (k, v) in r.metrics { line += String(format: " %@ %.4g", k, v) }
                    if tty { FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8)) } else { print(line) }
                    if primary { try logMetrics(kind: "step", loss: wloss, lr: Double(optimizer.learningRate), ips: ips, knn: nil, extra: r.metrics) }
                    window = Meter()
                    window.reductionStart = reductionSeconds
                }
            }
            if tty { FileHandle.standardError.write(Data("\n".utf8)) }
            epoch += 1
            lastEpochLoss = meter.meanLoss
            let ips = meter.imagesPerSecond
            var knn: Float?
            if primary, config.knnEvery > 0, epoch % config.knnEvery == 0 || epoch == config.epochs, let evalSets {   // rank 0 alone; the others wait
                let enc = method.evaluationEncoder
                let trF = try enc.features(of: evalSets.train, augmentation: config.augmentation, workers: loader.workers)
                let teF = try enc.features(of: evalSets.test, augmentation: config.augmentation, workers: loader.workers)
                knn = Probes.knn(train: trF, test: teF)
            }
            print(String(format: "epoch %d/%d done: loss %.4f, %.0f img/s, %.1f%% of the time waiting for data", epoch, config.epochs,
                         lastEpochLoss, ips, meter.dataShare * 100)
                  + (knn.map { String(format: ", kNN %.2f%%", $0 * 100) } ?? ""))
            if primary { try logMetrics(kind: "epoch", loss: lastEpochLoss, lr: Double(optimizer.learningRate), ips: ips, knn: knn, extra: []) }
            if epoch % config.saveEvery == 0 || epoch == config.epochs {
                try verifyProcessesAgree()
                if primary { try saveCheckpoint(tag: "last") }
            }
            if primary, let knn, knn > bestKNN {
                bestKNN = knn
                try saveCheckpoint(tag: "best", includeTrainState: false)
            }
        }
        return lastEpochLoss
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
