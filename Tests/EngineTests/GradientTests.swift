import CKernels
import TesseraEngine
import TestSupport
import XCTest

/// Every differentiable op's backward against central finite differences.
final class GradientTests: XCTestCase {
    func t(_ shape: [Int], _ seed: UInt64, _ lo: Float = -1, _ hi: Float = 1) -> Tensor { randomTensor(shape, seed: seed, lo, hi) }

    func testElementwiseAndBroadcasting() {
        let a = t([3, 4, 5], 1), b = t([4, 5], 2), c = t([3, 1, 5], 3), d = t([5], 4, 0.5, 2), s = t([3, 4, 1], 5, 0.5, 2)
        let a2 = t([3, 4, 5], 6)
        assertGradients("add same tensor twice", inputs: [a]) { a + a }
        assertGradients("add", inputs: [a, a2]) { a + a2 }
        assertGradients("sub same shape", inputs: [a, a2]) { a - a2 }
        assertGradients("sub same tensor into a sum", inputs: [a, a2]) { (a - a2) * (a2 - a + a2) }
        assertGradients("add suffix", inputs: [a, b]) { a + b }
        assertGradients("sub middle-1", inputs: [a, c]) { a - c }
        assertGradients("mul vector", inputs: [a, d]) { a * d }
        assertGradients("div trailing-1", inputs: [a, s]) { a / s }
        assertGradients("div vector", inputs: [b, d]) { b / d }
        assertGradients("scalar ops", inputs: [a]) { (a * 3 + 1) / 2 - 0.5 }
        let scalar = t([], 7, 0.5, 2)
        assertGradients("div by rank-0", inputs: [a, scalar]) { a / scalar }
        assertGradients("mul broadcast both ways", inputs: [c, s]) { c * s }
    }

    func testUnary() {
        let p = t([4, 6], 1, 0.2, 2), x = t([4, 6], 2)
        assertGradients("exp", inputs: [x]) { x.exp() }
        assertGradients("log", inputs: [p]) { p.log() }
        assertGradients("sqrt", inputs: [p]) { p.sqrt() }
        assertGradients("pow", inputs: [p]) { p.pow(2.5) }
        assertGradients("neg", inputs: [x]) { -x }
    }

    func testReductionsAndShapes() {
        let x = t([2, 3, 4], 1)
        assertGradients("sum axis 0", inputs: [x]) { x.sum(axis: 0) }
        assertGradients("sum axis 1 keep", inputs: [x]) { x.sum(axis: 1, keepDims: true) }
        assertGradients("mean axis -1", inputs: [x]) { x.mean(axis: -1) }
        assertGradients("sum all", inputs: [x]) { x.sum() }
        assertGradients("mean all", inputs: [x]) { x.mean() }
        assertGradients("reshape", inputs: [x]) { x.reshaped([6, 4]) * x.reshaped([6, 4]) }
        assertGradients("narrow axis 1", inputs: [x]) { x.narrow(axis: 1, start: 1, length: 2) }
        assertGradients("slice leading", inputs: [x]) { x[1..<2] }
        assertGradients("select", inputs: [x]) { x.select(axis: 1, index: 0) }
        assertGradients("transpose", inputs: [x]) { x.transposed() }
        let y = t([2, 1, 4], 2)
        assertGradients("concat", inputs: [x, y]) { concat([y, x], axis: 1) }
        let a = t([3, 5], 3), b = t([5, 4], 4)
        let target = t([3, 5], 5)
        assertGradients("mse", inputs: [a, target]) { mseLoss(a, target) }
        assertGradients("matmul", inputs: [a, b]) { a.matmul(b) }
        let ba = t([2, 3, 5], 6), bb = t([2, 5, 4], 7)
        assertGradients("bmm", inputs: [ba, bb]) { ba.matmul(bb) }
    }

