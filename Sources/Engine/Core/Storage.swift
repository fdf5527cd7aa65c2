import Foundation

/// A reference-counted, 64-byte aligned buffer of `Float`s. Tensors are views into one.
///
/// Buffers of 64 KiB and more come from ``BufferPool``, which keeps freed buffers for the next
/// allocation of the same size (or of up to half that size): a training step allocates the same
/// sizes every step, so the steady state reuses memory that is already mapped instead of
/// page-faulting its working set again.
public final class Storage {
    public let base: UnsafeMutablePointer<Float>
    public let count: Int
    private let allocatedBytes: Int

    /// Allocates `count` floats, zero-filled unless `zeroed` is false (for buffers a kernel
    /// overwrites completely, such as op outputs).
    public init(count: Int, zeroed: Bool = true) {
        precondition(count >= 0, "Storage: negative size \(count)")
        let bytes = max(count, 1) * 4
        let (raw, allocated) = BufferPool.shared.allocate(bytes: bytes)
        allocatedBytes = allocated
        if zeroed { raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes) }
        base = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        self.count = count
        #if DEBUG
        // Debug builds (the test suite) poison unzeroed buffers, so an op that relies on a zero-filled
        // output instead of writing every element shows up as NaN.
        if !zeroed { base.update(repeating: .nan, count: count) }
        #endif
    }

    deinit { BufferPool.shared.release(UnsafeMutableRawPointer(base), bytes: allocatedBytes) }
}

/// Keeps freed tensor buffers by size for reuse, so the steady-state training step allocates no new
/// pages. glibc hands blocks above 32 MiB back to the kernel on every free, and threads' arenas
/// return memory on their own schedule; measured before this pool: 1-4 million minor page faults
/// in a 3-step MSN benchmark and 18% of its steady-state cycles in the kernel's page-fault path.
///
/// Sizes are rounded up to 4 KiB, and only buffers of at least ``minimumBytes`` are pooled (glibc
/// serves smaller ones from memory it keeps). The pool holds at most ``limitBytes`` of unused
/// buffers; a buffer freed beyond that goes back to the allocator. Thread-safe.
public final class BufferPool: @unchecked Sendable {
    /// The pool every ``Storage`` uses.
    public static let shared = BufferPool()

    /// A pool that may always keep `minimumLimitBytes` of unused buffers (more once more was in use at once).
    public init(minimumLimitBytes: Int = 256 << 20) { self.minimumLimitBytes = minimumLimitBytes }
    private let minimumLimitBytes: Int

    /// Called with the size when memory for a tensor cannot be allocated; the engine cannot go on.
    /// The default stops the program with a message naming the size; a command-line tool may print
    /// one line and exit instead.
    nonisolated(unsafe) public static var onAllocationFailure: (Int) -> Never = { bytes in
        fatalError("out of memory: cannot allocate \(bytes) bytes for a tensor")
    }

    /// 64-byte aligned memory, or ``onAllocationFailure``.
    static func allocateAligned(_ bytes: Int) -> UnsafeMutableRawPointer {
        var p: UnsafeMutableRawPointer?
        guard posix_memalign(&p, 64, max(bytes, 1)) == 0, let p else { onAllocationFailure(bytes) }
        return p
    }

    /// Buffers smaller than this are not pooled.
    public static let minimumBytes = 64 << 10

    private let lock = NSLock()
    private var free: [Int: [UnsafeMutableRawPointer]] = [:]
    private var cached = 0
    private var live = 0
    private var liveHighWater = 0

    /// Unused bytes the pool may hold: the larger of the minimum limit (256 MiB for the shared pool)
    /// and the most ever in use at once, so a step's working set is always kept, and a change of
    /// shapes (another batch size) cannot hoard more than one more working set.
    public var limitBytes: Int { lock.lock(); defer { lock.unlock() }; return unlockedLimit }
    private var unlockedLimit: Int { max(minimumLimitBytes, liveHighWater) }

    /// Bytes of pooled buffers in use.
    public var liveBytes: Int { lock.lock(); defer { lock.unlock() }; return live }

    /// Bytes of pooled buffers currently unused.
    public var cachedBytes: Int { lock.lock(); defer { lock.unlock() }; return cached }

    /// The most bytes of pooled buffers ever in use at once, and ever held (in use plus unused) at once.
    public var highWater: (live: Int, held: Int) { lock.lock(); defer { lock.unlock() }; return (liveHighWater, heldHighWater) }
    private var heldHighWater = 0

    private static func rounded(_ bytes: Int) -> Int { (bytes + 4095) & ~4095 }

    /// A buffer of at least `bytes` and the size actually allocated, which ``release(_:bytes:)`` takes back:
    /// an unused buffer of exactly the rounded size, else the smallest unused one up to
    /// ``reuseSlack`` times larger, else a new one.
    func allocate(bytes: Int) -> (UnsafeMutableRawPointer, Int) {
        guard bytes >= Self.minimumBytes else {
            return (Self.allocateAligned(bytes), bytes)
        }
        var size = Self.rounded(bytes)
        lock.lock()
        defer { lock.unlock() }
        if free[size]?.isEmpty ?? true,
           let larger = free.lazy.filter({ !$0.value.isEmpty && $0.key > size && $0.key <= size * Self.reuseSlack }).map(\.key).min() {
            size = larger
        }
        live += size
        liveHighWater = max(liveHighWater, live)
        if let p = free[size]?.popLast() {
            cached -= size
            return (p, size)
        }
        heldHighWater = max(heldHighWater, live + cached)
        return (Self.allocateAligned(size), size)
    }

    static let reuseSlack = 2

    func release(_ p: UnsafeMutableRawPointer, bytes: Int) {
        guard bytes >= Self.minimumBytes else { releaseAligned(p); return }
        let size = Self.rounded(bytes)
        lock.lock()
        live -= size
        if cached + size <= unlockedLimit {
            free[size, default: []].append(p)
            cached += size
            lock.unlock()
        } else {
            lock.unlock()
            releaseAligned(p)
        }
    }

    /// Returns every unused pooled buffer to the allocator (for a long pause, or after a change of
    /// shapes that will not recur).
    public func trim() {
        lock.lock()
        let all = free.values.flatMap { $0 }
        free = [:]
        cached = 0
        lock.unlock()
        for p in all { releaseAligned(p) }
    }
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

/// Frees memory from ``BufferPool/allocateAligned(_:)`` (outside the pool, whose `free` lists shadow the C function).
private func releaseAligned(_ p: UnsafeMutableRawPointer) { free(p) }
