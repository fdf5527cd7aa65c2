import Foundation

/// MAE's fixed 2-D sin-cos positional embedding, `[1, (cls ? 1 : 0) + gh·gw, dim]`.
///
/// For the patch token at row r, column c, with K = dim/4 and ω_k = 10000^(−k/K):
/// `[sin(c·ω), cos(c·ω), sin(r·ω), cos(r·ω)]` (the official code's `emb_h` half encodes the column).
/// The CLS slot (row 0) is all zeros. Computed in double precision, then rounded to float, as the
/// reference NumPy code does.
public func sinCosPositionalEmbedding(dim: Int, gridHeight gh: Int, gridWidth gw: Int, clsToken: Bool = true) -> Tensor {
    precondition(dim % 4 == 0, "sinCosPositionalEmbedding: dim \(dim) must be divisible by 4")
    let K = dim / 4, first = clsToken ? 1 : 0
    let t = Tensor(zeros: [1, first + gh * gw, dim])
    let omega = (0..<K).map { 1.0 / Foundation.pow(10000.0, Double($0) / Double(K)) }
    for r in 0..<gh {
        for c in 0..<gw {
            let row = t.data + (first + r * gw + c) * dim
            for k in 0..<K {
                let x = Double(c) * omega[k], y = Double(r) * omega[k]
                row[k] = Float(Foundation.sin(x))
                row[K + k] = Float(Foundation.cos(x))
                row[2 * K + k] = Float(Foundation.sin(y))
                row[3 * K + k] = Float(Foundation.cos(y))
            }
        }
    }
    return t
}
