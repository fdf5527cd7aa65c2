import Foundation
import TesseraData
import TesseraEngine
@testable import TesseraModels
import XCTest

final class SpectrumTests: XCTestCase {
    /// RankMe: D equal orthogonal directions give D; features on one line give 1; singular values
    /// 3 : 1 give exp(H(3/4, 1/4)).
    func testEffectiveRankClosedForms() {
        func set(_ rows: [[Float]]) -> FeatureSet {
            FeatureSet(values: rows.flatMap { $0 }, count: rows.count, dim: rows[0].count, labels: Array(repeating: 0, count: rows.count), classCount: 1)
        }
        let flat = set((0..<16).map { n in (0..<4).map { $0 == n % 4 ? (n < 8 ? 1 : -1) : 0 } })
        XCTAssertEqual(Probes.effectiveRank(flat), 4, accuracy: 1e-4)
        let line = set((0..<10).map { n in [1, 2, -1, 0.5].map { $0 * Float(n + 1) } })
        XCTAssertEqual(Probes.effectiveRank(line), 1, accuracy: 2e-3)
        let two = set([[3, 0, 0], [0, 1, 0]])
        let p = [0.75, 0.25]
        XCTAssertEqual(Double(Probes.effectiveRank(two)), Foundation.exp(-p.reduce(0) { $0 + $1 * Foundation.log($1) }), accuracy: 1e-4)
    }
}
