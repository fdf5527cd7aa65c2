// tessera-bench: kernel microbenchmarks (not a test; its figures are in docs/benchmarks.md).
//
//   swift run -c release tessera-bench [--quick] [--rounds N] [--only memory|attention|gemm|ops]
//
// Every figure is a ratio measured in the same run, A and B alternating round by round, and the
// median over rounds is reported: memory-bound kernels against a plain copy of the same bytes, fused
// attention against a naive GEMM–softmax–GEMM built on the same BLAS, GEMM against the BLAS at 2048³.
import CKernels
import Foundation
import KernelOps
import TesseraEngine

let args = CommandLine.arguments
let quick = args.contains("--quick")
let rounds = args.firstIndex(of: "--rounds").flatMap { Int(args[$0 + 1]) } ?? (quick ? 3 : 7)
let only = args.firstIndex(of: "--only").map { args[$0 + 1] }
func wanted(_ section: String) -> Bool { only == nil || only == section }

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }

/// Seconds per call: repeats `body` until at least `minTime` has passed.
func secondsPerCall(minTime: Double = quick ? 0.02 : 0.08, _ body: () -> Void) -> Double {
    body()
    var n = 0
    let t0 = now()
    repeat { body(); n += 1 } while now() - t0 < minTime
    return (now() - t0) / Double(n)
}

/// Alternates A and B for `rounds` rounds; returns the median seconds of each and the median of the per-round ratios B/A.
func abCompare(_ a: () -> Void, _ b: () -> Void) -> (a: Double, b: Double, ratio: Double) {
    var ta: [Double] = [], tb: [Double] = [], r: [Double] = []
    for _ in 0..<rounds {
        let x = secondsPerCall(a), y = secondsPerCall(b)
        ta.append(x); tb.append(y); r.append(y / x)
    }
    return (median(ta), median(tb), median(r))
}

func buffer(_ n: Int, _ seed: UInt64) -> UnsafeMutablePointer<Float> {
    let p = UnsafeMutablePointer<Float>.allocate(capacity: n)
    var rng = TesseraRNG(seed: seed)
    for i in 0..<n { p[i] = rng.uniform(-1, 1) }
    return p
}

func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
func f1(_ x: Double) -> String { String(format: "%.1f", x) }
func f2(_ x: Double) -> String { String(format: "%.2f", x) }

// The same BLAS kernels and thread settings the `tessera` tool trains with (see
// Runtime.restartWithTunedRuntimeIfNeeded).
Runtime.restartWithTunedRuntimeIfNeeded()

print("tessera-bench: \(Runtime.threads) threads, OpenMP \(Runtime.hasOpenMP ? "on" : "off"), kernels dispatched for \(Runtime.cpuLevel)")
print("GEMM backend: \(Runtime.gemmBackend)")
print("median of \(rounds) alternating rounds\n")

// MARK: memory-bound kernels vs copy

nonisolated(unsafe) var memRatios: [(String, Double)] = []
nonisolated(unsafe) var attnSpeedups: [(Int, Double)] = []

