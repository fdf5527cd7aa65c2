import CKernels

// Sums and means over one axis or over everything. Backward: broadcast the gradient back.

extension Tensor {
    func normalizedAxis(_ axis: Int, _ op: String) -> Int {
        let a = axis < 0 ? axis + rank : axis
        precondition(a >= 0 && a < rank, "\(op): axis \(axis) out of range for shape \(shape)")
        return a
    }

    /// Sum over `axis`; the axis is kept with size 1 when `keepDims`.
    public func sum(axis: Int, keepDims: Bool = false) -> Tensor {
        let x = self
        let a = normalizedAxis(axis, "sum")
        let O = shape[..<a].reduce(1, *), A = shape[a], I = shape[(a + 1)...].reduce(1, *)
        var outShape = shape
        if keepDims { outShape[a] = 1 } else { outShape.remove(at: a) }
        let out = Tensor(uninitialized: outShape)
        ck_sum_axis_forward(out.data, x.data, Int64(O), Int64(A), Int64(I))
        return out.recorded("sum", [x]) { g in
            ck_sum_axis_backward(x.gradTarget(), g, Int64(O), Int64(A), Int64(I))
        }
    }

    /// Mean over `axis`.
    public func mean(axis: Int, keepDims: Bool = false) -> Tensor {
        sum(axis: axis, keepDims: keepDims).scaled(by: 1 / Float(shape[normalizedAxis(axis, "mean")]))
    }

    /// Sum of all elements (a scalar; accumulated in double in index order).
    public func sum() -> Tensor {
        let x = self
        let out = Tensor(zeros: [])
        out.data[0] = Float(ck_sum_all(x.data, Int64(count)))
        return out.recorded("sum", [x]) { g in
            ck_sum_axis_backward(x.gradTarget(), g, 1, Int64(x.count), 1)
        }
    }

    /// Mean of all elements.
    public func mean() -> Tensor {
        precondition(count > 0, "mean: empty tensor")
        return sum().scaled(by: 1 / Float(count))
    }
}

/// Mean squared error over all elements: mean((a − b)²).
public func mseLoss(_ a: Tensor, _ b: Tensor) -> Tensor {
    precondition(a.shape == b.shape, "mseLoss: shapes \(a.shape) and \(b.shape) differ")
    let d = a - b
    return (d * d).mean()
}
