import Foundation
import TesseraEngine
import XCTest

/// Asserts `|actual − expected| ≤ atol + rtol·|expected|` elementwise and, on failure, reports the
/// worst element (index, both values, its error) at the caller's line.
public func assertClose(_ actual: [Float], _ expected: [Float], rtol: Float = 1e-5, atol: Float = 1e-6,
                        _ what: @autoclosure () -> String = "", file: StaticString = #filePath, line: UInt = #line) {
    guard actual.count == expected.count else {
        XCTFail("\(what()): \(actual.count) values, expected \(expected.count)", file: file, line: line)
        return
    }
    var worst = -1
    var worstExcess: Float = 0
    var bad = 0
    for i in 0..<actual.count {
        let err = abs(actual[i] - expected[i])
        let allowed = atol + rtol * abs(expected[i])
        if !(err <= allowed) {   // catches NaN too
            bad += 1
            let excess = err.isNaN ? .infinity : err / allowed
            if worst < 0 || excess > worstExcess { worst = i; worstExcess = excess }
        }
    }
    if worst >= 0 {
        XCTFail("\(what()): \(bad)/\(actual.count) elements out of tolerance (rtol \(rtol), atol \(atol)); worst at [\(worst)]: got \(actual[worst]), expected \(expected[worst]), error \(abs(actual[worst] - expected[worst]))",
                file: file, line: line)
    }
}

/// Asserts two arrays are bit-for-bit identical (reports the first difference).
public func assertBitIdentical(_ a: [Float], _ b: [Float], _ what: @autoclosure () -> String = "",
                               file: StaticString = #filePath, line: UInt = #line) {
    guard a.count == b.count else { XCTFail("\(what()): sizes \(a.count) vs \(b.count)", file: file, line: line); return }
    if let i = (0..<a.count).first(where: { a[$0].bitPattern != b[$0].bitPattern }) {
        XCTFail("\(what()): first difference at [\(i)]: \(a[i]) vs \(b[i])", file: file, line: line)
    }
}

/// Random floats in [lo, hi) from a fixed seed.
public func randomArray(_ n: Int, seed: UInt64, _ lo: Float = -1, _ hi: Float = 1) -> [Float] {
    var rng = TesseraRNG(seed: seed)
    return (0..<n).map { _ in rng.uniform(lo, hi) }
}

/// Random tensor in [lo, hi).
public func randomTensor(_ shape: [Int], seed: UInt64, _ lo: Float = -1, _ hi: Float = 1, requiresGrad: Bool = false) -> Tensor {
    Tensor(randomArray(shape.reduce(1, *), seed: seed, lo, hi), shape: shape, requiresGrad: requiresGrad)
}

/// Checks the backward of `f` against central finite differences.
///
/// The probe loss is `Σ f(inputs) ⊙ r` for a fixed random `r`, accumulated in double. For every
/// input, up to `maxChecks` elements (spread evenly) are perturbed by ±eps; the analytic gradient
/// from ``Tensor/backward(seed:)`` must match `(L(x+eps) − L(x−eps)) / 2eps` within `atol + rtol·|g|`.
public func assertGradients(_ name: String, inputs: [Tensor], eps: Float = 1e-3, rtol: Float = 2e-2,
                            atol: Float = 2e-3, maxChecks: Int = 48, file: StaticString = #filePath, line: UInt = #line,
                            _ f: () -> Tensor) {
    for t in inputs { t.requiresGrad = true; t.grad = nil }
    let out = f()
    let r = randomTensor(out.shape, seed: 4242)
    (out * r).sum().backward()
    let analytic = inputs.map { $0.grad?.array ?? [Float](repeating: 0, count: $0.count) }

    func probe() -> Double {
        withNoGrad {
            let o = f()
            var s = 0.0
            for i in 0..<o.count { s += Double(o.data[i]) * Double(r.data[i]) }
            return s
        }
    }
    for (k, t) in inputs.enumerated() {
        let n = t.count
        let step = max(1, n / maxChecks)
        var numeric: [Float] = [], picked: [Float] = []
        for i in stride(from: 0, to: n, by: step) {
            let orig = t.data[i]
            t.data[i] = orig + eps
            let fp = probe()
            t.data[i] = orig - eps
            let fm = probe()
            t.data[i] = orig
            numeric.append(Float((fp - fm) / (2 * Double(eps))))
            picked.append(analytic[k][i])
        }
        assertClose(picked, numeric, rtol: rtol, atol: atol, "\(name): gradient of input \(k) \(t.shape)", file: file, line: line)
    }
}

