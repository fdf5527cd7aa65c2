import CKernels

/// The record of one differentiable op: its inputs and the closure that, given the gradient of the
/// op's output, accumulates the gradients of the inputs (by calling the op's C backward kernel).
final class Node {
    let name: String
    let inputs: [Tensor]
    let backward: (UnsafeMutablePointer<Float>) -> Void

    init(name: String, inputs: [Tensor], backward: @escaping (UnsafeMutablePointer<Float>) -> Void) {
        self.name = name
        self.inputs = inputs
        self.backward = backward
    }
}

/// Gradient recording on or off (``withNoGrad(_:)``). The engine is driven from one Swift thread;
/// parallelism lives inside the kernels.
public enum GradMode {
    nonisolated(unsafe) static var depth = 0
    /// Whether ops currently record themselves for autograd.
    public static var isEnabled: Bool { depth == 0 }
}

/// Runs `body` without recording ops for autograd (EMA teachers, evaluation, target computation).
@discardableResult
public func withNoGrad<T>(_ body: () throws -> T) rethrows -> T {
    GradMode.depth += 1
    defer { GradMode.depth -= 1 }
    return try body()
}

/// An op's output as its backward closure keeps it: the buffer, not the tensor. The output tensor
/// holds its node, which holds the closure; a closure that held the tensor would make a cycle that
/// keeps the output alive when the graph is dropped without a backward pass.
struct SavedOutput {
    let storage: Storage
    let offset: Int
    var data: UnsafeMutablePointer<Float> { storage.base + offset }
}

extension Tensor {
    /// This tensor's values for its own op's backward closure (see ``SavedOutput``).
    var savedForBackward: SavedOutput { SavedOutput(storage: storage, offset: offset) }

    /// Attaches a backward closure to `self` (the op's output) when any input requires a gradient.
    /// The closure receives the output's gradient buffer.
    @discardableResult
    func recorded(_ name: String, _ inputs: [Tensor],
                  _ backward: @escaping (UnsafeMutablePointer<Float>) -> Void) -> Tensor {
        if StepProfile.isOn { StepProfile.lap(name) }   // the op's forward has just ended
        guard GradMode.isEnabled, inputs.contains(where: { $0.requiresGrad }) else { return self }
        requiresGrad = true
        node = Node(name: name, inputs: inputs, backward: backward)
        return self
    }

    /// A tensor sharing this one's storage with no autograd history (stop-gradient).
    public func detach() -> Tensor { Tensor(storage: storage, offset: offset, shape: shape) }

    /// Reverse-mode differentiation from this tensor. A scalar gets seed 1; otherwise pass `seed`
    /// of the same shape. Walks the graph once in reverse topological order, accumulating into each
    /// tensor's ``grad``, and frees the graph of intermediate tensors as it goes: afterwards only
    /// tensors without a recorded op (parameters, inputs that require grad) and `self` hold a ``grad``.
    public func backward(seed: Tensor? = nil) {
        precondition(requiresGrad, "backward: tensor of shape \(shape) does not require grad")
        if let seed {
            precondition(seed.shape == shape, "backward: seed shape \(seed.shape) != tensor shape \(shape)")
            receiveGradient(seed.data)
        } else {
            precondition(count == 1, "backward: non-scalar tensor of shape \(shape) needs a seed")
            var one: Float = 1
            receiveGradient(&one)
        }
        // Iterative depth-first topological order (no recursion: graphs can be thousands deep).
        var order: [Tensor?] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(Tensor, Bool)] = [(self, false)]
        while let (t, expanded) = stack.popLast() {
            if expanded { order.append(t); continue }
            if !visited.insert(ObjectIdentifier(t)).inserted { continue }
            stack.append((t, true))
            for input in t.node?.inputs ?? [] where input.requiresGrad && !visited.contains(ObjectIdentifier(input)) {
                stack.append((input, false))
            }
        }
        // As each op's backward has run, drop what only it needed, as PyTorch does: its node (the saved
        // inputs), the output's gradient (an intermediate tensor's gradient is not kept), and this walk's
        // own reference, so activations and gradients are freed during the backward instead of all at
        // its end (docs/benchmarks.md, "Peak memory").
        for i in order.indices.reversed() {
            guard let t = order[i] else { continue }
            order[i] = nil
            guard let node = t.node else { continue }
            if let g = t.grad {
                if StepProfile.isOn { StepProfile.lap("autograd walk", backward: true) }
                // An intermediate output's gradient is dropped after its node: the node may hand the
                // buffer itself to an input (``Tensor/receiveGradient(takingOutputGradient:)``).
                Tensor.outputGradientInFlight = t !== self ? g : nil
                node.backward(g.data)
                Tensor.outputGradientInFlight = nil
                if StepProfile.isOn { StepProfile.lap(node.name, backward: true) }
            }
            t.node = nil   // retain_graph = false: release saved tensors now
            if t !== self { t.grad = nil }
        }
    }
}
