import Foundation
import TesseraData
import TesseraEngine
import TesseraModels
import TestSupport
import XCTest

/// Trains `config` straight through, and again stopped after `stopAfter` epochs then resumed from
/// its checkpoint in a new trainer; asserts the optimized weights are bit-identical and returns both
/// trainers (straight, resumed) for further checks.
func assertResumeIsBitExact(_ config: PretrainConfig, set: ImageSet, stopAfter: Int, name: String, in test: XCTestCase,
                            make: () -> any PretrainingMethod, file: StaticString = #filePath, line: UInt = #line) throws -> (Pretrainer, Pretrainer) {
    func trainer(_ dir: String) throws -> Pretrainer {
        let t = try Pretrainer(config: config, method: make(), train: set, evalSets: nil, runFolder: dir)
        t.logger.logLevel = .warning
        return t
    }
    let base = NSTemporaryDirectory() + "tessera-\(name)-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: base) }
    let straight = try trainer(base + "/straight")
    try straight.train()
    try trainer(base + "/resumed").train(stopAfter: stopAfter)
    let resumed = try trainer(base + "/resumed")
    try resumed.resume()
    try resumed.train()
    func weights(_ t: Pretrainer) -> [Float] { Array(UnsafeBufferPointer(start: t.optimizer.arena.values.base, count: t.optimizer.arena.count)) }
    assertBitIdentical(weights(resumed), weights(straight), "\(name): weights after resume", file: file, line: line)
    let reported = { (t: Pretrainer) in t.method.reportedModel.stateDict().flatMap { $0.tensor.array } }
    assertBitIdentical(reported(resumed), reported(straight), "\(name): reported model after resume", file: file, line: line)
    return (straight, resumed)
}
