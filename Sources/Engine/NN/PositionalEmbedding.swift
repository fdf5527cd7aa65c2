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

/// The `[m, n]` matrix of PyTorch's 1-D bicubic resize from n to m samples
/// (`F.interpolate(mode="bicubic", align_corners=False)`: cubic convolution with a = −0.75, source
/// coordinate `(i + 0.5)·n/m − 0.5`, indices clamped to the border).
public func bicubicResizeMatrix(from n: Int, to m: Int) -> [Float] {
    precondition(n >= 1 && m >= 1, "bicubicResizeMatrix: sizes must be positive")
    let a = -0.75
    func w(_ x: Double) -> Double {
        let t = abs(x)
        if t <= 1 { return ((a + 2) * t - (a + 3)) * t * t + 1 }
        if t < 2 { return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a }
        return 0
    }
    var out = [Float](repeating: 0, count: m * n)
    let scale = Double(n) / Double(m)
    for i in 0..<m {
        let src = (Double(i) + 0.5) * scale - 0.5
        let f = Foundation.floor(src), t = src - f
        for k in -1...2 {
            let j = min(max(Int(f) + k, 0), n - 1)
            out[i * n + j] += Float(w(t - Double(k)))
        }
    }
    return out
}

/// A `[1, 1 + h·h, D]` positional table for an h×h patch grid from a `[1, 1 + g·g, D]` one: the CLS
/// row as is, the patch rows bicubically resized in 2-D (the interpolation matrix applied with a
/// matmul, so gradients flow into `table` when it is trained).
public func interpolatedPositionalEmbedding(_ table: Tensor, grid g: Int, to h: Int) -> Tensor {
    precondition(table.rank == 3 && table.shape[0] == 1 && table.shape[1] == 1 + g * g,
                 "interpolatedPositionalEmbedding: table \(table.shape) is not [1, 1 + \(g)², D]")
    if h == g { return table }
    let D = table.shape[2]
    let m1 = bicubicResizeMatrix(from: g, to: h)
    var m2 = [Float](repeating: 0, count: h * h * g * g)   // kron(rows, cols)
    for r in 0..<h { for c in 0..<h { for i in 0..<g { for j in 0..<g {
        m2[(r * h + c) * g * g + i * g + j] = m1[r * g + i] * m1[c * g + j]
    } } } }
    let patches = table.narrow(axis: 1, start: 1, length: g * g).reshaped([g * g, D])
    let resized = Tensor(m2, shape: [h * h, g * g]).matmul(patches).reshaped([1, h * h, D])
    return concat([table.narrow(axis: 1, start: 0, length: 1), resized], axis: 1)
}
