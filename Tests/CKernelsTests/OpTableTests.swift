import CKernels
import Foundation
import KernelOps
import TesseraEngine
import TestSupport
import XCTest

/// The op table (Tests/KernelOps/OpTable.swift) drives every kernel check: a new kernel is a new row.
final class OpTableTests: XCTestCase {
    override class func setUp() { GEMMChoiceGuard.install() }

    /// Every `ck_` function declared in the public headers has a row, or is named as not a kernel;
    /// every row names only functions that exist.
    func testTableCoversEveryPublicKernel() throws {
        let include = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Sources/CKernels/include").standardized
        let files = try FileManager.default.contentsOfDirectory(atPath: include.path).filter { $0.hasSuffix(".h") }
        XCTAssertFalse(files.isEmpty, "no headers under \(include.path)")
        let declaration = try NSRegularExpression(pattern: #"^[A-Za-z][\w \*]*?\b(ck_\w+)\s*\("#, options: .anchorsMatchLines)
        var declared = Set<String>()
        for f in files {
            let text = try String(contentsOf: include.appendingPathComponent(f), encoding: .utf8)
            for m in declaration.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                declared.insert(String(text[Range(m.range(at: 1), in: text)!]))
            }
        }
        XCTAssertGreaterThan(declared.count, 40)
        let covered = Set(opTable.flatMap(\.kernels))
        for name in declared.sorted() where !covered.contains(name) && notKernels[name] == nil {
            XCTFail("\(name) is declared in Sources/CKernels/include but has no row in the op table")
        }
        for name in covered.union(notKernels.keys).sorted() where !declared.contains(name) {
            XCTFail("the op table names \(name), which no public header declares")
        }
        XCTAssertEqual(Set(opTable.map(\.name)).count, opTable.count, "row names must be unique")
    }

    /// In a TESSERA_CPU build (scripts/test.sh runs avx2 and baseline besides the dispatched one),
    /// the kernels under test are that variant; in the dispatched build, the loader picked the clone
    /// of the CPU's level (an FMA clone on AVX2 and AVX-512 CPUs: a clone list that named Haswell by
    /// model ran the SSE2 clone on every other AVX2 CPU).
    func testTheInstructionSetVariantIsTheOneBuilt() {
        let level = Runtime.cpuLevel
        XCTAssertTrue(["avx512f", "avx2", "baseline"].contains(level), level)
        if let wanted = ProcessInfo.processInfo.environment["TESSERA_CPU"] { XCTAssertEqual(level, wanted) }
        XCTAssertEqual(ck_clones_fuse_multiply_add() == 1, level != "baseline",
                       "the \(level) level should run an FMA clone exactly when it is not baseline")
        print("op table runs on the \(level) kernels")
    }

    /// Which variants this run covers, said where everyone reads it: the dispatched build on a CPU
    /// without AVX-512 cannot run the AVX-512 clones (the AVX2 and baseline phases are forced by
    /// TESSERA_CPU; AVX-512 can only come from the CPU), and the summary lists this skip with its reason.
    func testTheAVX512VariantRanOrTheSkipSaysWhy() throws {
        guard ProcessInfo.processInfo.environment["TESSERA_CPU"] == nil else { return }   // a forced variant: the test above checks it
        try XCTSkipUnless(Runtime.cpuLevel == "avx512f", "this CPU (\(Runtime.cpuLevel)) has no AVX-512: the AVX-512 clones of the kernels were not tested in this run")
        XCTAssertEqual(ck_clones_fuse_multiply_add(), 1)
    }

    /// Gradient buffers for a case: a copy of `prior`, or `fill` everywhere (NaN: an overwriting
    /// kernel must write every element).
    func gradBuffers(_ c: OpCase, prior: [[Float]]?, fill: Float) -> [UnsafeMutablePointer<Float>] {
        c.differentiable.enumerated().map { k, i in
            let n = c.inputs[i].count
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
            if let prior { prior[k].withUnsafeBufferPointer { p.initialize(from: $0.baseAddress!, count: n) } } else {
                p.initialize(repeating: fill, count: n)
            }
            return p
        }
    }

