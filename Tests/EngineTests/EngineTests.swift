import CKernels
import TesseraEngine
import TestSupport
import XCTest

final class EngineTests: XCTestCase {
    func testBroadcastShapes() {
        XCTAssertEqual(broadcastShape([3, 4, 5], [4, 5]), [3, 4, 5])
        XCTAssertEqual(broadcastShape([3, 1, 5], [1, 4, 1]), [3, 4, 5])
        XCTAssertEqual(broadcastShape([], [2, 2]), [2, 2])
        XCTAssertNil(broadcastShape([3, 4], [5]))
        let a = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3]), b = Tensor([10, 20], shape: [2, 1])
        XCTAssertEqual((a + b).array, [11, 12, 13, 24, 25, 26])
        XCTAssertEqual((a * Tensor([1, 0, -1], shape: [3])).array, [1, 0, -3, 4, 0, -6])
    }

    func testViewsShareStorageAndSlicesAreCorrect() {
        let x = Tensor((0..<24).map(Float.init), shape: [2, 3, 4])
        XCTAssertEqual(x.reshaped([6, -1]).shape, [6, 4])
        XCTAssertEqual(x[1..<2].array, (12..<24).map(Float.init))
        XCTAssertEqual(x.select(axis: 1, index: 2).array, [8, 9, 10, 11, 20, 21, 22, 23])
        XCTAssertEqual(x.narrow(axis: 2, start: 3, length: 1).array, [3, 7, 11, 15, 19, 23])
        XCTAssertEqual(Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3]).transposed().array, [1, 4, 2, 5, 3, 6])
        XCTAssertEqual(concat([Tensor([1, 2], shape: [2, 1]), Tensor([3, 4, 5, 6], shape: [2, 2])], axis: 1).array, [1, 3, 4, 2, 5, 6])
        XCTAssertEqual(x.sum(axis: 0).shape, [3, 4])
        XCTAssertEqual(x.sum().item, 276)
    }

    func testNoGradScopeRecordsNothing() {
        let w = Tensor([1, 2], shape: [2], requiresGrad: true)
        let y = withNoGrad { w * w }
        XCTAssertFalse(y.requiresGrad)
        let z = (w * w).sum()
        XCTAssertTrue(z.requiresGrad)
        z.backward()
        XCTAssertEqual(w.grad!.array, [2, 4])
        // A second backward accumulates (the optimizer zeroes once per step).
        (w * w).sum().backward()
        XCTAssertEqual(w.grad!.array, [4, 8])
        XCTAssertFalse((w.detach() * 2).requiresGrad)
        // Stop-gradient: d/dw Σ w ⊙ detach(w) = detach(w), not 2w.
        w.zeroGrad()
        (w * w.detach()).sum().backward()
        XCTAssertEqual(w.grad!.array, [1, 2])
    }

    func testFanOutAccumulates() {
        let x = Tensor([3], shape: [1], requiresGrad: true)
        let y = x * x + x * 2 + x.exp()
        y.sum().backward()
        XCTAssertEqual(x.grad!.item, 2 * 3 + 2 + Foundation.exp(3), accuracy: 1e-4)
    }

    /// The backward frees intermediate gradients and graphs as it goes; leaves keep their gradients,
    /// and a gradient a GEMM writes first (no zero-fill, beta = 0) is still exact.
    func testBackwardKeepsOnlyLeafGradients() {
        let x = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3], requiresGrad: true)
        let w = Tensor([1, 0, -1, 2, 1, 0.5], shape: [2, 3], requiresGrad: true)
        let h = x.linear(w)            // [2, 2]
        let y = (h * h).sum()
        y.backward()
        XCTAssertNil(h.grad)
        XCTAssertNotNil(y.grad)
        // h = x·Wᵀ = [[-2, 5.5], [-2, 16]]; dy/dx = 2h·W (written first by the GEMM, with beta = 0)
        XCTAssertEqual(x.grad!.array, [18, 11, 9.5, 60, 32, 20])
        XCTAssertNotNil(w.grad)
    }

    func testRNGIsSeededAndDistributionsAreSane() {
        var a = TesseraRNG(seed: 42), b = TesseraRNG(seed: 42)
        XCTAssertEqual((0..<10).map { _ in a.next() }, (0..<10).map { _ in b.next() })
        var r = TesseraRNG(seed: 1)
        let n = Tensor.randn([20000], rng: &r).array
        let mean = n.reduce(0, +) / Float(n.count)
        let varc = n.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(n.count)
        XCTAssertEqual(mean, 0, accuracy: 0.03); XCTAssertEqual(varc, 1, accuracy: 0.05)
        let tn = Tensor.truncatedNormal([5000], std: 1, a: -0.5, b: 0.5, rng: &r).array
        XCTAssertTrue(tn.allSatisfy { abs($0) <= 0.5 })
        let xv = Tensor.xavierUniform([30, 10], rng: &r).array
        XCTAssertLessThanOrEqual(xv.map(abs).max()!, (6.0 / 40.0).squareRoot())
    }

    func testModuleNamesMatchTimm() {
        var rng = TesseraRNG(seed: 0)
        let block = Block(8, heads: 2, rng: &rng)
        XCTAssertEqual(block.namedParameters().map(\.name), [
            "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
            "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
        ])
        XCTAssertEqual(block.attn.qkv.weight.shape, [24, 8])
        let pe = PatchEmbed(patchSize: 4, channels: 3, dim: 8, rng: &rng)
        XCTAssertEqual(pe.namedParameters().map(\.name), ["proj.weight", "proj.bias"])
        XCTAssertEqual(pe.proj.weight.shape, [8, 3, 4, 4])
        let bn = BatchNorm1d(4)
        XCTAssertEqual(bn.stateDict().map(\.name), ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"])   // as PyTorch's state_dict
    }

    func testPatchEmbedEqualsConvolution() {
        // Conv2d with stride = kernel = p, computed directly, vs the patchify + matmul path.
        var rng = TesseraRNG(seed: 1)
        let (B, C, H, W, p, D) = (2, 3, 8, 4, 2, 5)
        let pe = PatchEmbed(patchSize: p, channels: C, dim: D, rng: &rng)
        let x = Tensor.randn([B, C, H, W], rng: &rng)
        let y = pe(x)
        let w = pe.proj.weight.array, bias = pe.proj.bias.array, xs = x.array
        var want: [Float] = []
        for b in 0..<B { for r in 0..<(H / p) { for c in 0..<(W / p) { for d in 0..<D {
            var acc = Double(bias[d])
            for ch in 0..<C { for i in 0..<p { for j in 0..<p {
                acc += Double(w[((d * C + ch) * p + i) * p + j]) * Double(xs[((b * C + ch) * H + r * p + i) * W + c * p + j])
            } } }
            want.append(Float(acc))
        } } } }
        assertClose(y.array, want, rtol: 1e-5, atol: 1e-5, "patch embedding vs direct convolution")
        let xg = randomTensor([1, C, 4, 4], seed: 3)
        assertGradients("PatchEmbed", inputs: [xg, pe.proj.weight, pe.proj.bias]) { pe(xg) }
    }

    func testSchedules() {
        XCTAssertEqual(Schedule.warmupCosine(iteration: 0, base: 1, warmup: 10, total: 100), 0)
        XCTAssertEqual(Schedule.warmupCosine(iteration: 5, base: 1, warmup: 10, total: 100), 0.5, accuracy: 1e-12)
        XCTAssertEqual(Schedule.warmupCosine(iteration: 10, base: 1, warmup: 10, total: 100), 1, accuracy: 1e-12)
        XCTAssertEqual(Schedule.warmupCosine(iteration: 55, base: 1, warmup: 10, total: 100), 0.5, accuracy: 1e-12)
        XCTAssertEqual(Schedule.warmupCosine(iteration: 100, base: 1, warmup: 10, total: 100, minimum: 0.1), 0.1, accuracy: 1e-12)
        XCTAssertEqual(Schedule.cosine(progress: 0, from: 0.996, to: 1), 0.996, accuracy: 1e-12)
        XCTAssertEqual(Schedule.cosine(progress: 1, from: 0.996, to: 1), 1, accuracy: 1e-12)
        XCTAssertEqual(Schedule.linear(progress: 0.5, from: 0.04, to: 0.4), 0.22, accuracy: 1e-12)
    }

    func testArenaGroupsClippingAndEMA() {
        let w = Tensor([3, 4], shape: [1, 2], requiresGrad: true), b = Tensor([1], shape: [1], requiresGrad: true)
        let arena = ParameterArena([("layer.bias", b), ("layer.weight", w)])
        XCTAssertEqual(arena.entries.map(\.name), ["layer.weight", "layer.bias"])  // decayed group first
        XCTAssertEqual(arena.decayCount, 2)
        XCTAssertEqual(w.array, [3, 4])   // values moved into the arena
        w.grad!.copy(from: Tensor([3, 4], shape: [1, 2]))
        b.grad!.copy(from: Tensor([0], shape: [1]))
        XCTAssertEqual(arena.gradientNorm(), 5, accuracy: 1e-6)
        XCTAssertEqual(arena.clipGradients(maxNorm: 1), 5, accuracy: 1e-6)
        XCTAssertEqual(arena.gradientNorm(), 1, accuracy: 1e-5)
        let tw = Tensor([0, 0], shape: [1, 2])
        emaUpdate(tw, from: w, momentum: 0.75)
        XCTAssertEqual(tw.array, [0.75, 1.0])
    }

    /// startGradients/finishGradients give the gradients zeroGrad and a backward give, bit for bit,
    /// over slices that hold the last step's values: a weight used twice (overwrite, then add), a
    /// bias, and a parameter outside the graph (zeroed at the finish).
    func testStartedGradientsEqualZeroedGradients() {
        var rng = TesseraRNG(seed: 3)
        let x = Tensor.randn([5, 4], rng: &rng)
        func gradients(started: Bool) -> [[Float]] {
            var r = TesseraRNG(seed: 7)
            let w = Tensor.randn([3, 4], rng: &r, requiresGrad: true), b = Tensor.randn([3], rng: &r, requiresGrad: true)
            let unused = Tensor.randn([2], rng: &r, requiresGrad: true)
            let arena = ParameterArena([("w", w), ("b", b), ("unused", unused)])
            arena.gradients!.base.update(repeating: .nan, count: arena.count)   // a last step's leftovers
            if started { arena.startGradients() } else { arena.zeroGrad() }
            let h = x.linear(w, b)
            let y = h.linear(Tensor.randn([4, 3], rng: &r)).linear(w)   // w a second time
            (y * y).sum().backward()
            if started { arena.finishGradients() }
            return [w.grad!.array, b.grad!.array, unused.grad!.array]
        }
        let zeroed = gradients(started: false), started = gradients(started: true)
        XCTAssertEqual(started[2], [0, 0])
        XCTAssertTrue(zeroed[0].allSatisfy(\.isFinite) && zeroed[0].contains { $0 != 0 })
        for (a, b) in zip(zeroed, started) { XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern)) }
    }

    func testFlopCounterCountsMatrixProducts() {
        var rng = TesseraRNG(seed: 0)
        let x = Tensor.randn([4, 8], rng: &rng), w = Tensor.randn([16, 8], rng: &rng)
        ck_flop_counter_reset()
        _ = x.linear(w)
        XCTAssertEqual(ck_flop_counter_read(), 2 * 4 * 16 * 8)
        let qkv = Tensor.randn([2, 5, 3 * 2 * 4], rng: &rng)   // B 2, N 5, H 2, D 4
        ck_flop_counter_reset()
        _ = qkv.fusedAttention(heads: 2)
        XCTAssertEqual(ck_flop_counter_read(), 4 * 2 * 2 * 5 * 5 * 4)
    }

    func testGEMMProfileHasARowPerShape() {
        var rng = TesseraRNG(seed: 0)
        let x = Tensor.randn([4, 8], rng: &rng), w = Tensor.randn([16, 8], rng: &rng), b = Tensor.randn([16], rng: &rng)
        Runtime.profileGEMMs(true)
        _ = x.linear(w)
        _ = x.linear(w)
        _ = Tensor.randn([3, 8], rng: &rng).linear(w, b)
        Runtime.profileGEMMs(false)
        _ = x.linear(w)   // not recorded
        let rows = Runtime.gemmProfile
        XCTAssertEqual(rows.count, 2, "\(rows)")
        XCTAssertEqual(rows.map(\.M), [4, 3])
        XCTAssertEqual(rows.map(\.calls), [2, 1])
        XCTAssertEqual(rows[0].N, 16)
        XCTAssertEqual(rows[0].K, 8)
        XCTAssertTrue(rows[0].transB && !rows[0].transA)
        XCTAssertEqual(rows[0].flops, 2 * 2 * 4 * 16 * 8)
        XCTAssertTrue(rows.allSatisfy { $0.seconds >= 0 && ["tessera", "openblas", "onednn"].contains($0.backend) })
        Runtime.profileGEMMs(true)
        XCTAssertTrue(Runtime.gemmProfile.isEmpty, "turning the profile on clears it")
        Runtime.profileGEMMs(false)
    }
}

