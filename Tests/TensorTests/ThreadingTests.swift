import CKernels
import Foundation
import Tensor
import XCTest

final class ThreadingTests: XCTestCase {
    /// Each thread takes its own share in order, then the last item of the thread with the most left.
    func testItemsAreTakenFromTheFrontThenFromTheBackOfTheLongestShare() throws {
        let work = try XCTUnwrap(ck_items_create(10, 3))  // shares 0..<3, 3..<6, 6..<10
        defer { ck_items_free(work) }
        XCTAssertEqual((0..<4).map { _ in ck_items_next(work, 0) }, [0, 1, 2, 9])
        XCTAssertEqual(ck_items_next(work, 2), 6)
        XCTAssertEqual((0..<5).map { _ in ck_items_next(work, 0) }, [5, 4, 8, 3, 7])  // ties: the first thread
        XCTAssertEqual([ck_items_next(work, 1), ck_items_next(work, 2)], [-1, -1])
    }

    /// `parallelItems` hands out every item exactly once at any thread count, nested or not.
    func testParallelItemsTakesEveryItemOnce() {
        let saved = Threading.count
        defer { Threading.count = saved }
        for threads in [1, 2, 3, 8] {
            Threading.count = threads
            for n in [0, 1, 5, 1_000] {
                let seen = UnsafeMutablePointer<Int>.allocate(capacity: max(1, n))
                defer { seen.deallocate() }
                seen.initialize(repeating: 0, count: max(1, n))
                Threading.parallelItems(n) { next in
                    while let item = next() { seen[item] += 1 }  // each item is one thread's: no race
                }
                XCTAssertEqual((0..<n).filter { seen[$0] != 1 }, [], "\(n) items, \(threads) threads")
                var nested = [Int]()
                Threading.parallelFor(1) { _ in
                    Threading.parallelItems(n) { next in while let item = next() { nested.append(item) } }
                }
                XCTAssertEqual(nested, Array(0..<n), "nested: in order on the calling thread")
            }
        }
    }
}
