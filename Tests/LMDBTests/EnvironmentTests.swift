import XCTest
import LMDB
import TestSupport

final class EnvironmentTests: XCTestCase {
    func testPutGetScanAndRollback() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let env = try Environment(path: dir, databases: [DatabaseSpec("a"), DatabaseSpec("d", duplicateKeys: true)], create: true)
        let a = try XCTUnwrap(env.database("a"))
        try env.write { txn in
            for i in 0..<100 { try txn.put(a, key: [UInt8(i)], value: [UInt8](repeating: UInt8(i), count: i + 1)) }
        }
        struct Boom: Error {}
        XCTAssertThrowsError(try env.write { txn in
            try txn.put(a, key: [200], value: [1])
            throw Boom()
        })
        try env.read { txn in
            XCTAssertEqual(try txn.get(a, key: [7]), [UInt8](repeating: 7, count: 8))
            XCTAssertNil(try txn.get(a, key: [200]), "a thrown body must roll back")
            var keys: [UInt8] = []
            try txn.scan(a, from: [90]) { k, _ in keys.append(k[0]); return true }
            XCTAssertEqual(keys, Array(90..<100))
            XCTAssertEqual(try txn.count(a), 100)
            XCTAssertEqual(try txn.lastKey(a), [99])
        }
    }

    func testMapGrowsInsteadOfMapFull() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A 256 KiB map cannot hold 16 MiB: the environment must grow it by itself.
        let env = try Environment(path: dir, databases: [DatabaseSpec("blobs")], create: true, initialMapSize: 256 << 10)
        let db = try XCTUnwrap(env.database("blobs"))
        let start = env.mapSize
        let blob = [UInt8](repeating: 0xAB, count: 1 << 20)
        for batch in 0..<4 {
            try env.write { txn in
                for i in 0..<4 { try txn.put(db, key: [UInt8(batch), UInt8(i)], value: blob) }
            }
        }
        XCTAssertGreaterThan(env.mapSize, start)
        let count = try env.read { try $0.count(db) }
        XCTAssertEqual(count, 16)
        // A second, read-only environment in the same test sees the grown file.
        let reader = try Environment(path: dir, databases: [DatabaseSpec("blobs")], readOnly: true)
        let rdb = try XCTUnwrap(reader.database("blobs"))
        XCTAssertEqual(try reader.read { try $0.get(rdb, key: [3, 3]) }, blob)
    }

    func testCompactCopyReadsTheSame() throws {
        let dir = Fixtures.temporaryDirectory()
        let copy = Fixtures.temporaryDirectory("copy")
        defer { try? FileManager.default.removeItem(atPath: dir); try? FileManager.default.removeItem(atPath: copy) }
        let env = try Environment(path: dir, databases: [DatabaseSpec("a")], create: true)
        let a = try XCTUnwrap(env.database("a"))
        try env.write { txn in for i in 0..<50 { try txn.put(a, key: [UInt8(i)], value: [UInt8(i), 1, 2]) } }
        try env.write { txn in for i in 0..<25 { try txn.delete(a, key: [UInt8(i)]) } }
        try env.copy(to: copy, compact: true)
        let c = try Environment(path: copy, databases: [DatabaseSpec("a")], readOnly: true)
        let ca = try XCTUnwrap(c.database("a"))
        XCTAssertEqual(try c.read { try $0.count(ca) }, 25)
        XCTAssertEqual(try c.read { try $0.get(ca, key: [30]) }, [30, 1, 2])
    }

    func testOpeningAMissingDatabaseReadOnlyFails() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try Environment(path: dir, databases: [DatabaseSpec("a")], create: true)
        XCTAssertThrowsError(try Environment(path: dir, databases: [DatabaseSpec("zzz")], readOnly: true)) { error in
            XCTAssertTrue((error as? LMDBError)?.isNotFound ?? false, "\(error)")
        }
    }
}

