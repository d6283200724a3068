import Foundation
import KeyedRandom
import TestSupport
import XCTest

/// The seeded corruption suite: copies of a store holding samples, two
/// generations and a selection, each damaged in one way, with python-lmdb (which
/// nobody here wrote) as the judge of what the damage touched.
///
/// On every copy `info`, `verify`, `labels list`, `labels export` and `salvage`
/// finish without a signal. `verify` exits 1 whenever python-lmdb reads the copy
/// differently from the original (or cannot read it). `salvage` keeps every sample
/// and generation that python-lmdb still reads exactly as in the original, byte for
/// byte, and its new store passes `verify`.
final class CorruptionSuiteTests: XCTestCase {
    var root = ""
    override func setUp() { root = Fixtures.temporaryDirectory(name) }
    override func tearDown() { if ProcessInfo.processInfo.environment["NOISY_KEEP"] == nil { try? FileManager.default.removeItem(atPath: root) } }

    /// Reads a store with python-lmdb and prints, as JSON, a digest of everything
    /// and one per sample (record + image) and per generation (record, labels,
    /// selections and the digests that vouch for them). Run in its own process on a
    /// damaged copy: python-lmdb trusts pages as LMDB does and may crash.
    static let oracle = #"""
    import hashlib, json, sys, lmdb
    def read(path):
        e = lmdb.open(path, readonly=True, lock=False, max_dbs=32)
        with e.begin() as t:
            names = [bytes(k) for k, _ in t.cursor()]
        dbs = {}
        for n in names:
            d = e.open_db(n, create=False, dupsort=(n == b"sources"))
            with e.begin(db=d) as t:
                dbs[n] = [(bytes(k), bytes(v)) for k, v in t.cursor()]
        return dbs
    def h(*parts):
        x = hashlib.sha256()
        for p in parts:
            x.update(len(p).to_bytes(4, "little")); x.update(p)
        return x.hexdigest()
    def digests(dbs):
        get = lambda n: dict(dbs.get(n, []))
        samples, images, gens, seals, meta = get(b"samples"), get(b"images"), get(b"generations"), get(b"seals"), get(b"meta")
        out = {"all": h(*[n + b"|" + k + b"|" + v for n in sorted(dbs) for k, v in dbs[n]]), "samples": {}, "generations": {}}
        for k, v in samples.items():
            out["samples"][str(int.from_bytes(k, "big"))] = h(v, images.get(k, b"?"))
        for k, v in gens.items():
            g = int.from_bytes(k, "big")
            labels = [a + b for a, b in dbs.get(b"labels", []) if a[:4] == k]
            sels = [a + b for a, b in dbs.get(b"selections", []) if a[:4] == k]
            vouch = [seals.get(b"generations\0" + k, b"?")] + [a + b for a, b in meta.items() if a.startswith(b"selection/%d/" % g)]
            out["generations"][str(g)] = h(v, *labels, *sels, *vouch)
        return out
    if __name__ == "__main__":
        if sys.argv[1] == "dump":
            print(json.dumps(digests(read(sys.argv[2]))))
        else:  # compare ORIGINAL_JSON DAMAGED_JSON SALVAGED_PATH: what salvage should have kept and did not
            orig, dam = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
            sal = digests(read(sys.argv[4]))
            untouched_s = [i for i, d in orig["samples"].items() if dam["samples"].get(i) == d]
            untouched_g = [g for g, d in orig["generations"].items() if dam["generations"].get(g) == d]
            missing_s = [i for i in untouched_s if sal["samples"].get(i) != orig["samples"][i]]
            missing_g = [g for g in untouched_g if sal["generations"].get(g) is None]
            # A kept generation keeps its record and labels exactly; its vouchers are rewritten.
            print(json.dumps({"untouched_samples": len(untouched_s), "untouched_generations": len(untouched_g),
                              "missing_samples": missing_s, "missing_generations": missing_g,
                              "kept_samples": len(sal["samples"])}))
    """#

    struct Fixture: Sendable { var store: String; var data: Data; var oracle: String; var originalDump: String }

    /// 30 labeled images in two classes (small: their bytes sit in leaf pages), 60
    /// unlabeled ones (large: overflow pages), two generations over the unlabeled
    /// ones and a selection in the second.
    func makeFixture() throws -> Fixture {
        for c in ["a", "b"] {
            for i in 0..<15 { Fixtures.write(Fixtures.png(width: 20, height: 16, seed: UInt64(7000 + i + (c == "a" ? 0 : 100))), to: "\(root)/l/\(c)/\(i).png") }
        }
        for i in 0..<60 { Fixtures.write(Fixtures.png(width: 48, height: 40, seed: UInt64(8000 + i)), to: "\(root)/u/\(String(format: "%03d", i)).png") }
        let store = "\(root)/s.noisy"
        XCTAssertEqual(try Processes.noisy(["ingest", "--store", store, "--labeled", "\(root)/l", "--unlabeled", "\(root)/u", "--quiet"]).status, 0)
        let made = try Processes.python("""
        import json, sys, numpy as np
        rng = np.random.RandomState(11)
        for g in (1, 2):
            with open(sys.argv[1] + "/g%d.jsonl" % g, "w") as f:
                for i in range(30, 90):
                    f.write(json.dumps({"id": i, "probs": [float(x) for x in rng.dirichlet([1, 1])]}) + "\\n")
        """, [root])
        XCTAssertEqual(made.status, 0, made.stderr)
        for g in [1, 2] {
            let r = try Processes.noisy(["labels", "import", "--store", store, "--jsonl", "\(root)/g\(g).jsonl", "--teacher", "t\(g)", "--quiet"])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        let f = try Processes.noisy(["labels", "filter", "--store", store, "--generation", "2", "--threshold", "0.6", "--per-class", "10"])
        XCTAssertEqual(f.status, 0, f.stderr)
        XCTAssertEqual(try Processes.noisy(["verify", "--store", store]).status, 0)
        let oracle = "\(root)/oracle.py"
        try Self.oracle.write(toFile: oracle, atomically: true, encoding: .utf8)
        let dump = try Processes.run(Processes.python, [oracle, "dump", store])
        XCTAssertEqual(dump.status, 0, dump.stderr)
        let originalDump = "\(root)/original.json"
        try dump.stdout.write(toFile: originalDump, atomically: true, encoding: .utf8)
        return Fixture(store: store, data: try Data(contentsOf: URL(fileURLWithPath: store + "/data.mdb")), oracle: oracle, originalDump: originalDump)
    }

    /// The kinds of page in the original file, from their headers.
    func pages(_ data: Data) -> (branch: [Int], leaf: [Int], overflow: [(Int, Int)]) {
        var out: (branch: [Int], leaf: [Int], overflow: [(Int, Int)]) = ([], [], [])
        data.withUnsafeBytes { b in
            for p in 2..<(b.count / 4096) {
                let number = b.loadUnaligned(fromByteOffset: p * 4096, as: UInt64.self)
                let flags = b.loadUnaligned(fromByteOffset: p * 4096 + 10, as: UInt16.self)
                guard number == UInt64(p) else { continue }
                switch flags {
                case 1: out.branch.append(p)
                case 2: out.leaf.append(p)
                case 4: out.overflow.append((p, Int(b.loadUnaligned(fromByteOffset: p * 4096 + 12, as: UInt32.self))))
                default: break
                }
            }
        }
        return out
    }

    /// One damaged copy, checked end to end. Returns a line describing a failure, or nil.
    static func check(_ fixture: Fixture, copy: String, bytes: Data, label: String, tally: ConcurrentResults) throws -> [String] {
        var failures: [String] = []
        defer { if ProcessInfo.processInfo.environment["NOISY_KEEP"] == nil { for s in ["", "-saved", "-export", ".json"] { try? FileManager.default.removeItem(atPath: copy + s) } } }
        tally.count("copies")
        try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
        try bytes.write(to: URL(fileURLWithPath: copy + "/data.mdb"))
        let dump = try Processes.run(Processes.python, [fixture.oracle, "dump", copy])
        let original = try String(contentsOfFile: fixture.originalDump, encoding: .utf8)
        let readable = dump.status == 0 && dump.terminationReason == .exit
        let same = readable && dump.stdout == original
        if !readable { tally.count("python-lmdb cannot read it") }
        if !same { tally.count("data changed (python-lmdb)") }
        let damagedDump = copy + ".json"
        if readable { try dump.stdout.write(toFile: damagedDump, atomically: true, encoding: .utf8) }
        let commands: [[String]] = [
            ["info", "--store", copy], ["verify", "--store", copy], ["labels", "list", "--store", copy],
            ["labels", "export", "--store", copy, "--generation", "2", "--out", copy + "-export"],
            ["salvage", "--store", copy, "--out", copy + "-saved", "--json"],
        ]
        var statuses: [Int32] = []
        for args in commands {
            let r = try Processes.noisy(args)
            statuses.append(r.status)
            if r.terminationReason != .exit {
                tally.count("signals")
                failures.append("\(label): \(args[0]) \(args[1]) died of signal \(r.status)")
            } else if r.status != 0 && args[0] != "verify" && args[0] != "salvage" && r.stderr.split(separator: "\n").count != 1 {
                failures.append("\(label): \(args[0]) \(args[1]) said more than one line: \(r.stderr.prefix(300))")
            }
        }
        if statuses[1] == 1 { tally.count("verify exit 1") }
        if statuses[4] == 0 { tally.count("salvage wrote a store that passes verify") }
        if !same && statuses[1] != 1 { failures.append("\(label): python-lmdb reads changed data, verify exited \(statuses[1])") }
        guard FileManager.default.fileExists(atPath: copy + "-saved/data.mdb") else {
            failures.append("\(label): salvage wrote no store")
            return failures
        }
        if statuses[4] != 0 { failures.append("\(label): salvage's store fails verify") }
        if readable {
            let cmp = try Processes.run(Processes.python, [fixture.oracle, "compare", fixture.originalDump, damagedDump, copy + "-saved"])
            guard cmp.status == 0, let j = try JSONSerialization.jsonObject(with: cmp.stdoutData) as? [String: Any] else {
                failures.append("\(label): compare failed: \(cmp.stderr.suffix(300))")
                return failures
            }
            tally.count("untouched samples", j["untouched_samples"] as? Int ?? 0)
            tally.count("untouched samples salvage lost", (j["missing_samples"] as? [String])?.count ?? 0)
            tally.count("untouched generations", j["untouched_generations"] as? Int ?? 0)
            tally.count("untouched generations salvage lost", (j["missing_generations"] as? [String])?.count ?? 0)
            if let m = j["missing_samples"] as? [String], !m.isEmpty { failures.append("\(label): salvage lost untouched samples \(m)") }
            if let m = j["missing_generations"] as? [String], !m.isEmpty { failures.append("\(label): salvage lost untouched generations \(m)") }
        }
        return failures
    }

    /// Records changed in place by another LMDB client (python-lmdb), as a flipped
    /// bit in a value would change them: LMDB itself sees nothing wrong. A label:
    /// verify names the generation, export and training refuse it with one line,
    /// salvage keeps the other generation. A class name and a field no index copies
    /// (a sample's original width): verify names the database through its seal.
    func testChangedRecordsAreCaughtByDigestsAndSeals() throws {
        let fixture = try makeFixture()
        func damaged(_ name: String, _ edit: String) throws -> String {
            let copy = "\(root)/\(name)"
            try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
            try fixture.data.write(to: URL(fileURLWithPath: copy + "/data.mdb"))
            let r = try Processes.python("""
            import lmdb, struct, sys
            e = lmdb.open(sys.argv[1], max_dbs=32)
            \(edit)
            """, [copy])
            XCTAssertEqual(r.status, 0, r.stderr)
            return copy
        }
        // Flip one bit of the first stored probability of sample 40 in generation 2.
        let label = try damaged("label", """
        db = e.open_db(b"labels")
        with e.begin(write=True, db=db) as t:
            k = struct.pack(">IQ", 2, 40); v = bytearray(t.get(k)); v[8] ^= 0x04; t.put(k, bytes(v))
        """)
        let v = try Processes.noisy(["verify", "--store", label, "--json"])
        XCTAssertEqual(v.status, 1)
        XCTAssertNil(try Processes.schemaViolation(schema: "verify.schema.json", json: v.stdoutData))
        XCTAssertTrue(v.stdout.contains("generation 2: its labels do not match their digest"), v.stdout)
        XCTAssertFalse(v.stdout.contains("generation 1:"), v.stdout)
        let export = try Processes.noisy(["labels", "export", "--store", label, "--generation", "2", "--out", "\(root)/ex"])
        XCTAssertEqual(export.status, 1)
        XCTAssertEqual(export.stderr.split(separator: "\n").count, 1, export.stderr)
        XCTAssertTrue(export.stderr.contains("generation 2") && export.stderr.contains("noisy verify"), export.stderr)
        XCTAssertEqual(try Processes.noisy(["labels", "export", "--store", label, "--generation", "1", "--out", "\(root)/ex1"]).status, 0)
        let train = try Processes.noisy(["train", "--store", label, "--generation", "2", "--epochs", "1", "--out", "\(root)/m.ckpt"])
        XCTAssertEqual(train.status, 1, train.stdout)
        XCTAssertTrue(train.stderr.contains("generation 2: its labels do not match their digest"), train.stderr)
        let salvage = try Processes.noisy(["salvage", "--store", label, "--out", "\(root)/label-saved", "--json"])
        XCTAssertEqual(salvage.status, 0, salvage.stderr)
        XCTAssertNil(try Processes.schemaViolation(schema: "salvage.schema.json", json: salvage.stdoutData))
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: salvage.stdoutData) as? [String: Any])
        let generations = (report["generations"] as? [[String: Any]] ?? []).map { ($0["generation"] as? Int ?? 0, $0["saved"] as? Bool ?? false) }
        XCTAssertEqual(generations.map(\.0), [1, 2])
        XCTAssertEqual(generations.map(\.1), [true, false])
        XCTAssertEqual(report["samples_saved"] as? Int, 90)
        XCTAssertEqual(try Processes.noisy(["verify", "--store", "\(root)/label-saved"]).status, 0)

        let className = try damaged("class", """
        db = e.open_db(b"classes")
        with e.begin(write=True, db=db) as t:
            t.put(struct.pack(">I", 1), b"c")
        """)
        let vc = try Processes.noisy(["verify", "--store", className])
        XCTAssertEqual(vc.status, 1)
        XCTAssertTrue(vc.stdout.contains("database classes"), vc.stdout)

        let width = try damaged("width", """
        db = e.open_db(b"samples")
        with e.begin(write=True, db=db) as t:
            k = struct.pack(">Q", 50); v = bytearray(t.get(k)); v[16] ^= 0x01; t.put(k, bytes(v))
        """)
        let vw = try Processes.noisy(["verify", "--store", width])
        XCTAssertEqual(vw.status, 1)
        XCTAssertTrue(vw.stdout.contains("database samples: its records do not match their seal"), vw.stdout)
        let sw = try Processes.noisy(["salvage", "--store", width, "--out", "\(root)/width-saved", "--json"])
        let lost = (try JSONSerialization.jsonObject(with: sw.stdoutData) as? [String: Any])?["lost_samples"] as? [[String: Any]]
        XCTAssertEqual(lost?.compactMap { $0["id"] as? Int }, [50], sw.stdout)
    }

    /// Damaged copies of the fixture: `perKind` copies with 1-`maxFlips` bit flips in
    /// each of the meta pages, branch pages, leaf pages and the overflow pages that
    /// hold image bytes, then truncations at `cuts` points and `zeroed` zeroed pages
    /// (the first a meta page).
    static func copies(of fixture: Fixture, kinds: (branch: [Int], leaf: [Int], overflow: [(Int, Int)]), seed: UInt64,
                       perKind: Int, maxFlips: Int, cuts: Int, zeroed: Int) -> [(String, Data)] {
        var rng = SplitMix64(seed: seed)
        var out: [(String, Data)] = []
        for kind in ["meta", "branch", "leaf", "overflow"] {
            for c in 0..<perKind {
                var b = fixture.data
                for _ in 0..<(1 + Int(rng.next() % UInt64(maxFlips))) {
                    let offset: Int
                    switch kind {
                    case "meta": offset = Int(rng.next() % 2) * 4096 + Int(rng.next() % 160)
                    case "branch": offset = kinds.branch[Int(rng.next() % UInt64(kinds.branch.count))] * 4096 + Int(rng.next() % 4096)
                    case "leaf": offset = kinds.leaf[Int(rng.next() % UInt64(kinds.leaf.count))] * 4096 + Int(rng.next() % 4096)
                    default:
                        let (p, n) = kinds.overflow[Int(rng.next() % UInt64(kinds.overflow.count))]
                        offset = p * 4096 + Int(rng.next() % UInt64(max(1, n) * 4096))
                    }
                    b[offset] ^= UInt8(1) << UInt8(rng.next() % 8)
                }
                out.append(("\(seed)-\(kind)-\(c)", b))
            }
        }
        for k in 1...max(1, cuts) where cuts > 0 {
            let cut = 4096 * 2 + Int(rng.next() % UInt64(fixture.data.count - 8192))
            out.append(("\(seed)-cut-\(k)", fixture.data.prefix(cuts == 10 ? 4096 * 2 + (fixture.data.count - 8192) * k / 11 : cut)))
        }
        for z in 0..<zeroed {
            var b = fixture.data
            let page = z == 0 ? 1 : 2 + Int(rng.next() % UInt64(fixture.data.count / 4096 - 2))
            b.replaceSubrange((page * 4096)..<((page + 1) * 4096), with: Data(count: 4096))
            out.append(("\(seed)-zero-\(page)", b))
        }
        return out
    }

    /// Checks copies on two workers (this machine's cores).
    func run(_ fixture: Fixture, _ copies: [(String, Data)], tally: ConcurrentResults) {
        let folder = root + "/c"
        DispatchQueue.concurrentPerform(iterations: 2) { worker in
            let only = ProcessInfo.processInfo.environment["NOISY_ONLY"]
            for (i, (label, bytes)) in copies.enumerated() where i % 2 == worker && (only == nil || only == label) {
                do {
                    tally.append(try Self.check(fixture, copy: "\(folder)/\(label)", bytes: bytes, label: label, tally: tally))
                } catch {
                    tally.append(["\(label): \(error)"])
                }
            }
        }
    }

    /// (seed, copy) pairs from `tools/fuzz/stores.sh` rounds that found a bug:
    /// 424-leaf-1 damaged the size field of the `seals` record in the list of
    /// databases (LMDB reads that record by its fixed size); 440-cut-3 cut the file
    /// part way through the page holding the record digests; 517-branch-7 set the
    /// meta bit on a branch page (LMDB goes by the branch bit alone); 526-leaf-3 set
    /// the nested-database bit and changed the size of an image entry (LMDB reads it
    /// as data, by its size).
    static let fuzzRegressions: [(UInt64, String)] = [(424, "424-leaf-1"), (440, "440-cut-3"), (517, "517-branch-7"), (526, "526-leaf-3")]

    func testEveryDamagedCopyEndsWithoutASignalAndSalvageKeepsWhatIsWhole() throws {
        let fixture = try makeFixture()
        let kinds = pages(fixture.data)
        XCTAssertFalse(kinds.branch.isEmpty, "the fixture must have branch pages")
        XCTAssertGreaterThan(kinds.leaf.count, 5)
        XCTAssertGreaterThan(kinds.overflow.count, 20)
        let tally = ConcurrentResults()
        // tools/fuzz/stores.sh sets NOISY_CORRUPTION_SECONDS: more copies, more flips,
        // fresh seeds until the time is up. In the tests: one fixed seed.
        if let seconds = ProcessInfo.processInfo.environment["NOISY_CORRUPTION_SECONDS"].flatMap(Double.init) {
            let start = Date()
            var seed = UInt64(ProcessInfo.processInfo.environment["NOISY_CORRUPTION_SEED"] ?? "1") ?? 1
            while Date().timeIntervalSince(start) < seconds {
                run(fixture, Self.copies(of: fixture, kinds: kinds, seed: seed, perKind: 10, maxFlips: 12, cuts: 3, zeroed: 3), tally: tally)
                seed += 1
            }
            print("corruption fuzz: \(Int(Date().timeIntervalSince(start))) s, seeds up to \(seed - 1): " + tally.summary)
        } else {
            let copies = Self.copies(of: fixture, kinds: kinds, seed: 0x5EED_C0DE, perKind: 60, maxFlips: 3, cuts: 10, zeroed: 12)
            XCTAssertGreaterThanOrEqual(copies.count, 200 + 10 + 10)
            // Copies the longer fuzz runs (FUZZING.md) once got wrong, kept as regressions.
            let regressions = Self.fuzzRegressions.flatMap { seed, label in
                Self.copies(of: fixture, kinds: kinds, seed: seed, perKind: 10, maxFlips: 12, cuts: 3, zeroed: 3).filter { $0.0 == label }
            }
            XCTAssertEqual(regressions.count, Self.fuzzRegressions.count, "each fuzz regression names a copy its seed makes")
            run(fixture, copies + regressions, tally: tally)
            print("corruption suite: " + tally.summary)
        }
        let failures = tally.all
        XCTAssertTrue(failures.isEmpty, "\(failures.count) failures:\n" + failures.prefix(30).joined(separator: "\n"))
        XCTAssertEqual(tally.counts["signals"] ?? 0, 0)
    }
}

/// Failure lines gathered from the two workers.
final class ConcurrentResults: @unchecked Sendable {
    // @unchecked: `lines` and `tallies` are only touched under `lock`.
    private let lock = NSLock()
    private var lines: [String] = []
    private var tallies: [String: Int] = [:]
    func append(_ more: [String]) { lock.lock(); lines += more; lock.unlock() }
    func count(_ what: String, _ n: Int = 1) { lock.lock(); tallies[what, default: 0] += n; lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return lines }
    var counts: [String: Int] { lock.lock(); defer { lock.unlock() }; return tallies }
    var summary: String { counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") }
}
