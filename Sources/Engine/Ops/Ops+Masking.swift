import CKernels

/// The indices of one random masking (MAE's `random_masking`), per sample or shared by the batch.
///
/// `idsShuffle[b·L + j]` is the patch of rank j in ascending noise (ties broken by patch index),
/// `idsRestore` its inverse, `idsKeep` the first `keep` of `idsShuffle`, and `mask [B, L]` is 0 for
/// kept and 1 for removed patches, in the original patch order. When `shared` is true there is one
/// permutation (B = 1 rows of ids) applied to every sample of the batch.
public struct MaskIndices: Sendable {
    public let batch: Int, patches: Int, keep: Int
    public let shared: Bool
    public let idsShuffle: [Int32]
    public let idsRestore: [Int32]
    public let idsKeep: [Int32]
    /// 0 kept, 1 removed, `[rows, L]` (rows = 1 when shared).
    public let mask: [Float]

    /// Builds the indices from `noise [rows, L]` (rows = batch, or 1 for a shared permutation).
    public init(noise: Tensor, keep: Int, batch: Int? = nil) {
        precondition(noise.rank == 2, "MaskIndices: noise must be [B, L], got \(noise.shape)")
        let rows = noise.shape[0], L = noise.shape[1]
        precondition(keep >= 0 && keep <= L, "MaskIndices: keep \(keep) out of range 0...\(L)")
        shared = batch != nil
        if let batch { precondition(rows == 1 && batch >= 1, "MaskIndices: a shared permutation needs noise [1, L]") }
        self.batch = batch ?? rows
        patches = L
        self.keep = keep
        var shuffle = [Int32](repeating: 0, count: rows * L), restore = shuffle
        var keepIds = [Int32](repeating: 0, count: rows * keep)
        var mask = [Float](repeating: 0, count: rows * L)
        var scratch = [UInt64](repeating: 0, count: rows * L)
        ck_masking_ids(&shuffle, &restore, &keepIds, &mask, &scratch, noise.data, Int64(rows), Int64(L), Int64(keep))
        idsShuffle = shuffle; idsRestore = restore; idsKeep = keepIds; self.mask = mask
    }

    /// Builds the indices from each sample's patch order: `order [B·L]` lists, per sample, the kept
    /// patches first (`keep` of them, in the order their tokens take) and then the removed ones.
    public init(order: [Int32], batch B: Int, keep: Int) {
        precondition(B >= 1 && order.count % B == 0, "MaskIndices: \(order.count) ids for a batch of \(B)")
        let L = order.count / B
        precondition(keep >= 0 && keep <= L, "MaskIndices: keep \(keep) out of range 0...\(L)")
        var restore = [Int32](repeating: -1, count: B * L), keepIds = [Int32](repeating: 0, count: B * keep)
        var mask = [Float](repeating: 0, count: B * L)
        for b in 0..<B {
            for j in 0..<L {
                let l = Int(order[b * L + j])
                precondition(l >= 0 && l < L && restore[b * L + l] < 0, "MaskIndices: sample \(b)'s order is not a permutation of 0..<\(L)")
                restore[b * L + l] = Int32(j)
                mask[b * L + l] = j < keep ? 0 : 1
                if j < keep { keepIds[b * keep + j] = Int32(l) }
            }
        }
        batch = B; patches = L; self.keep = keep; shared = false
        idsShuffle = order; idsRestore = restore; idsKeep = keepIds; self.mask = mask
    }

    /// The masking of samples `rows` only (a data-parallel process's part of a global batch's masking).
    public func rows(_ rows: Range<Int>) -> MaskIndices {
        precondition(rows.lowerBound >= 0 && rows.upperBound <= batch, "MaskIndices.rows: \(rows) of a batch of \(batch)")
        if shared { return MaskIndices(copying: self, batch: rows.count, idsRange: 0..<1) }
        return MaskIndices(copying: self, batch: rows.count, idsRange: rows)
    }

