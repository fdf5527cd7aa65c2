@testable import TesseraEngine
import XCTest

final class BufferPoolTests: XCTestCase {
    func testFreedBufferIsReusedForTheSameSize() {
        let pool = BufferPool()
        let (p, size) = pool.allocate(bytes: 100_000)
        XCTAssertEqual(size, 102_400, "sizes round up to 4 KiB")
        pool.release(p, bytes: size)
        XCTAssertEqual(pool.cachedBytes, size)
        let (q, size2) = pool.allocate(bytes: 100_001)
        XCTAssertEqual(q, p)
        XCTAssertEqual(size2, size)
        XCTAssertEqual(pool.cachedBytes, 0)
        XCTAssertEqual(pool.liveBytes, size)
        pool.release(q, bytes: size2)
        pool.trim()
        XCTAssertEqual(pool.cachedBytes, 0)
    }

    func testLargerBufferServesASmallerRequestUpToTwiceItsSize() {
        let pool = BufferPool()
        let (big, bigSize) = pool.allocate(bytes: 150 << 10)
        pool.release(big, bytes: bigSize)
        let (tooSmall, tooSmallSize) = pool.allocate(bytes: 70 << 10)   // 150 KiB > 2 × 72 KiB: not reused
        XCTAssertNotEqual(tooSmall, big)
        XCTAssertEqual(tooSmallSize, 72 << 10)
        let (p, size) = pool.allocate(bytes: 100 << 10)
        XCTAssertEqual(p, big)
        XCTAssertEqual(size, bigSize, "the buffer goes back under its real size")
        pool.release(p, bytes: size)
        pool.release(tooSmall, bytes: tooSmallSize)
        XCTAssertEqual(pool.liveBytes, 0)
        pool.trim()
    }

    func testSmallBuffersAreNotPooled() {
        let pool = BufferPool()
        let (p, size) = pool.allocate(bytes: 1000)
        XCTAssertEqual(size, 1000)
        pool.release(p, bytes: size)
        XCTAssertEqual(pool.cachedBytes, 0)
        XCTAssertEqual(pool.liveBytes, 0)
    }

    func testUnusedBytesStayWithinTheLimit() {
        let pool = BufferPool(minimumLimitBytes: 1 << 20)
        // 24 buffers of 128 KiB in use at once: the high-water mark (3 MiB) becomes the limit.
        let held = (0..<24).map { _ in pool.allocate(bytes: 128 << 10) }
        XCTAssertEqual(pool.limitBytes, 3 << 20)
        for (p, s) in held { pool.release(p, bytes: s) }
        XCTAssertEqual(pool.cachedBytes, 3 << 20)
        // Other sizes now: the pool may not grow past its limit.
        let other = (0..<40).map { _ in pool.allocate(bytes: 300 << 10) }
        for (p, s) in other { pool.release(p, bytes: s) }
        XCTAssertLessThanOrEqual(pool.cachedBytes, pool.limitBytes)
        XCTAssertEqual(pool.liveBytes, 0)
        pool.trim()
        XCTAssertEqual(pool.cachedBytes, 0)
    }

    func testReusedStorageIsZeroedWhenAskedFor() {
        let count = 40_000   // 160 KB: pooled
        do {
            let dirty = Storage(count: count, zeroed: false)
            dirty.base.update(repeating: 7, count: count)
        }
        let clean = Storage(count: count)
        XCTAssertTrue(UnsafeBufferPointer(start: clean.base, count: count).allSatisfy { $0 == 0 })
    }

    func testConcurrentUseKeepsTheAccounts() {
        let pool = BufferPool(minimumLimitBytes: 4 << 20)
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            for j in 0..<200 {
                let (p, s) = pool.allocate(bytes: (64 + 16 * ((i + j) % 5)) << 10)
                p.storeBytes(of: UInt64(i), as: UInt64.self)
                XCTAssertEqual(p.load(as: UInt64.self), UInt64(i))
                pool.release(p, bytes: s)
            }
        }
        XCTAssertEqual(pool.liveBytes, 0)
        XCTAssertLessThanOrEqual(pool.cachedBytes, pool.limitBytes)
        pool.trim()
    }
}
