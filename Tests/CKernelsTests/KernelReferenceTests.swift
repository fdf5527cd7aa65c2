import CKernels
import CKernelsRef
import TesseraEngine
import TestSupport
import XCTest

/// Every kernel against its naive reference in Tests/CKernelsRef, over random shapes and edge cases
/// (one row, odd sizes, D not a multiple of the vector width, N = 1, N = 257).
final class KernelReferenceTests: XCTestCase {
    func testPatchifyAndUnpatchifyMatchReference() {
        for (B, C, H, W, P) in [(1, 1, 4, 4, 2), (2, 3, 8, 12, 4), (3, 1, 28, 28, 4), (1, 5, 6, 9, 3), (2, 2, 7, 7, 7)] {
            let imgs = randomArray(B * C * H * W, seed: 1)
            var got = [Float](repeating: 0, count: imgs.count), want = got
            ck_patchify_forward(&got, imgs, Int64(B), Int64(C), Int64(H), Int64(W), Int64(P))
            ref_patchify(&want, imgs, Int64(B), Int64(C), Int64(H), Int64(W), Int64(P))
            assertBitIdentical(got, want, "patchify \(B)x\(C)x\(H)x\(W)/\(P)")
            var back = [Float](repeating: 0, count: imgs.count)
            ck_unpatchify_forward(&back, got, Int64(B), Int64(C), Int64(H), Int64(W), Int64(P))
            assertBitIdentical(back, imgs, "unpatchify round trip")
        }
    }

    func testMaskingIdsAreAStableArgsort() {
        for (B, L, K) in [(1, 1, 1), (2, 16, 4), (3, 49, 12), (4, 196, 49), (1, 257, 64)] {
            var noise = randomArray(B * L, seed: UInt64(L), 0, 1)
            // Ties must keep patch order: quantize some of the noise to force equal values.
            for i in stride(from: 0, to: noise.count, by: 3) { noise[i] = (noise[i] * 4).rounded() / 4 }
            var s = [Int32](repeating: 0, count: B * L), r = s, keep = [Int32](repeating: 0, count: B * K)
            var mask = [Float](repeating: 0, count: B * L)
            var sR = s, rR = r, keepR = keep, maskR = mask
            var scratch = [UInt64](repeating: 0, count: B * L)
            ck_masking_ids(&s, &r, &keep, &mask, &scratch, noise, Int64(B), Int64(L), Int64(K))
            ref_masking_ids(&sR, &rR, &keepR, &maskR, noise, Int64(B), Int64(L), Int64(K))
            XCTAssertEqual(s, sR); XCTAssertEqual(r, rR); XCTAssertEqual(keep, keepR); XCTAssertEqual(mask, maskR)
            for b in 0..<B {
                XCTAssertEqual(mask[(b * L)..<((b + 1) * L)].reduce(0, +), Float(L - K))
                for l in 0..<L { XCTAssertEqual(Int(s[b * L + Int(r[b * L + l])]), l) }
            }
        }
    }

    func testGatherAndUnshuffleMatchReference() {
        for (B, L, K, D, S) in [(1, 4, 1, 1, 0), (2, 16, 4, 5, 1), (3, 49, 12, 17, 1), (2, 257, 64, 64, 1)] {
            let noise = randomArray(B * L, seed: 5, 0, 1)
            let m = MaskIndices(noise: Tensor(noise, shape: [B, L]), keep: K)
            let x = randomArray(B * L * D, seed: 6)
            var got = [Float](repeating: 0, count: B * K * D), want = got
            ck_gather_rows_forward(&got, x, m.idsKeep, Int64(K), Int64(B), Int64(L), Int64(K), Int64(D))
            ref_gather_rows(&want, x, m.idsKeep, Int64(K), Int64(B), Int64(L), Int64(K), Int64(D))
            assertBitIdentical(got, want, "gather")
            let xs = randomArray(B * (S + K) * D, seed: 7), token = randomArray(D, seed: 8)
            var u = [Float](repeating: 0, count: B * (S + L) * D), uR = u
            ck_unshuffle_forward(&u, xs, token, m.idsRestore, Int64(B), Int64(S), Int64(L), Int64(K), Int64(D))
            ref_unshuffle(&uR, xs, token, m.idsRestore, Int64(B), Int64(S), Int64(L), Int64(K), Int64(D))
            assertBitIdentical(u, uR, "unshuffle")
        }
        // Shared permutation: every sample keeps the same positions.
        let noise = randomArray(10, seed: 9, 0, 1)
        let m = MaskIndices(noise: Tensor(noise, shape: [1, 10]), keep: 3, batch: 4)
        let x = randomArray(4 * 10 * 2, seed: 10)
        var got = [Float](repeating: 0, count: 4 * 3 * 2), want = got
        var sharedIds: [Int32] = []
        for _ in 0..<4 { sharedIds += m.idsKeep }
        ck_gather_rows_forward(&got, x, m.idsKeep, 0, 4, 10, 3, 2)
        ref_gather_rows(&want, x, sharedIds, 3, 4, 10, 3, 2)
        assertBitIdentical(got, want, "shared gather")
    }

