import ArgumentParser
import Foundation
import TesseraData
import TesseraEngine
import TesseraModels

/// Options to pick the labeled data and feature of an evaluation.
struct FeatureOptions: ParsableArguments {
    @Option(help: "Labeled data with train and test splits (default: the checkpoint's eval data or training data).") var data: String?
    @Option(help: "Feature: cls (CLS token after the final norm) or mean (average of patch tokens).") var pooling = "cls"

    func resolvedPooling() throws -> Pooling {
        guard let p = Pooling(rawValue: pooling) else { throw CLIError("--pooling must be cls or mean, got '\(pooling)'") }
        return p
    }
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Frozen-feature evaluation of a checkpoint: weighted kNN, linear probe, few-shot logistic regression, feature rank.",
        discussion: "kNN: cosine, k = 20, T = 0.07. Linear probe: logistic regression on standardized cached features. Few-shot: 1, 2, 5 images per class, mean ± std over 3 splits. Feature rank: RankMe (effective rank of the test features; 1 = collapsed).")

    @Argument(help: "A checkpoint (.safetensors) written by 'tessera pretrain' (full or encoder-only).") var checkpoint: String?
    @OptionGroup var features: FeatureOptions
    @Flag(help: "Evaluate the raw pixels (normalized with the training set's statistics) instead of a model; needs --data or no checkpoint.") var pixels = false
    @Flag(help: "Skip the linear probe.") var noLinear = false
    @Option(help: "Few-shot sizes, comma-separated, or 'none'.") var fewShot = "1,2,5"
    @Flag(help: "Evaluate a randomly initialized encoder of the same architecture (a baseline).") var randomInit = false
    @OptionGroup var runtime: RuntimeOptions

    func run() throws {
        try runtime.apply()
        let shots: [Int]
        if fewShot == "none" { shots = [] } else {
            shots = try fewShot.split(separator: ",").map { s in
                guard let v = Int(s.trimmingCharacters(in: .whitespaces)), v >= 1 else { throw CLIError("--few-shot must be a list of positive integers or 'none', got '\(fewShot)'") }
                return v
            }
        }
        if pixels {
            try evaluatePixels(shots: shots)
            return
        }
        guard let checkpoint else { throw CLIError("pass a checkpoint to evaluate, or --pixels for the raw-pixel baseline") }
        let ck = try LoadedCheckpoint(checkpoint)
        var encoder = ck.encoder
        if randomInit {
            var rng = TesseraRNG(seed: ck.config.seed)
            encoder = ViTEncoder(ck.config.encoder, rng: &rng)   // the encoder an MAE of this seed starts from
        }
        let spec = features.data ?? ck.config.evalData ?? ck.config.data
        let splits = try ck.splits(spec)
        let (train, test) = (splits.train, splits.test)
        guard train.labels != nil, test.labels != nil else { throw CLIError("\(spec) has no labels; evaluation needs a labeled train/test pair") }
        let pooling = try features.resolvedPooling()
        let t0 = Date()
        let trF = try encoder.features(of: train, augmentation: ck.config.augmentation, pooling: pooling, workers: runtime.workers(for: train))
        let teF = try encoder.features(of: test, augmentation: ck.config.augmentation, pooling: pooling, workers: runtime.workers(for: test))
        let tFeat = Date().timeIntervalSince(t0)
        let result = evaluate(train: trF, test: teF, linear: !noLinear, fewShot: shots, seed: ck.config.seed)
        print("\(randomInit ? "random-init encoder" : checkpoint) on \(spec) (\(train.count) train / \(test.count) test\(splits.heldOut ? "" : ", not held out"), \(pooling.rawValue) feature, \(String(format: "%.0f", tFeat)) s to extract):")
        print(result.table)
        // Append to the run's metrics when the checkpoint sits in a run folder.
        let dir = (checkpoint as NSString).deletingLastPathComponent
        let run = RunFolder(dir.isEmpty ? "." : dir)
        if FileManager.default.fileExists(atPath: run.config) {
            var fields: [(name: String, value: MetricsRecord.Value)] = [
                ("checkpoint", .text((checkpoint as NSString).lastPathComponent)),
                ("epoch", ck.checkpoint.metadata["epoch"].flatMap { Int($0) }.map { .integer($0) } ?? .null),
                ("random_init", .flag(randomInit)), ("data", .text(spec)), ("pooling", .text(pooling.rawValue)),
                ("knn", .number(Double(result.knn))), ("feature_rank", .number(Double(result.featureRank)))]
            if let l = result.linear { fields.append(("linear", .number(Double(l)))) }
            for (s, v) in result.fewShot.sorted(by: { $0.key < $1.key }) { fields.append(("fewshot_\(s)", .numbers(v.map(Double.init)))) }
            if !splits.heldOut { fields.append(("held_out", .flag(false))) }
            // The results are printed: a run folder that cannot take them (read-only storage) is a warning.
            do {
                try MetricsLog(path: run.metricsJSONL).append(MetricsRecord(kind: "eval", fields: fields))
                print("appended to \(run.metricsJSONL)")
            } catch { warning("\(error); the results above were not recorded") }
        }
    }
}

