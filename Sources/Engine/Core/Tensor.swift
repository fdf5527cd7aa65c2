import CKernels

/// A float32 tensor: a contiguous, row-major view (`shape`, `offset`) into a ``Storage``, plus what
/// reverse-mode autograd needs (`requiresGrad`, `grad`, and the node that produced it).
///
/// Tensors are reference types: ops return new tensors, views share storage. Gradients accumulate
/// into ``grad`` during ``backward(seed:)`` and are zeroed by the optimizer (or ``zeroGrad()``).
///
/// ```swift
/// var rng = TesseraRNG(seed: 0)
/// let w = Tensor.randn([3, 4], rng: &rng, requiresGrad: true)
/// let x = Tensor.randn([2, 4], rng: &rng)
/// let loss = (x.linear(w) * x.linear(w)).mean()
/// loss.backward()          // w.grad now holds d loss / d w
/// ```
public final class Tensor: CustomStringConvertible {
    /// The dimensions, outermost first.
    public let shape: [Int]
    /// The buffer this tensor views (shared by reshapes, slices and parameter arenas).
    public internal(set) var storage: Storage
    /// Element offset of this view inside ``storage``.
    public internal(set) var offset: Int
    /// Whether gradients flow into this tensor.
    public var requiresGrad: Bool
    /// Accumulated gradient (same shape), allocated on first use.
    public var grad: Tensor?
    /// The next gradient contribution overwrites ``grad`` instead of adding to it: set for a parameter
    /// whose arena slice still holds the last step's gradient (``ParameterArena/startGradients()``).
    var gradOverwrites = false
    /// The op that produced this tensor, when it was recorded for autograd.
    var node: Node?

    /// Number of elements.
    public var count: Int { shape.reduce(1, *) }
    /// Number of dimensions.
    public var rank: Int { shape.count }
    /// Pointer to the first element.
    public var data: UnsafeMutablePointer<Float> { storage.base + offset }

    /// A zero-filled tensor.
    public init(zeros shape: [Int], requiresGrad: Bool = false) {
        Runtime.ensureConfigured()
        precondition(shape.allSatisfy { $0 >= 0 }, "Tensor: negative dimension in shape \(shape)")
        self.shape = shape
        self.storage = Storage(count: shape.reduce(1, *))
        self.offset = 0
        self.requiresGrad = requiresGrad
    }

    /// A tensor whose contents are undefined until written: for an op or a loader that writes every
    /// element itself (no zero-fill pass).
    public init(uninitialized shape: [Int]) {
        Runtime.ensureConfigured()
        precondition(shape.allSatisfy { $0 >= 0 }, "Tensor: negative dimension in shape \(shape)")
        self.shape = shape
        self.storage = Storage(count: shape.reduce(1, *), zeroed: false)
        self.offset = 0
        self.requiresGrad = false
    }

    /// A view of `storage` starting at `offset`.
    public init(storage: Storage, offset: Int, shape: [Int], requiresGrad: Bool = false) {
        Runtime.ensureConfigured()
        precondition(offset >= 0 && offset + shape.reduce(1, *) <= storage.count,
                     "Tensor: view of shape \(shape) at offset \(offset) exceeds storage of \(storage.count)")
        self.shape = shape
        self.storage = storage
        self.offset = offset
        self.requiresGrad = requiresGrad
    }