    func testSoftmaxFamilyMatchesReference() {
        for (R, C) in [(1, 1), (3, 7), (5, 257), (2, 1024)] {
            let x = randomArray(R * C, seed: UInt64(C), -40, 40)
            let t = randomArray(R * C, seed: 3, 0, 1)
            var got = [Float](repeating: 0, count: R * C), want = got
            ck_softmax_forward(&got, x, Int64(R), Int64(C)); ref_softmax(&want, x, Int64(R), Int64(C))
            assertClose(got, want, rtol: 1e-5, atol: 1e-7, "softmax \(R)x\(C)")
            ck_log_softmax_forward(&got, x, Int64(R), Int64(C)); ref_log_softmax(&want, x, Int64(R), Int64(C))
            assertClose(got, want, rtol: 1e-5, atol: 1e-5, "log_softmax \(R)x\(C)")
            var l = [Float](repeating: 0, count: R), lR = l
            ck_cross_entropy_forward(&l, x, t, Int64(R), Int64(C)); ref_cross_entropy(&lR, x, t, Int64(R), Int64(C))
            assertClose(l, lR, rtol: 1e-4, atol: 1e-3, "cross_entropy \(R)x\(C)")
        }
    }

    func testSoftmaxHandlesInfinitiesAndExtremes() {
        let x: [Float] = [0, -.infinity, 1, -.infinity, 100, -100, 88, -87]
        var y = [Float](repeating: 0, count: 8), want = y
        ck_softmax_forward(&y, x, 2, 4); ref_softmax(&want, x, 2, 4)
        XCTAssertEqual(y[1], 0); XCTAssertEqual(y[3], 0)
        assertClose(y, want, rtol: 1e-6, atol: 1e-7, "softmax with -inf")
        // Extremes: exp underflows to exactly 0 and large logits do not overflow.
        let big: [Float] = [1000, 0, -1000, 50]
        var yb = [Float](repeating: 0, count: 4), wb = yb
        ck_softmax_forward(&yb, big, 1, 4); ref_softmax(&wb, big, 1, 4)
        XCTAssertEqual(yb, wb)
    }

    /// A NaN input (a diverged run) must come out as NaN, not as a finite value the loss check would miss.
    func testNaNPropagatesThroughExpBasedKernels() {
        let x: [Float] = [0.5, .nan, -1, 2, -100, 30, .nan, 0.25]
        var y = [Float](repeating: 0, count: 8)
        ck_gelu_forward(&y, x, 8)
        XCTAssertTrue(y[1].isNaN && y[6].isNaN, "gelu of NaN: \(y)")
        XCTAssertEqual(y[4], 0, "gelu far in the left tail")
        var dx = [Float](repeating: 0, count: 8)
        ck_gelu_backward(&dx, [Float](repeating: 1, count: 8), x, 8, 0)
        XCTAssertTrue(dx[1].isNaN && dx[6].isNaN, "gelu backward of NaN: \(dx)")
        ck_softmax_forward(&y, x, 2, 4)
        XCTAssertTrue(y[0..<4].allSatisfy(\.isNaN) && y[4..<8].allSatisfy(\.isNaN), "softmax rows holding a NaN: \(y)")
    }

