import Foundation
import TesseraEngine
@testable import TesseraModels
import XCTest

/// The probes users read numbers from, on features whose answer is known: ~100% when the classes are
/// separable, chance when the labels are shuffled.
final class ProbeKnownAnswerTests: XCTestCase {
    /// `count` features of `classes` clusters (class centers drawn once, N(0, 4) per dimension, noise
    /// N(0, 0.09)), labels their class, or labels drawn independently of the features when `shuffled`.
    func features(count: Int, classes: Int, dim: Int, seed: UInt64, shuffled: Bool) -> FeatureSet {
        var centers = TesseraRNG(seed: 99)
        let center = (0..<classes).map { _ in (0..<dim).map { _ in 2 * centers.normal() } }
        var rng = TesseraRNG(seed: seed)
        var values: [Float] = [], labels: [Int] = []
        for i in 0..<count {
            let c = i % classes
            for d in 0..<dim { values.append(center[c][d] + 0.3 * rng.normal()) }
            labels.append(shuffled ? rng.int(below: classes) : c)
        }
        return FeatureSet(values: values, count: count, dim: dim, labels: labels, classCount: classes)
    }

    func testSeparableFeaturesScoreFull() {
        let train = features(count: 500, classes: 5, dim: 16, seed: 1, shuffled: false)
        let test = features(count: 500, classes: 5, dim: 16, seed: 2, shuffled: false)
        XCTAssertGreaterThanOrEqual(Probes.knn(train: train, test: test), 0.99)
        XCTAssertGreaterThanOrEqual(Probes.linearProbe(train: train, test: test), 0.99)
        for shots in [1, 2, 5] {
            XCTAssertGreaterThanOrEqual(Probes.fewShot(train: train, test: test, shots: shots).mean, 0.95, "\(shots)-shot")
        }
    }

    /// Labels independent of the features: every probe scores chance, 1/5 (500 test images: a
    /// standard deviation of 1.8 points; the bounds are 4.4 of them).
    func testShuffledLabelsScoreChance() {
        let train = features(count: 500, classes: 5, dim: 16, seed: 3, shuffled: true)
        let test = features(count: 500, classes: 5, dim: 16, seed: 4, shuffled: true)
        let scores = [("kNN", Probes.knn(train: train, test: test)), ("linear", Probes.linearProbe(train: train, test: test)),
                      ("5-shot", Probes.fewShot(train: train, test: test, shots: 5).mean)]
        for (name, s) in scores { XCTAssertTrue((0.12...0.28).contains(s), "\(name) scored \(s) on shuffled labels") }
    }

    /// The weighted kNN vote worked by hand, on unit vectors in the plane, the test point at angle 0
    /// (label C) and the training points at angles (cosine similarity cos θ, weight exp(cos θ / 0.07)):
    /// one A at 0.01 (1.60e6), seven C at 0.2 (8.43e6 together), nine B at 0.3 (7.61e6), three D at
    /// 0.35 (2.02e6), and thirty D at 1.0, outside the 20 nearest. k = 20, T = 0.07 votes C; the nearest
    /// neighbour alone is A; a plain majority of the 20 (or a flat temperature, T = 10: 1.1, 7.7, 9.9)
    /// is B; all 50 with their weights is still C, while thirty more D votes outnumber everything.
    /// So a wrong k, a missing or wrong weighting, or a wrong neighbour count each miss C.
    func testWeightedKNNVoteWorkedByHand() {
        func point(_ angle: Double) -> [Float] { [Float(cos(angle)), Float(sin(angle))] }
        var values: [Float] = [], labels: [Int] = []
        for (angle, label, count) in [(0.01, 0, 1), (0.2, 2, 7), (0.3, 1, 9), (0.35, 3, 3), (1.0, 3, 30)] {
            for _ in 0..<count { values += point(angle); labels.append(label) }
        }
        let train = FeatureSet(values: values, count: labels.count, dim: 2, labels: labels, classCount: 4)
        let test = FeatureSet(values: point(0), count: 1, dim: 2, labels: [2], classCount: 4)
        XCTAssertEqual(Probes.knn(train: train, test: test), 1, "k = 20, T = 0.07 must vote C")
        XCTAssertEqual(Probes.knn(train: train, test: test, k: 1), 0, "k = 1 must vote A")
        XCTAssertEqual(Probes.knn(train: train, test: test, temperature: 10), 0, "a flat weighting must vote B")
        XCTAssertEqual(Probes.knn(train: train, test: test, k: 50), 1, "all 50 weighted must still vote C")
        XCTAssertEqual(Probes.knn(train: train, test: FeatureSet(values: point(0), count: 1, dim: 2, labels: [1], classCount: 4),
                                  temperature: 10), 1, "a flat weighting votes B")
    }

