import CKernels

// Views and copies: reshape (a view), narrow / slice of one axis, concat, transpose of the last two axes.

extension Tensor {
    /// The same elements with a new shape (a view sharing storage). One dimension may be -1.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var s = newShape
        if let i = s.firstIndex(of: -1) {
            let known = s.enumerated().filter { $0.offset != i }.map(\.element).reduce(1, *)
            precondition(known > 0 && count % known == 0, "reshape: cannot reshape \(shape) to \(newShape)")
            s[i] = count / known
        }
        precondition(s.reduce(1, *) == count, "reshape: cannot reshape \(shape) (\(count) elements) to \(newShape)")
        let x = self
        let out = Tensor(storage: storage, offset: offset, shape: s)
        return out.recorded("reshape", [x]) { g in x.receiveGradient(g) }
    }

    /// Elements `start ..< start + length` along `axis` (a copy).
    public func narrow(axis: Int, start: Int, length: Int) -> Tensor {
        let a = normalizedAxis(axis, "narrow")
        precondition(start >= 0 && length >= 0 && start + length <= shape[a],
                     "narrow: range \(start)..<\(start + length) out of bounds for axis \(a) of shape \(shape)")
        let x = self
        let O = shape[..<a].reduce(1, *), I = shape[(a + 1)...].reduce(1, *)
        var outShape = shape
        outShape[a] = length
        // Leading-axis slices are views.
        if O == 1 {
            let out = Tensor(storage: storage, offset: offset + start * I, shape: outShape)
            return out.recorded("narrow", [x]) { g in
                ck_narrow_backward(x.gradTarget(), g, 1, Int64(x.shape[a]), Int64(start), Int64(length), Int64(I))
            }
        }
        let out = Tensor(uninitialized: outShape)
        ck_narrow_forward(out.data, x.data, Int64(O), Int64(shape[a]), Int64(start), Int64(length), Int64(I))
        return out.recorded("narrow", [x]) { g in
            ck_narrow_backward(x.gradTarget(), g, Int64(O), Int64(x.shape[a]), Int64(start), Int64(length), Int64(I))
        }
    }

    /// Index `index` of `axis`, removing the axis (e.g. the CLS token `x.select(axis: 1, index: 0)`).
    public func select(axis: Int, index: Int) -> Tensor {
        let a = normalizedAxis(axis, "select")
        var s = shape
        s.remove(at: a)
        return narrow(axis: a, start: index, length: 1).reshaped(s)
    }

    /// Slice of the leading axis (a view).
    public subscript(range: Range<Int>) -> Tensor { narrow(axis: 0, start: range.lowerBound, length: range.count) }

    /// Swaps the last two axes (a copy).
    public func transposed() -> Tensor {
        precondition(rank >= 2, "transposed: needs rank >= 2, got \(shape)")
        let x = self
        let M = shape[rank - 2], N = shape[rank - 1], Bt = count / max(M * N, 1)
        var s = shape
        s.swapAt(rank - 2, rank - 1)
        let out = Tensor(uninitialized: s)
        ck_transpose(out.data, x.data, Int64(Bt), Int64(M), Int64(N), 0)
        return out.recorded("transpose", [x]) { g in
            let dx = x.gradTarget()
            ck_transpose(dx.data, g, Int64(Bt), Int64(N), Int64(M), dx.accumulate)
        }
    }
}

/// Concatenates tensors along `axis`; all other dimensions must match.
public func concat(_ tensors: [Tensor], axis: Int) -> Tensor {
    precondition(!tensors.isEmpty, "concat: no tensors")
    let first = tensors[0]
    let a = first.normalizedAxis(axis, "concat")
    for t in tensors {
        precondition(t.rank == first.rank && (0..<t.rank).allSatisfy { $0 == a || t.shape[$0] == first.shape[$0] },
                     "concat: shapes \(tensors.map(\.shape)) differ outside axis \(a)")
    }
    let O = first.shape[..<a].reduce(1, *), I = first.shape[(a + 1)...].reduce(1, *)
    let total = tensors.map { $0.shape[a] }.reduce(0, +)
    var outShape = first.shape
    outShape[a] = total
    let out = Tensor(uninitialized: outShape)
    var starts: [Int] = []
    var pos = 0
    for t in tensors {
        starts.append(pos)
        ck_copy_rows(out.data + pos * I, Int64(total * I), t.data, Int64(t.shape[a] * I), Int64(O), Int64(t.shape[a] * I), 0)
        pos += t.shape[a]
    }
    return out.recorded("concat", tensors) { g in
        for (t, start) in zip(tensors, starts) where t.requiresGrad {   // each input's gradient is written whole
            let dt = t.gradTarget()
            ck_copy_rows(dt.data, Int64(t.shape[a] * I), g + start * I, Int64(total * I), Int64(O), Int64(t.shape[a] * I), dt.accumulate)
        }
    }
}