    func testLinearAndNorms() {
        let x = t([2, 3, 6], 1), w = t([5, 6], 2), b = t([5], 3)
        assertGradients("linear", inputs: [x, w, b]) { x.linear(w, b) }
        assertGradients("linear no bias", inputs: [x, w]) { x.linear(w) }
        assertGradients("linearGELU", inputs: [x, w, b]) { x.linearGELU(w, b) }
        let w2 = t([4, 5], 10), b2 = t([4], 11)
        assertGradients("mlp", inputs: [x, w, b, w2, b2]) { x.mlp(w, b, w2, b2) }
        assertGradients("mlp no biases", inputs: [x, w, w2]) { x.mlp(w, nil, w2, nil) }
        let nw = t([6], 12), nb = t([6], 13)
        assertGradients("linear of layerNorm", inputs: [x, nw, nb, w, b]) { x.linear(w, b, norm: .layer(weight: nw, bias: nb, eps: 1e-6)) }
        assertGradients("linear of layerNorm no affine", inputs: [x, w]) { x.linear(w, nil, norm: .layer(weight: nil, bias: nil, eps: 1e-5)) }
        assertGradients("mlp of layerNorm", inputs: [x, nw, nb, w, b, w2, b2]) { x.mlp(w, b, w2, b2, norm: .layer(weight: nw, bias: nb, eps: 1e-6)) }
        let res5 = t([2, 3, 5], 14), res4 = t([2, 3, 4], 16)
        assertGradients("linear with residual", inputs: [x, w, b, res5]) { x.linear(w, b, residual: res5) }
        assertGradients("mlp with residual", inputs: [x, w, b, w2, b2, res4]) { x.mlp(w, b, w2, b2, residual: res4) }
        let batch = RowNorm.batch(weight: nw, bias: nb, eps: 1e-5, runningMean: nil, runningVar: nil, momentum: 0.1)
        assertGradients("linear of batchNorm", inputs: [x, nw, nb, w, b]) { x.linear(w, b, norm: batch) }
        assertGradients("mlp of batchNorm", inputs: [x, nw, nb, w, b, w2, b2]) { x.mlp(w, b, w2, b2, norm: batch) }
        let g = t([4, 7], 4), lw = t([7], 5), lb = t([7], 6)
        assertGradients("layerNorm", inputs: [g, lw, lb]) { g.layerNorm(weight: lw, bias: lb, eps: 1e-6) }
        assertGradients("layerNorm no affine", inputs: [g]) { g.layerNorm(weight: nil, bias: nil, eps: 1e-5) }
        let square = t([7, 7], 15)
        assertGradients("linear of layerNorm with its input as residual", inputs: [g, lw, lb, square]) {
            g.linear(square, nil, norm: .layer(weight: lw, bias: lb, eps: 1e-6), residual: g)
        }
        let r = t([6, 3], 7, -2, 2)
        assertGradients("batchNorm train", inputs: [r]) {
            r.batchNorm(weight: nil, bias: nil, runningMean: nil, runningVar: nil, training: true)
        }
        let bw = t([3], 8), bb = t([3], 9)
        assertGradients("batchNorm train affine", inputs: [r, bw, bb]) {
            r.batchNorm(weight: bw, bias: bb, runningMean: nil, runningVar: nil, training: true)
        }
        let rm = t([3], 10), rv = t([3], 11, 0.5, 2)
        assertGradients("batchNorm eval", inputs: [r, bw, bb]) {
            r.batchNorm(weight: bw, bias: bb, runningMean: rm, runningVar: rv, training: false)
        }
        assertGradients("gelu", inputs: [g]) { g.gelu() }
        // One input, two consumers: the first backward overwrites the fresh gradient, the second adds.
        assertGradients("layerNorm and gelu of one input", inputs: [g, lw, lb]) {
            g.layerNorm(weight: lw, bias: lb, eps: 1e-6) * g.gelu() + (g + g).gelu()
        }
        assertGradients("l2Normalized", inputs: [g]) { g.l2Normalized() }
        assertGradients("standardizedRows", inputs: [g]) { g.standardizedRows() }
    }

