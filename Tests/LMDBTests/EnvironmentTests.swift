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
