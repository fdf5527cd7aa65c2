import CKernels

// Broadcasting binary ops (numpy rules: shapes aligned at the right, size-1 or missing dims broadcast),
// unary ops and scalar arithmetic. Backward: ck_binary_backward / ck_unary_backward.

/// The broadcast result shape of `a` and `b`, or nil if they do not broadcast.
public func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int]? {
    let n = max(a.count, b.count)
    var out = [Int](repeating: 1, count: n)
    for i in 0..<n {
        let da = i < n - a.count ? 1 : a[i - (n - a.count)]
        let db = i < n - b.count ? 1 : b[i - (n - b.count)]
        if da != db && da != 1 && db != 1 { return nil }
        out[i] = da == 1 ? db : da
    }
    return out
}

/// Element strides of a contiguous tensor of `shape` read as `outShape` (0 along broadcast dims).
func broadcastStrides(_ shape: [Int], to outShape: [Int]) -> [Int64] {
    let n = outShape.count
    var strides = [Int64](repeating: 0, count: n)
    var s: Int64 = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) {
        let o = i + (n - shape.count)
        strides[o] = shape[i] == 1 ? 0 : s
        s *= Int64(shape[i])
    }
    return strides
}

/// Merges adjacent dims of `shape` wherever both operands step through them as one run
/// (`stride[i-1] == stride[i]·shape[i]`, which also merges two broadcast dims), and drops size-1 dims.
/// Same-shape operands become one flat dim; `[B, N, D] + [D]` becomes `[B·N, D]`. Rank 0 becomes `[1]`.
func coalesced(_ shape: [Int], _ sa: [Int64], _ sb: [Int64]) -> (shape: [Int64], a: [Int64], b: [Int64]) {
    var dims: [Int64] = [], a: [Int64] = [], b: [Int64] = []
    for i in 0..<shape.count where shape[i] != 1 {
        let n = Int64(shape[i])
        if let last = dims.last, a.last! == sa[i] * n, b.last! == sb[i] * n {
            dims[dims.count - 1] = last * n
            a[a.count - 1] = sa[i]; b[b.count - 1] = sb[i]
        } else {
            dims.append(n); a.append(sa[i]); b.append(sb[i])
        }
    }
    return dims.isEmpty ? ([1], [0], [0]) : (dims, a, b)
}

extension Tensor {
    func binary(_ op: ck_binary_op, _ name: String, _ other: Tensor) -> Tensor {
        let a = self, b = other
        guard let outShape = broadcastShape(a.shape, b.shape) else {
            preconditionFailure("\(name): shapes \(a.shape) and \(b.shape) do not broadcast")
        }
        let out = Tensor(uninitialized: outShape)
        let (shape64, sa, sb) = coalesced(outShape, broadcastStrides(a.shape, to: outShape), broadcastStrides(b.shape, to: outShape))
        ck_binary_forward(op, out.data, a.data, sa, b.data, sb, shape64, Int32(shape64.count))
        return out.recorded(name, [a, b]) { g in
            ck_binary_backward(op, a.gradTarget(), b.gradTarget(), g, a.data, sa, b.data, sb, shape64, Int32(shape64.count))
        }
    }

    func unary(_ op: ck_unary_op, _ name: String, _ p: Float = 0) -> Tensor {
        let x = self
        let out = Tensor(uninitialized: shape)
        ck_unary_forward(op, out.data, x.data, Int64(count), p)
        let y = out.savedForBackward, n = Int64(count)
        return out.recorded(name, [x]) { g in
            ck_unary_backward(op, x.gradTarget(), g, x.data, y.data, n, p)
        }
    }

    public func exp() -> Tensor { unary(CK_EXP, "exp") }
    public func log() -> Tensor { unary(CK_LOG, "log") }
    public func sqrt() -> Tensor { unary(CK_SQRT, "sqrt") }
    /// Elementwise power with a constant exponent.
    public func pow(_ p: Float) -> Tensor { unary(CK_POW, "pow", p) }
    /// Multiplies by a constant.
    public func scaled(by s: Float) -> Tensor { unary(CK_SCALE, "scale", s) }
    /// Adds a constant.
    public func shifted(by s: Float) -> Tensor { unary(CK_SHIFT, "shift", s) }

    public static func + (a: Tensor, b: Tensor) -> Tensor { a.binary(CK_ADD, "add", b) }
    public static func - (a: Tensor, b: Tensor) -> Tensor { a.binary(CK_SUB, "sub", b) }
    public static func * (a: Tensor, b: Tensor) -> Tensor { a.binary(CK_MUL, "mul", b) }
    public static func / (a: Tensor, b: Tensor) -> Tensor { a.binary(CK_DIV, "div", b) }
    public static func + (a: Tensor, s: Float) -> Tensor { a.shifted(by: s) }
    public static func - (a: Tensor, s: Float) -> Tensor { a.shifted(by: -s) }
    public static func * (a: Tensor, s: Float) -> Tensor { a.scaled(by: s) }
    public static func * (s: Float, a: Tensor) -> Tensor { a.scaled(by: s) }
    public static func / (a: Tensor, s: Float) -> Tensor { a.scaled(by: 1 / s) }
    public static prefix func - (a: Tensor) -> Tensor { a.scaled(by: -1) }
}
