import XCTest
import DatasetStore
import KeyedRandom
import TestSupport

/// `noisy labels` end to end: numpy writes the predictions, the binary imports,
/// filters, diffs and exports, numpy and json read the exports back, and every
/// --json output validates against its schema.
final class LabelsCLITests: XCTestCase {
    var root = ""
    override func setUp() { root = Fixtures.temporaryDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    /// 3 classes x 2 labeled images, `unlabeled` unlabeled PNGs (ids 6 ...).
    func makeStore(unlabeled: Int = 30) throws -> String {
        // Explicit seeds: a String's hash value changes from process to process, and two
        // equal images would be deduplicated, leaving a class with one sample.
        var seen = Set<[UInt8]>()
        for (k, c) in ["ant", "bee", "cat"].enumerated() {
            for i in 0..<2 {
                let png = Fixtures.png(width: 10, height: 10, seed: UInt64(100 + 10 * k + i))
                XCTAssertTrue(seen.insert(png).inserted, "labeled fixture \(c)/\(i) repeats another")
                Fixtures.write(png, to: "\(root)/l/\(c)/\(i).png")
            }
        }
        for i in 0..<unlabeled { Fixtures.write(Fixtures.png(width: 12, height: 10, seed: UInt64(500 + i)), to: "\(root)/u/\(String(format: "%05d", i)).png") }
        let store = "\(root)/s.noisy"
        let r = try Processes.noisy(["ingest", "--store", store, "--labeled", "\(root)/l", "--unlabeled", "\(root)/u", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return store
    }

    func noisyJSON(_ args: [String], schema: String, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let r = try Processes.noisy(args + ["--json"])
        XCTAssertEqual(r.status, 0, "\(args): \(r.stderr)", file: file, line: line)
        XCTAssertNil(try Processes.schemaViolation(schema: schema, json: r.stdoutData), "\(args)", file: file, line: line)
        return (try? JSONSerialization.jsonObject(with: r.stdoutData) as? [String: Any]) ?? [:]
    }

    func testImportFilterShowDiffExportRoundTripThroughNumpy() throws {
        let store = try makeStore()
        let made = try Processes.python("""
        import json, sys, numpy as np
        d = sys.argv[1]
        rng = np.random.RandomState(0)
        ids = np.arange(6, 36, dtype=np.int64)[::-1].copy()          # any order
        logits = (rng.randn(30, 3) * 2).astype(np.float32)
        p = np.exp(logits - logits.max(1, keepdims=True)); p = (p / p.sum(1, keepdims=True)).astype(np.float32)
        np.save(d + "/p.npy", p); np.save(d + "/ids.npy", ids); np.save(d + "/logits.npy", logits)
        q = np.roll(p, 1, axis=1)                                      # a second teacher that disagrees
        with open(d + "/q.jsonl", "w") as f:
            for i, row in zip(ids, q): f.write(json.dumps({"id": int(i), "probs": [float(x) for x in row]}) + "\\n")
        with open(d + "/sources.txt", "w") as f:
            for i in ids: f.write("%05d.png\\n" % (i - 6))
        """, [root])
        XCTAssertEqual(made.status, 0, made.stderr)

        let g1 = try noisyJSON(["labels", "import", "--store", store, "--predictions", "\(root)/p.npy", "--ids", "\(root)/ids.npy",
                                "--teacher", "teacher one", "--precision", "f32"], schema: "labels-import.schema.json")
        XCTAssertEqual(g1["generation"] as? Int, 1)
        XCTAssertEqual(g1["samples"] as? Int, 30)
        let g2 = try noisyJSON(["labels", "import", "--store", store, "--jsonl", "\(root)/q.jsonl", "--teacher", "teacher two"],
                               schema: "labels-import.schema.json")
        XCTAssertEqual(g2["parent"] as? Int, 1)
        let g3 = try noisyJSON(["labels", "import", "--store", store, "--predictions", "\(root)/logits.npy", "--sources", "\(root)/sources.txt",
                                "--logits", "--teacher", "same as one, from logits", "--precision", "topk:2", "--parent", "none"],
                               schema: "labels-import.schema.json")
        XCTAssertNil(g3["parent"])

        let sel = try noisyJSON(["labels", "filter", "--store", store, "--generation", "1", "--threshold", "0.5", "--per-class", "8"],
                                schema: "selection.schema.json")
        XCTAssertEqual(sel["entries"] as? Int, 24)
        _ = try noisyJSON(["labels", "filter", "--store", store, "--generation", "2", "--threshold", "0.5"], schema: "selection.schema.json")
        let again = try Processes.noisy(["labels", "filter", "--store", store, "--generation", "1", "--threshold", "0.1"])
        XCTAssertNotEqual(again.status, 0)
        XCTAssertTrue(again.stderr.contains("already has a selection 'default'"), again.stderr)

        let list = try Processes.noisy(["labels", "list", "--store", store, "--json"])
        XCTAssertNil(try Processes.schemaViolation(schema: "labels-list.schema.json", json: list.stdoutData))
        let shown = try noisyJSON(["labels", "show", "--store", store, "--generation", "latest"], schema: "labels-show.schema.json")
        XCTAssertEqual((shown["generation"] as? [String: Any])?["generation"] as? Int, 3)
        let diff = try noisyJSON(["labels", "diff", "--store", store, "1", "2"], schema: "labels-diff.schema.json")
        XCTAssertEqual(diff["common"] as? Int, 30)
        XCTAssertEqual(diff["changed"] as? Int, 30, "np.roll moves every top class")
        let same = try noisyJSON(["labels", "diff", "--store", store, "1", "3"], schema: "labels-diff.schema.json")
        XCTAssertEqual(same["changed"] as? Int, 0, "softmax of the logits gives the same top classes")

        for format in ["npy", "jsonl", "safetensors"] {
            let m = try noisyJSON(["labels", "export", "--store", store, "--generation", "1", "--format", format, "--out", "\(root)/ex-\(format)"],
                                  schema: "labels-export-manifest.schema.json")
            XCTAssertEqual(m["selection"] as? String, "default")
        }
        XCTAssertNil(try Processes.schemaViolation(schema: "labels-export-manifest.schema.json",
                                                   json: try XCTUnwrap(FileManager.default.contents(atPath: "\(root)/ex-npy/manifest.json"))))
        _ = try noisyJSON(["labels", "export", "--store", store, "--generation", "2", "--selection", "default", "--format", "npy",
                           "--keep-precision", "--out", "\(root)/ex-f16"], schema: "labels-export-manifest.schema.json")
        let refused = try Processes.noisy(["labels", "export", "--store", store, "--generation", "1", "--out", "\(root)/ex-npy"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("not empty"), refused.stderr)

        // numpy and json alone read every export; values and checksums agree.
        let check = try Processes.python("""
        import hashlib, json, struct, sys, numpy as np
        d = sys.argv[1]
        p = np.load(d + "/p.npy"); ids = np.load(d + "/ids.npy")
        want = {int(i): row for i, row in zip(ids, p)}
        def sha(path): return hashlib.sha256(open(path, "rb").read()).hexdigest()
        m = json.load(open(d + "/ex-npy/manifest.json"))
        for f in m["files"]: assert sha(d + "/ex-npy/" + f["name"]) == f["sha256"], f["name"]
        e_ids = np.load(d + "/ex-npy/ids.npy"); e_p = np.load(d + "/ex-npy/probs.npy"); mult = np.load(d + "/ex-npy/multiplicity.npy")
        assert e_ids.dtype == np.int64 and e_p.dtype == np.float32 and mult.dtype == np.int32, (e_ids.dtype, e_p.dtype, mult.dtype)
        assert list(e_ids) == sorted(e_ids), "ids in order"
        assert int(mult.sum()) == m["entries"] == 24, mult.sum()
        for i, row in zip(e_ids, e_p): assert np.allclose(row, want[int(i)], atol=1e-6), i
        src = open(d + "/ex-npy/sources.txt").read().split("\\n")[:-1]
        assert src == ["%05d.png" % (i - 6) for i in e_ids], src[:3]
        lines = [json.loads(l) for l in open(d + "/ex-jsonl/labels.jsonl")]
        assert [l["id"] for l in lines] == list(e_ids)
        for l in lines: assert np.allclose(l["probs"], want[l["id"]], atol=1e-6)
        raw = open(d + "/ex-safetensors/labels.safetensors", "rb").read()
        (n,) = struct.unpack("<Q", raw[:8]); header = json.loads(raw[8:8 + n]); body = raw[8 + n:]
        def tensor(name, dtype):
            a, b = header[name]["data_offsets"]
            return np.frombuffer(body[a:b], dtype=dtype).reshape(header[name]["shape"])
        assert list(tensor("ids", "<i8")) == list(e_ids)
        assert np.array_equal(tensor("probs", "<f4"), e_p)
        assert np.array_equal(tensor("multiplicity", "<i4"), mult)
        half = np.load(d + "/ex-f16/probs.npy"); assert half.dtype == np.float16
        print("ok", len(e_ids))
        """, [root])
        XCTAssertEqual(check.status, 0, check.stderr)
        XCTAssertTrue(check.stdout.hasPrefix("ok"), check.stdout)

        // Tags, samples sheets, delete.
        XCTAssertEqual(try Processes.noisy(["labels", "tag", "--store", store, "best", "1"]).status, 0)
        let best = try noisyJSON(["labels", "show", "--store", store, "--generation", "best"], schema: "labels-show.schema.json")
        XCTAssertEqual((best["tags"] as? [String]), ["best"])
        let sheets = try Processes.noisy(["labels", "samples", "--store", store, "--generation", "1", "--out", "\(root)/sheets", "--count", "3"])
        XCTAssertEqual(sheets.status, 0, sheets.stderr)
        let files = try FileManager.default.contentsOfDirectory(atPath: "\(root)/sheets")
        XCTAssertEqual(files.filter { $0.hasSuffix("-histogram.png") }.count, 3)
        XCTAssertGreaterThanOrEqual(files.filter { $0.hasSuffix("-confident.png") }.count, 1)
        XCTAssertEqual(try Processes.noisy(["labels", "delete", "--store", store, "--generation", "2"]).status, 0)
        let after = try Processes.noisy(["labels", "list", "--store", store, "--json"])
        let gens = (try JSONSerialization.jsonObject(with: after.stdoutData) as? [[String: Any]])?.compactMap { $0["generation"] as? Int }
        XCTAssertEqual(gens, [1, 3])
        XCTAssertEqual(try Processes.noisy(["verify", "--store", store]).status, 0)
    }

    func testBadPredictionsAreRefusedWholeWithOneLineReasons() throws {
        let store = try makeStore(unlabeled: 5)
        let made = try Processes.python("""
        import sys, numpy as np
        d = sys.argv[1]
        ok = np.full((5, 3), 1 / 3, dtype=np.float32)
        np.save(d + "/ids.npy", np.arange(6, 11, dtype=np.int64))
        np.save(d + "/dup.npy", np.array([6, 7, 7, 8, 9], dtype=np.int64))
        np.save(d + "/unknown.npy", np.array([6, 7, 8, 9, 999], dtype=np.int64))
        np.save(d + "/f64.npy", ok.astype(np.float64))
        np.save(d + "/cube.npy", ok.reshape(5, 3, 1))
        np.save(d + "/four.npy", np.full((5, 4), 0.25, dtype=np.float32))
        nan = ok.copy(); nan[2, 1] = np.nan; np.save(d + "/nan.npy", nan)
        inf = ok.copy(); inf[1, 0] = np.inf; np.save(d + "/inf.npy", inf)
        neg = ok.copy(); neg[3] = [-0.2, 0.6, 0.6]; np.save(d + "/neg.npy", neg)
        half = ok * 0.5; np.save(d + "/half.npy", half)
        np.save(d + "/fortran.npy", np.asfortranarray(np.full((5, 3), 1 / 3, dtype=np.float32)[:, :]).T.copy(order="F").T)
        open(d + "/text.npy", "w").write("not numpy at all")
        np.save(d + "/ok.npy", ok)
        """, [root])
        XCTAssertEqual(made.status, 0, made.stderr)
        let cases: [(String, String, String)] = [
            ("text.npy", "ids.npy", "not a NumPy .npy file"),
            ("f64.npy", "ids.npy", "must be float32"),
            ("cube.npy", "ids.npy", "must be 2-D"),
            ("four.npy", "ids.npy", "4 classes per row, the store has 3"),
            ("nan.npy", "ids.npy", "row 2 (sample 8), class 1: nan is not a finite number"),
            ("inf.npy", "ids.npy", "not a finite number"),
            ("neg.npy", "ids.npy", "negative probability"),
            ("half.npy", "ids.npy", "sums to 0.5000, not 1"),
            ("ok.npy", "dup.npy", "sample 7 appears twice"),
            ("ok.npy", "unknown.npy", "unknown sample id(s), first 999"),
            ("ok.npy", "missing.npy", "missing.npy"),
        ]
        for (pred, ids, needle) in cases {
            let r = try Processes.noisy(["labels", "import", "--store", store, "--predictions", "\(root)/\(pred)", "--ids", "\(root)/\(ids)",
                                         "--teacher", "t", "--quiet"])
            XCTAssertNotEqual(r.status, 0, pred)
            XCTAssertTrue(r.stderr.contains(needle), "\(pred)/\(ids): expected '\(needle)' in \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "one line: \(r.stderr)")
        }
        let list = try Processes.noisy(["labels", "list", "--store", store, "--json"])
        XCTAssertEqual((try JSONSerialization.jsonObject(with: list.stdoutData) as? [Any])?.count, 0, "nothing was written")
        // The next import still gets number 1.
        let ok = try Processes.noisy(["labels", "import", "--store", store, "--predictions", "\(root)/ok.npy", "--ids", "\(root)/ids.npy", "--teacher", "t", "--quiet"])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertTrue(ok.stdout.hasPrefix("generation 1:"), ok.stdout)
    }

    /// kill -9 at random points of an import of 20,000 rows: afterwards only whole
    /// generations are visible, verify passes, and the next import removes what the
    /// killed one left and commits exactly the expected generation.
    func testKilledImportsLeaveNoHalfGeneration() throws {
        let n = 20_000
        let store = try makeStore(unlabeled: n)
        let made = try Processes.python("""
        import sys, numpy as np
        d, n = sys.argv[1], int(sys.argv[2])
        rng = np.random.RandomState(1)
        p = rng.dirichlet([0.5, 0.5, 0.5], size=n).astype(np.float32)
        p /= p.sum(1, keepdims=True)
        np.save(d + "/p.npy", p); np.save(d + "/ids.npy", np.arange(6, 6 + n, dtype=np.int64))
        """, [root, String(n)])
        XCTAssertEqual(made.status, 0, made.stderr)
        let args = ["labels", "import", "--store", store, "--predictions", "\(root)/p.npy", "--ids", "\(root)/ids.npy",
                    "--teacher", "t", "--quiet", "--precision", "f32"]
        func visible() throws -> [Int] {
            let r = try Processes.noisy(["labels", "list", "--store", store, "--json"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let rows = (try JSONSerialization.jsonObject(with: r.stdoutData) as? [[String: Any]]) ?? []
            for row in rows { XCTAssertEqual(row["samples"] as? Int, n, "a visible generation is whole") }
            return rows.compactMap { $0["generation"] as? Int }
        }
        var killed = 0
        var rng = SplitMix64(seed: 17)
        for attempt in 0..<5 {
            let p = try Processes.spawnNoisy(args)
            usleep(UInt32(20_000 + attempt * 60_000 + Int(rng.next() % 40_000)))
            if p.isRunning { kill(p.processIdentifier, SIGKILL); killed += 1 }
            p.waitUntilExit()
            _ = try visible()
            let v = try Processes.noisy(["verify", "--store", store])
            XCTAssertEqual(v.status, 0, "after kill -9 the store verifies: \(v.stdout)")
        }
        let before = try visible().count
        let r = try Processes.noisy(args)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try visible().count, before + 1)
        // Raw entries: exactly n per visible generation, nothing left from killed runs.
        let raw = try Processes.python("""
        import lmdb, sys
        env = lmdb.open(sys.argv[1], readonly=True, max_dbs=16, lock=False)
        with env.begin() as t: print(t.stat(env.open_db(b"labels", txn=t, create=False))["entries"])
        """, [store])
        XCTAssertEqual(raw.status, 0, raw.stderr)
        XCTAssertEqual(Int(raw.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), n * (before + 1),
                       "killed \(killed) of 5 runs; leftovers must be gone")
        print("killed \(killed) of 5 imports mid-way")
    }
}
