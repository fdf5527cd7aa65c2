// Checks the collectives of data-parallel training under `mpirun -np W` (DistributedTests starts it
// as a subprocess; MPI is initialized once per process, so never inside the XCTest process).
//
// Every process generates the whole global batch from one seed, computes the single-process
// reference on all of it (SingleProcess), and the distributed result on its own rows; the two must
// agree within float tolerance, and the fixed-order sum must give every process the same bits.
// Prints one line per check ("ok NAME …" or "FAIL NAME …") on rank 0; exits 1 when any check failed.
import Foundation
import TesseraDistributed
import TesseraEngine
import TesseraModels

let comm: MPICommunicator
do { comm = try MPICommunicator(timeout: 120) } catch { print("FAIL init \(error)"); exit(1) }
let W = comm.size, rank = comm.rank
var failures = 0

/// Reports a check on rank 0; every rank must reach it (the verdict is agreed over the processes).
@MainActor func check(_ name: String, _ passed: Bool, _ detail: String) {
    let all = comm.allGather([passed ? Int32(1) : 0])
    let ok = all.allSatisfy { $0 == 1 }
    if !ok { failures += 1 }
    if rank == 0 { print("\(ok ? "ok" : "FAIL") \(name) \(detail)\(ok ? "" : " (failed on ranks \(all.indices.filter { all[$0] == 0 }))")") }
}

/// ‖a − b‖ / ‖b‖.
func relative(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count, "relative: \(a.count) vs \(b.count) values")
    var d = 0.0, n = 0.0
    for (x, y) in zip(a, b) { d += Double(x - y) * Double(x - y); n += Double(y) * Double(y) }
    return (d / max(n, 1e-30)).squareRoot()
}

func random(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
    var rng = TesseraRNG(seed: seed)
    return (0..<count).map { _ in rng.normal() * scale }
}

/// Rows `rank·n ..< (rank+1)·n` of a row-major `[W·n, C]` array.
@MainActor func mine(_ a: [Float], rows n: Int, columns C: Int) -> [Float] { Array(a[(rank * n * C)..<((rank + 1) * n * C)]) }

// 1. The fixed-order sum: the same bits on every rank, equal to adding the ranks' values in rank order.
for (count, bucket) in [(1, 1 << 20), (7, 1 << 20), (1000, 64), (300_001, 1 << 16)] {
    comm.bucket = bucket
    let parts = (0..<W).map { random(count, seed: 100 + UInt64($0)) }
    var values = parts[rank]
    values.withUnsafeMutableBufferPointer { comm.sum($0) }
    var expected = parts[0]
    for r in 1..<W { for i in 0..<count { expected[i] += parts[r][i] } }
    let bits = values.withUnsafeBytes { Array($0) }
    let gathered = comm.allGather(bits.withUnsafeBytes { $0 })
    let same = (0..<W).allSatisfy { Array(gathered[($0 * bits.count)..<(($0 + 1) * bits.count)]) == bits }
    check("sum-\(count)", same && values == expected, "values \(count), bucket \(bucket): identical on all \(W) ranks: \(same), equal to the rank-order sum: \(values == expected)")
}
comm.bucket = 1 << 20

// 2. SyncBatchNorm: W processes × n rows against one process with W·n rows (forward, dx, dweight, dbias).
do {
    let n = 6, C = 40
    let x = random(W * n * C, seed: 1, scale: 2), g = random(W * n * C, seed: 2)
    func run(_ rows: [Float], _ grad: [Float], _ R: Int, _ c: (any Communicator)?) -> (y: [Float], dx: [Float], dw: [Float], db: [Float], rm: [Float], rv: [Float]) {
        let bn = BatchNorm1d(C)
        bn.communicator = c
        for (i, p) in [bn.weight!, bn.bias!].enumerated() { p.data.update(from: random(C, seed: 10 + UInt64(i)), count: C) }
        let xt = Tensor(rows, shape: [R, C], requiresGrad: true)
        let y = bn(xt)
        y.backward(seed: Tensor(grad, shape: [R, C]))
        return (y.array, xt.grad!.array, bn.weight!.grad!.array, bn.bias!.grad!.array, bn.runningMean.array, bn.runningVar.array)
    }
    let ref = run(x, g, W * n, nil)
    let d = run(mine(x, rows: n, columns: C), mine(g, rows: n, columns: C), n, comm)
    let e = [relative(d.y, mine(ref.y, rows: n, columns: C)), relative(d.dx, mine(ref.dx, rows: n, columns: C)),
             relative(comm.sum(d.dw), ref.dw), relative(comm.sum(d.db), ref.db), relative(d.rm, ref.rm), relative(d.rv, ref.rv)]
    check("sync-batchnorm", e.allSatisfy { $0 <= 1e-5 }, String(format: "relative errors: out %.1e dx %.1e dweight %.1e dbias %.1e running mean %.1e var %.1e", e[0], e[1], e[2], e[3], e[4], e[5]))
}

