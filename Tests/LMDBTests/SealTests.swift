import XCTest
import LMDB
import TestSupport

/// Seals kept by every write must equal a seal recomputed from the records, after
/// any mix of puts, overwrites, deletes, duplicates, clears, rollbacks and map growth.
final class SealTests: XCTestCase {
    /// A seeded generator (xorshift64*), so the operation mix is the same every run.
    struct Rng {
        var s: UInt64
        mutating func next(_ n: Int) -> Int {
            s ^= s >> 12; s ^= s << 25; s ^= s >> 27
            return Int((s &* 0x2545_F491_4F6C_DD1D) >> 33) % n
        }
    }

    func testSealsFollowEveryKindOfWrite() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let specs = [DatabaseSpec("plain"), DatabaseSpec("dups", duplicateKeys: true), DatabaseSpec("meta", recordDigests: true),
                     DatabaseSpec("raw", sealed: false)]
        // A small map, so that some transactions grow it and run their body again.
        let env = try Environment(path: dir, databases: specs, create: true, initialMapSize: 128 << 10)
        let plain = try XCTUnwrap(env.database("plain")), dups = try XCTUnwrap(env.database("dups"))
        let meta = try XCTUnwrap(env.database("meta")), raw = try XCTUnwrap(env.database("raw"))
        let seals = try XCTUnwrap(env.seals)
        var rng = Rng(s: 0x9E37_79B9_7F4A_7C15)
        struct Rollback: Error {}
        for round in 0..<60 {
            let ops = (0..<(1 + rng.next(40))).map { _ in (rng.next(9), rng.next(30), rng.next(5), 1 + rng.next(3000)) }
            let rollback = round % 7 == 3
            do {
                try env.write { txn in
                    for (op, k, v, size) in ops {
                        let key = [UInt8(k)], value = [UInt8](repeating: UInt8(v), count: size)
                        switch op {
                        case 0, 1: try txn.put(plain, key: key, value: value)
                        case 2: _ = try txn.delete(plain, key: key)
                        case 3: try txn.put(dups, key: key, value: [UInt8(v)])
                        case 4: _ = try txn.delete(dups, key: key, value: [UInt8(v)])
                        case 5: _ = try txn.delete(dups, key: key)
                        case 6: try txn.put(meta, key: key, value: [UInt8(v), UInt8(size & 255)])
                        case 7: _ = try txn.delete(meta, key: key)
                        default: if k == 0 { try txn.clear(k % 2 == 0 ? plain : meta) } else { try txn.put(raw, key: key, value: value) }
                        }
                    }
                    if rollback { throw Rollback() }
                }
            } catch is Rollback {}
            try env.read { txn in
                for db in [plain, dups, meta] {
                    XCTAssertEqual(try txn.checkSeal(db, in: seals), .holds, "round \(round), \(db.name)")
                    XCTAssertEqual(try txn.computeSeal(db).count, Int64(try txn.count(db)))
                }
                XCTAssertEqual(try txn.checkSeal(raw, in: seals), .absent)
                XCTAssertEqual(try txn.recordDigestProblems(meta, in: seals), [], "round \(round)")
            }
        }
        XCTAssertGreaterThan(env.mapSize, 128 << 10, "some transaction must have grown the map")
        // A record changed behind the seal's back (python-lmdb, another LMDB client) breaks it.
        let r = try Processes.python("""
        import lmdb, sys
        e = lmdb.open(sys.argv[1], max_dbs=8)
        plain, meta = e.open_db(b"plain"), e.open_db(b"meta")
        with e.begin(write=True) as t:
            t.put(b"\\xfa", b"\\x01", db=plain)
            t.put(b"\\xfb", b"\\x02", db=meta)
        """, [dir])
        XCTAssertEqual(r.status, 0, r.stderr)
        try env.read { txn in
            guard case .broken = try txn.checkSeal(plain, in: seals) else { return XCTFail("plain's seal must break") }
            XCTAssertEqual(try txn.recordDigestProblems(meta, in: seals), [[251]])
        }
    }
}

/// The page walk on healthy files: whatever LMDB writes, a sound file walks clean.
final class PageWalkTests: XCTestCase {
    /// Thousands of freed pages make LMDB keep its free list in overflow pages, and
    /// dupsort keys with several values make sub-pages: both must walk clean, and
    /// the walk must hand out every record LMDB holds.
    func testLargeFreeListsAndDuplicatesWalkClean() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let env = try Environment(path: dir, databases: [DatabaseSpec("blobs"), DatabaseSpec("d", duplicateKeys: true)], create: true)
        let blobs = try XCTUnwrap(env.database("blobs")), d = try XCTUnwrap(env.database("d"))
        try env.write { txn in
            for i in 0..<3000 { try txn.put(blobs, key: withUnsafeBytes(of: UInt32(i).bigEndian) { Array($0) }, value: [UInt8](repeating: UInt8(i & 255), count: 5000)) }
            for i in 0..<50 { for v in 0..<(1 + i % 4) { try txn.put(d, key: [UInt8(i)], value: [UInt8(v), 7]) } }
        }
        try env.write { txn in
            for i in 0..<2500 { _ = try txn.delete(blobs, key: withUnsafeBytes(of: UInt32(i).bigEndian) { Array($0) }) }
        }
        try env.write { txn in try txn.put(blobs, key: [9, 9, 9, 9, 9], value: [1]) }  // one more commit after the big free
        try PageWalk.withWalk(dataFile: dir + "/data.mdb") { walk in
            XCTAssertEqual(walk.problems, [], "a healthy file walks clean")
            XCTAssertEqual(walk.records["blobs"]?.count, 501)
            XCTAssertEqual(walk.records["d"]?.count, (0..<50).reduce(0) { $0 + 1 + $1 % 4 })
        }
    }
}
