import CKernels
import TesseraEngine
import TestSupport
import XCTest

/// Thread-count independence above the kernels (each kernel's own check is in OpTableTests): GEMM
/// ops agree to rounding, the optimizer with clipping gives the same bits.
final class ThreadCountTests: XCTestCase {
    override class func setUp() { GEMMChoiceGuard.install() }

    /// Without OpenMP every run is single-threaded: comparing 1 with 3 threads would compare a run with itself.
    override func setUpWithError() throws {
        try XCTSkipUnless(Runtime.hasOpenMP, "built without OpenMP: one thread whatever is asked, nothing to compare")
    }

    /// Runs `body` at 1 and 3 threads and compares every array it returns bit for bit.
    func assertThreadIndependent(_ name: String, file: StaticString = #filePath, line: UInt = #line,
                                 _ body: () -> [[Float]]) {
        let one = withThreads(1, body), many = withThreads(3, body)
        for (i, (a, b)) in zip(one, many).enumerated() { assertBitIdentical(a, b, "\(name) output \(i)", file: file, line: line) }
    }

    /// Forward and backward through an op with a fixed probe: returns [out, grads...].
    func run(_ inputs: [Tensor], _ f: () -> Tensor) -> [[Float]] {
        for t in inputs { t.requiresGrad = true; t.grad = nil }
        let y = f()
        (y * randomTensor(y.shape, seed: 77)).sum().backward()
        return [y.array] + inputs.map { $0.grad!.array }
    }

    /// Linear layers forward and backward at 1 and 3 threads: the same bits on Tessera's GEMM (every
    /// element of C summed by one thread in a fixed order); a BLAS picks kernels and splits by thread
    /// count, so there they must agree to float32 rounding only.
    func testGemmOpsAcrossThreadCounts() {
        let x = randomTensor([96, 50, 64], seed: 1)
        let wl = randomTensor([128, 64], seed: 10), bl = randomTensor([128], seed: 11)
        for tessera in [true, false] { _ = Runtime.withGEMM(tessera ? .tessera : .openBLAS) {
            for (name, f) in [("linear", { x.linear(wl, bl) }), ("linearGELU", { x.linearGELU(wl, bl) })] {
                let one = withThreads(1) { run([x, wl, bl], f) }, many = withThreads(3) { run([x, wl, bl], f) }
                for (a, b) in zip(one, many) {
                    if tessera { assertBitIdentical(a, b, "\(name) on Tessera's GEMM, 1 vs 3 threads") } else {
                        assertClose(a, b, rtol: 1e-4, atol: 1e-4, "\(name) on the BLAS, 1 vs 3 threads")
                    }
                }
            }
        } }
    }

    func testOptimizerIsThreadCountIndependent() {
        assertThreadIndependent("adamw + clip") {
            let p = randomTensor([300, 200], seed: 1, requiresGrad: true), q = randomTensor([200], seed: 2, requiresGrad: true)
            let opt = AdamW([("p", p), ("q.bias", q)], learningRate: 1e-3, betas: (0.9, 0.95), weightDecay: 0.05)
            var norms: [Float] = []
            for s in 0..<3 {
                opt.zeroGrad()
                p.grad!.copy(from: randomTensor([300, 200], seed: UInt64(10 + s)))
                q.grad!.copy(from: randomTensor([200], seed: UInt64(20 + s)))
                norms.append(opt.arena.clipGradients(maxNorm: 1))
                opt.update()
            }
            return [p.array, q.array, norms]
        }
    }
}
