import XCTest
import Foundation
import TestSupport

/// Every stored label record of the given stores together (one store, or every shard of
/// a set), read with python-lmdb: generation -> sample id -> value as hex.
func labelRecords(_ stores: [String]) throws -> [String: [String: String]] {
    let r = try Processes.python("""
    import json, lmdb, sys
    out = {}
    for path in sys.argv[1:]:
        env = lmdb.open(path, readonly=True, max_dbs=32, lock=False)
        with env.begin() as t:
            for k, v in t.cursor(env.open_db(b"labels", txn=t, create=False)):
                g, i = int.from_bytes(k[:4], "big"), int.from_bytes(k[4:12], "big")
                out.setdefault(str(g), {})[str(i)] = v.hex()
        env.close()
    print(json.dumps(out))
    """, stores)
    XCTAssertEqual(r.status, 0, r.stderr)
    return (try? JSONDecoder().decode([String: [String: String]].self, from: r.stdoutData)) ?? [:]
}

/// The shard stores of a set, from its manifest.
func shardPaths(_ set: String) throws -> [String] {
    let data = try XCTUnwrap(FileManager.default.contents(atPath: set + "/manifest.json"))
    let shards = try XCTUnwrap((try JSONSerialization.jsonObject(with: data) as? [String: Any])?["shards"] as? [[String: Any]])
    return shards.compactMap { $0["path"] as? String }.map { set + "/" + $0 }
}
