import CKernels
import Dispatch

/// Where a stretch of work (`tessera bench`'s training steps) spends its time, by op, with the matrix
/// products taken out: the profile of what a step does besides its products.
///
/// A timeline of clock reads, one as each op's forward ends (every op records itself through one
/// function, which reads the clock first) and one before and after each op's backward. Each forward
/// interval goes to the op that ends it, so it holds the Swift around the op's kernels as well (a
/// method's masks, views and scalars go to the op that follows them); the time between backward ops
/// goes to "autograd walk", and the steps' other parts mark their own intervals (``lap(_:)``:
/// gradient averaging, clipping, AdamW, the EMA teachers). The products inside each interval
/// (the GEMM profile's clock reads, ``Runtime/profileGEMMs(_:)``, which must be on) are subtracted
/// from it and kept beside it (``Row/productSeconds``); fused attention, whose products are in its
/// kernel, is one op. So the rows' seconds and product seconds add up to the profiled time.
///
/// Off (the default) it costs one branch per op. Drive it from the thread that runs ops.
public enum StepProfile {
    /// One row: an op (or a marked part of the step) and its time outside the products.
    public struct Row: Sendable {
        public var name: String
        /// Seconds in its forward intervals and in its backward, products excluded.
        public var forwardSeconds = 0.0, backwardSeconds = 0.0
        /// Seconds of matrix products inside its intervals (Linear and MLP ops hold theirs).
        public var productSeconds = 0.0
        /// Intervals recorded (forward calls plus backward calls).
        public var calls = 0
        public var seconds: Double { forwardSeconds + backwardSeconds }
    }

    nonisolated(unsafe) static var isOn = false
    nonisolated(unsafe) private static var mark: UInt64 = 0
    nonisolated(unsafe) private static var productMark = 0.0
    nonisolated(unsafe) private static var rows: [String: Row] = [:]
    nonisolated(unsafe) private static var order: [String] = []

    /// Clears the profile and starts the timeline now (turn ``Runtime/profileGEMMs(_:)`` on first).
    public static func start() {
        rows = [:]; order = []
        isOn = true
        mark = DispatchTime.now().uptimeNanoseconds
        productMark = ck_gemm_profile_seconds()
    }

    /// Ends the timeline (the time since the last mark goes to "other") and returns the rows in
    /// first-recorded order.
    public static func stop() -> [Row] {
        lap("other")
        isOn = false
        return order.map { rows[$0]! }
    }

    /// Gives the time since the last mark to `name`, as its forward or backward.
    public static func lap(_ name: String, backward: Bool = false) {
        guard isOn else { return }
        let now = DispatchTime.now().uptimeNanoseconds, products = ck_gemm_profile_seconds()
        let inProducts = products - productMark
        let outside = max(0, Double(now - mark) * 1e-9 - inProducts)
        if rows[name] == nil { order.append(name) }
        var row = rows[name] ?? Row(name: name)
        if backward { row.backwardSeconds += outside } else { row.forwardSeconds += outside }
        row.productSeconds += inProducts
        row.calls += 1
        rows[name] = row
        mark = now
        productMark = products
    }
}