    /// A small labeled set (500 images) whose classes sit on 5 of 16 axes, the other 11 dimensions
    /// noise that standardization scales up: the linear probe must still train to convergence
    /// (30 epochs were 60 steps here: 77.6%; with its minimum of 2,000 steps 98.4%).
    func testLinearProbeConvergesOnASmallSet() {
        func axes(_ seed: UInt64) -> FeatureSet {
            var rng = TesseraRNG(seed: seed)
            var values: [Float] = [], labels: [Int] = []
            for i in 0..<500 {
                for d in 0..<16 { values.append((d == i % 5 ? 3 : 0) + 0.3 * rng.normal()) }
                labels.append(i % 5)
            }
            return FeatureSet(values: values, count: 500, dim: 16, labels: labels, classCount: 5)
        }
        XCTAssertGreaterThanOrEqual(Probes.linearProbe(train: axes(1), test: axes(2)), 0.97)
    }

    /// The probes' logistic regression against the same algorithm in numpy, float64
    /// (`Tools/make_probe_fixture.py`), on 3 overlapping classes with features on scales 0.01 to 100:
    /// the linear probe (2,000 steps, lr 1e-3) and a few-shot fit (15 rows, 300 steps, lr 1e-2, decay
    /// 0.05, the whole set's statistics). Weights, biases and test logits must agree within 3e-5
    /// relative to 1 + |numpy| (measured worst: 7.0e-6, a test logit) and the accuracies exactly; a
    /// changed learning rate, schedule, decay, standardization, start or loss each fail it.
    func testLogisticRegressionMatchesNumpy() throws {
        let f = try ModelFixtures.file("probe_logreg")
        func floats(_ name: String) throws -> [Float] { try XCTUnwrap(try XCTUnwrap(f[name], name).floats()) }
        func set(_ x: String, _ y: String) throws -> FeatureSet {
            let labels = try floats(y).map { Int($0) }
            return FeatureSet(values: try floats(x), count: labels.count, dim: 6, labels: labels, classCount: 3)
        }
        let train = try set("train_x", "train_y"), test = try set("test_x", "test_y")
        let picked = train.subset(try floats("fewshot_subset").map { Int($0) })
        for (name, model) in [("linear", Probes.fitLinearProbe(train: train)),
                              ("fewshot", Probes.fitFewShot(picked, statisticsFrom: train, seed: 0))] {
            let x = Probes.standardized(test, model.statistics)
            let logits = withNoGrad { x.tensor.linear(Tensor(model.weight, shape: [3, 6]), Tensor(model.bias, shape: [3])) }.array
            for (what, got, want) in [("weight", model.weight, try floats("\(name)_weight")), ("bias", model.bias, try floats("\(name)_bias")),
                                      ("test logits", logits, try floats("\(name)_test_logits"))] {
                XCTAssertEqual(got.count, want.count, "\(name) \(what)")
                let worst = zip(got, want).map { abs($0 - $1) / (1 + abs($1)) }.max() ?? .infinity
                XCTAssertLessThan(worst, 3e-5, "\(name) \(what): worst error \(worst) relative to 1 + |numpy|")
            }
            XCTAssertEqual(model.accuracy(test), try floats("\(name)_test_accuracy")[0], "\(name) test accuracy")
        }
    }
}