    func arrays(_ bufs: [UnsafeMutablePointer<Float>], _ c: OpCase) -> [[Float]] {
        zip(bufs, c.differentiable).map { Array(UnsafeBufferPointer(start: $0, count: c.inputs[$1].count)) }
    }

    /// The gradients of a case's differentiable inputs for `dout`, by `impl`: overwrite mode on
    /// NaN-poisoned buffers (the reference: zeroed), or accumulate mode onto `prior`.
    func gradients(_ c: OpCase, _ impl: Impl, dout: [Float], prior: [[Float]]? = nil) -> [[Float]] {
        let bufs = gradBuffers(c, prior: prior, fill: impl == .kernel ? .nan : 0)
        defer { bufs.forEach { $0.deallocate() } }
        c.backward!(impl, c.inputs, dout, bufs, prior == nil ? 0 : 1)
        return arrays(bufs, c)
    }

    /// Kernel against reference, forward (every output) and backward in both modes of the contract.
    /// In the quick tier the rows whose reference is a naive product (the GEMMs, Linear, attention)
    /// check their production shapes at sampled entries (their whole double-precision references were
    /// most of this test's time); every other row runs whole.
    /// Prints, per row, how much of its bound the worst element used (`|kernel − reference|` over
    /// `atol + rtol·|reference|`): the figures the rows' tolerances were sized from (a small factor
    /// above the worst of the AVX-512, AVX2 and baseline phases, docs/reliability.md).
    func testKernelsMatchReferences() {
        var sampled = 0
        var usage: [(String, Float)] = []
        defer {
            if sampled > 0 { print("quick tier: \(sampled) production-size op-table cases checked at sampled entries (whole in the full tier)") }
            let rows = usage.map { "\($0.0) \(String(format: "%.2g", $0.1))" }.joined(separator: ", ")
            print("op-table bound usage on the \(Runtime.cpuLevel) kernels, \(Runtime.threads) threads (worst error / bound): \(rows)")
        }
        for op in opTable {
            var used: Float = 0
            func check(_ a: [Float], _ b: [Float], atol: Float, _ what: @autoclosure () -> String) {
                assertClose(a, b, rtol: op.rtol, atol: atol, what())
                used = max(used, boundUsage(a, b, rtol: op.rtol, atol: atol))
            }
            for shape in op.shapes {
                let c = op.make(shape)
                if quickTier, shape == op.production || shape.reduce(1, { $0 * max($1, 1) }) > 1 << 20, let reference = c.sampled {
                    let outputs = c.forward(.kernel, c.inputs)
                    let dout = opRandom(outputs[0].count, seed: 99)
                    let grads = c.backward == nil ? [] : gradients(c, .kernel, dout: dout)
                    for (what, a, b) in reference(c.inputs, outputs, grads, dout) {
                        check(a, b, atol: op.atol, "\(op.name): \(c.label), \(what)")
                    }
                    sampled += 1
                    continue
                }
                let got = c.forward(.kernel, c.inputs), want = c.forward(.reference, c.inputs)
                XCTAssertEqual(got.count, want.count, c.label)
                for (i, (a, b)) in zip(got, want).enumerated() {
                    check(a, b, atol: op.atol, "\(op.name): \(c.label) forward output \(i)")
                }
                guard c.backward != nil else { continue }
                let dout = opRandom(want[0].count, seed: 99)
                let ref = gradients(c, .reference, dout: dout)
                for (k, (a, b)) in zip(gradients(c, .kernel, dout: dout), ref).enumerated() {
                    check(a, b, atol: op.atol, "\(op.name): \(c.label) gradient \(k) (overwrite)")
                }
                let prior = c.differentiable.map { opRandom(c.inputs[$0].count, seed: 98) }
                for (k, a) in gradients(c, .kernel, dout: dout, prior: prior).enumerated() {
                    check(a, zip(prior[k], ref[k]).map { $0 + $1 }, atol: op.atol + 1e-6, "\(op.name): \(c.label) gradient \(k) (accumulate)")
                }
            }
            if op.rtol > 0 || op.atol > 0 { usage.append((op.name, used)) }
        }
    }