    private init(copying m: MaskIndices, batch: Int, idsRange r: Range<Int>) {
        self.batch = batch; patches = m.patches; keep = m.keep; shared = m.shared
        let L = m.patches, K = m.keep
        idsShuffle = Array(m.idsShuffle[(r.lowerBound * L)..<(r.upperBound * L)])
        idsRestore = Array(m.idsRestore[(r.lowerBound * L)..<(r.upperBound * L)])
        idsKeep = Array(m.idsKeep[(r.lowerBound * K)..<(r.upperBound * K)])
        mask = Array(m.mask[(r.lowerBound * L)..<(r.upperBound * L)])
    }

    /// Patches kept by MAE's masking: `Int(L · (1 − ratio))`, as the official code.
    public static func keptCount(patches L: Int, maskRatio: Float) -> Int { Int(Float(L) * (1 - maskRatio)) }

    /// MAE masking: ``keptCount(patches:maskRatio:)`` patches kept, by uniform noise drawn from `rng`.
    public static func random(batch B: Int, patches L: Int, maskRatio: Float, sharedAcrossBatch: Bool = false,
                              rng: inout TesseraRNG) -> MaskIndices {
        let keep = keptCount(patches: L, maskRatio: maskRatio)
        let noise = Tensor.uniform([sharedAcrossBatch ? 1 : B, L], rng: &rng)
        return MaskIndices(noise: noise, keep: keep, batch: sharedAcrossBatch ? B : nil)
    }

    /// The mask as a `[B, L]` tensor (expanded over the batch when shared).
    public var maskTensor: Tensor {
        shared ? Tensor(Array((0..<batch).map { _ in mask }.joined()), shape: [batch, patches])
               : Tensor(mask, shape: [batch, patches])
    }

    var idsStride: Int64 { shared ? 0 : Int64(keep) }
}

extension Tensor {
    /// Keeps the unmasked rows: `x [B, L, D] → [B, K, D]`, rows in `idsKeep` order.
    /// Backward scatter-adds into the kept rows.
    public func gatherKept(_ m: MaskIndices) -> Tensor {
        precondition(rank == 3 && shape[0] == m.batch && shape[1] == m.patches,
                     "gatherKept: input \(shape) does not match masking of \(m.batch)×\(m.patches) patches")
        let x = self
        let B = shape[0], L = shape[1], D = shape[2], K = m.keep
        let out = Tensor(uninitialized: [B, K, D])
        let ids = m.idsKeep, stride = m.idsStride
        ck_gather_rows_forward(out.data, x.data, ids, stride, Int64(B), Int64(L), Int64(K), Int64(D))
        return out.recorded("gatherKept", [x]) { g in
            ck_gather_rows_backward(x.gradTarget(), g, ids, stride, Int64(B), Int64(L), Int64(K), Int64(D))
        }
    }

    /// The MAE decoder's unshuffle: `self [B, S + K, D]` (S = `specialTokens` leading rows such as
    /// CLS, then the kept tokens) → `[B, S + L, D]` with `maskToken` (D elements) at removed
    /// positions and every token back in its original patch position.
    public func unshuffled(_ m: MaskIndices, maskToken: Tensor, specialTokens S: Int = 1) -> Tensor {
        precondition(!m.shared, "unshuffled: needs per-sample indices")
        precondition(rank == 3 && shape[0] == m.batch && shape[1] == S + m.keep && maskToken.count == shape[2],
                     "unshuffled: input \(shape) and mask token \(maskToken.shape) do not match \(m.batch)×(\(S)+\(m.keep)) tokens")
        let x = self
        let B = shape[0], D = shape[2], L = m.patches, K = m.keep
        let out = Tensor(uninitialized: [B, S + L, D])
        let ids = m.idsRestore
        ck_unshuffle_forward(out.data, x.data, maskToken.data, ids, Int64(B), Int64(S), Int64(L), Int64(K), Int64(D))
        return out.recorded("unshuffled", [x, maskToken]) { g in
            ck_unshuffle_backward(x.gradTarget(), maskToken.gradTarget(),
                                  g, ids, Int64(B), Int64(S), Int64(L), Int64(K), Int64(D))
        }
    }
}
