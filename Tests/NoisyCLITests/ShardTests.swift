import XCTest
import Foundation
import KeyedRandom
import TestSupport

/// `noisy shard`: a store cut into shard stores and a checksummed manifest, checked
/// against an independent reading of the source with python-lmdb and hashlib.
final class ShardTests: XCTestCase {
    var root = ""
    override func setUp() { root = Fixtures.temporaryDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    func testShardsSplitByContentAndCarryEverythingOver() throws {
        for c in 0..<3 {
            for i in 0..<4 { Fixtures.write(Fixtures.png(width: 9, height: 9, seed: UInt64(40 + 10 * c + i)), to: "\(root)/l/k\(c)/\(i).png") }
        }
        for i in 0..<20 { Fixtures.write(Fixtures.jpeg(width: 16, height: 12, seed: UInt64(200 + i)), to: "\(root)/u/\(i).jpg") }
        for i in 0..<5 { Fixtures.write(Fixtures.png(width: 9, height: 9, seed: UInt64(400 + i)), to: "\(root)/t/k\(i % 3)/\(i).png") }
        let store = "\(root)/s.noisy"
        XCTAssertEqual(try Processes.noisy(["ingest", "--store", store, "--labeled", "\(root)/l", "--unlabeled", "\(root)/u",
                                            "--test", "\(root)/t", "--quiet"]).status, 0)
        XCTAssertEqual(try Processes.noisy(["labels", "jobs", "--store", store, "--part", "0", "--parts", "1", "--ids-out", "\(root)/ids.npy"]).status, 0)
        let p = try Processes.python("""
        import sys, numpy as np
        ids = np.load(sys.argv[1] + "/ids.npy")
        np.save(sys.argv[1] + "/p.npy", np.random.default_rng(3).dirichlet([0.5] * 3, len(ids)).astype(np.float32))
        """, [root])
        XCTAssertEqual(p.status, 0, p.stderr)
        XCTAssertEqual(try Processes.noisy(["labels", "import", "--store", store, "--predictions", "\(root)/p.npy", "--ids", "\(root)/ids.npy",
                                            "--teacher", "t", "--quiet"]).status, 0)
        XCTAssertEqual(try Processes.noisy(["labels", "filter", "--store", store, "--generation", "1", "--threshold", "0.3", "--per-class", "6"]).status, 0)
        XCTAssertEqual(try Processes.noisy(["labels", "tag", "--store", store, "best", "1"]).status, 0)

        let out = "\(root)/set"
        let r = try Processes.noisy(["shard", "--store", store, "--shards", "3", "--out", out, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertNil(try Processes.schemaViolation(schema: "shard-manifest.schema.json", json: r.stdoutData))
        XCTAssertNil(try Processes.schemaViolation(schema: "shard-manifest.schema.json",
                                                   json: try XCTUnwrap(FileManager.default.contents(atPath: "\(out)/manifest.json"))))
        let check = try Processes.python("""
        import hashlib, json, lmdb, sys
        src, out = sys.argv[1], sys.argv[2]
        def dump(path):
            env = lmdb.open(path, readonly=True, max_dbs=32, lock=False)
            d = {}
            with env.begin() as t:
                for name in (b"samples", b"images", b"labels", b"selections", b"classes", b"tags"):
                    d[name] = dict(t.cursor(env.open_db(name, txn=t, create=False)))
            env.close()
            return d
        s = dump(src)
        m = json.load(open(out + "/manifest.json"))
        shards = [dump(out + "/" + e["path"]) for e in m["shards"]]
        # Expected shard of each sample: per split, rank by SHA-256 of the stored bytes, modulo 3.
        expect = {}
        for split in (0, 1, 2):
            ids = [k for k, v in s[b"samples"].items() if v[1] == split]
            ranked = sorted(ids, key=lambda k: (hashlib.sha256(s[b"images"][k]).digest(), k))
            for i, k in enumerate(ranked): expect[k] = i % 3
        for k, sh in expect.items():
            assert k in shards[sh][b"samples"], f"sample {int.from_bytes(k, 'big')} not in shard {sh}"
            assert shards[sh][b"samples"][k] == s[b"samples"][k] and shards[sh][b"images"][k] == s[b"images"][k]
        assert sum(len(x[b"samples"]) for x in shards) == len(s[b"samples"]) == 37
        for x in shards:
            assert x[b"classes"] == s[b"classes"] and x[b"tags"] == s[b"tags"]
        counts = [[sum(1 for v in x[b"samples"].values() if v[1] == split) for x in shards] for split in (0, 1, 2)]
        assert all(max(c) - min(c) <= 1 for c in counts), counts
        # Labels and selection entries: each shard holds its samples' own, and together all.
        labels = {}
        for sh, x in enumerate(shards):
            for k, v in x[b"labels"].items():
                assert expect[k[4:]] == sh; labels[k] = v
        assert labels == s[b"labels"] and len(labels) == 20
        entries = lambda d: {k: v for k, v in d.items() if k[4:5] == b"\\x01"}
        union = {}
        for sh, x in enumerate(shards):
            for k, v in entries(x[b"selections"]).items():
                assert expect[k[-8:]] == sh; union[k] = v
        assert union == entries(s[b"selections"]) and len(union) > 0
        print("ok", counts)
        """, [store, out])
        XCTAssertEqual(check.status, 0, check.stderr)
        XCTAssertTrue(check.stdout.hasPrefix("ok"), check.stdout)

        let v = try Processes.noisy(["verify", "--store", out])
        XCTAssertEqual(v.status, 0, v.stdout + v.stderr)
        let info = try Processes.noisy(["info", "--store", out])
        XCTAssertTrue(info.stdout.contains("37 samples in 3 shards"), info.stdout)
        let infoJSON = try Processes.noisy(["info", "--store", out, "--json"])
        XCTAssertNil(try Processes.schemaViolation(schema: "shard-manifest.schema.json", json: infoJSON.stdoutData))
        XCTAssertEqual(try Processes.noisy(["shard", "--store", store, "--shards", "2", "--out", out]).stderr.contains("not empty"), true)
        // The pipeline reads a whole set as one source; a command that takes one store says so.
        let bench = try Processes.noisy(["bench", "pipeline", "--store", out, "--size", "8", "--batch-size", "4", "--batches", "2",
                                         "--repeat", "1", "--threads", "1", "--generation", "1", "--json"])
        XCTAssertEqual(bench.status, 0, bench.stderr)
        let reshard = try Processes.noisy(["shard", "--store", out, "--shards", "2", "--out", "\(root)/x"])
        XCTAssertEqual(reshard.status, 1)
        XCTAssertTrue(reshard.stderr.contains("a shard set (noisy shard), not a store"), reshard.stderr)

        // A manifest edited by hand, a shard gone, a shard replaced: each refused by name.
        let manifest = try XCTUnwrap(FileManager.default.contents(atPath: "\(out)/manifest.json"))
        let edited = String(decoding: manifest, as: UTF8.self).replacingOccurrences(of: "\"samples\":37", with: "\"samples\":38")
        XCTAssertNotEqual(edited, String(decoding: manifest, as: UTF8.self))
        try edited.write(toFile: "\(out)/manifest.json", atomically: true, encoding: .utf8)
        for command in ["verify", "info"] {
            let e = try Processes.noisy([command, "--store", out])
            XCTAssertEqual(e.status, 1)
            XCTAssertTrue(e.stderr.contains("does not match its checksum"), e.stderr)
        }
        try manifest.write(to: URL(fileURLWithPath: "\(out)/manifest.json"))
        try FileManager.default.moveItem(atPath: "\(out)/shard-00001-of-00003.noisy", toPath: "\(root)/aside.noisy")
        let gone = try Processes.noisy(["verify", "--store", out])
        XCTAssertEqual(gone.status, 1)
        XCTAssertTrue(gone.stderr.contains("shard 1 of 3") && gone.stderr.contains("is missing"), gone.stderr)
        try FileManager.default.copyItem(atPath: "\(out)/shard-00002-of-00003.noisy", toPath: "\(out)/shard-00001-of-00003.noisy")
        let swapped = try Processes.noisy(["info", "--store", out])
        XCTAssertEqual(swapped.status, 1)
        XCTAssertTrue(swapped.stderr.contains("not shard 1 of this set"), swapped.stderr)
        try FileManager.default.removeItem(atPath: "\(out)/shard-00001-of-00003.noisy")
        try FileManager.default.moveItem(atPath: "\(root)/aside.noisy", toPath: "\(out)/shard-00001-of-00003.noisy")

        // A generation over the set: each shard imports its rows under one number, and the
        // manifest that lists it is the commit. kill -9 at random points: the set shows the
        // generation whole or not at all, and the re-run ends with the one-import bytes.
        XCTAssertEqual(try Processes.noisy(["labels", "import", "--store", store, "--predictions", "\(root)/p.npy", "--ids", "\(root)/ids.npy",
                                            "--teacher", "again", "--quiet"]).status, 0)   // the reference: generation 2 of the source
        let r0 = root
        let importArgs = { (set: String) in ["labels", "import", "--store", set, "--predictions", "\(r0)/p.npy", "--ids", "\(r0)/ids.npy",
                                             "--teacher", "again"] }
        try FileManager.default.copyItem(atPath: out, toPath: "\(root)/set-before")
        let t0 = Date()
        let first = try Processes.noisy(importArgs(out))
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertTrue(first.stdout.contains("generation 2 over the set: 20 samples on 3 shards"), first.stdout)
        let duration = Date().timeIntervalSince(t0)
        let compare = """
        import json, lmdb, sys
        src, out = sys.argv[1], sys.argv[2]
        def labels(path, k):
            env = lmdb.open(path, readonly=True, max_dbs=32, lock=False)
            with env.begin() as t:
                d = {key[4:]: v for key, v in t.cursor(env.open_db(b"labels", txn=t, create=False)) if int.from_bytes(key[:4], "big") == k}
            gens = set()
            with env.begin() as t:
                gens = {int.from_bytes(key, "big") for key, _ in t.cursor(env.open_db(b"generations", txn=t, create=False))}
            env.close()
            return d, gens
        want, _ = labels(src, 2)
        m = json.load(open(out + "/manifest.json"))
        listed = [g["generation"] for g in m["generations"]]
        got, orphans = {}, 0
        for e in m["shards"]:
            d, gens = labels(out + "/" + e["path"], listed[-1])
            got.update(d)
            orphans += len(gens - set(listed))
        print(json.dumps({"listed": listed, "whole": got == want and len(want) == 20, "orphans": orphans}))
        """
        struct State: Decodable { let listed: [Int]; let whole: Bool; let orphans: Int }
        func state(_ set: String) throws -> State {
            let r = try Processes.python(compare, [store, set])
            XCTAssertEqual(r.status, 0, r.stderr)
            return try JSONDecoder().decode(State.self, from: r.stdoutData)
        }
        let done = try state(out)
        XCTAssertEqual(done.listed, [1, 2])
        XCTAssertTrue(done.whole, "the set's generation 2 holds the one-import bytes")
        XCTAssertEqual(try Processes.noisy(["verify", "--store", out]).status, 0)
        // A selection over the set: balanced over every shard's labels together, each shard
        // keeping its samples' entries; together they are the source store's selection.
        let filterArgs = ["--generation", "2", "--threshold", "0.3", "--per-class", "5", "--name", "five", "--seed", "9"]
        XCTAssertEqual(try Processes.noisy(["labels", "filter", "--store", store] + filterArgs).status, 0)
        let setFilter = try Processes.noisy(["labels", "filter", "--store", out] + filterArgs)
        XCTAssertEqual(setFilter.status, 0, setFilter.stderr)
        XCTAssertTrue(setFilter.stdout.contains("selection 'five'"), setFilter.stdout)
        let entries = try Processes.python("""
        import json, lmdb, sys
        src, out = sys.argv[1], sys.argv[2]
        def entries(path):
            env = lmdb.open(path, readonly=True, max_dbs=32, lock=False)
            prefix = (2).to_bytes(4, "big") + b"\\x01five\\x00"
            with env.begin() as t:
                d = {k[len(prefix):]: v for k, v in t.cursor(env.open_db(b"selections", txn=t, create=False)) if k.startswith(prefix)}
            env.close()
            return d
        m = json.load(open(out + "/manifest.json"))
        union = {}
        for e in m["shards"]: union.update(entries(out + "/" + e["path"]))
        want = entries(src)
        counts = m["generations"][-1]["selection_entries"]["five"]
        assert union == want and len(want) > 0 and sum(counts) == sum(int.from_bytes(v, "little") for v in want.values()), (len(union), len(want), counts)
        print("same")
        """, [store, out])
        XCTAssertEqual(entries.stdout, "same\n", entries.stderr)
        XCTAssertEqual(try Processes.noisy(["labels", "filter", "--store", out] + filterArgs).status, 1, "a selection never changes")
        XCTAssertEqual(try Processes.noisy(["verify", "--store", out]).status, 0)
        let mixed = try Processes.noisy(["bench", "pipeline", "--store", out, "--size", "8", "--batch-size", "4", "--batches", "2",
                                         "--repeat", "1", "--threads", "1", "--generation", "2", "--selection", "five"])
        XCTAssertEqual(mixed.status, 0, "the set's selection feeds the pipeline: \(mixed.stderr)")

        // Training reads the whole set; evaluating on the set gives the source store's figures.
        let train = try Processes.noisy(["train", "--store", out, "--size", "8", "--crop", "pad", "--pad", "1", "--model", "mlp",
                                         "--depth", "1", "--width", "0.5", "--epochs", "2", "--batch-size", "4", "--threads", "1",
                                         "--generation", "2", "--selection", "five", "--eval-every", "0", "--out", "\(root)/set.ckpt"])
        XCTAssertEqual(train.status, 0, train.stderr)
        let onSet = try Processes.noisy(["evaluate", "--store", out, "--checkpoint", "\(root)/set.ckpt", "--json"])
        let onSource = try Processes.noisy(["evaluate", "--store", store, "--checkpoint", "\(root)/set.ckpt", "--json"])
        XCTAssertEqual(onSet.status, 0, onSet.stderr)
        XCTAssertEqual(onSet.stdout, onSource.stdout, "the set's test split is the source's")
        XCTAssertTrue(onSet.stdout.contains("\"samples\" : 5"), onSet.stdout)
        // The in-process teacher over the set makes the bytes it makes over the source store
        // (its predictions do not depend on batching).
        let labelSet = try Processes.noisy(["label", "--store", out, "--checkpoint", "\(root)/set.ckpt", "--teacher", "mlp"])
        XCTAssertEqual(labelSet.status, 0, labelSet.stderr)
        XCTAssertTrue(labelSet.stdout.contains("generation 3 over the set: 20 samples on 3 shards"), labelSet.stdout)
        XCTAssertEqual(try Processes.noisy(["label", "--store", store, "--checkpoint", "\(root)/set.ckpt", "--teacher", "mlp"]).status, 0)
        let labelledShards = try labelRecords(shardPaths(out)), labelledSource = try labelRecords([store])
        XCTAssertEqual(labelledSource["3"]?.count, 20)
        XCTAssertEqual(labelledShards["3"], labelledSource["3"], "label over the set: the source store's bytes")
        // labels show on the set: the set's figures are the source store's.
        for k in ["1", "2"] {
            let onSet = try Processes.noisy(["labels", "show", "--store", out, "--generation", k, "--json"])
            XCTAssertEqual(onSet.status, 0, onSet.stderr)
            XCTAssertNil(try Processes.schemaViolation(schema: "labels-show.schema.json", json: onSet.stdoutData))
            let onSource = try Processes.noisy(["labels", "show", "--store", store, "--generation", k, "--json"])
            let a = try XCTUnwrap(try JSONSerialization.jsonObject(with: onSet.stdoutData) as? [String: Any])
            let b = try XCTUnwrap(try JSONSerialization.jsonObject(with: onSource.stdoutData) as? [String: Any])
            let ga = try XCTUnwrap(a["generation"] as? [String: Any]), gb = try XCTUnwrap(b["generation"] as? [String: Any])
            for field in ["samples", "bytes_stored"] { XCTAssertEqual(ga[field] as? Int, gb[field] as? Int, "generation \(k): \(field)") }
            XCTAssertEqual(ga["mean_confidence"] as? Double ?? -1, gb["mean_confidence"] as? Double ?? 1, accuracy: 1e-6)
            let counts = { (g: [String: Any]) in (g["per_class"] as? [[String: Any]] ?? []).map { $0["count"] as? Int } }
            XCTAssertEqual(counts(ga), counts(gb), "generation \(k): per-class counts")
        }
        // labels diff on the set: the source store's report, field for field.
        let diffSet = try Processes.noisy(["labels", "diff", "--store", out, "1", "3", "--json"])
        XCTAssertEqual(diffSet.status, 0, diffSet.stderr)
        XCTAssertNil(try Processes.schemaViolation(schema: "labels-diff.schema.json", json: diffSet.stdoutData))
        let diffSource = try Processes.noisy(["labels", "diff", "--store", store, "1", "3", "--json"])
        let da = try XCTUnwrap(try JSONSerialization.jsonObject(with: diffSet.stdoutData) as? [String: Any])
        let db = try XCTUnwrap(try JSONSerialization.jsonObject(with: diffSource.stdoutData) as? [String: Any])
        for field in ["common", "only_a", "only_b", "changed", "entered", "left"] {
            XCTAssertEqual(da[field] as? Int, db[field] as? Int, "diff: \(field)")
        }
        XCTAssertEqual(da["change_matrix"] as? [[Int]], db["change_matrix"] as? [[Int]])
        XCTAssertEqual(da["mean_confidence_b"] as? Double ?? -1, db["mean_confidence_b"] as? Double ?? 1, accuracy: 1e-6)
        let list = try Processes.noisy(["labels", "list", "--store", out, "--json"])
        XCTAssertEqual(list.status, 0, list.stderr)
        XCTAssertNil(try Processes.schemaViolation(schema: "labels-list.schema.json", json: list.stdoutData))
        let listed = try XCTUnwrap(try JSONSerialization.jsonObject(with: list.stdoutData) as? [[String: Any]])
        XCTAssertEqual(listed.map { $0["generation"] as? Int }, [1, 2, 3])
        XCTAssertEqual(listed.map { $0["samples"] as? Int }, [20, 20, 20], "the set's counts, not one shard's")
        XCTAssertEqual(listed[1]["selections"] as? [String], ["five"])

        // A serve label session over the whole set: one generation over the set, the bytes
        // one import of the same answers makes on the source store.
        let server = try Processes.startServer(["--store", out, "--socket", "\(root)/s.sock", "--size", "8", "--batch-size", "6",
                                                "--threads", "1"], log: "\(root)/serve.log")
        defer { if server.isRunning { server.terminate(); server.waitUntilExit() } }
        let session = try Processes.python("""
        import sys, numpy as np
        sys.path.insert(0, sys.argv[2])
        import noisy
        s = noisy.connect("unix:" + sys.argv[1]).label_session("unlabeled", teacher="numpy teacher")
        all_ids, all_p = [], []
        for ids, images in s:
            f = images.reshape(len(ids), -1).astype(np.float64).mean(1, keepdims=True) / 255
            z = np.hstack([f, 1 - f, 0.5 * f]) * 3
            p = (np.exp(z) / np.exp(z).sum(1, keepdims=True)).astype(np.float32)
            s.send(p); all_ids.append(ids.copy()); all_p.append(p)
        print(s.commit())
        np.save(sys.argv[3] + "/session-p.npy", np.concatenate(all_p)); np.save(sys.argv[3] + "/session-ids.npy", np.concatenate(all_ids))
        """, ["\(root)/s.sock", Processes.repositoryRoot + "/python", root])
        XCTAssertEqual(session.status, 0, session.stderr + ((try? String(contentsOfFile: "\(root)/serve.log", encoding: .utf8)) ?? ""))
        XCTAssertEqual(session.stdout, "4\n", "generation 4 over the set")
        server.terminate(); server.waitUntilExit()
        XCTAssertEqual(try Processes.noisy(["labels", "import", "--store", store, "--predictions", "\(root)/session-p.npy",
                                            "--ids", "\(root)/session-ids.npy", "--teacher", "numpy teacher", "--quiet"]).status, 0)
        let committed = try XCTUnwrap(try JSONSerialization.jsonObject(with: try XCTUnwrap(FileManager.default.contents(atPath: "\(out)/manifest.json"))) as? [String: Any])
        XCTAssertEqual((committed["generations"] as? [[String: Any]])?.map { $0["generation"] as? Int }, [1, 2, 3, 4])
        let sessionShards = try labelRecords(shardPaths(out)), sessionSource = try labelRecords([store])
        XCTAssertEqual(sessionSource["4"]?.count, 20)
        XCTAssertEqual(sessionShards["4"], sessionSource["4"], "a label session over the set: one import's bytes")

        // Tag and delete over the set: every shard, and the manifest first.
        XCTAssertEqual(try Processes.noisy(["labels", "tag", "--store", out, "good", "4"]).status, 0)
        let del = try Processes.noisy(["labels", "delete", "--store", out, "--generation", "4"])
        XCTAssertEqual(del.status, 0, del.stderr)
        let afterDelete = try Processes.noisy(["labels", "list", "--store", out, "--json"])
        let gens = try XCTUnwrap(try JSONSerialization.jsonObject(with: afterDelete.stdoutData) as? [[String: Any]]).map { $0["generation"] as? Int }
        XCTAssertEqual(gens, [1, 2, 3])
        XCTAssertEqual(try Processes.noisy(["verify", "--store", out]).status, 0)
        XCTAssertEqual(try Processes.noisy(["labels", "delete", "--store", out, "--generation", "4"]).status, 1)

        var rng = SplitMix64(seed: 5)
        for round in 0..<6 {
            let copy = "\(root)/copy\(round)"
            try FileManager.default.copyItem(atPath: "\(root)/set-before", toPath: copy)
            let p = try Processes.spawnNoisy(importArgs(copy))
            usleep(UInt32(Double(rng.next() % 1000) / 1000 * duration * 1e6))
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
            p.waitUntilExit()
            let after = try state(copy)
            XCTAssertTrue(after.listed == [1] || (after.listed == [1, 2] && after.whole), "round \(round): \(after)")
            XCTAssertEqual(try Processes.noisy(importArgs(copy)).status, 0, "round \(round): the re-run")
            let end = try state(copy)
            XCTAssertEqual(end.listed.count, after.listed.count + 1, "round \(round): one more generation")
            XCTAssertTrue(end.whole && end.orphans == 0, "round \(round): \(end)")
            try FileManager.default.removeItem(atPath: copy)
        }
    }
}