if wanted("memory") {
    print("## memory-bound kernels (GB/s counts bytes read + written; ratio = kernel GB/s / memcpy GB/s of the same bytes, median of the per-round ratios)\n")
    print("| kernel | shape | kernel GB/s | copy GB/s | ratio |")
    print("|---|---|---|---|---|")

    struct MemCase { let name: String; let shape: String; let bytes: Int; let run: () -> Void }

    func memCases(rows R: Int, cols C: Int, label: String) -> [MemCase] {
        let n = R * C
        let x = buffer(n, 1), y = buffer(n, 2), mean = buffer(R, 3), rstd = buffer(R, 4), w = buffer(C, 5), b = buffer(C, 6)
        let dx = buffer(n, 7), dy = buffer(n, 8)
        let rr = Int64(R), cc = Int64(C)
        return [
            MemCase(name: "softmax fwd", shape: label, bytes: 8 * n) { ck_softmax_forward(y, x, rr, cc) },
            MemCase(name: "softmax bwd", shape: label, bytes: 16 * n) { ck_softmax_backward(ck_grad(data: dx, accumulate: 0), dy, y, rr, cc) },
            MemCase(name: "layernorm fwd", shape: label, bytes: 8 * n) { ck_layernorm_forward(y, mean, rstd, x, w, b, rr, cc, 1e-6) },
            MemCase(name: "layernorm bwd (dx)", shape: label, bytes: 12 * n) { ck_layernorm_backward(ck_grad(data: dx, accumulate: 0), ck_grad(), ck_grad(), dy, x, w, mean, rstd, nil, rr, cc) },
            MemCase(name: "gelu fwd", shape: label, bytes: 8 * n) { ck_gelu_forward(y, x, Int64(n)) },
            MemCase(name: "gelu bwd", shape: label, bytes: 12 * n) { ck_gelu_backward(ck_grad(data: dx, accumulate: 0), dy, x, Int64(n)) },
            MemCase(name: "residual add (binary)", shape: label, bytes: 12 * n) {
                var flat = Int64(n), unit: Int64 = 1
                ck_binary_forward(CK_ADD, y, x, &unit, dx, &unit, &flat, 1) },
        ]
    }

    /// Patchify of a batch and the encoder's gather of the kept 25% of patch rows (width D).
    func maskingCases(B: Int, C: Int, H: Int, W: Int, P: Int, D: Int) -> [MemCase] {
        let n = B * C * H * W
        let imgs = buffer(n, 11), out = buffer(n, 12)
        let L = (H / P) * (W / P)
        var rng = TesseraRNG(seed: 1)
        let m = MaskIndices.random(batch: B, patches: L, maskRatio: 0.75, rng: &rng)
        let ids = m.idsKeep
        let x = buffer(B * L * D, 13), g = buffer(B * m.keep * D, 14)
        return [
            MemCase(name: "patchify fwd", shape: "[\(B), \(C), \(H), \(W)] p\(P)", bytes: 8 * n) {
                ck_patchify_forward(out, imgs, Int64(B), Int64(C), Int64(H), Int64(W), Int64(P)) },
            MemCase(name: "gather kept rows", shape: "[\(B), \(L)→\(m.keep), \(D)]", bytes: 8 * B * m.keep * D) {
                ids.withUnsafeBufferPointer { ck_gather_rows_forward(g, x, $0.baseAddress, Int64(m.keep), Int64(B), Int64(L), Int64(m.keep), Int64(D)) } },
        ]
    }
    // MAE vit-tiny on 28×28, patch 4: B·N = 256·50 tokens of 192 channels (9.8 MB, larger than L2);
    // ViT-Base at 224², patch 16: 256·197 tokens of 768. Patchify and gather for MAE on Fashion-MNIST
    // (0.8 MB of images) and ImageNet-sized MAE (38.5 MB of images and of patch rows).
    let cases = memCases(rows: 256 * 50, cols: 192, label: "[12800, 192]")
        + (quick ? [] : memCases(rows: 256 * 197, cols: 768, label: "[50432, 768]"))
        + maskingCases(B: 256, C: 1, H: 28, W: 28, P: 4, D: 192)
        + (quick ? [] : maskingCases(B: 64, C: 3, H: 224, W: 224, P: 16, D: 768))

    // Round by round over all kernels (each kernel and its copy back to back), so that a burst of
    // noise from other tenants of the machine lands in one round of several kernels, which the median
    // drops, rather than in every round of one kernel.
    let maxWords = cases.map { $0.bytes / 8 }.max() ?? 0   // a copy moves words read + words written
    let src = buffer(maxWords, 9), dst = buffer(maxWords, 10)
    var kernelTimes = [[Double]](repeating: [], count: cases.count), copyTimes = kernelTimes, ratios = kernelTimes
    for _ in 0..<rounds {
        for (i, c) in cases.enumerated() {
            let tk = secondsPerCall(c.run), tc = secondsPerCall { memcpy(dst, src, c.bytes / 8 * 4) }
            kernelTimes[i].append(tk); copyTimes[i].append(tc); ratios[i].append(tc / tk)
        }
    }
    for (i, c) in cases.enumerated() {
        let gk = Double(c.bytes) / median(kernelTimes[i]) / 1e9, gc = Double(c.bytes) / median(copyTimes[i]) / 1e9
        let ratio = median(ratios[i])
        memRatios.append(("\(c.name) \(c.shape)", ratio))
        print("| \(c.name) | \(c.shape) | \(f1(gk)) | \(f1(gc)) | \(f2(ratio)) |")
    }

    // MARK: attention

}
if wanted("attention") {
    print("\n## fused attention fwd+bwd vs naive GEMM–softmax–GEMM on the same BLAS (B·H = 768, D = 64)\n")
    print("Memory floor: a memcpy moving the bytes the fused pair must move (forward reads qkv and writes out;")
    print("backward reads qkv and dout and writes dqkv; both sides overwrite dqkv), measured in the same run.\n")
    print("| N | fused ms | naive ms | speedup | memory floor ms | fused / floor |")
    print("|---|---|---|---|---|---|")

    /// The naive version: per (b, h), S = Q Kᵀ·scale and O = P V on the BLAS (reading the packed qkv
    /// with its row stride, no copies), a softmax kernel, and the full P [B·H, N, N] kept for the backward.
    func naiveAttention(qkv: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>, P: UnsafeMutablePointer<Float>,
                        dqkv: UnsafeMutablePointer<Float>, dout: UnsafeMutablePointer<Float>, dP: UnsafeMutablePointer<Float>,
                        dS: UnsafeMutablePointer<Float>, B: Int, N: Int, H: Int, D: Int, scale: Float) {
        let ld = Int64(3 * H * D), ldo = Int64(H * D), n = Int64(N), d = Int64(D)
        for bh in 0..<(B * H) {
            let b = bh / H, h = bh % H
            let q = qkv + b * N * 3 * H * D + h * D, k = q + H * D
            let s = P + bh * N * N
            ck_sgemm(0, 1, n, n, d, scale, q, ld, k, ld, 0, s, n)
        }
        ck_softmax_forward(P, P, Int64(B * H * N), n)
        for bh in 0..<(B * H) {
            let b = bh / H, h = bh % H
            let v = qkv + b * N * 3 * H * D + h * D + 2 * H * D
            ck_sgemm(0, 0, n, d, n, 1, P + bh * N * N, n, v, ld, 0, out + b * N * H * D + h * D, ldo)
        }
        // backward
        for bh in 0..<(B * H) {
            let b = bh / H, h = bh % H
            let q = qkv + b * N * 3 * H * D + h * D, v = q + 2 * H * D
            let dv = dqkv + b * N * 3 * H * D + h * D + 2 * H * D
            let go = dout + b * N * H * D + h * D
            ck_sgemm(1, 0, n, d, n, 1, P + bh * N * N, n, go, ldo, 0, dv, ld)           // dV = Pᵀ dO
            ck_sgemm(0, 1, n, n, d, 1, go, ldo, v, ld, 0, dP + bh * N * N, n)            // dP = dO Vᵀ
        }
        ck_softmax_backward(ck_grad(data: dS, accumulate: 0), dP, P, Int64(B * H * N), n)
        for bh in 0..<(B * H) {
            let b = bh / H, h = bh % H
            let q = qkv + b * N * 3 * H * D + h * D, k = q + H * D
            let dq = dqkv + b * N * 3 * H * D + h * D, dk = dq + H * D
            ck_sgemm(0, 0, n, d, n, scale, dS + bh * N * N, n, k, ld, 0, dq, ld)         // dQ = scale dS K
            ck_sgemm(1, 0, n, d, n, scale, dS + bh * N * N, n, q, ld, 0, dk, ld)         // dK = scale dSᵀ Q
        }
    }

    for N in quick ? [13, 50] : [13, 50, 197] {
        let H = 12, B = 768 / H, D = 64
        let qkv = buffer(B * N * 3 * H * D, 1), out = buffer(B * N * H * D, 2), dout = buffer(B * N * H * D, 3)
        let dqkv = buffer(B * N * 3 * H * D, 4), lse = buffer(B * H * N, 5)
        let scratch = buffer(Int(ck_attention_scratch_floats(Int64(N), Int64(D))) * Runtime.threads, 6)
        let P = buffer(B * H * N * N, 7), dP = buffer(B * H * N * N, 8), dS = buffer(B * H * N * N, 9)
        let scale = 1 / Float(D).squareRoot()
        let fused = {
            ck_attention_forward(out, lse, qkv, scratch, Int64(B), Int64(N), Int64(H), Int64(D), scale)
            ck_attention_backward(ck_grad(data: dqkv, accumulate: 0), dout, qkv, lse, scratch, Int64(B), Int64(N), Int64(H), Int64(D), scale)
        }
        let naive = { naiveAttention(qkv: qkv, out: out, P: P, dqkv: dqkv, dout: dout, dP: dP, dS: dS, B: B, N: N, H: H, D: D, scale: scale) }
        let (tf, tn, r) = abCompare(fused, naive)
        let words = (3 * B * N * 3 * H * D + 2 * B * N * H * D) / 2   // half the bytes read, half written
        let src = buffer(words, 10), dst = buffer(words, 11)
        let (tc, _, floorRatio) = abCompare({ memcpy(dst, src, words * 4) }, fused)
        attnSpeedups.append((N, r))
        print("| \(N) | \(f2(tf * 1e3)) | \(f2(tn * 1e3)) | \(f2(r))x | \(f2(tc * 1e3)) | \(f2(floorRatio)) |")
    }

    // MARK: GEMM

}
if wanted("gemm") {
    // ck_sgemm on the linked BLAS (or oneDNN) against Tessera's own ck_matmul, whatever TESSERA_GEMM chose.
    let tesseraWasDefault = Runtime.gemmBackend.hasPrefix("Tessera")
    ck_gemm_use_tessera(0)
    defer { ck_gemm_use_tessera(tesseraWasDefault ? 1 : 0) }
    print("\n## GEMM: ck_sgemm on \(Runtime.gemmBackend) (GFLOP/s, share of its 2048³ rate in the same round) against Tessera's ck_matmul\n")
    print("| shape (M×K · K×N) | what | GFLOP/s | share of 2048³ | Tessera ck_matmul GFLOP/s | ck_matmul / ck_sgemm |")
    print("|---|---|---|---|---|---|")
    let big = 2048
    let A = buffer(big * big, 1), Bm = buffer(big * big, 2), Cm = buffer(big * big, 3)
    let peakRun = { ck_sgemm(0, 0, Int64(big), Int64(big), Int64(big), 1, A, Int64(big), Bm, Int64(big), 0, Cm, Int64(big)) }
    let peakFlops = 2.0 * Double(big * big * big)
    let shapes: [(Int, Int, Int, String, Int32, Int32)] = [
        (12800, 192, 576, "vit-tiny qkv fwd", 0, 1),
        (12800, 192, 768, "vit-tiny fc1 fwd", 0, 1),
        (12800, 768, 192, "vit-tiny fc2 fwd", 0, 1),
        (768, 12800, 192, "vit-tiny fc1 weight grad (Tᵀ·N)", 1, 0),
        (12800, 768, 192, "vit-tiny fc1 input grad (N·N)", 0, 0),
        (3328, 192, 576, "MAE encoder qkv fwd (25% of 256·52 tokens)", 0, 1),
        (768, 3328, 192, "MAE encoder fc1 weight grad (Tᵀ·N)", 1, 0),
        (192, 3328, 768, "MAE encoder fc2 weight grad (Tᵀ·N)", 1, 0),
        (12800, 128, 384, "MAE decoder qkv fwd", 0, 1),
        (12800, 512, 128, "MAE decoder fc2 fwd", 0, 1),
        (128, 12800, 512, "MAE decoder fc2 weight grad (Tᵀ·N)", 1, 0),
        (2048, 2048, 2048, "square (the reference shape)", 0, 0),
    ]
    // Each shape's two calls on operands allocated once, for this table and the bf16 one below.
    struct ProductCase { let label: String; let flops: Double; let sgemm: () -> Void; let matmul: () -> Void }
    let cases = (quick ? Array(shapes.prefix(2)) : shapes).map { M, K, N, what, ta, tb in
        let a = buffer(M * K, 4), b = buffer(K * N, 5), c = buffer(M * N, 6)
        let lda = Int64(ta == 0 ? K : M), ldb = Int64(tb == 0 ? N : K)
        return ProductCase(label: "\(M)×\(K) · \(K)×\(N) | \(what)", flops: 2.0 * Double(M * K * N),
                           sgemm: { ck_sgemm(ta, tb, Int64(M), Int64(N), Int64(K), 1, a, lda, b, ldb, 0, c, Int64(N)) },
                           matmul: { ck_matmul(ta, tb, Int64(M), Int64(N), Int64(K), 1, a, lda, b, ldb, 0, c, Int64(N)) })
    }
    do {
        let tPeak = median((0..<rounds).map { _ in secondsPerCall(peakRun) })
        print("| 2048×2048 · 2048×2048 | peak reference | \(f1(peakFlops / tPeak / 1e9)) | 1.00 | | |")
        for p in cases {
            let (tp, ts, _) = abCompare(peakRun, p.sgemm)
            let (_, to, speedup) = abCompare(p.sgemm, p.matmul)
            let g = p.flops / ts / 1e9, go = p.flops / to / 1e9
            print("| \(p.label) | \(f1(g)) | \(f2(g / (peakFlops / tp / 1e9))) | \(f1(go)) | \(f2(1 / speedup)) |")
        }
    }

    // Tessera's GEMM in bf16 against the `vdpbf16ps` peak (12 independent chains per thread, timed in the
    // same round) and against itself in fp32.
    if ck_bf16_peak_run(1) > 0 {
        print("\n## bf16 products: Tessera's ck_matmul in bf16 (\(Runtime.bf16Tile)) against the vdpbf16ps peak and against fp32 ck_matmul\n")
        print("| shape (M×K · K×N) | what | bf16 GFLOP/s | share of the bf16 peak | fp32 GFLOP/s | bf16 / fp32 |")
        print("|---|---|---|---|---|---|")
        let iterations: Int64 = 2_000_000
        var flops: UInt64 = 0
        let peak = { flops = ck_bf16_peak_run(iterations) }
        let tPeak = median((0..<rounds).map { _ in secondsPerCall(peak) })
        print("| peak | \(Runtime.threads) threads × 12 vdpbf16ps chains | \(f1(Double(flops) / tPeak / 1e9)) | 1.00 | | |")
        for p in cases {
            let bf16 = { _ = Runtime.withCompute(.init(gemm: .tessera, precision: .bf16), p.matmul) }
            let (tp, tb16, _) = abCompare(peak, bf16)
            let (_, _, ratio) = abCompare(p.matmul, bf16)
            let g = p.flops / tb16 / 1e9
            print("| \(p.label) | \(f1(g)) | \(f2(g / (Double(flops) / tp / 1e9))) | \(f1(g * ratio)) | \(f2(1 / ratio)) |")
        }
    }

    // The Linear layer's epilogues on Tessera's GEMM: the fused call against the product alone, and
    // against the product followed by the separate pass the BLAS path runs.
    ck_gemm_use_tessera(1)
    print("\n## Linear epilogues on Tessera's GEMM (ms per call: ck_linear_forward, whose bias rides on the product's tiles and whose GELU is a pass of its own, against the product alone and against the product followed by the BLAS path's passes)\n")
    print("| shape (R×Din → Dout) | epilogue | product alone | ck_linear_forward | product + passes | ck_linear_forward / (product + passes) |")
    print("|---|---|---|---|---|---|")
    for (R, I, O) in quick ? [(3328, 192, 768)] : [(3328, 192, 768), (12800, 128, 512), (12800, 192, 768)] {
        let x = buffer(R * I, 4), w = buffer(O * I, 5), bias = buffer(O, 6), out = buffer(R * O, 7), pre = buffer(R * O, 8)
        let (r, i, o) = (Int64(R), Int64(I), Int64(O))
        let product = { ck_matmul(0, 1, r, o, i, 1, x, i, w, i, 0, out, o) }
        for gelu: Int32 in [0, 1] {
            let fused = { ck_linear_forward(out, pre, x, w, bias, r, i, o, gelu) }
            let separate = {
                ck_matmul(0, 1, r, o, i, 1, x, i, w, i, 0, gelu == 1 ? pre : out, o)
                if gelu == 1 { ck_bias_gelu_forward(out, pre, bias, r, o) } else { ck_bias_add_forward(out, out, bias, r, o) }
            }
            let (tp, tf, _) = abCompare(product, fused)
            let (_, ts, ratio) = abCompare(fused, separate)
            print("| \(R)×\(I) → \(O) | \(gelu == 1 ? "bias + GELU" : "bias") | \(f2(tp * 1e3)) | \(f2(tf * 1e3)) | \(f2(ts * 1e3)) | \(f2(1 / ratio)) |")
        }
    }

}
if wanted("ops") {
    print("\n## every op-table row at its production shape (Tests/KernelOps): forward and backward against a copy of the bytes they move\n")
    print("Bytes: the inputs read and the outputs written (backward: inputs, the output gradient, the input gradients).")
    print("The gradients are written in overwrite mode, as a gradient's first contribution is.\n")
    print("| row | shape | forward ms | forward / copy | backward ms | backward / copy |")
    print("|---|---|---|---|---|---|")
    let src = buffer(1 << 24, 9), dst = buffer(1 << 24, 10)
    /// Kernel time and the copy-to-kernel time ratio for `bytes` moved (the copy capped at 64 MB).
    func timed(_ bytes: Int, _ run: () -> Void) -> (ms: Double, ratio: Double) {
        let words = min(bytes / 8, 1 << 24)
        let scale = Double(bytes / 8) / Double(max(words, 1))
        var tk: [Double] = [], r: [Double] = []
        for _ in 0..<rounds {
            let k = secondsPerCall(run), c = secondsPerCall { memcpy(dst, src, words * 4) } * scale
            tk.append(k); r.append(c / k)
        }
        return (median(tk) * 1e3, median(r))
    }
    for op in opTable {
        guard let shape = op.production else { continue }
        let c = op.make(shape)
        let outs = c.forward(.kernel, c.inputs)
        let inBytes = 4 * c.inputs.reduce(0) { $0 + $1.count }, outBytes = 4 * outs.reduce(0) { $0 + $1.count }
        let fwd = timed(inBytes + outBytes) { _ = c.forward(.kernel, c.inputs) }
        var bwdText = "| – | – |"
        if let backward = c.backward {
            let dout = opRandom(outs[0].count, seed: 5)
            let grads = c.differentiable.map { UnsafeMutablePointer<Float>.allocate(capacity: c.inputs[$0].count) }
            let gBytes = 4 * c.differentiable.reduce(0) { $0 + c.inputs[$1].count }
            let bwd = timed(inBytes + 4 * dout.count + gBytes) { backward(.kernel, c.inputs, dout, grads, 0) }
            grads.forEach { $0.deallocate() }
            bwdText = "| \(f2(bwd.ms)) | \(f2(bwd.ratio)) |"
        }
        print("| \(op.name) | \(c.label) | \(f2(fwd.ms)) | \(f2(fwd.ratio)) " + bwdText)
    }
    print("\nA row's closures include what its kernel needs around it: they allocate and zero their outputs, and the")
    print("backward of softmax, attention and the norms reruns the forward for its saved statistics. These are upper")
    print("bounds on the kernels alone; the memory-bound and attention sections above time the kernels themselves.")
}
// The summary names only the sections that ran (`--only` skips the others).
var summary: [String] = []
if let worst = memRatios.min(by: { $0.1 < $1.1 }) {
    summary.append("memory-bound min ratio \(f2(worst.1)) (\(worst.0); target >= 0.70)")
}
if !attnSpeedups.isEmpty {
    summary.append("attention speedups " + attnSpeedups.map { "N=\($0.0): \(f2($0.1))x" }.joined(separator: ", ") + " (target >= 1.5x)")
}
if !summary.isEmpty { print("\nsummary: " + summary.joined(separator: "; ")) }
