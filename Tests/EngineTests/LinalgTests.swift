import Foundation
import TesseraEngine
import XCTest

final class LinalgTests: XCTestCase {
    /// LAPACK eigenvalues of A = Q Λ Qᵀ with Q a product of Householder reflections and Λ known.
    func testSymmetricEigenvaluesRecoverAKnownSpectrum() throws {
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
        let got = try Linalg.symmetricEigenvalues(a, n: n)
        XCTAssertEqual(got.count, n)
        for (g, e) in zip(got, lambda.sorted(by: >)) { XCTAssertEqual(g, e, accuracy: 1e-9) }
        // 2 × 2 closed form: [[2, 1], [1, 2]] → 3, 1.
        let two = try Linalg.symmetricEigenvalues([2, 1, 1, 2], n: 2)
        XCTAssertEqual(two[0], 3, accuracy: 1e-12)
        XCTAssertEqual(two[1], 1, accuracy: 1e-12)
    }

    /// A 3,072 × 3,072 matrix (the size of the Gram matrix of 32×32×3 pixel features).
    func testLargeTridiagonalMatrix() throws {
        let n = 3072
        var a = [Double](repeating: 0, count: n * n)
        for i in 0..<n { a[i * n + i] = Double(i + 1) }
        for i in 1..<n { a[i * n + i - 1] = 0.5; a[(i - 1) * n + i] = 0.5 }
        let w = try Linalg.symmetricEigenvalues(a, n: n)
        XCTAssertEqual(w.count, n)
        XCTAssertEqual(w.reduce(0, +), Double(n * (n + 1) / 2), accuracy: 1e-6 * Double(n * n))   // the trace
        XCTAssertTrue(zip(w, w.dropFirst()).allSatisfy { $0 >= $1 })
        // Each value, independently of the solver: for a symmetric tridiagonal T, the number of
        // eigenvalues below x is the number of negative pivots of T − xI (Sturm's count, one O(n)
        // recurrence). The k-th largest value λ must have n − k − 1 eigenvalues below λ − ε and
        // n − k below λ + ε.
        func below(_ x: Double) -> Int {
            var count = 0, d = 1.0
            for i in 0..<n {
                d = (Double(i + 1) - x) - (i == 0 ? 0 : 0.25 / d)
                if d == 0 { d = -1e-300 }
                if d < 0 { count += 1 }
            }
            return count
        }
        let eps = 1e-7
        var wrong: [Int] = []
        for (k, lambda) in w.enumerated() where below(lambda - eps) != n - k - 1 || below(lambda + eps) != n - k { wrong.append(k) }
        XCTAssertEqual(wrong, [], "eigenvalues not within \(eps) of a true one (indices, largest first)")
    }
}
