import CKernels

/// The processes of a data-parallel job and the collectives training needs: ``SingleProcess`` for one
/// process, `MPICommunicator` (TesseraDistributed) for several.
///
/// Every collective is deterministic: ``sum(_:)-5vx4k`` adds the processes' values in rank order
/// (0 + 1 + … + W−1), so every process gets the same bits whatever the library's algorithm or
/// message size, and the parameters of all processes stay identical through training. A collective
/// that fails (a process died or stopped answering) ends the whole job: the implementation reports
/// the rank and the cause and aborts, so these calls do not throw.
///
/// The gradient contract of data parallelism: each process differentiates its own loss; the trainer
/// then averages the gradients over the processes. A loss term built on a statistic of the global
/// batch (``Tensor/meanOverProcesses(_:)``, a synchronized BatchNorm) therefore passes its gradient
/// to the local part unscaled: the trainer's average supplies the 1/W.
public protocol Communicator: AnyObject {
    /// This process's index, 0..<size.
    var rank: Int { get }
    /// The number of processes.
    var size: Int { get }
    /// Elementwise sum over the processes, in place, in rank order.
    func sum(_ values: UnsafeMutableBufferPointer<Float>)
    /// Elementwise sum over the processes, in place, in rank order.
    func sum(_ values: UnsafeMutableBufferPointer<Double>)
    /// Copies `bytes` from process `root` to every process.
    func broadcast(_ bytes: UnsafeMutableRawBufferPointer, from root: Int)
    /// Every process's `bytes` (each the same length), concatenated in rank order.
    func allGather(_ bytes: UnsafeRawBufferPointer) -> [UInt8]
}

extension Communicator {
    /// Whether this process is the one that logs and saves (rank 0).
    public var isPrimary: Bool { rank == 0 }

    /// `values` summed over the processes.
    public func sum(_ values: [Float]) -> [Float] {
        var v = values
        if size > 1 { v.withUnsafeMutableBufferPointer { sum($0) } }
        return v
    }

    /// `values` summed over the processes.
    public func sum(_ values: [Double]) -> [Double] {
        var v = values
        if size > 1 { v.withUnsafeMutableBufferPointer { sum($0) } }
        return v
    }

    /// `values` averaged over the processes.
    public func mean(_ values: [Float]) -> [Float] {
        size == 1 ? values : sum(values).map { $0 / Float(size) }
    }

    /// Every process's `values` (each the same count), concatenated in rank order.
    public func allGather(_ values: [Int32]) -> [Int32] {
        guard size > 1 else { return values }
        let bytes = values.withUnsafeBytes { allGather($0) }
        return bytes.withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }
    }

    /// Overwrites `t` with process `root`'s copy.
    public func broadcast(_ t: Tensor, from root: Int = 0) {
        guard size > 1 else { return }
        broadcast(UnsafeMutableRawBufferPointer(start: t.data, count: t.count * MemoryLayout<Float>.stride), from: root)
    }
}

/// One process: every collective is the identity.
public final class SingleProcess: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func sum(_ values: UnsafeMutableBufferPointer<Float>) {}
    public func sum(_ values: UnsafeMutableBufferPointer<Double>) {}
    public func broadcast(_ bytes: UnsafeMutableRawBufferPointer, from root: Int) {}
    public func allGather(_ bytes: UnsafeRawBufferPointer) -> [UInt8] { Array(bytes) }
}

extension Tensor {
    /// The elementwise mean of this tensor over the processes (MSN's `AllReduce` of the mean
    /// prediction). Backward: the gradient reaches this process's tensor unscaled (see
    /// ``Communicator``: the trainer's gradient average supplies the 1/W).
    public func meanOverProcesses(_ comm: any Communicator) -> Tensor {
        guard comm.size > 1 else { return self }
        let x = self
        let out = Tensor(comm.mean(array), shape: shape)
        return out.recorded("meanOverProcesses", [x]) { g in
            ck_unary_backward(CK_SCALE, x.gradTarget(), g, x.data, nil, Int64(x.count), 1)
        }
    }
}