    func testFusedAttentionMatchesReference() {
        // N ≤ 16 with D a multiple of 16 takes the short-sequence path (13, 9, 16, 1, 5 below).
        for (B, N, H, D) in [(1, 1, 1, 1), (2, 2, 3, 5), (2, 13, 3, 64), (1, 50, 2, 17), (1, 257, 2, 16), (1, 9, 1, 128),
                             (2, 49, 4, 32), (1, 100, 2, 80), (1, 16, 2, 32), (3, 1, 2, 16), (2, 5, 1, 48)] {
            let qkv = randomArray(B * N * 3 * H * D, seed: UInt64(N * D), -2, 2)
            let scale = 1 / Float(D).squareRoot()
            var out = [Float](repeating: 0, count: B * N * H * D), outR = out, lse = [Float](repeating: 0, count: B * H * N)
            var scratch = [Float](repeating: 0, count: Int(ck_attention_scratch_floats(Int64(N), Int64(D))) * Runtime.threads)
            ck_attention_forward(&out, &lse, qkv, &scratch, Int64(B), Int64(N), Int64(H), Int64(D), scale)
            ref_attention_forward(&outR, qkv, Int64(B), Int64(N), Int64(H), Int64(D), scale)
            assertClose(out, outR, rtol: 1e-4, atol: 1e-5, "attention forward B\(B) N\(N) H\(H) D\(D)")
            let dout = randomArray(out.count, seed: 11)
            // Overwrite mode: whatever dqkv held before is replaced.
            var dqkv = [Float](repeating: .nan, count: qkv.count), dqkvR = [Float](repeating: 0, count: qkv.count)
            ck_attention_backward(&dqkv, dout, qkv, lse, &scratch, Int64(B), Int64(N), Int64(H), Int64(D), scale, 0)
            ref_attention_backward(&dqkvR, dout, qkv, Int64(B), Int64(N), Int64(H), Int64(D), scale)
            assertClose(dqkv, dqkvR, rtol: 1e-3, atol: 1e-4, "attention backward B\(B) N\(N) H\(H) D\(D)")
            // Accumulate mode adds onto what is there.
            let prior = randomArray(qkv.count, seed: 5)
            var acc = prior
            ck_attention_backward(&acc, dout, qkv, lse, &scratch, Int64(B), Int64(N), Int64(H), Int64(D), scale, 1)
            assertClose(acc, zip(prior, dqkvR).map { $0 + $1 }, rtol: 1e-3, atol: 1e-4, "attention backward accumulate N\(N) D\(D)")
        }
    }

    func testNormsAndActivationMatchReference() {
        for (R, C) in [(1, 2), (3, 7), (17, 64), (5, 193), (64, 3)] {
            let x = randomArray(R * C, seed: UInt64(R * C), -3, 5)
            let w = randomArray(C, seed: 1), b = randomArray(C, seed: 2)
            var got = [Float](repeating: 0, count: R * C), want = got
            var mean = [Float](repeating: 0, count: max(R, C)), rstd = mean
            ck_layernorm_forward(&got, &mean, &rstd, x, w, b, Int64(R), Int64(C), 1e-6)
            ref_layernorm(&want, x, w, b, Int64(R), Int64(C), 1e-6)
            assertClose(got, want, rtol: 1e-4, atol: 1e-5, "layernorm \(R)x\(C)")
            ck_standardize_forward(&got, &mean, &rstd, x, Int64(R), Int64(C), 1e-6)
            ref_standardize(&want, x, Int64(R), Int64(C), 1e-6)
            assertClose(got, want, rtol: 1e-4, atol: 1e-5, "standardize \(R)x\(C)")
            ck_l2norm_forward(&got, &mean, x, Int64(R), Int64(C), 1e-12)
            ref_l2norm(&want, x, Int64(R), Int64(C), 1e-12)
            assertClose(got, want, rtol: 1e-5, atol: 1e-6, "l2norm \(R)x\(C)")
            ck_gelu_forward(&got, x, Int64(R * C)); ref_gelu(&want, x, Int64(R * C))
            assertClose(got, want, rtol: 1e-5, atol: 1e-6, "gelu")
            if R > 1 {
                var rm = [Float](repeating: 0, count: C), rv = [Float](repeating: 1, count: C)
                ck_batchnorm_forward(&got, &mean, &rstd, &rm, &rv, x, w, b, Int64(R), Int64(C), 1e-5, 0.1, 1)
                ref_batchnorm_train(&want, x, w, b, Int64(R), Int64(C), 1e-5)
                assertClose(got, want, rtol: 1e-4, atol: 1e-5, "batchnorm \(R)x\(C)")
            }
        }
    }

