/// Base class of every layer and model.
///
/// A module owns named parameters, named buffers (state that is saved but not trained, such as
/// BatchNorm running statistics) and named child modules, all in registration order. The dotted
/// names it produces (`blocks.3.attn.qkv.weight`) are exactly PyTorch's `state_dict` keys for the
/// same architecture, and the order is PyTorch's: a module's own parameters, then its buffers, then
/// each child's in turn.
///
/// Subclasses create their tensors, call `super.init()`, then ``register(_:_:)-(String,Tensor)`` each one.
open class Module {
    public private(set) var ownParameters: [(name: String, tensor: Tensor)] = []
    public private(set) var ownBuffers: [(name: String, tensor: Tensor)] = []
    public private(set) var children: [(name: String, module: Module)] = []
    /// Training or evaluation mode (BatchNorm uses batch statistics only in training).
    public private(set) var isTraining = true

    public init() {}

    /// Registers a parameter under `name`. Frozen parameters (requiresGrad false, like MAE's fixed
    /// positional embeddings) are still parameters: they are saved and loaded, never optimized.
    @discardableResult
    public func register(_ name: String, _ tensor: Tensor) -> Tensor {
        precondition(!name.contains("."), "Module.register: name '\(name)' must not contain '.'")
        ownParameters.append((name, tensor))
        return tensor
    }

    /// Registers a buffer (saved, not a parameter).
    @discardableResult
    public func registerBuffer(_ name: String, _ tensor: Tensor) -> Tensor {
        ownBuffers.append((name, tensor))
        return tensor
    }

    /// Registers a child module under `name` (use "blocks.0" style names for lists).
    @discardableResult
    public func register<M: Module>(_ name: String, _ module: M) -> M {
        children.append((name, module))
        return module
    }

    /// Registers a child whose tensors appear at this module's level, without a name prefix (MAE's
    /// encoder tensors are top-level names: `cls_token`, `blocks.0…`, next to `decoder_blocks.0…`).
    @discardableResult
    public func registerInline<M: Module>(_ module: M) -> M {
        children.append(("", module))
        return module
    }

    private static func childPrefix(_ prefix: String, _ name: String) -> String { name.isEmpty ? prefix : prefix + name + "." }

    /// Every parameter with its dotted name, trainable or frozen.
    public func namedParameters(prefix: String = "") -> [(name: String, tensor: Tensor)] {
        var out = ownParameters.map { (prefix + $0.name, $0.tensor) }
        for (n, m) in children { out += m.namedParameters(prefix: Module.childPrefix(prefix, n)) }
        return out
    }

    /// The parameters that receive gradients.
    public func trainableParameters() -> [(name: String, tensor: Tensor)] {
        namedParameters().filter { $0.tensor.requiresGrad }
    }

    /// Parameters and buffers in PyTorch `state_dict` order.
    public func stateDict(prefix: String = "") -> [(name: String, tensor: Tensor)] {
        var out = ownParameters.map { (prefix + $0.name, $0.tensor) } + ownBuffers.map { (prefix + $0.name, $0.tensor) }
        for (n, m) in children { out += m.stateDict(prefix: Module.childPrefix(prefix, n)) }
        return out
    }

    /// Copies values from `state` (name → tensor) into this module's parameters and buffers.
    /// Returns the names this module has that `state` lacks and the names of `state` it does not use.
    @discardableResult
    public func load(stateDict state: [String: Tensor], strict: Bool = true) throws -> (missing: [String], unexpected: [String]) {
        let mine = stateDict()
        let names = Set(mine.map(\.name))
        let missing = mine.map(\.name).filter { state[$0] == nil }
        let unexpected = state.keys.filter { !names.contains($0) }.sorted()
        if strict && (!missing.isEmpty || !unexpected.isEmpty) {
            throw EngineError.stateDictMismatch(missing: missing, unexpected: unexpected)
        }
        for (name, t) in mine {
            guard let src = state[name] else { continue }
            guard src.shape == t.shape else { throw EngineError.shapeMismatch(name: name, expected: t.shape, found: src.shape) }
            t.copy(from: src)
        }
        return (missing, unexpected)
    }

    /// Sets training mode on this module and every descendant.
    public func train(_ on: Bool = true) {
        isTraining = on
        for (_, m) in children { m.train(on) }
    }

    /// Sets evaluation mode on this module and every descendant.
    public func eval() { train(false) }

    /// Every module of the tree, this one first (depth-first, in registration order).
    public var allModules: [Module] { [self] + children.flatMap { $0.module.allModules } }

    /// Makes every ``BatchNorm1d`` of the tree compute its training statistics over the rows of all
    /// processes of `comm` (PyTorch's `convert_sync_batchnorm`); nil or one process: local statistics.
    public func synchronizeBatchNorm(over comm: (any Communicator)?) {
        for case let bn as BatchNorm1d in allModules { bn.communicator = comm.flatMap { $0.size > 1 ? $0 : nil } }
    }

    /// Total number of parameter elements (trainable and frozen).
    public var parameterCount: Int { namedParameters().reduce(0) { $0 + $1.tensor.count } }
}

/// Errors thrown at the engine's I/O boundaries.
public enum EngineError: Error, CustomStringConvertible {
    case stateDictMismatch(missing: [String], unexpected: [String])
    case shapeMismatch(name: String, expected: [Int], found: [Int])

    public var description: String {
        switch self {
        case let .stateDictMismatch(missing, unexpected):
            return "state dict mismatch: missing \(missing.prefix(5))\(missing.count > 5 ? "…" : ""), unexpected \(unexpected.prefix(5))\(unexpected.count > 5 ? "…" : "")"
        case let .shapeMismatch(name, expected, found):
            return "tensor '\(name)' has shape \(found), expected \(expected)"
        }
    }
}