    func testSoftmaxFamily() {
        let x = t([3, 8], 1, -3, 3), target = t([3, 8], 2, 0, 1)
        assertGradients("softmax", inputs: [x]) { x.softmax() }
        assertGradients("logSoftmax", inputs: [x]) { x.logSoftmax() }
        assertGradients("crossEntropy soft", inputs: [x, target]) { crossEntropy(logits: x, target: target) }
        assertGradients("crossEntropy labels", inputs: [x]) { crossEntropy(logits: x, labels: [0, 7, 3]) }
    }

    func testAttentionPatchifyAndMasking() {
        for (B, N, H, D) in [(1, 1, 1, 4), (2, 5, 2, 3), (1, 13, 3, 8)] {
            let qkv = t([B, N, 3 * H * D], UInt64(N), -1.5, 1.5)
            assertGradients("fusedAttention N\(N)", inputs: [qkv]) { qkv.fusedAttention(heads: H) }
            assertGradients("fusedAttention plus a second use of qkv N\(N)", inputs: [qkv]) {
                qkv.fusedAttention(heads: H) * qkv.narrow(axis: 2, start: H * D, length: H * D)
            }
        }
        let imgs = t([2, 3, 4, 6], 1)
        assertGradients("patchify", inputs: [imgs]) { imgs.patchify(patchSize: 2) }
        let patches = t([2, 6, 12], 2)
        assertGradients("unpatchify", inputs: [patches]) { patches.unpatchify(patchSize: 2, channels: 3, height: 4, width: 6) }
        var rng = TesseraRNG(seed: 3)
        let m = MaskIndices.random(batch: 2, patches: 8, maskRatio: 0.75, rng: &rng)
        let x = t([2, 8, 3], 4)
        assertGradients("gatherKept", inputs: [x]) { x.gatherKept(m) }
        let shared = MaskIndices.random(batch: 2, patches: 8, maskRatio: 0.5, sharedAcrossBatch: true, rng: &rng)
        assertGradients("gatherKept shared", inputs: [x]) { x.gatherKept(shared) }
        let kept = t([2, 1 + m.keep, 3], 5), token = t([1, 1, 3], 6)
        assertGradients("unshuffled", inputs: [kept, token]) { kept.unshuffled(m, maskToken: token) }
    }
}

/// The fused MLP op is the two-op chain it replaces, bit for bit, forward and every gradient, on
/// each GEMM backend and in both precisions (with bf16 products its GELU runs inside fc2's products
/// and in one backward pass: ck_gelu_linear_forward/backward); and a frozen fc1 (only fc2 trains) gets
/// fc2's gradients alone.
final class MLPOpTests: XCTestCase {
    override class func setUp() { GEMMChoiceGuard.install() }