    /// A tensor holding `values` in row-major order.
    public convenience init(_ values: [Float], shape: [Int], requiresGrad: Bool = false) {
        self.init(zeros: shape, requiresGrad: requiresGrad)
        precondition(values.count == count, "Tensor: \(values.count) values for shape \(shape) (\(count) elements)")
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: values.count) }
    }

    /// A scalar (shape `[]`).
    public convenience init(scalar: Float) { self.init([scalar], shape: []) }

    /// The elements in row-major order.
    public var array: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }
    /// The single element of a one-element tensor.
    public var item: Float {
        precondition(count == 1, "item: tensor of shape \(shape) has \(count) elements, expected 1")
        return data[0]
    }

    public var description: String {
        let head = array.prefix(8).map { String(format: "%.5g", $0) }.joined(separator: ", ")
        return "Tensor(shape: \(shape), [\(head)\(count > 8 ? ", …" : "")])"
    }

    /// Sets every element to `value` (no autograd).
    public func fill(_ value: Float) { data.update(repeating: value, count: count) }

    /// Copies the elements of `other` (same element count) into this tensor (no autograd).
    public func copy(from other: Tensor) {
        precondition(other.count == count, "copy: \(other.shape) into \(shape)")
        data.update(from: other.data, count: count)
    }

    /// A copy with its own storage and no autograd history.
    public func clone() -> Tensor {
        let t = Tensor(zeros: shape)
        t.copy(from: self)
        return t
    }

    /// Where a backward kernel writes this tensor's gradient: the one place the engine decides the
    /// gradient contract (`ck_grad.h`). No gradient wanted (the tensor does not require one): a null
    /// buffer. No gradient yet: a new buffer, not zero-filled, which the kernel overwrites
    /// (`accumulate` 0); the same for a parameter's arena slice at its first contribution of a step
    /// (``gradOverwrites``). A gradient already there (an earlier contribution, or a parameter's
    /// slice of the optimizer arena after ``ParameterArena/zeroGrad()``): the kernel adds to it
    /// (`accumulate` 1). GEMMs take `accumulate` as their beta.
    func gradTarget() -> ck_grad {
        guard requiresGrad else { return ck_grad(data: nil, accumulate: 0) }
        if let grad {
            if gradOverwrites { gradOverwrites = false; return ck_grad(data: grad.data, accumulate: 0) }
            return ck_grad(data: grad.data, accumulate: 1)
        }
        let g = Tensor(uninitialized: shape)
        grad = g
        return ck_grad(data: g.data, accumulate: 0)
    }

    /// Adds `g` (same element count) to this tensor's gradient (reshape's and view-like backwards, a
    /// product's residual); nothing when this tensor needs no gradient.
    func receiveGradient(_ g: UnsafePointer<Float>) {
        let d = gradTarget(), C = Swift.max(shape.last ?? 1, 1)
        guard let data = d.data else { return }
        ck_copy_rows(data, Int64(C), g, Int64(C), Int64(count / C), Int64(C), d.accumulate)
    }

    /// The gradient of the op whose backward is running, while the autograd walk drops it after that
    /// backward (every output but the walk's root). The engine runs ops from one thread.
    nonisolated(unsafe) static var outputGradientInFlight: Tensor?

    /// ``receiveGradient(_:)`` for `g`, the running op's own output gradient, given to an input of the
    /// same element count that passes it on unchanged (a product's residual): when the input has no
    /// gradient yet, it takes the buffer itself instead of a copy (the walk drops the output's
    /// reference right after). Same values either way; later contributions add to the buffer, so the
    /// caller must have finished reading `g` before anything writes this tensor's gradient.
    /// Measured: the copies were 1% of the MAE vit-tiny bf16 step (a residual chain through every block).
    func receiveGradient(takingOutputGradient g: UnsafeMutablePointer<Float>) {
        if requiresGrad, grad == nil, let output = Tensor.outputGradientInFlight, output.data == g, output.count == count {
            grad = Tensor(storage: output.storage, offset: output.offset, shape: shape)
            return
        }
        receiveGradient(g)
    }

    /// Clears the gradient (sets it to zero if allocated).
    public func zeroGrad() { grad?.fill(0); gradOverwrites = false }
}

// MARK: - creation

extension Tensor {
    public static func zeros(_ shape: [Int], requiresGrad: Bool = false) -> Tensor {
        Tensor(zeros: shape, requiresGrad: requiresGrad)
    }

    public static func ones(_ shape: [Int], requiresGrad: Bool = false) -> Tensor {
        full(shape, 1, requiresGrad: requiresGrad)
    }

    public static func full(_ shape: [Int], _ value: Float, requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(zeros: shape, requiresGrad: requiresGrad)
        t.fill(value)
        return t
    }

    /// Uniform in [low, high).
    public static func uniform(_ shape: [Int], low: Float = 0, high: Float = 1, rng: inout TesseraRNG,
                               requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(zeros: shape, requiresGrad: requiresGrad)
        for i in 0..<t.count { t.data[i] = rng.uniform(low, high) }
        return t
    }

    /// Normal with the given mean and standard deviation.
    public static func randn(_ shape: [Int], mean: Float = 0, std: Float = 1, rng: inout TesseraRNG,
                             requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(zeros: shape, requiresGrad: requiresGrad)
        for i in 0..<t.count { t.data[i] = mean + std * rng.normal() }
        return t
    }

    /// Normal(mean, std) redrawn until inside [a, b] (timm's `trunc_normal_`; a, b absolute).
    public static func truncatedNormal(_ shape: [Int], mean: Float = 0, std: Float = 0.02, a: Float = -2,
                                       b: Float = 2, rng: inout TesseraRNG, requiresGrad: Bool = false) -> Tensor {
        precondition(a < b, "truncatedNormal: empty interval [\(a), \(b)]")
        let t = Tensor(zeros: shape, requiresGrad: requiresGrad)
        for i in 0..<t.count {
            var v: Float
            repeat { v = mean + std * rng.normal() } while v < a || v > b
            t.data[i] = v
        }
        return t
    }

    /// Xavier/Glorot uniform for a weight whose first dim is fan-out and the product of the rest
    /// is fan-in (PyTorch's rule for Linear [out, in] and the flattened conv [out, c·p·p]).
    public static func xavierUniform(_ shape: [Int], rng: inout TesseraRNG, requiresGrad: Bool = false) -> Tensor {
        precondition(shape.count >= 2, "xavierUniform: needs a weight of rank >= 2, got \(shape)")
        let fanOut = Float(shape[0]), fanIn = Float(shape.dropFirst().reduce(1, *))
        let bound = (6 / (fanIn + fanOut)).squareRoot()
        return uniform(shape, low: -bound, high: bound, rng: &rng, requiresGrad: requiresGrad)
    }
}