    /// The largest `|a − b| / (atol + rtol·|b|)` (0 where both are equal; infinite for a NaN).
    func boundUsage(_ a: [Float], _ b: [Float], rtol: Float, atol: Float) -> Float {
        var worst: Float = 0
        for (x, y) in zip(a, b) where x != y {
            let u = abs(x - y) / (atol + rtol * abs(y))
            worst = u.isNaN ? .infinity : max(worst, u)
        }
        return worst
    }

    /// Each backward against central differences of the reference forward, on the probe loss
    /// `L = Σ dout ⊙ output` (in double), at up to 6 elements of every differentiable input.
    func testBackwardsMatchFiniteDifferences() {
        var checked = 0
        for op in opTable {
            for shape in op.shapes {
                let c = op.make(shape)
                guard c.backward != nil, c.finiteDifferences, c.inputs.reduce(0, { $0 + $1.count }) <= 50_000 else { continue }
                let out = c.forward(.reference, c.inputs)[0]
                let dout = opRandom(out.count, seed: 97)
                func loss(_ inputs: [[Float]]) -> Double {
                    zip(c.forward(.reference, inputs)[0], dout).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
                }
                let analytic = gradients(c, .kernel, dout: dout)
                let typical = analytic.flatMap { $0 }.reduce(Float(0)) { max($0, abs($1)) }
                for (k, i) in c.differentiable.enumerated() {
                    let n = c.inputs[i].count
                    for j in Set([0, n / 3, n / 2, (2 * n) / 3, n - 1, (n * 7 + 3) % n]) {
                        var plus = c.inputs, minus = c.inputs
                        let h = op.fdStep
                        plus[i][j] += h; minus[i][j] -= h
                        let fd = Float((loss(plus) - loss(minus)) / Double(plus[i][j] - minus[i][j]))
                        let an = analytic[k][j]
                        let allowed = op.fdTolerance * (abs(an) + 0.05 * typical) + 1e-4
                        XCTAssertTrue(abs(fd - an) <= allowed,
                                      "\(op.name): \(c.label) d/d input \(i)[\(j)]: backward \(an), finite difference \(fd)")
                        checked += 1
                    }
                }
            }
        }
        XCTAssertGreaterThan(checked, 300)
    }

    /// Every kernel at 1 and 3 threads: the same bits (the BLAS row: to rounding). The production
    /// shapes are above the parallel threshold, so the regions really split.
    func testKernelsAreThreadCountIndependent() throws {
        try XCTSkipUnless(Runtime.hasOpenMP, "built without OpenMP: one thread whatever is asked, nothing to compare")
        for op in opTable {
            for shape in op.shapes {
                let c = op.make(shape)
                func run() -> [[Float]] {
                    let outs = c.forward(.kernel, c.inputs)
                    guard c.backward != nil else { return outs }
                    return outs + gradients(c, .kernel, dout: opRandom(outs[0].count, seed: 96))
                }
                let one = withThreads(1, run), many = withThreads(3, run)
                for (i, (a, b)) in zip(one, many).enumerated() {
                    if op.threadExact { assertBitIdentical(a, b, "\(op.name): \(c.label) result \(i), 1 vs 3 threads") } else {
                        assertClose(a, b, rtol: 1e-4, atol: 1e-4, "\(op.name): \(c.label) result \(i), 1 vs 3 threads")
                    }
                }
            }
        }
    }
}
