/// A reference-counted, 64-byte aligned buffer of `Float`s. Tensors are views into one.
public final class Storage {
    public let base: UnsafeMutablePointer<Float>
    public let count: Int

    /// Allocates `count` floats, zero-filled unless `zeroed` is false (for buffers a kernel
    /// overwrites completely, such as op outputs).
    public init(count: Int, zeroed: Bool = true) {
        precondition(count >= 0, "Storage: negative size \(count)")
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
        if zeroed { raw.initializeMemory(as: UInt8.self, repeating: 0, count: max(count, 1) * 4) }
        base = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        self.count = count
        #if DEBUG
        // Debug builds (the test suite) poison unzeroed buffers, so an op that relies on a zero-filled
        // output instead of writing every element shows up as NaN.
        if !zeroed { base.update(repeating: .nan, count: count) }
        #endif
    }

    deinit { UnsafeMutableRawPointer(base).deallocate() }
}

/// Grow-only scratch memory for kernels that need work space during one call (per-thread attention
/// buffers). Kernels never keep scratch past their return and the engine calls them from one Swift
/// thread, so a single buffer serves every op and the steady-state training step allocates none.
enum Scratch {
    nonisolated(unsafe) private static var buffer = Storage(count: 0, zeroed: false)

    /// At least `count` floats of uninitialized scratch, valid until the next call.
    static func floats(_ count: Int) -> UnsafeMutablePointer<Float> {
        if buffer.count < count { buffer = Storage(count: count, zeroed: false) }
        return buffer.base
    }
}