    func testMLPMatchesLinearGELUThenLinearBitForBit() {
        let computes: [Runtime.Compute] = [.init(gemm: .openBLAS, precision: .fp32), .init(gemm: .tessera, precision: .fp32),
                                           .init(gemm: .tessera, precision: .bf16)]
        for compute in computes { _ = Runtime.withCompute(compute) {
            // Every layer training, then fc1 frozen (no pre-activation gradient), then fc2's weight frozen
            // (no gelu(pre) for its gradient); 37 rows: a last row tile and K block of 1 row, 96 = 3 panels.
            for frozen in ["none", "fc1", "fc2"] {
                var results: [[[Float]]] = []
                for fused in [false, true] {
                    let x = randomTensor([3, 37, 24], seed: 1, requiresGrad: frozen != "fc1")
                    let w1 = randomTensor([96, 24], seed: 2, requiresGrad: frozen != "fc1")
                    let b1 = randomTensor([96], seed: 3, requiresGrad: frozen != "fc1")
                    let w2 = randomTensor([24, 96], seed: 4, requiresGrad: frozen != "fc2"), b2 = randomTensor([24], seed: 5, requiresGrad: true)
                    let y = fused ? x.mlp(w1, b1, w2, b2) : x.linearGELU(w1, b1).linear(w2, b2)
                    (y * y).sum().backward()
                    results.append([y.array] + [x, w1, b1, w2, b2].map { $0.grad?.array ?? [] })
                }
                for (i, name) in ["y", "dx", "dw1", "db1", "dw2", "db2"].enumerated() {
                    XCTAssertEqual(results[0][i], results[1][i], "\(name), \(compute), \(frozen) frozen")
                }
                XCTAssertEqual(results[1].map { $0.isEmpty }, [false] + (frozen == "fc1" ? [true, true, true, false, false]
                    : frozen == "fc2" ? [false, false, false, true, false] : [false, false, false, false, false]), "\(compute), \(frozen) frozen")
            }
        } }
    }

    /// The products that normalize their own input are the norm (LayerNorm, training BatchNorm) then
    /// the product, and a product that adds the residual is the sum, bit for bit, on each GEMM backend:
    /// forward, running statistics, every gradient.
    func testLayerNormProductsMatchTheChainBitForBit() {
        for tessera: Int32 in [0, 1] { _ = Runtime.withGEMM(tessera == 1 ? .tessera : .openBLAS) {
            for product in ["mlp", "linear"] {
                for kind in ["layer", "batch"] {
                    var results: [[[Float]]] = []
                    for fused in [false, true] {
                        let x = randomTensor([3, 37, 24], seed: 1, requiresGrad: true)
                        let nw = randomTensor([24], seed: 6, requiresGrad: true), nb = randomTensor([24], seed: 7, requiresGrad: true)
                        let w1 = randomTensor([96, 24], seed: 2, requiresGrad: true), b1 = randomTensor([96], seed: 3, requiresGrad: true)
                        let w2 = randomTensor([24, 96], seed: 4, requiresGrad: true), b2 = randomTensor([24], seed: 5, requiresGrad: true)
                        let rm = Tensor.zeros([24]), rv = Tensor.ones([24])
                        let norm: RowNorm = kind == "layer" ? .layer(weight: nw, bias: nb, eps: 1e-6)
                            : .batch(weight: nw, bias: nb, eps: 1e-5, runningMean: rm, runningVar: rv, momentum: 0.1)
                        let n = fused ? x : kind == "layer" ? x.layerNorm(weight: nw, bias: nb, eps: 1e-6)
                            : x.reshaped([-1, 24]).batchNorm(weight: nw, bias: nb, runningMean: rm, runningVar: rv, training: true).reshaped([3, 37, 24])
                        // Fused: the product adds the residual itself.
                        let y = product == "mlp" ? (fused ? n.mlp(w1, b1, w2, b2, norm: norm, residual: x) : x + n.mlp(w1, b1, w2, b2))
                            : (fused ? n.linear(w1, b1, norm: norm).linear(w2, b2, residual: x) : x + n.linear(w1, b1).linear(w2, b2))
                        (y * y).sum().backward()
                        // Running statistics: updated once, by the forward.
                        results.append([y.array, rm.array, rv.array] + [x, nw, nb, w1, b1, w2, b2].map { $0.grad!.array })
                    }
                    XCTAssertEqual(results[0], results[1], "\(product) of \(kind)Norm, GEMM backend \(tessera == 1 ? "tessera" : "BLAS")")
                }
            }
        } }
    }

