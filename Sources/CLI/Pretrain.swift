import ArgumentParser
import Foundation
import TesseraData
import TesseraDistributed
import TesseraEngine
import TesseraModels

struct Pretrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pretrain a ViT (MAE, RC-MAE, MSN or SIM); checkpoints, metrics and config go to the run folder.",
        discussion: "Each method trains with its own published recipe unless an option overrides it: "
            + MethodKind.allCases.map { "\($0.title) \($0.recipeSummary)" }.joined(separator: "; ") + ". "
            + "lr = blr x effective batch / 256, linear warmup then cosine; RandomResizedCrop(scale 0.2-1) + flip. "
            + "Image size and channels default to the data's; patch size to 4 for images up to 64 pixels, else 16.")

    @Option(help: "Method: \(MethodKind.choices).") var method: MethodKind = .mae
    @Option(help: "Model size: vit-tiny, vit-small or vit-base.") var model = "vit-tiny"
    @Option(help: "Training data: fashion-mnist, a .npy file, an IDX images file, or an image folder.") var data = "fashion-mnist"
    @Option(help: "Labeled data for --knn-every (default: the test split of --data).") var evalData: String?
    @Option(name: .customLong("run"), help: "Run folder (created; must not hold a run unless --resume).") var runPath = "runs/mae"
    @Flag(help: "Continue the run in --run from its last checkpoint with its saved configuration (only --epochs and --threads apply).") var resume = false

    @Option(parsing: .unconditional, help: "Image size (default: the data's when its images are all one square size, else 224).") var imageSize: Int?
    @Option(parsing: .unconditional, help: "Patch size.") var patchSize: Int?
    @Option(parsing: .unconditional, help: "Image channels, 1 or 3 (default: the data's).") var channels: Int?
    @Option(parsing: .unconditional, help: "Encoder depth.") var depth: Int?
    @Option(parsing: .unconditional, help: "Encoder width.") var dim: Int?
    @Option(parsing: .unconditional, help: "Encoder heads.") var heads: Int?
    @OptionGroup var methods: MethodFlagGroups

    @Option(parsing: .unconditional, help: "Epochs (default 10; with --resume, the saved run's unless given).") var epochs: Int?
    @Option(parsing: .unconditional, help: "Warmup epochs.") var warmupEpochs: Double = 1
    @Option(parsing: .unconditional, help: "Images per step, over all processes of an MPI job (the global batch; each of W processes takes batch/W).") var batchSize = 256
    @Option(parsing: .unconditional, help: "Gradient accumulation steps.") var accum = 1
    @Option(parsing: .unconditional, help: "Base learning rate (lr = blr x effective batch / 256; default 1.5e-4, MSN 1e-3, SIM 1e-3).") var blr: Double?
    @Option(parsing: .unconditional, help: "Weight decay, not on biases and 1-D tensors (default 0.05; MSN: cosine 0.04 to 0.4).") var weightDecay: Float?
    @Option(parsing: .unconditional, help: "Random seed.") var seed: UInt64 = 0
    @Option(parsing: .unconditional, help: "Crop scale lower bound (MAE and RC-MAE: default 0.2; SIM: its two views, default \(SIMOptions().cropScale.lowerBound); MSN: its target and anchor views, default \(MSNOptions().randomScale.lowerBound)).")
    var minScale: Float?
    @Option(help: "Resampling: bicubic or bilinear.") var interpolation = "bicubic"
    @Option(parsing: .unconditional, help: "Save a checkpoint every N epochs (and at the end).") var saveEvery = 1
    @Option(parsing: .unconditional, help: "kNN accuracy on the eval data every N epochs; keeps best.safetensors (0: off).") var knnEvery = 0
    @Option(parsing: .unconditional, help: "Use only the first N training images (an image folder is indexed only that far).") var limit: Int?
    @Flag(help: "Decode every JPEG whole at full size, as torchvision does (default: reduced in the DCT domain while every crop keeps its output size, and only the rows the crops need).")
    var fullDecode = false
    @Option(parsing: .unconditional, help: "Progress line every N steps.") var logEvery = 20
    @Option(help: "Precision of the matrix products: auto (bf16 where this CPU multiplies bf16 faster than fp32, AMD Zen 4 and later; fp32 elsewhere), fp32, or bf16 (bf16 operands, fp32 sums; everything else stays fp32). Recorded in the run; --resume keeps it unless given.")
    var precision: String?
    @Flag(help: "After training, run 'tessera eval' on the last checkpoint.") var evaluate = false
    @OptionGroup var runtime: RuntimeOptions

    func validate() throws {
        guard MAEConfig.named(model) != nil else { throw CLIError("unknown --model '\(model)'; choose one of \(MAEConfig.names.joined(separator: ", "))") }
        guard Interpolation(rawValue: interpolation) != nil else { throw CLIError("--interpolation must be bicubic or bilinear") }
        if let precision {
            guard ["auto", "fp32", "bf16"].contains(precision.lowercased()) else { throw CLIError("--precision must be auto, fp32 or bf16, got '\(precision)'") }
            if precision.lowercased() == "bf16" { do { _ = try Runtime.compute(for: .bf16) } catch { throw CLIError("--precision bf16: \(error)") } }
        }
        // Sizes: up to what a CPU run can hold (a ViT of more than 4096 tokens per image, or wider
        // than 4096, is not something these kernels train).
        try Check.integer("--image-size", imageSize, ConfigLimits.imageSize)
        try Check.integer("--patch-size", patchSize, 1...(imageSize ?? ConfigLimits.imageSize.upperBound))
        if let channels, channels != 1 && channels != 3 { throw CLIError("--channels must be 1 or 3, got \(channels)") }
        try Check.integer("--depth", depth, ConfigLimits.depth)
        try Check.integer("--dim", dim, ConfigLimits.width)
        try Check.integer("--heads", heads, ConfigLimits.heads)
        // Schedule and optimizer.
        try Check.integer("--epochs", epochs, ConfigLimits.epochs)
        try Check.number("--warmup-epochs", warmupEpochs, 0, 1_000_000)
        try Check.integer("--batch-size", batchSize, ConfigLimits.batchSize)
        try Check.integer("--accum", accum, ConfigLimits.accumSteps)
        try Check.number("--blr", blr, ConfigLimits.blr.lowerBound, ConfigLimits.blr.upperBound, lowOpen: true)
        try Check.number("--weight-decay", weightDecay, ConfigLimits.weightDecay.lowerBound, ConfigLimits.weightDecay.upperBound)
        try Check.number("--min-scale", minScale, 0, 1, lowOpen: true)
        try Check.integer("--save-every", saveEvery, ConfigLimits.everyEpochs)
        try Check.integer("--knn-every", knnEvery, 0...ConfigLimits.everyEpochs.upperBound)
        try Check.integer("--limit", limit, 1...Int(Int32.max))
        try Check.integer("--log-every", logEvery, 1...Int(Int32.max))
        // The method's flags (each group checks its own ranges) and the flags it does not read.
        try methods.check(for: method)
    }

    func run() throws {
        try runtime.apply()
        let folder = RunFolder(runPath)
        let comm = Processes.comm
        // Rank 0 alone reads and writes the run folder. It claims (creates and locks) the folder before
        // anything else, so the checks below hold until the run ends: a second command on the same
        // --run is refused at once instead of passing them while this one still loads its data. A
        // failure before the first checkpoint takes back what the claim added.
        var claim: RunClaim?
        if comm.isPrimary {
            try FileIO.checkCreatable(runPath)
            claim = try RunClaim(folder)
        }
        do { try run(folder: folder, claim: claim) } catch {
            claim?.abandon()
            throw error
        }
    }

    func run(folder: RunFolder, claim: RunClaim?) throws {
        let comm = Processes.comm
        if let claim {
            if !resume && claim.holdsRun {
                throw CLIError("\(runPath) already holds a run (last.train-state.safetensors); pass --resume to continue it or choose another --run")
            }
            if resume && !claim.holdsRun {
                throw CLIError("\(runPath) has no checkpoint to resume (last.train-state.safetensors missing); drop --resume to start a new run")
            }
            if !resume && FileManager.default.fileExists(atPath: folder.model("last")) {
                // Every save writes the train state first: a model file without one is what a kill in
                // the middle of a first save, or a hand-made copy, leaves; starting over replaces it.
                warning("\(folder.model("last")) has no train state beside it (a first save that was cut short); the new run replaces it")
            }
            claim.accept()   // the folder is this run's: a second command now names this process
        }

        if resume {
            // The saved configuration is the run's: an option that would change it is refused, not ignored.
            let allowed: Set<String> = ["--run", "--resume", "--epochs", "--threads", "--workers", "--skip-unreadable", "--evaluate", "--precision"]
            let given = CommandLine.arguments.drop(while: { $0 != "pretrain" }).dropFirst()
                .filter { $0.hasPrefix("--") }.map { String($0.split(separator: "=", maxSplits: 1)[0]) }
            if let other = given.first(where: { !allowed.contains($0) }) {
                throw CLIError("\(other) cannot change a run being resumed (--resume continues \(runPath)'s saved configuration, see its config.json); drop \(other) or start a new --run")
            }
            var saved: String?, completing: String?
            if comm.isPrimary {
                let file = try SafeTensors.read(folder.trainState("last"))   // what a resume reads (one atomic file)
                guard let text = file.metadata["config"] else { throw CLIError("\(folder.trainState("last")) has no saved configuration; start a new run") }
                // A resume that would train nothing is refused before it touches the folder.
                let done = Int(file.metadata["epoch"] ?? "") ?? 0
                let target = try epochs ?? PretrainConfig.decode(text).epochs
                // The model files are written after the train state: a kill inside the last save can
                // leave them a save behind it. A finished run in that state is completed, not refused.
                let behind = [folder.model("last"), folder.encoder("last")].contains { (try? SafeTensors.read($0))?.metadata["step"] != file.metadata["step"] }
                if target <= done && !behind {
                    throw CLIError("\(runPath) has trained \(done) epoch\(done == 1 ? "" : "s") already\(epochs == nil ? ", all it was set to" : ""); pass --epochs above \(done) to train further")
                }
                saved = text
                completing = target <= done ? "1" : "0"
            }
            var config = try PretrainConfig.decode(Processes.fromPrimary(saved))
            let completeOnly = Processes.fromPrimary(completing) == "1"
            if let epochs, !completeOnly { config.epochs = epochs }
            if precision != nil { config.precision = try resolvedPrecision() }
            try execute(config, folder: folder, train: nil, claim: claim, completeOnly: completeOnly)
            return
        }

        let train = try DataSource.load(data, split: .train, channels: channels, limit: limit)
        let config = try buildConfig(train: train)
        try execute(config, folder: folder, train: train, claim: claim)
    }

    /// `--precision` as the run records it: auto resolved for this CPU (``Runtime/autoPrecision``).
    func resolvedPrecision() throws -> Runtime.Precision {
        switch (precision ?? "auto").lowercased() {
        case "auto": return Runtime.autoPrecision
        case let p: return Runtime.Precision(rawValue: p)!   // validated: fp32 or bf16
        }
    }

    /// The run's configuration from these options and the training set (its image size and channels).
    func buildConfig(train: any ImageDataset) throws -> PretrainConfig {
        let uniform = train.uniformSize.flatMap { $0.height == $0.width ? $0.height : nil }
        let size = imageSize ?? uniform ?? 224
        let defaultPatch = size <= 64 ? 4 : 16
        guard patchSize != nil || size >= defaultPatch else {
            throw CLIError("--image-size \(size) is smaller than the default patch size \(defaultPatch); raise --image-size or pass --patch-size (a divisor of \(size))")
        }
        let patch = patchSize ?? defaultPatch
        var mae = MAEConfig.named(model)!
        mae.encoder.imageSize = size
        mae.encoder.patchSize = patch
        mae.encoder.channels = channels ?? train.channels
        guard mae.encoder.channels == train.channels else {
            throw CLIError("--channels \(mae.encoder.channels) but \(data) has \(train.channels)-channel images")
        }
        if let depth { mae.encoder.depth = depth }
        if let dim { mae.encoder.dim = dim }
        if let heads { mae.encoder.heads = heads }
        if let d = methods.shared.decoderDim { mae.decoderDim = d }
        if let d = methods.shared.decoderDepth { mae.decoderDepth = d }
        if let h = methods.shared.decoderHeads { mae.decoderHeads = h }
        mae.normPixLoss = !methods.shared.noNormPix

        // Normalization: ImageNet statistics for RGB, the training set's own for grayscale.
        let stats = train.channels == 3 ? (mean: [Float](arrayLiteral: 0.485, 0.456, 0.406), std: [Float](arrayLiteral: 0.229, 0.224, 0.225))
                                        : try train.channelStatistics(skipUnreadable: runtime.skipUnreadable)
        var aug = Augmentation(size: size, mean: stats.mean, std: stats.std, scale: (minScale ?? 0.2)...1,
                               interpolation: Interpolation(rawValue: interpolation)!)
        aug.mean = aug.mean.map { ($0 * 1e4).rounded() / 1e4 }
        aug.std = aug.std.map { ($0 * 1e4).rounded() / 1e4 }

        // The method's recipe and default options, then what the command line overrides.
        var config = PretrainConfig(method: method, mae: mae, augmentation: aug)
        if let blr { config.blr = blr }
        if let weightDecay { config.weightDecay = weightDecay }
        methods.flags(for: method).apply(methods.shared, minScale: minScale, to: &config)
        config.model = model
        config.data = data
        config.evalData = evalData
        config.epochs = epochs ?? 10
        config.warmupEpochs = warmupEpochs
        config.batchSize = batchSize
        config.accumSteps = accum
        config.seed = seed
        config.saveEvery = saveEvery
        config.knnEvery = knnEvery
        config.limit = limit
        config.fullDecode = fullDecode ? true : nil
        config.logEvery = logEvery
        config.precision = try resolvedPrecision()
        // Sizes that only together can be wrong (divisibility, patches per image, kept patches): the
        // same checks every configuration read from a file passes.
        do { try config.validate() } catch let e as ConfigError { throw CLIError(e.message) }
        return config
    }

    /// Loads what `config` names, builds its method, resumes if asked, and trains.
    func execute(_ config: PretrainConfig, folder: RunFolder, train loaded: (any ImageDataset)?, claim: RunClaim?,
                 completeOnly: Bool = false) throws {
        let comm = Processes.comm
        let channels = config.encoder.channels
        let train = try loaded ?? DataSource.load(config.data, split: .train, channels: channels, limit: config.limit)
        guard train.channels == channels else {
            throw CLIError("\(config.data) now has \(train.channels)-channel images, but the run trains on \(channels)-channel images; resume with the data it was trained on")
        }
        var evalSets: (any ImageDataset, any ImageDataset)?
        if config.knnEvery > 0 {
            let spec = config.evalData ?? config.data
            let splits = try EvaluationSplits.load(spec, channels: channels, train: config.evalData == nil ? train : nil)
            for set in [splits.train, splits.test] where set.channels != channels {
                throw CLIError("--knn-every: \(spec) has \(set.channels)-channel images, but the run trains on \(channels)-channel images; pass --eval-data with \(channels)-channel images")
            }
            guard splits.train.labels != nil, splits.test.labels != nil else { throw CLIError("--knn-every needs labeled data; \(spec) has no labels") }
            if comm.isPrimary, let w = splits.warning(spec) { warning(w) }
            evalSets = (splits.train, splits.test)
        }
        let trainee = config.method.make(config)
        // The batch's pixels alone (every view, this process's share) must fit in memory, or the run
        // would fail at its first batch after writing the run folder.
        let pixels = trainee.viewAugmentations(base: config.augmentation).reduce(0.0) { $0 + Double($1.size * $1.size) }
        let batchBytes = Double(config.batchSize / comm.size) * Double(channels) * pixels * 4
        guard batchBytes < Double(ProcessInfo.processInfo.physicalMemory) / 2 else {
            throw CLIError(String(format: "one batch of images takes %.1f GiB, more than half of this machine's %.1f GiB of memory; lower --batch-size or --image-size",
                                  batchBytes / 1073741824, Double(ProcessInfo.processInfo.physicalMemory) / 1073741824))
        }
        let trainer = try Pretrainer(config: config, method: trainee, train: train, evalSets: evalSets, runFolder: folder.path,
                                     workers: runtime.workers(for: train), skipUnreadable: runtime.skipUnreadable, communicator: comm)
        trainer.claim = claim
        trainer.injectedFailure = InjectedFailure.fromEnvironment(rank: comm.rank)
        let say: (String) -> Void = comm.isPrimary ? { print($0) } : { _ in }
        if completeOnly {   // a finished run whose last save was cut short: its model files from the train state
            if comm.isPrimary {
                try trainer.resume()
                try trainer.saveCheckpoint(tag: "last", includeTrainState: false)
            }
            say("\(folder.path) had finished its \(trainer.epoch) epochs, but a kill cut its last save short: wrote \(folder.model("last")) and \(folder.encoder("last")) from its train state (step \(trainer.step))")
            return
        }
        if resume {
            if comm.isPrimary { try trainer.resume() }   // the others receive rank 0's state when training starts
            say("resumed \(folder.path) at epoch \(trainer.epoch), step \(trainer.step) (saved configuration; \(config.epochs) epochs)")
        }
        let e = config.encoder
        say("model: \(trainee.reportedModel.parameterCount) parameters (encoder \(e.dim)/\(e.depth)/\(e.heads), \(trainee.partsSummary)), patch \(e.patchSize) on \(e.imageSize)x\(e.imageSize)x\(e.channels)")
        let compute: Runtime.Compute
        do { compute = try Runtime.compute(for: config.precision ?? .fp32) } catch { throw CLIError("the run's products are in \(config.precision?.rawValue ?? "fp32"): \(error)") }
        if compute.precision == .bf16, Runtime.bf16Offer != .fullRate, comm.isPrimary {
            warning("bf16 products on this CPU run \(Runtime.bf16Tile), slower than fp32 here; --precision auto picks fp32")
        }
        // The training's compute, named; the trainer takes it for its own scope (--evaluate after it
        // then runs in fp32, as `tessera eval` does).
        _ = Runtime.withCompute(compute) {
            say("BLAS: \(Runtime.computeDescription)" + (comm.size > 1 ? "; MPI: \(comm.size) processes (\(MPICommunicator.libraryVersion))" : ""))
        }
        try trainer.train()
        say("checkpoints: \(folder.model("last")) (reported model), \(folder.encoder("last")) (encoder only)")
        if evaluate && comm.isPrimary {
            var ev = try Eval.parse([folder.model("last")])
            ev.runtime = runtime
            try ev.run()
        }
    }
}

extension MethodKind: ExpressibleByArgument {}