    func testOptimizerStepsMatchReference() {
        for (N, Nd) in [(1, 0), (7, 3), (5000, 4000)] {
            var p = randomArray(N, seed: 1), m = [Float](repeating: 0, count: N), v = m
            var pR = p, mR = m, vR = v
            for step in 1...4 {
                let g = randomArray(N, seed: UInt64(step + 10))
                ck_adamw_step(&p, &m, &v, g, Int64(N), Int64(Nd), 1e-2, 0.9, 0.95, 1e-8, 0.05, Int64(step))
                ref_adamw(&pR, &mR, &vR, g, Int64(N), Int64(Nd), 1e-2, 0.9, 0.95, 1e-8, 0.05, Int64(step))
            }
            assertClose(p, pR, rtol: 1e-5, atol: 1e-6, "adamw N=\(N)")
        }
        var t = randomArray(100, seed: 1)
        let s = randomArray(100, seed: 2), t0 = t
        ck_ema_update(&t, s, 100, 0.996)
        assertClose(t, (0..<100).map { 0.996 * t0[$0] + 0.004 * s[$0] }, rtol: 1e-6, atol: 1e-7, "ema")
        let g = randomArray(10_001, seed: 3)
        var scratch = [Double](repeating: 0, count: Int(ck_sum_squares_scratch(10_001)))
        let ss = ck_sum_squares(g, 10_001, &scratch)
        XCTAssertEqual(ss, g.reduce(0.0) { $0 + Double($1) * Double($1) }, accuracy: 1e-9 * ss)
    }

    func testGemmMatchesReference() {
        for (M, K, N) in [(1, 1, 1), (3, 5, 7), (64, 33, 17)] {
            let a = randomArray(M * K, seed: 1), b = randomArray(K * N, seed: 2)
            var c = [Float](repeating: 0, count: M * N), cR = c
            ck_sgemm(0, 0, Int64(M), Int64(N), Int64(K), 1, a, Int64(K), b, Int64(N), 0, &c, Int64(N))
            ref_matmul(&cR, a, b, Int64(M), Int64(K), Int64(N))
            assertClose(c, cR, rtol: 1e-5, atol: 1e-5, "sgemm \(M)x\(K)x\(N)")
        }
    }

    /// Both GEMM backends against the reference, every transpose combination, alpha and beta, with
    /// row strides wider than the rows (oneDNN is loaded at run time: skipped where libdnnl is absent).
    func testBothGemmBackendsMatchReference() throws {
        _ = Runtime.threads   // the engine's TESSERA_GEMM choice is made first, then restored below
        let wasOneDNN = String(cString: ck_gemm_backend()).hasPrefix("oneDNN")
        defer { _ = ck_gemm_use_onednn(wasOneDNN ? 1 : 0) }
        var backends: [Int32] = [0]
        if ck_gemm_use_onednn(1) == 0 { backends.append(1) }
        for useOneDNN in backends {
            _ = ck_gemm_use_onednn(useOneDNN)
            for (M, K, N) in [(1, 1, 1), (5, 3, 7), (40, 17, 33)] {
                for (ta, tb) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let lda = (ta == 0 ? K : M) + 2, ldb = (tb == 0 ? N : K) + 1, ldc = N + 3
                    let a = randomArray((ta == 0 ? M : K) * lda, seed: 1), b = randomArray((tb == 0 ? K : N) * ldb, seed: 2)
                    let c0 = randomArray(M * ldc, seed: 3)
                    var c = c0, want = c0
                    ck_sgemm(Int32(ta), Int32(tb), Int64(M), Int64(N), Int64(K), 0.5, a, Int64(lda), b, Int64(ldb), 2, &c, Int64(ldc))
                    for i in 0..<M {
                        for j in 0..<N {
                            var acc = 0.0
                            for k in 0..<K {
                                acc += Double(ta == 0 ? a[i * lda + k] : a[k * lda + i]) * Double(tb == 0 ? b[k * ldb + j] : b[j * ldb + k])
                            }
                            want[i * ldc + j] = Float(0.5 * acc + 2 * Double(c0[i * ldc + j]))
                        }
                    }
                    assertClose(c, want, rtol: 1e-5, atol: 1e-5, "\(useOneDNN == 1 ? "oneDNN" : "OpenBLAS") sgemm \(ta)\(tb) \(M)x\(K)x\(N)")
                }
            }
        }
    }
}
