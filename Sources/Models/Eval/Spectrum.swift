import Foundation
import TesseraData
import TesseraEngine

extension Probes {
    /// RankMe (Garrido et al., 2023): the effective rank `exp(−Σ p_k log p_k)` of the features, with
    /// `p_k = σ_k / Σσ` over the singular values of the `count × dim` feature matrix (uncentered, as the
    /// paper). Between 1 (every feature on one line: collapse) and `dim` (a flat spectrum).
    public static func effectiveRank(_ f: FeatureSet) -> Float {
        let D = f.dim
        let t = f.tensor
        let gram = t.transposed().matmul(t).array.map(Double.init)   // FᵀF [D, D]; its eigenvalues are σ².
        guard let eigenvalues = try? Linalg.symmetricEigenvalues(gram, n: D) else { return .nan }
        let sigma = eigenvalues.map { max($0, 0).squareRoot() }
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
