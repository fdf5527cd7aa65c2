import Foundation
import TesseraEngine
import XCTest

final class SpectrumTests: XCTestCase {
    /// Jacobi eigenvalues of A = Q Λ Qᵀ with Q a product of Householder reflections and Λ known.
    func testSymmetricEigenvaluesRecoverAKnownSpectrum() {
        var rng = TesseraRNG(seed: 9)
        let n = 12
        let lambda = (0..<n).map { Double($0) * 1.5 - 4 }   // distinct, some negative, one zero-ish
        var a = [Double](repeating: 0, count: n * n)
        for i in 0..<n { a[i * n + i] = lambda[i] }
        for _ in 0..<3 {   // A ← H A H with H = I − 2vvᵀ/‖v‖²
            let v = (0..<n).map { _ in Double(rng.normal()) }
            let vv = v.reduce(0) { $0 + $1 * $1 }
            var h = [Double](repeating: 0, count: n * n)
            for i in 0..<n { for j in 0..<n { h[i * n + j] = (i == j ? 1 : 0) - 2 * v[i] * v[j] / vv } }
            func mul(_ x: [Double], _ y: [Double]) -> [Double] {
                var r = [Double](repeating: 0, count: n * n)
                for i in 0..<n { for k in 0..<n { for j in 0..<n { r[i * n + j] += x[i * n + k] * y[k * n + j] } } }
                return r
            }
            a = mul(mul(h, a), h)
        }
        let got = symmetricEigenvalues(a, n: n)
        for (g, e) in zip(got, lambda.sorted(by: >)) { XCTAssertEqual(g, e, accuracy: 1e-9) }
        // 2 × 2 closed form: [[2, 1], [1, 2]] → 3, 1.
        let two = symmetricEigenvalues([2, 1, 1, 2], n: 2)
        XCTAssertEqual(two[0], 3, accuracy: 1e-12)
        XCTAssertEqual(two[1], 1, accuracy: 1e-12)
    }

    /// RankMe: D equal orthogonal directions give D; features on one line give 1; singular values
    /// 3 : 1 give exp(H(3/4, 1/4)).
    func testEffectiveRankClosedForms() {
        func set(_ rows: [[Float]]) -> FeatureSet {
            FeatureSet(values: rows.flatMap { $0 }, count: rows.count, dim: rows[0].count, labels: Array(repeating: 0, count: rows.count), classCount: 1)
        }
        let flat = set((0..<16).map { n in (0..<4).map { $0 == n % 4 ? (n < 8 ? 1 : -1) : 0 } })
        XCTAssertEqual(Probes.effectiveRank(flat), 4, accuracy: 1e-4)
        let line = set((0..<10).map { n in [1, 2, -1, 0.5].map { $0 * Float(n + 1) } })
        XCTAssertEqual(Probes.effectiveRank(line), 1, accuracy: 2e-3)
        let two = set([[3, 0, 0], [0, 1, 0]])
        let p = [0.75, 0.25]
        XCTAssertEqual(Double(Probes.effectiveRank(two)), Foundation.exp(-p.reduce(0) { $0 + $1 * Foundation.log($1) }), accuracy: 1e-4)
    }
}
