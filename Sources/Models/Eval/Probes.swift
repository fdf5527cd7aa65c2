import Foundation
import TesseraData
import TesseraEngine

/// Frozen features of a labeled image set: `count × dim` floats, row-major.
public struct FeatureSet: Sendable {
    public var values: [Float]
    public var count: Int, dim: Int
    public var labels: [Int]
    public var classCount: Int

    public init(values: [Float], count: Int, dim: Int, labels: [Int], classCount: Int) {
        precondition(values.count == count * dim && labels.count == count, "FeatureSet: sizes do not match")
        self.values = values; self.count = count; self.dim = dim; self.labels = labels; self.classCount = classCount
    }

    public var tensor: Tensor { Tensor(values, shape: [count, dim]) }

    /// The rows at `indices`.
    public func subset(_ indices: [Int]) -> FeatureSet {
        var v: [Float] = []
        v.reserveCapacity(indices.count * dim)
        for i in indices { v += values[(i * dim)..<((i + 1) * dim)] }
        return FeatureSet(values: v, count: indices.count, dim: dim, labels: indices.map { labels[$0] }, classCount: classCount)
    }
}

/// Standard evaluations of frozen features: weighted kNN, a linear probe and few-shot logistic
/// regression. All are deterministic for a given seed.
public enum Probes {
    /// DINO's weighted kNN: cosine similarity to every training feature, the `k` nearest vote with
    /// weight `exp(sim / temperature)`. Returns top-1 accuracy on `test`.
    public static func knn(train: FeatureSet, test: FeatureSet, k: Int = 20, temperature: Float = 0.07) -> Float {
        precondition(train.dim == test.dim, "knn: feature sizes differ")
        let k = min(k, train.count)
        let trainN = train.tensor.l2Normalized()
        let testN = test.tensor.l2Normalized()
        let chunk = 512
        var correct = 0
        var start = 0
        while start < test.count {
            let n = min(chunk, test.count - start)
            let sims = testN.narrow(axis: 0, start: start, length: n).linear(trainN)   // [n, Ntrain]
            let s = sims.data
            for r in 0..<n {
                let row = s + r * train.count
                // Top-k by a bounded insertion list (k is small).
                var best: [(Float, Int)] = []
                best.reserveCapacity(k + 1)
                for j in 0..<train.count {
                    let v = row[j]
                    if best.count < k || v > best[best.count - 1].0 {
                        var pos = best.count
                        while pos > 0 && best[pos - 1].0 < v { pos -= 1 }
                        best.insert((v, j), at: pos)
                        if best.count > k { best.removeLast() }
                    }
                }
                var votes = [Float](repeating: 0, count: train.classCount)
                for (v, j) in best { votes[train.labels[j]] += Foundation.exp(v / temperature) }
                let pred = votes.indices.max { votes[$0] < votes[$1] }!
                if pred == test.labels[start + r] { correct += 1 }
            }
            start += n
        }
        return Float(correct) / Float(test.count)
    }

    /// Per-dimension mean and standard deviation of `f` (for standardizing probe inputs).
    public static func statistics(_ f: FeatureSet) -> (mean: [Float], std: [Float]) {
        var mean = [Double](repeating: 0, count: f.dim), sq = mean
        for i in 0..<f.count { for d in 0..<f.dim { let v = Double(f.values[i * f.dim + d]); mean[d] += v; sq[d] += v * v } }
        let n = Double(f.count)
        let m = mean.map { $0 / n }
        let s = zip(sq, m).map { (max($0 / n - $1 * $1, 0)).squareRoot() + 1e-6 }
        return (m.map(Float.init), s.map(Float.init))
    }

    static func standardized(_ f: FeatureSet, _ st: (mean: [Float], std: [Float])) -> FeatureSet {
        var v = f.values
        for i in 0..<f.count { for d in 0..<f.dim { v[i * f.dim + d] = (v[i * f.dim + d] - st.mean[d]) / st.std[d] } }
        return FeatureSet(values: v, count: f.count, dim: f.dim, labels: f.labels, classCount: f.classCount)
    }

    /// A trained linear classifier on standardized features: `logits = ((x - mean) / std) Wᵀ + b`.
    struct LogisticModel {
        /// `classCount × dim`, row-major; `bias` has `classCount` entries.
        var weight: [Float], bias: [Float]
        var statistics: (mean: [Float], std: [Float])

        /// The fraction of `f`'s rows whose highest logit is their label (the first on ties).
        func accuracy(_ f: FeatureSet) -> Float {
            let x = standardized(f, statistics)
            let logits = withNoGrad { x.tensor.linear(Tensor(weight, shape: [f.classCount, f.dim]), Tensor(bias, shape: [f.classCount])) }
            let l = logits.data
            var correct = 0
            for i in 0..<f.count {
                var best = 0
                for c in 1..<f.classCount where l[i * f.classCount + c] > l[i * f.classCount + best] { best = c }
                if best == f.labels[i] { correct += 1 }
            }
            return Float(correct) / Float(max(f.count, 1))
        }
    }