/// The caller's own error type through `read` and `write` (typed throws), with
/// LMDB's failures arriving inside it; a full map is still grown for such a body.
final class TypedTransactionTests: XCTestCase {
    struct AppError: LMDBFailureCarrying, Equatable {
        var reason: String
        var lmdbError: LMDBError?
        init(_ reason: String) { self.reason = reason; lmdbError = nil }
        init(_ lmdb: LMDBError) { reason = "lmdb"; lmdbError = lmdb }
        static func == (a: Self, b: Self) -> Bool { a.reason == b.reason }
    }

    func testBodiesThrowTheirOwnTypeAndLMDBFailuresArriveInIt() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let env = try Environment(path: dir, databases: [DatabaseSpec("a")], create: true, initialMapSize: 128 << 10)
        let a = try XCTUnwrap(env.database("a"))
        let blob = [UInt8](repeating: 7, count: 256 << 10)
        // Twice the initial map inside one typed body: the map grows and the body re-runs.
        try env.write { (txn) throws(AppError) -> Void in
            do throws(LMDBError) {
                try txn.put(a, key: [1], value: blob)
                try txn.put(a, key: [2], value: blob)
            } catch { throw AppError(error) }
        }
        let n = try env.read { (txn) throws(AppError) -> Int in
            do throws(LMDBError) { return try txn.count(a) } catch { throw AppError(error) }
        }
        XCTAssertEqual(n, 2)
        // The body's own error comes out as itself, typed; the write is rolled back.
        do {
            try env.write { (txn) throws(AppError) -> Void in
                do throws(LMDBError) { try txn.put(a, key: [3], value: [1]) } catch { throw AppError(error) }
                throw AppError("no")
            }
            XCTFail("the body threw")
        } catch {
            XCTAssertEqual(error, AppError("no"))  // `error` is AppError here: typed throws
        }
        XCTAssertNil(try env.read { try $0.get(a, key: [3]) })
        // An LMDB failure inside the body (a key too long for LMDB) arrives wrapped.
        do {
            try env.write { (txn) throws(AppError) -> Void in
                do throws(LMDBError) { try txn.put(a, key: [UInt8](repeating: 1, count: 4096), value: [1]) } catch { throw AppError(error) }
            }
            XCTFail("an over-long key must fail")
        } catch {
            XCTAssertEqual(error.reason, "lmdb")
            XCTAssertNotNil(error.lmdbError, "\(error)")
        }
    }

    /// Readers on several threads while another grows the map: the lock orders map
    /// growth against every transaction, and no reader sees a torn value.
    func testReadsDuringMapGrowth() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let env = try Environment(path: dir, databases: [DatabaseSpec("a")], create: true, initialMapSize: 128 << 10)
        let a = try XCTUnwrap(env.database("a"))
        try env.write { txn in try txn.put(a, key: [0], value: [UInt8](repeating: 9, count: 1000)) }
        let start = env.mapSize
        let failures = ConcurrentFailures()
        DispatchQueue.concurrentPerform(iterations: 3) { k in
            do {
                if k == 0 {
                    for i in 1...24 { try env.write { txn in try txn.put(a, key: [UInt8(i)], value: [UInt8](repeating: UInt8(i), count: 64 << 10)) } }
                } else {
                    for _ in 0..<400 {
                        let v = try env.read { try $0.get(a, key: [0]) }
                        if v != [UInt8](repeating: 9, count: 1000) { failures.add("reader \(k) saw \(v?.count ?? -1) bytes") }
                    }
                }
            } catch { failures.add("\(k): \(error)") }
        }
        XCTAssertEqual(failures.all, [])
        XCTAssertGreaterThan(env.mapSize, start, "the writer grew the map")
        XCTAssertEqual(try env.read { try $0.count(a) }, 25)
    }
}

final class ConcurrentFailures: @unchecked Sendable {
    // Safe: every access holds `lock`.
    private let lock = NSLock()
    private var items: [String] = []
    func add(_ s: String) { lock.lock(); items.append(s); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return items }
}