/// A graph dropped without a backward pass is freed: no backward closure keeps its own op's output
/// alive (the output holds its node, which holds the closure).
final class GraphLifetimeTests: XCTestCase {
    func testOutputsAreFreedWithoutBackward() {
        var rng = TesseraRNG(seed: 4)
        let x = Tensor.uniform([6, 8], low: 0.5, high: 2, rng: &rng, requiresGrad: true)
        let w = Tensor.randn([5, 8], rng: &rng, requiresGrad: true)
        let ops: [(String, () -> Tensor)] = [
            ("softmax", { x.softmax() }), ("logSoftmax", { x.logSoftmax() }), ("exp", { x.exp() }), ("sqrt", { x.sqrt() }),
            ("l2Normalized", { x.l2Normalized() }), ("standardizedRows", { x.standardizedRows() }), ("gelu", { x.gelu() }),
            ("linear", { x.linear(w) }), ("layerNorm", { x.layerNorm(weight: nil, bias: nil, eps: 1e-5) }),
            ("mul", { x * x }), ("transposed", { x.transposed() }), ("narrow", { x.narrow(axis: 1, start: 2, length: 3) }),
        ]
        for (name, f) in ops {
            weak var weakOut: Tensor?
            do {
                let out = f()
                XCTAssertTrue(out.requiresGrad, name)
                weakOut = out
            }
            XCTAssertNil(weakOut, "\(name): its output outlives the graph (a backward closure holds it)")
        }
    }
}