/// One tensor of a PyTorch golden fixture file.
public struct FixtureTensor: Decodable {
    public let shape: [Int]
    public let data: [Float]
    public var tensor: Tensor { Tensor(data, shape: shape) }
}

/// Loads a fixture JSON (`{"name": {"shape": [...], "data": [...]}}`) written by Tools/make_fixtures.py.
public func loadFixture(_ url: URL) throws -> [String: FixtureTensor] {
    try JSONDecoder().decode([String: FixtureTensor].self, from: Data(contentsOf: url))
}

/// Runs `body` at `n` threads and restores the previous setting.
public func withThreads<T>(_ n: Int, _ body: () throws -> T) rethrows -> T {
    let before = Runtime.threads
    Runtime.setThreads(n)
    defer { Runtime.setThreads(before) }
    return try body()
}

/// Fails a test that starts with the process on another compute than the one it started with (the
/// backend `TESSERA_GEMM` chose, products in fp32): a test before it changed the backend or the
/// precision and did not put it back (a test that needs another takes it for its own scope, with
/// `Runtime.withCompute` or `Runtime.withGEMM`). The failure names the test
/// that ran last; the default is then restored, so one leak fails one test, not every later one.
/// Installed once per test process by the classes that change backends (their `class func setUp`).
public final class GEMMChoiceGuard: NSObject, XCTestObservation {
    nonisolated(unsafe) private static var installed = false
    private var previous = "(no test yet)"

    public static func install() {
        guard !installed else { return }
        installed = true
        let guardian = GEMMChoiceGuard()
        guardian.check(nil)
        XCTestObservationCenter.shared.addTestObserver(guardian)
    }

    func check(_ testCase: XCTestCase?) {
        let now = Runtime.compute, want = Runtime.defaultCompute
        guard now != want else { return }
        let message = "the process computes with \(now), not its default \(want): a test before this one (last: \(previous)) changed it without restoring it; use Runtime.withCompute"
        if let testCase { testCase.recordFailure(withDescription: message, inFile: #filePath, atLine: #line, expected: true) } else { XCTFail(message) }
        Runtime.restoreDefaultGEMM()
    }

    public func testCaseWillStart(_ testCase: XCTestCase) { check(testCase) }
    public func testCaseDidFinish(_ testCase: XCTestCase) { previous = testCase.name }
}

/// The quick tier (`bash scripts/test.sh --quick`, `TESSERA_QUICK=1`): the same tests on fewer and
/// smaller cases (op-table references below production size, one hostile value per option, three
/// kills); the full tier (`bash scripts/test.sh`, CI) runs them all.
public let quickTier = ProcessInfo.processInfo.environment["TESSERA_QUICK"] == "1"

/// Runs `body` on a thread of its own and fails (instead of hanging the suite) unless it returns
/// within `seconds`; the test goes on either way.
public func assertFinishes(within seconds: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line,
                           _ body: @escaping @Sendable () throws -> Void) {
    let done = DispatchSemaphore(value: 0)
    let failure = LockedBox<String?>(nil)
    let thread = Thread {
        do { try body() } catch { failure.value = "\(error)" }
        done.signal()
    }
    thread.start()
    if done.wait(timeout: .now() + seconds) == .timedOut {
        XCTFail("\(what): still running after \(seconds) s (a hang)", file: file, line: line)
    } else if let message = failure.value {
        XCTFail("\(what): \(message)", file: file, line: line)
    }
}

/// A value shared between threads behind a lock.
public final class LockedBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    public init(_ value: T) { stored = value }
    public var value: T {
        get { lock.lock(); defer { lock.unlock() }; return stored }
        set { lock.lock(); stored = newValue; lock.unlock() }
    }
}

extension XCTestCase {
    /// A new empty folder under the system's temporary directory, removed when the test ends.
    public func scratchDirectory(_ label: String) throws -> String {
        let d = NSTemporaryDirectory() + "tessera-\(label)-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: d) }
        return d
    }
}
