import Foundation
import TesseraData
import TesseraEngine

/// How an image's feature is read from the encoder's output tokens.
public enum Pooling: String, Codable, Sendable, CaseIterable {
    /// The CLS token after the final norm (the MAE linear-probe protocol).
    case cls
    /// The mean of the patch tokens after the final norm.
    case mean
}

extension ViTEncoder {
    /// Frozen features of every image of `set` (evaluation transform, no masking, no gradients),
    /// in batches of `batchSize`, images decoded by `workers` threads.
    public func features(of set: any ImageDataset, augmentation: Augmentation, pooling: Pooling = .cls, batchSize: Int = 256,
                         workers: Int = 1) throws -> FeatureSet {
        let loader = Loader(set, batchSize: batchSize, augmentation: augmentation.evaluation, seed: 0, shuffle: false, dropLast: false,
                            workers: workers)
        let D = config.dim
        var values = [Float](repeating: 0, count: set.count * D)
        let wasTraining = isTraining
        eval()
        defer { train(wasTraining) }
        let order = loader.order(epoch: 0)
        for step in 0..<loader.stepsPerEpoch {
            let batch = try loader.makeBatch(epoch: 0, step: step, order: order)
            let tokens = withNoGrad { self(batch.images) }   // [B, 1 + L, D]
            let f: Tensor
            switch pooling {
            case .cls: f = tokens.select(axis: 1, index: 0)
            case .mean: f = tokens.narrow(axis: 1, start: 1, length: config.patches).mean(axis: 1)
            }
            let p = f.data, start = step * batchSize
            for i in 0..<batch.indices.count { for d in 0..<D { values[(start + i) * D + d] = p[i * D + d] } }
        }
        return FeatureSet(values: values, count: set.count, dim: D, labels: set.labels ?? Array(repeating: 0, count: set.count),
                          classCount: max(set.classCount, 1))
    }
}

/// Results of the standard frozen-feature evaluation.
public struct EvaluationResult: Codable, Sendable {
    public var knn: Float
    public var linear: Float?
    public var fewShot: [Int: [Float]]   // shots → [mean, std]
    /// RankMe effective rank of the test features (a collapse check: 1 = collapsed), and their width.
    public var featureRank: Float
    public var featureDim: Int

    /// A small table for the terminal.
    public var table: String {
        var lines = ["metric            accuracy"]
        lines.append(String(format: "kNN (k=20)        %6.2f%%", knn * 100))
        if let linear { lines.append(String(format: "linear probe      %6.2f%%", linear * 100)) }
        for s in fewShot.keys.sorted() {
            let v = fewShot[s]!
            lines.append(String(format: "%d-shot logistic   %6.2f%% ± %.2f", s, v[0] * 100, v[1] * 100))
        }
        lines.append(String(format: "feature rank      %6.1f of %d (RankMe, test features)", featureRank, featureDim))
        return lines.joined(separator: "\n")
    }
}

/// The frozen-feature evaluation: kNN, linear probe, few-shot (1, 2, 5 per class).
public func evaluate(train: FeatureSet, test: FeatureSet, linear: Bool = true, fewShot: [Int] = [1, 2, 5], seed: UInt64 = 0) -> EvaluationResult {
    var r = EvaluationResult(knn: Probes.knn(train: train, test: test), linear: nil, fewShot: [:],
                             featureRank: Probes.effectiveRank(test), featureDim: test.dim)
    if linear { r.linear = Probes.linearProbe(train: train, test: test, seed: seed) }
    for s in fewShot {
        let fs = Probes.fewShot(train: train, test: test, shots: s, seed: seed)
        r.fewShot[s] = [fs.mean, fs.std]
    }
    return r
}
