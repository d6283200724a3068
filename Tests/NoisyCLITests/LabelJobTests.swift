import XCTest
import Foundation
import KeyedRandom
import TestSupport

/// Label jobs in parts (`labels import --job`, `label --job`, `labels jobs|commit|abandon`),
/// through the real binary, with predictions made by numpy and the stored label bytes
/// read back with python-lmdb.
final class LabelJobTests: XCTestCase {
    var root = ""
    override func setUp() { root = Fixtures.temporaryDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    /// A store with 3 classes of 4 labeled PNGs each and `unlabeled` unlabeled ones.
    func makeStore(unlabeled: Int = 40) throws -> String {
        for c in 0..<3 {
            for i in 0..<4 { Fixtures.write(Fixtures.png(width: 10, height: 10, seed: UInt64(500 + 10 * c + i)), to: "\(root)/l/k\(c)/\(i).png") }
        }
        for i in 0..<unlabeled { Fixtures.write(Fixtures.png(width: 10, height: 10, seed: UInt64(1000 + i)), to: "\(root)/u/\(i).png") }
        let store = "\(root)/s.noisy"
        let r = try Processes.noisy(["ingest", "--store", store, "--labeled", "\(root)/l", "--unlabeled", "\(root)/u", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return store
    }

    /// Seeded predictions for every unlabeled sample (p.npy, ids.npy) and, for each W,
    /// the rows of part i (positions i, i+W, ... in id order), shuffled within the part:
    /// pW_i.npy, idsW_i.npy. The split's ids come from `labels jobs --ids-out`.
    func makePredictions(_ store: String, parts: [Int], logits: Bool = false) throws {
        let ids = try Processes.noisy(["labels", "jobs", "--store", store, "--part", "0", "--parts", "1", "--ids-out", "\(root)/all.npy"])
        XCTAssertEqual(ids.status, 0, ids.stderr)
        let r = try Processes.python("""
        import sys, numpy as np
        d, logits, parts = sys.argv[1], sys.argv[2] == "1", [int(w) for w in sys.argv[3:]]
        ids = np.load(d + "/all.npy"); rng = np.random.default_rng(7)
        p = (rng.normal(0, 2, (len(ids), 3)) if logits else rng.dirichlet([0.4] * 3, len(ids))).astype(np.float32)
        np.save(d + "/p.npy", p); np.save(d + "/ids.npy", ids)
        for w in parts:
            for i in range(w):
                sel = np.arange(i, len(ids), w)[rng.permutation(len(range(i, len(ids), w)))]
                np.save(f"{d}/p{w}_{i}.npy", p[sel]); np.save(f"{d}/ids{w}_{i}.npy", ids[sel])
        """, [root, logits ? "1" : "0"] + parts.map(String.init))
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    func part(_ store: String, job: String, _ i: Int, of w: Int, file: String? = nil, extra: [String] = []) -> [String] {
        ["labels", "import", "--store", store, "--job", job, "--part", "\(i)", "--parts", "\(w)", "--teacher", "t",
         "--predictions", "\(root)/\(file ?? "p\(w)_\(i)").npy", "--ids", "\(root)/ids\(w)_\(i).npy"] + extra
    }

    func generationCount(_ store: String) throws -> Int {
        let r = try Processes.noisy(["labels", "list", "--store", store, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return ((try? JSONSerialization.jsonObject(with: r.stdoutData)) as? [Any])?.count ?? -1
    }

    func start(_ args: [String]) throws -> (Process, Pipe) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Processes.noisyBinary)
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        return (p, out)
    }

    /// W = 1 (one import), 2 and 7 parts, submitted in any order and 7 at once, make the
    /// same label bytes; a part sent twice keeps the first; two copies of one part sent
    /// at the same moment store exactly one.
    func testPartsMakeTheSameBytesAsOneImportWhateverTheSplit() throws {
        let store = try makeStore()
        try makePredictions(store, parts: [2, 7])
        let one = try Processes.noisy(["labels", "import", "--store", store, "--predictions", "\(root)/p.npy", "--ids", "\(root)/ids.npy",
                                       "--teacher", "t", "--quiet"])
        XCTAssertEqual(one.status, 0, one.stderr)

        // Seven workers at once, as a Slurm array would start them.
        let workers = try (0..<7).map { try start(part(store, job: "seven", $0, of: 7)) }
        var outputs: [String] = []
        for (p, pipe) in workers {
            p.waitUntilExit()
            let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            XCTAssertEqual(p.terminationStatus, 0, text)
            outputs.append(text)
        }
        XCTAssertEqual(outputs.filter { $0.contains("committed generation 2") }.count, 1, "one worker commits: \(outputs)")
        XCTAssertEqual(try generationCount(store), 2)

        // Two parts, the second first, the first sent twice; the receipt in JSON.
        let second = try Processes.noisy(part(store, job: "two", 1, of: 2, extra: ["--json"]))
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertNil(try Processes.schemaViolation(schema: "label-part.schema.json", json: second.stdoutData))
        let again = try Processes.noisy(part(store, job: "two", 1, of: 2, file: "p2_0"))
        XCTAssertEqual(again.status, 0, "a part sent twice is not an error: \(again.stderr)")
        XCTAssertTrue(again.stdout.contains("already submitted by") && again.stdout.contains("kept the first"), again.stdout)
        let listed = try Processes.noisy(["labels", "jobs", "--store", store, "--json"])
        XCTAssertEqual(listed.status, 0, listed.stderr)
        XCTAssertNil(try Processes.schemaViolation(schema: "label-jobs.schema.json", json: listed.stdoutData))
        XCTAssertTrue(listed.stdout.contains("\"missing\" : [\n      0\n    ]"), listed.stdout)
        let first = try Processes.noisy(part(store, job: "two", 0, of: 2))
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertTrue(first.stdout.contains("committed generation 3"), first.stdout)

        // The same part twice at the same moment, with its rows in two orders: one stored.
        let racers = try [start(part(store, job: "race", 0, of: 2)), start(part(store, job: "race", 0, of: 2, file: "p2_0"))]
        var stored = 0, kept = 0
        for (p, pipe) in racers {
            p.waitUntilExit()
            let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            XCTAssertEqual(p.terminationStatus, 0, text)
            if text.contains("part 0 of 2 stored") { stored += 1 }
            if text.contains("kept the first") { kept += 1 }
        }
        XCTAssertEqual([stored, kept], [1, 1])
        XCTAssertEqual(try Processes.noisy(part(store, job: "race", 1, of: 2)).status, 0)

        let all = try labelRecords([store])
        XCTAssertEqual(all.keys.sorted(), ["1", "2", "3", "4"])
        XCTAssertEqual(all["1"]?.count, 40)
        for k in ["2", "3", "4"] { XCTAssertEqual(all[k], all["1"], "generation \(k) holds the one-import bytes") }
        let v = try Processes.noisy(["verify", "--store", store])
        XCTAssertEqual(v.status, 0, v.stdout + v.stderr)
    }

    /// `noisy label --job` with the in-process trainer: 2 and 7 workers at once make the
    /// bytes of one `noisy label` run. The parts batch the split differently; the teacher
    /// computes its matrix products row by row for labelling, so a sample's prediction
    /// does not depend on its batch (OpenBLAS's sgemm would round it by its place).
    /// Both teachers, the MLP and the CNN.
    func testInProcessLabellingInPartsEqualsOneLabelRun() throws {
        let store = try makeStore()
        var generation = 0
        for model in ["mlp", "cnn"] {
            let ckpt = "\(root)/\(model).ckpt"
            let train = try Processes.noisy(["train", "--store", store, "--size", "8", "--crop", "pad", "--pad", "1", "--model", model,
                                             "--depth", "1", "--width", "0.5", "--epochs", "3", "--batch-size", "8", "--threads", "1",
                                             "--eval-every", "0", "--out", ckpt])
            XCTAssertEqual(train.status, 0, train.stderr)
            let label = { (extra: [String]) in ["label", "--store", store, "--checkpoint", ckpt, "--teacher", model, "--threads", "2"] + extra }
            let one = try Processes.noisy(label([]))
            XCTAssertEqual(one.status, 0, one.stderr)
            generation += 1
            let reference = generation
            for w in [2, 7] {
                let workers = try (0..<w).map { try start(label(["--job", "\(model)\(w)", "--part", "\($0)", "--parts", "\(w)", "--worker", "task \($0)"])) }
                for (p, pipe) in workers {
                    p.waitUntilExit()
                    XCTAssertEqual(p.terminationStatus, 0, String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
                }
                generation += 1
            }
            let all = try labelRecords([store])
            XCTAssertEqual(all["\(reference)"]?.count, 40)
            XCTAssertEqual(all["\(reference + 1)"], all["\(reference)"], "\(model): 2 parts")
            XCTAssertEqual(all["\(reference + 2)"], all["\(reference)"], "\(model): 7 parts")
        }
    }

    /// Bad parts are refused with one line and leave the other parts; a commit with parts
    /// missing names them; abandon removes one job's parts and nothing else.
    func testBadPartsAreRefusedAndTheOtherPartsStay() throws {
        let store = try makeStore()
        try makePredictions(store, parts: [3])
        let r = try Processes.python("""
        import sys, numpy as np
        d = sys.argv[1]; p = np.load(d + "/p3_1.npy"); ids = np.load(d + "/ids3_1.npy")
        nan = p.copy(); nan[2, 1] = np.nan; np.save(d + "/nan.npy", nan)
        neg = p.copy(); neg[0] = [1.2, -0.2, 0]; np.save(d + "/neg.npy", neg)
        np.save(d + "/unnorm.npy", p * 2)
        np.save(d + "/wide.npy", np.hstack([p, np.zeros((len(p), 1), np.float32)]))
        np.save(d + "/f64.npy", p.astype(np.float64))
        """, [root])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try Processes.noisy(part(store, job: "j", 0, of: 3)).status, 0)
        XCTAssertEqual(try Processes.noisy(part(store, job: "other", 2, of: 3)).status, 0)
        let refusals: [([String], String)] = [
            (part(store, job: "j", 1, of: 3, file: "nan"), "is not a finite number"),
            (part(store, job: "j", 1, of: 3, file: "neg"), "negative probability"),
            (part(store, job: "j", 1, of: 3, file: "unnorm"), "sums to 2.0000, not 1"),
            (part(store, job: "j", 1, of: 3, file: "wide"), "4 classes per row, the store has 3"),
            (part(store, job: "j", 1, of: 3, file: "f64"), "must be float32"),
            (part(store, job: "j", 1, of: 3, file: "p3_2") + ["--ids", "\(root)/ids3_2.npy"], "is not in part 1 of 3"),
            (part(store, job: "j", 1, of: 3).map { $0 == "3" ? "4" : $0 }, "exists with other settings: this part has parts 4 (the job has 3)"),
            (part(store, job: "j", 1, of: 3).map { $0 == "t" ? "another teacher" : $0 }, "teacher another teacher (the job has t)"),
            (part(store, job: "bad/name", 1, of: 3), "job name 'bad/name'"),
        ]
        for (args, reason) in refusals {
            let e = try Processes.noisy(args)
            XCTAssertEqual(e.status, 1, "\(args): \(e.stdout)")
            XCTAssertTrue(e.stderr.contains(reason), "\(args): \(e.stderr)")
            XCTAssertEqual(e.stderr.split(separator: "\n").count, 1, "one line: \(e.stderr)")
        }
        let commit = try Processes.noisy(["labels", "commit", "--store", store, "--job", "j"])
        XCTAssertEqual(commit.status, 1)
        XCTAssertTrue(commit.stderr.contains("job j: 2 of 3 parts missing: 1, 2"), commit.stderr)
        let listed = try Processes.noisy(["labels", "jobs", "--store", store])
        XCTAssertTrue(listed.stdout.contains("job j: unlabeled split, 40 samples in 3 parts, teacher 't', 1 done, 2 missing"), listed.stdout)
        let abandon = try Processes.noisy(["labels", "abandon", "--store", store, "--job", "j"])
        XCTAssertEqual(abandon.status, 0, abandon.stderr)
        XCTAssertTrue(abandon.stdout.contains("1 staged part(s) removed"), abandon.stdout)
        let after = try Processes.noisy(["labels", "jobs", "--store", store])
        XCTAssertFalse(after.stdout.contains("job j:"), after.stdout)
        XCTAssertTrue(after.stdout.contains("job other:"), "another job's parts stay: \(after.stdout)")
        XCTAssertEqual(try generationCount(store), 0)
        let v = try Processes.noisy(["verify", "--store", store])
        XCTAssertEqual(v.status, 0, v.stdout + v.stderr)
    }

    /// kill -9 at random points of a worker submitting a part and of a commit: no torn
    /// part is ever listed, no generation appears half made, and re-running only what is
    /// missing ends with the one-import bytes, once.
    func testKilledWorkersAndCommitsLeaveNoTornStateAndTheReRunFinishes() throws {
        let store = try makeStore(unlabeled: 400)
        try makePredictions(store, parts: [2])
        XCTAssertEqual(try Processes.noisy(["labels", "import", "--store", store, "--predictions", "\(root)/p.npy", "--ids", "\(root)/ids.npy",
                                            "--teacher", "t", "--quiet"]).status, 0)
        let reference = try labelRecords([store])["1"]
        XCTAssertEqual(reference?.count, 400)
        var rng = SplitMix64(seed: 42)
        let t0 = Date()
        XCTAssertEqual(try Processes.noisy(part(store, job: "probe", 0, of: 2, extra: ["--no-commit"])).status, 0)
        let duration = Date().timeIntervalSince(t0)
        XCTAssertEqual(try Processes.noisy(["labels", "abandon", "--store", store, "--job", "probe"]).status, 0)

        // Workers killed mid-part: the part is whole or absent.
        // A part that lands before its kill is checked, then abandoned, so the loop keeps
        // killing until three workers died mid-part (a loaded machine can make a run
        // outlast the probe or finish early; the test must not depend on which).
        var killed = 0
        for _ in 0..<24 where killed < 3 {
            let (p, _) = try start(part(store, job: "k", 0, of: 2, extra: ["--no-commit"]))
            usleep(UInt32(Double(rng.next() % 1000) / 1000 * 0.8 * duration * 1e6))
            if p.isRunning { kill(p.processIdentifier, SIGKILL); killed += 1 }
            p.waitUntilExit()
            let listed = try Processes.noisy(["labels", "jobs", "--store", store, "--job", "k", "--json"])
            XCTAssertEqual(listed.status, 0, listed.stderr)
            XCTAssertNil(try Processes.schemaViolation(schema: "label-jobs.schema.json", json: listed.stdoutData))
            let jobs = (try JSONSerialization.jsonObject(with: listed.stdoutData) as? [[String: Any]]) ?? []
            if let done = (jobs.first?["done"] as? [[String: Any]])?.first {
                XCTAssertEqual(done["samples"] as? Int, 200, "a listed part is whole")
                let staged = try XCTUnwrap(FileManager.default.contents(atPath: "\(store)/jobs/k/part-00000/rows.npy"))
                XCTAssertEqual(staged.count, 128 + 200 * 3 * 4, "the staged rows are whole")
            }
            XCTAssertEqual(try generationCount(store), 1)
            if jobs.first.map({ ($0["done"] as? [Any])?.isEmpty == false }) == true {
                XCTAssertEqual(try Processes.noisy(["labels", "abandon", "--store", store, "--job", "k"]).status, 0)
            }
        }
        XCTAssertEqual(killed, 3, "workers were killed while working")
        // Re-run the parts: a torn part 0 is replaced whole, then part 1 lands beside it.
        XCTAssertEqual(try Processes.noisy(part(store, job: "k", 0, of: 2, extra: ["--no-commit"])).status, 0)
        XCTAssertEqual(try Processes.noisy(part(store, job: "k", 1, of: 2, extra: ["--no-commit"])).status, 0)

        // Commits killed at random points, each from a fresh copy of the staged store.
        let commitArgs = { (s: String) in ["labels", "commit", "--store", s, "--job", "k"] }
        let probe = "\(root)/probe.noisy"
        try FileManager.default.copyItem(atPath: store, toPath: probe)
        let c0 = Date()
        XCTAssertEqual(try Processes.noisy(commitArgs(probe)).status, 0)
        let commitTime = Date().timeIntervalSince(c0)
        for round in 0..<8 {
            let copy = "\(root)/copy\(round).noisy"
            try FileManager.default.copyItem(atPath: store, toPath: copy)
            let (p, _) = try start(commitArgs(copy))
            usleep(UInt32(Double(rng.next() % 1000) / 1000 * commitTime * 1e6))
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
            p.waitUntilExit()
            let count = try generationCount(copy)
            XCTAssertTrue(count == 1 || count == 2, "round \(round): \(count) generations")
            if count == 2 { XCTAssertEqual(try labelRecords([copy])["2"], reference, "round \(round): a visible generation is whole") }
            let again = try Processes.noisy(commitArgs(copy))
            XCTAssertEqual(again.status, 0, "round \(round): \(again.stderr)")
            XCTAssertEqual(try generationCount(copy), 2, "round \(round): the re-run commits once")
            XCTAssertEqual(try labelRecords([copy])["2"], reference, "round \(round)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: "\(copy)/jobs/k"), "round \(round): the job's folder is cleared")
            let v = try Processes.noisy(["verify", "--store", copy])
            XCTAssertEqual(v.status, 0, v.stdout + v.stderr)
            try FileManager.default.removeItem(atPath: copy)
        }
    }
}