extension Eval {
    /// The same protocol on raw pixels: each image flattened, normalized per channel.
    func evaluatePixels(shots: [Int]) throws {
        let spec = features.data ?? "fashion-mnist"
        let splits = try EvaluationSplits.load(spec, channels: nil)
        if let w = splits.warning(spec) { warning(w) }
        let train = try splits.train.materialized(), test = try splits.test.materialized()
        guard let trl = train.labels, let tel = test.labels else { throw CLIError("\(spec) has no labels; evaluation needs a labeled train/test pair") }
        guard Set(train.heights + test.heights + train.widths + test.widths).count == 1 else {
            throw CLIError("--pixels needs images of one square size; \(spec) has several")
        }
        let st = try train.channelStatistics()
        func flat(_ set: ImageSet, _ labels: [Int]) -> FeatureSet {
            let C = set.channels
            let v = set.pixels.enumerated().map { (Float($0.element) / 255 - st.mean[$0.offset % C]) / st.std[$0.offset % C] }
            return FeatureSet(values: v, count: set.count, dim: set.pixels.count / set.count, labels: labels, classCount: set.classNames.count)
        }
        let result = evaluate(train: flat(train, trl), test: flat(test, tel), linear: !noLinear, fewShot: shots, seed: 0)
        print("raw pixels of \(spec) (\(train.count) train / \(test.count) test\(splits.heldOut ? "" : ", not held out"), \(train.pixels.count / train.count) values per image):")
        print(result.table)
    }
}

struct Embed: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write frozen features of a dataset split to a .npy file ([N, D] float32; labels to OUT-labels.npy).")

    @Argument(help: "A checkpoint written by 'tessera pretrain'.") var checkpoint: String
    @OptionGroup var features: FeatureOptions
    @Option(help: "Split: train or test.") var split = "test"
    @Option(help: "Output .npy path.") var out: String
    @OptionGroup var runtime: RuntimeOptions

    func run() throws {
        try runtime.apply()
        guard let sp = DataSource.Split(rawValue: split) else { throw CLIError("--split must be train or test, got '\(split)'") }
        guard out.hasSuffix(".npy") else { throw CLIError("--out must end in .npy, got '\(out)'") }
        let labelsPath = String(out.dropLast(4)) + "-labels.npy"
        for path in [out, labelsPath] { try FileIO.checkWritable(path) }   // before any work, and before either is written
        let ck = try LoadedCheckpoint(checkpoint)
        // Both splits, so that the test labels are numbered as the training split's classes.
        let splits = try ck.splits(features.data ?? ck.config.evalData ?? ck.config.data, quiet: sp == .train)
        let set = sp == .train ? splits.train : splits.test
        let f = try ck.encoder.features(of: set, augmentation: ck.config.augmentation, pooling: try features.resolvedPooling(),
                                        workers: runtime.workers(for: set))
        try FileIO.writeAtomically(NpyArray.serialize(floats: f.values, shape: [f.count, f.dim]), to: out)
        if let labels = set.labels {
            try FileIO.writeAtomically(NpyArray.serialize(int64s: labels.map(Int64.init), shape: [labels.count]), to: labelsPath)
            print("wrote \(out) [\(f.count), \(f.dim)] and \(labelsPath)")
        } else {
            print("wrote \(out) [\(f.count), \(f.dim)]")
        }
    }
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the tensors, shapes and metadata of a safetensors file.")

    @Argument(help: "A .safetensors file.") var file: String

    func run() throws {
        let f = try SafeTensors.read(file)
        print("\(file): \(f.tensors.count) tensors, \(f.tensors.reduce(0) { $0 + $1.entry.count }) elements")
        for k in f.metadata.keys.sorted() where k != "config" { print("  \(k): \(f.metadata[k]!)") }
        if let c = f.metadata["config"] { print("  config: " + c.replacingOccurrences(of: "\n", with: "\n  ")) }
        for (name, e) in f.tensors {
            print("  \(name.padding(toLength: max(40, name.count), withPad: " ", startingAt: 0)) \(e.dtype.rawValue) \(e.shape)")
        }
    }
}