    /// Multinomial logistic regression trained with AdamW (betas 0.9/0.999, eps 1e-8, decay on the
    /// weight only) on standardized features (the statistics of `statisticsFrom`, else of `train`),
    /// weight and bias starting at zero, mini-batches of `batch` in a seeded order, mean cross-entropy,
    /// cosine learning rate from `learningRate` to 0 over all steps (`Tools/make_probe_fixture.py`
    /// re-implements exactly this in numpy).
    static func fitLogisticRegression(train: FeatureSet, epochs: Int, batch: Int, learningRate: Float,
                                      weightDecay: Float, seed: UInt64, statisticsFrom: FeatureSet? = nil) -> LogisticModel {
        let st = statistics(statisticsFrom ?? train)
        let tr = standardized(train, st)
        var rng = TesseraRNG(seed: seed)
        let head = Linear(train.dim, train.classCount, rng: &rng)
        head.weight.fill(0)
        let opt = AdamW(head.trainableParameters(), learningRate: learningRate, betas: (0.9, 0.999), weightDecay: weightDecay)
        let steps = max(1, (tr.count + batch - 1) / batch)
        let total = Double(epochs * steps)
        var it = 0
        for _ in 0..<epochs {
            var order = Array(0..<tr.count)
            for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, rng.int(below: i + 1)) }
            for s in 0..<steps {
                let idx = Array(order[(s * batch)..<min((s + 1) * batch, tr.count)])
                let b = tr.subset(idx)
                opt.learningRate = Float(Schedule.cosine(progress: Double(it) / total, from: Double(learningRate), to: 0))
                opt.zeroGrad()
                crossEntropy(logits: head(b.tensor), labels: b.labels).backward()
                opt.update()
                it += 1
            }
        }
        return LogisticModel(weight: head.weight.array, bias: head.bias!.array, statistics: st)
    }

    /// Linear probe on cached features: logistic regression over the whole train set (standardized
    /// features, AdamW lr 1e-3, batch 256, no weight decay) for `epochs` epochs and at least
    /// ``minimumProbeSteps`` steps. Returns test accuracy.
    public static func linearProbe(train: FeatureSet, test: FeatureSet, epochs: Int = 30, seed: UInt64 = 0) -> Float {
        fitLinearProbe(train: train, epochs: epochs, seed: seed).accuracy(test)
    }

    /// The linear probe's classifier (what ``linearProbe`` scores).
    static func fitLinearProbe(train: FeatureSet, epochs: Int = 30, seed: UInt64 = 0) -> LogisticModel {
        let perEpoch = max(1, (train.count + 255) / 256)
        let e = max(epochs, (minimumProbeSteps + perEpoch - 1) / perEpoch)
        return fitLogisticRegression(train: train, epochs: e, batch: 256, learningRate: 1e-3, weightDecay: 0, seed: seed)
    }

    /// The fewest optimizer steps of a linear probe: 30 epochs of a small labeled set are too few
    /// steps to converge at lr 1e-3 (500 images: 60 steps, 86% train accuracy on separable
    /// clusters). 60,000 images take 7,050 steps in 30 epochs, so their probe is unchanged.
    public static let minimumProbeSteps = 2000

    /// Few-shot: `shots` labeled images per class drawn from `train` (seeded per split), logistic
    /// regression on them (full batch, 300 steps, weight decay 0.05), evaluated on `test`.
    /// Returns mean and standard deviation of the test accuracy over `splits` draws.
    public static func fewShot(train: FeatureSet, test: FeatureSet, shots: Int, splits: Int = 3, seed: UInt64 = 0) -> (mean: Float, std: Float) {
        var byClass = [[Int]](repeating: [], count: train.classCount)
        for (i, l) in train.labels.enumerated() { byClass[l].append(i) }
        var accs: [Float] = []
        for split in 0..<splits {
            var rng = TesseraRNG(seed: SeedStream.fewShotPick(split: split).seed(seed))
            var pick: [Int] = []
            for c in 0..<train.classCount {
                var ids = byClass[c]
                for i in 0..<min(shots, ids.count) { ids.swapAt(i, i + rng.int(below: ids.count - i)) }
                pick += ids.prefix(shots)
            }
            accs.append(fitFewShot(train.subset(pick), statisticsFrom: train, seed: SeedStream.fewShotFit(split: split).seed(seed)).accuracy(test))
        }
        let mean = accs.reduce(0, +) / Float(accs.count)
        let std = (accs.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(max(accs.count - 1, 1))).squareRoot()
        return (mean, std)
    }

    /// One few-shot classifier: `picked` rows, full batch, 300 steps, lr 1e-2, weight decay 0.05,
    /// standardized by the statistics of the whole labeled set.
    static func fitFewShot(_ picked: FeatureSet, statisticsFrom all: FeatureSet, seed: UInt64) -> LogisticModel {
        fitLogisticRegression(train: picked, epochs: 300, batch: picked.count, learningRate: 1e-2, weightDecay: 0.05,
                              seed: seed, statisticsFrom: all)
    }
}