// 3. MSN: Sinkhorn and the loss (cross-entropy + ME-MAX) on the global batch.
do {
    let n = 5, K = 12, d = 16
    var options = MSNOptions()
    options.prototypes = K; options.outputDim = d; options.hiddenDim = 8; options.focalViews = 0
    let cfg = ViTConfig(imageSize: 8, patchSize: 4, channels: 1, dim: 16, depth: 1, heads: 2)
    var rng = TesseraRNG(seed: 5)
    let reference = MSN(cfg, options: options, rng: &rng)
    rng = TesseraRNG(seed: 5)
    let distributed = MSN(cfg, options: options, rng: &rng)
    distributed.distribute(over: comm)

    let p = random(W * n * K, seed: 3).map { abs($0) + 0.01 }
    let q = MSN.sinkhorn(p, rows: W * n, columns: K, iterations: 3)
    let qd = MSN.sinkhorn(mine(p, rows: n, columns: K), rows: n, columns: K, iterations: 3, comm: comm)
    let es = relative(qd, mine(q, rows: n, columns: K))
    check("sinkhorn", es <= 1e-5, String(format: "relative error %.1e", es))

    let za = random(W * n * d, seed: 6), zt = random(W * n * d, seed: 7)
    func run(_ m: MSN, _ a: [Float], _ t: [Float], _ R: Int) -> (loss: Float, memax: Float, distinct: Int, dz: [Float], dp: [Float]) {
        m.prototypes.grad = nil
        let at = Tensor(a, shape: [R, d], requiresGrad: true)
        let r = m.loss(anchorProjections: at, targetProjections: Tensor(t, shape: [R, d]), prototypes: m.prototypes)
        r.loss.backward()
        return (r.loss.item, r.memax, r.distinct, at.grad!.array, m.prototypes.grad!.array)
    }
    let ref = run(reference, za, zt, W * n)
    let dist = run(distributed, mine(za, rows: n, columns: d), mine(zt, rows: n, columns: d), n)
    // Each process's loss is its rows' mean plus the global ME-MAX: their mean is the global loss, and
    // the mean of the gradients (what the trainer applies) is the global gradient.
    let loss = comm.mean([dist.loss])[0]
    let el = abs(Double(loss - ref.loss)) / abs(Double(ref.loss)), em = abs(Double(dist.memax - ref.memax)) / max(abs(Double(ref.memax)), 1e-12)
    let ez = relative(dist.dz.map { $0 / Float(W) }, mine(ref.dz, rows: n, columns: d))
    let ep = relative(comm.mean(dist.dp), ref.dp)
    check("msn-loss", el <= 1e-5 && em <= 1e-4 && ez <= 1e-5 && ep <= 1e-5 && dist.distinct == ref.distinct,
          String(format: "loss %.1e, ME-MAX %.1e, anchor gradient %.1e, prototype gradient %.1e; distinct prototypes %d vs %d", el, em, ez, ep, dist.distinct, ref.distinct))
}

// 4. SIM: UniGrad with the correlation matrix of the global batch's tokens.
do {
    let n = 10, D = 16
    let cfg = ViTConfig(imageSize: 8, patchSize: 4, channels: 1, dim: D, depth: 1, heads: 2)
    var options = SIMOptions()
    options.projectorDepth = 1; options.predictorDepth = 1; options.decoderHeads = 2
    var rng = TesseraRNG(seed: 9)
    let reference = SIM(cfg, options: options, rng: &rng)
    rng = TesseraRNG(seed: 9)
    let distributed = SIM(cfg, options: options, rng: &rng)
    distributed.distribute(over: comm)
    let p = random(W * n * D, seed: 11), t = random(W * n * D, seed: 12)
    func run(_ m: SIM, _ p: [Float], _ t: [Float], _ R: Int) -> (loss: Float, spread: SIM.TargetSpread, dp: [Float]) {
        let pt = Tensor(p, shape: [R, D], requiresGrad: true)
        let r = m.unigrad(pt, Tensor(t, shape: [R, D]))
        r.loss.backward()
        return (r.loss.item, r.spread, pt.grad!.array)
    }
    let ref = run(reference, p, t, W * n)
    let dist = run(distributed, mine(p, rows: n, columns: D), mine(t, rows: n, columns: D), n)
    let loss = comm.mean([dist.loss])[0]
    let el = abs(Double(loss - ref.loss)) / abs(Double(ref.loss))
    let eg = relative(dist.dp.map { $0 / Float(W) }, mine(ref.dp, rows: n, columns: D))
    let es = relative([dist.spread.rank, dist.spread.centeredRank, dist.spread.shared], [ref.spread.rank, ref.spread.centeredRank, ref.spread.shared])
    check("unigrad", el <= 1e-5 && eg <= 1e-5 && es <= 1e-5, String(format: "loss %.1e, prediction gradient %.1e, monitors %.1e", el, eg, es))
}

comm.finish()
exit(failures == 0 ? 0 : 1)
