import CKernels

// softmax, log-softmax and soft-target cross-entropy over the last axis.

extension Tensor {
    var rowsAndColumns: (Int, Int) {
        let C = shape.last ?? 1
        return (C == 0 ? 0 : count / C, C)
    }

    /// Softmax over the last axis. Backward reads the output.
    public func softmax() -> Tensor {
        let x = self, (R, C) = rowsAndColumns
        let out = Tensor(uninitialized: shape)
        ck_softmax_forward(out.data, x.data, Int64(R), Int64(C))
        let y = out.savedForBackward
        return out.recorded("softmax", [x]) { g in ck_softmax_backward(x.gradTarget(), g, y.data, Int64(R), Int64(C)) }
    }

    /// Log-softmax over the last axis. Backward reads the output.
    public func logSoftmax() -> Tensor {
        let x = self, (R, C) = rowsAndColumns
        let out = Tensor(uninitialized: shape)
        ck_log_softmax_forward(out.data, x.data, Int64(R), Int64(C))
        let y = out.savedForBackward
        return out.recorded("logSoftmax", [x]) { g in ck_log_softmax_backward(x.gradTarget(), g, y.data, Int64(R), Int64(C)) }
    }
}

/// Cross-entropy with soft targets per row: `−Σ_c target · log_softmax(logits)` over the last axis;
/// returns one loss per row (shape `logits.shape.dropLast()`). Take `.mean()` for the usual reduction.
/// Gradients flow into the logits and, if it requires them, the target.
public func crossEntropy(logits: Tensor, target: Tensor) -> Tensor {
    precondition(logits.shape == target.shape, "crossEntropy: logits \(logits.shape) and target \(target.shape) differ")
    let (R, C) = logits.rowsAndColumns
    let out = Tensor(uninitialized: Array(logits.shape.dropLast()))
    ck_cross_entropy_forward(out.data, logits.data, target.data, Int64(R), Int64(C))
    return out.recorded("crossEntropy", [logits, target]) { g in
        ck_cross_entropy_backward(logits.gradTarget(),
                                  target.gradTarget(), g, logits.data, target.data,
                                  Int64(R), Int64(C))
    }
}

/// Cross-entropy against integer class labels (one per row), averaged over rows.
public func crossEntropy(logits: Tensor, labels: [Int]) -> Tensor {
    let (R, C) = logits.rowsAndColumns
    precondition(labels.count == R, "crossEntropy: \(labels.count) labels for \(R) rows")
    let target = Tensor(zeros: logits.shape)
    for (r, y) in labels.enumerated() {
        precondition(y >= 0 && y < C, "crossEntropy: label \(y) out of range 0..<\(C)")
        target.data[r * C + y] = 1
    }
    return crossEntropy(logits: logits, target: target).mean()
}