    /// A product's residual takes the output's gradient buffer instead of a copy where that is safe
    /// (`Tensor.receiveGradient(takingOutputGradient:)`): the same bits as the chain `x + f(x)` when the
    /// residual is also the product's input, with and without a norm (the un-normalized linear must copy:
    /// its product writes that gradient while reading the output's), through a chain of blocks; and the
    /// walk's root keeps its own gradient.
    func testResidualTakingTheOutputGradientKeepsTheChainsBits() {
        func run(_ fused: Bool) -> [[Float]] {
            let x = randomTensor([3, 7, 8], seed: 1, requiresGrad: true)
            let w = randomTensor([8, 8], seed: 2, requiresGrad: true), b = randomTensor([8], seed: 3, requiresGrad: true)
            let w1 = randomTensor([16, 8], seed: 4, requiresGrad: true), w2 = randomTensor([8, 16], seed: 5, requiresGrad: true)
            let nw = randomTensor([8], seed: 6, requiresGrad: true), nb = randomTensor([8], seed: 7, requiresGrad: true)
            let ln = RowNorm.layer(weight: nw, bias: nb, eps: 1e-6)
            var h = x
            if fused {
                h = h.linear(w, b, residual: h)                  // the input is the residual, no norm: a copy
                h = h.linear(w, b, norm: ln, residual: h)        // with a norm: the buffer itself
                h = h.mlp(w1, nil, w2, nil, residual: h)         // the MLP without a norm: the buffer itself
                h = h.mlp(w1, nil, w2, nil, norm: ln, residual: h)
            } else {
                h = h + h.linear(w, b)
                h = h + h.layerNorm(weight: nw, bias: nb, eps: 1e-6).linear(w, b)
                h = h + h.mlp(w1, nil, w2, nil)
                h = h + h.layerNorm(weight: nw, bias: nb, eps: 1e-6).mlp(w1, nil, w2, nil)
            }
            (h * h).sum().backward()
            return [h.array] + [x, w, b, w1, w2, nw, nb].map { $0.grad!.array }
        }
        XCTAssertEqual(run(true), run(false))
        // The root of the walk: a product's output whose gradient the caller seeds and reads afterwards.
        // (Its residual also feeds the product's norm, whose backward adds to the residual's gradient.)
        let x = randomTensor([2, 5, 8], seed: 8, requiresGrad: true), w = randomTensor([8, 8], seed: 9, requiresGrad: true)
        let z = x.linear(w, nil), seed = randomTensor([2, 5, 8], seed: 10)
        let y = z.linear(w, nil, norm: .layer(weight: nil, bias: nil, eps: 1e-6), residual: z)
        y.backward(seed: seed)
        XCTAssertEqual(y.grad?.array, seed.array, "the root's gradient is its seed after the walk")
    }

    /// A residual that needs no gradient (a block on constant input) gets none, and the rest train.
    func testResidualWithoutGradient() {
        let x = randomTensor([2, 5, 8], seed: 1)
        let w = randomTensor([8, 8], seed: 2, requiresGrad: true), b = randomTensor([8], seed: 3, requiresGrad: true)
        let w1 = randomTensor([16, 8], seed: 4, requiresGrad: true), w2 = randomTensor([8, 16], seed: 5, requiresGrad: true)
        let h = x.linear(w, b, norm: .layer(weight: nil, bias: nil, eps: 1e-6), residual: x)
        h.mlp(w1, nil, w2, nil, residual: h).sum().backward()
        XCTAssertNil(x.grad)
        for p in [w, b, w1, w2] { XCTAssertNotNil(p.grad) }
    }

    func testFrozenFirstLayerGetsNoGradient() {
        let x = randomTensor([5, 8], seed: 1)
        let w1 = randomTensor([16, 8], seed: 2), w2 = randomTensor([8, 16], seed: 3, requiresGrad: true)
        let b2 = randomTensor([8], seed: 4, requiresGrad: true)
        x.mlp(w1, nil, w2, b2).sum().backward()
        XCTAssertNil(w1.grad)
        XCTAssertNotNil(w2.grad)
        XCTAssertEqual(b2.grad!.array, [Float](repeating: 5, count: 8))
    }
}
