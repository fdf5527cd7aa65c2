import Foundation

/// Eigenvalues of the symmetric matrix `a [n, n]` (row-major), in descending order, by cyclic Jacobi
/// rotations in double precision. Meant for small matrices (feature Gram matrices, n ≤ ~1000).
public func symmetricEigenvalues(_ a: [Double], n: Int, sweeps: Int = 50) -> [Double] {
    precondition(a.count == n * n, "symmetricEigenvalues: a must hold n × n values")
    var m = a
    var normSquared = 0.0   // ‖A‖²_F: the off-diagonal mass is compared against it
    for v in m { normSquared += v * v }
    for _ in 0..<sweeps {
        var off = 0.0
        for p in 0..<n { for q in (p + 1)..<n { off += m[p * n + q] * m[p * n + q] } }
        if off <= 1e-30 * max(normSquared, 1e-300) { break }
        for p in 0..<n {
            for q in (p + 1)..<n {
                let apq = m[p * n + q]
                if abs(apq) < 1e-300 { continue }
                // Rotation that zeroes a[p][q]: t = tan θ from cot 2θ = (a_qq − a_pp) / (2 a_pq).
                let theta = (m[q * n + q] - m[p * n + p]) / (2 * apq)
                let t = (theta >= 0 ? 1.0 : -1.0) / (abs(theta) + (theta * theta + 1).squareRoot())
                let c = 1 / (t * t + 1).squareRoot(), s = t * c
                for k in 0..<n {   // columns p and q
                    let kp = m[k * n + p], kq = m[k * n + q]
                    m[k * n + p] = c * kp - s * kq
                    m[k * n + q] = s * kp + c * kq
                }
                for k in 0..<n {   // rows p and q
                    let pk = m[p * n + k], qk = m[q * n + k]
                    m[p * n + k] = c * pk - s * qk
                    m[q * n + k] = s * pk + c * qk
                }
            }
        }
    }
    return (0..<n).map { m[$0 * n + $0] }.sorted(by: >)
}

extension Probes {
    /// RankMe (Garrido et al., 2023): the effective rank `exp(−Σ p_k log p_k)` of the features, with
    /// `p_k = σ_k / Σσ` over the singular values of the `count × dim` feature matrix (uncentered, as the
    /// paper). Between 1 (every feature on one line: collapse) and `dim` (a flat spectrum).
    public static func effectiveRank(_ f: FeatureSet) -> Float {
        let D = f.dim
        let t = f.tensor
        let gram = t.transposed().matmul(t).array.map(Double.init)   // FᵀF [D, D]; its eigenvalues are σ².
        let sigma = symmetricEigenvalues(gram, n: D).map { max($0, 0).squareRoot() }
        let total = sigma.reduce(0, +)
        guard total > 0 else { return 0 }
        var entropy = 0.0
        for s in sigma where s > 0 {
            let p = s / total
            entropy -= p * Foundation.log(p)
        }
        return Float(Foundation.exp(entropy))
    }
}
