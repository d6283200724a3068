import XCTest
import Parallelism

/// Per-worker slots written from many threads at once: each worker's values survive,
/// none leaks into another slot, and values with storage of their own (arrays,
/// strings) are kept and released correctly.
final class ConcurrentSlotsTests: XCTestCase {
    func testEachWorkerWritesOnlyItsSlot() {
        for _ in 0..<20 {
            let slots = ConcurrentSlots<[Int]>(count: 8, initial: [])
            slots.forEachWorker { k in
                var mine: [Int] = []
                for i in 0..<2000 { mine.append(k * 100_000 + i) }
                slots[k] = mine
            }
            let values = slots.values
            XCTAssertEqual(values.count, 8)
            for (k, v) in values.enumerated() { XCTAssertEqual(v, (0..<2000).map { k * 100_000 + $0 }, "slot \(k)") }
        }
        let names = ConcurrentSlots<String?>(count: 5, initial: nil)
        names.forEachWorker { k in if k % 2 == 0 { names[k] = "worker \(k)" } }
        XCTAssertEqual(names.values, ["worker 0", nil, "worker 2", nil, "worker 4"])
    }
}
