import XCTest
import Foundation
import TestSupport

/// Label jobs over a shard set: parts from the CLI, from `noisy label`, and from label
/// sessions on node servers that each read only their own shards. The stored label bytes
/// are read back with python-lmdb and compared with one import of the same predictions.
final class ShardJobTests: XCTestCase {
    var root = ""
    override func setUp() { root = Fixtures.temporaryDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    /// A store of 3 classes x 4 labeled PNGs and 40 unlabeled ones, cut into 3 shards.
    func makeSet() throws -> String {
        for c in 0..<3 {
            for i in 0..<4 { Fixtures.write(Fixtures.png(width: 10, height: 10, seed: UInt64(700 + 10 * c + i)), to: "\(root)/l/k\(c)/\(i).png") }
        }
        for i in 0..<40 { Fixtures.write(Fixtures.png(width: 10, height: 10, seed: UInt64(3000 + i)), to: "\(root)/u/\(i).png") }
        let store = "\(root)/s.noisy"
        let r = try Processes.noisy(["ingest", "--store", store, "--labeled", "\(root)/l", "--unlabeled", "\(root)/u", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let set = "\(root)/set"
        let s = try Processes.noisy(["shard", "--store", store, "--shards", "3", "--out", set])
        XCTAssertEqual(s.status, 0, s.stderr)
        return set
    }

    func start(_ args: [String], environment: [String: String] = [:], executable: String = Processes.noisyBinary) throws -> (Process, Pipe) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = args
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        return (p, out)
    }

    func finish(_ workers: [(Process, Pipe)]) -> [String] {
        workers.map { p, pipe in
            let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 0, text)
            return text
        }
    }

    func manifestGenerations(_ set: String) throws -> [Int] {
        let data = try XCTUnwrap(FileManager.default.contents(atPath: set + "/manifest.json"))
        let m = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return (m["generations"] as? [[String: Any]] ?? []).compactMap { $0["generation"] as? Int }
    }

    /// Parts from `labels import` (W = 2 at once, W = 3 staged then committed) and from
    /// `noisy label --job` make the bytes one import over the set makes; bad parts are
    /// refused with one line; jobs are listed, committed once and abandoned.
    func testSetJobsFromTheCLIMakeTheOneImportBytes() throws {
        let set = try makeSet()
        for w in [1, 2, 3] {
            for i in 0..<w {
                let r = try Processes.noisy(["labels", "jobs", "--store", set, "--part", "\(i)", "--parts", "\(w)", "--ids-out", "\(root)/ids\(w)_\(i).npy"])
                XCTAssertEqual(r.status, 0, r.stderr)
            }
        }
        // Seeded predictions for every sample; each part's rows in a shuffled order.
        let made = try Processes.python("""
        import sys, numpy as np
        d = sys.argv[1]
        ids = np.load(d + "/ids1_0.npy"); rng = np.random.default_rng(11)
        p = rng.dirichlet([0.4] * 3, len(ids)).astype(np.float32)
        np.save(d + "/p1_0.npy", p)
        row = {int(k): n for n, k in enumerate(ids)}
        for w in (2, 3):
            for i in range(w):
                part = np.load(f"{d}/ids{w}_{i}.npy"); part = part[rng.permutation(len(part))]
                np.save(f"{d}/ids{w}_{i}.npy", part); np.save(f"{d}/p{w}_{i}.npy", p[[row[int(k)] for k in part]])
        print(len(ids))
        """, [root])
        XCTAssertEqual(made.stdout, "40\n", made.stderr)
        func part(_ job: String, _ i: Int, of w: Int, file: String? = nil, teacher: String = "t", extra: [String] = []) -> [String] {
            ["labels", "import", "--store", set, "--job", job, "--part", "\(i)", "--parts", "\(w)", "--teacher", teacher,
             "--predictions", "\(root)/\(file ?? "p\(w)_\(i)").npy", "--ids", "\(root)/ids\(w)_\(i).npy"] + extra
        }
        let one = try Processes.noisy(["labels", "import", "--store", set, "--predictions", "\(root)/p1_0.npy", "--ids", "\(root)/ids1_0.npy", "--teacher", "t"])
        XCTAssertEqual(one.status, 0, one.stderr)

        let two = finish(try (0..<2).map { try start(part("two", $0, of: 2)) })
        XCTAssertEqual(two.filter { $0.contains("committed generation 2 over the shard set") }.count, 1, "one worker commits: \(two)")
        XCTAssertEqual(try manifestGenerations(set), [1, 2])

        // W = 3: a part alone, listed; bad parts refused; staged without commit, committed once.
        let p1 = try Processes.noisy(part("three", 1, of: 3, extra: ["--no-commit", "--json"]))
        XCTAssertEqual(p1.status, 0, p1.stderr)
        XCTAssertNil(try Processes.schemaViolation(schema: "label-part.schema.json", json: p1.stdoutData))
        let listed = try Processes.noisy(["labels", "jobs", "--store", set, "--json"])
        XCTAssertEqual(listed.status, 0, listed.stderr)
        XCTAssertNil(try Processes.schemaViolation(schema: "label-jobs.schema.json", json: listed.stdoutData))
        let jobs = try XCTUnwrap(try JSONSerialization.jsonObject(with: listed.stdoutData) as? [[String: Any]])
        XCTAssertEqual(jobs.first?["missing"] as? [Int], [0, 2])
        XCTAssertEqual((jobs.first?["spec"] as? [String: Any])?["samples"] as? Int, 40, "the set's samples, not one shard's")
        let wrongIds = try Processes.noisy(["labels", "import", "--store", set, "--job", "three", "--part", "0", "--parts", "3", "--teacher", "t",
                                            "--predictions", "\(root)/p3_1.npy", "--ids", "\(root)/ids3_1.npy"])
        XCTAssertEqual(wrongIds.status, 1)
        XCTAssertTrue(wrongIds.stderr.contains("part 0 of 3: shard") && wrongIds.stderr.split(separator: "\n").count == 1, wrongIds.stderr)
        let otherTeacher = try Processes.noisy(part("three", 0, of: 3, teacher: "another"))
        XCTAssertEqual(otherTeacher.status, 1)
        XCTAssertTrue(otherTeacher.stderr.contains("other settings") && otherTeacher.stderr.contains("teacher another"), otherTeacher.stderr)
        let early = try Processes.noisy(["labels", "commit", "--store", set, "--job", "three"])
        XCTAssertEqual(early.status, 1)
        XCTAssertTrue(early.stderr.contains("parts missing"), early.stderr)
        for i in [0, 2] { XCTAssertEqual(try Processes.noisy(part("three", i, of: 3, extra: ["--no-commit"])).status, 0) }
        let commit = try Processes.noisy(["labels", "commit", "--store", set, "--job", "three"])
        XCTAssertEqual(commit.status, 0, commit.stderr)
        XCTAssertTrue(commit.stdout.contains("committed generation 3 over the shard set"), commit.stdout)
        let again = try Processes.noisy(["labels", "commit", "--store", set, "--job", "three"])
        XCTAssertTrue(again.status == 1 || again.stdout.contains("already committed"), again.stdout + again.stderr)
        XCTAssertEqual(try manifestGenerations(set), [1, 2, 3])
        // Abandon: the staged parts go, on every shard, and nothing else.
        XCTAssertEqual(try Processes.noisy(part("gone", 0, of: 2, extra: ["--no-commit"])).status, 0)
        let abandon = try Processes.noisy(["labels", "abandon", "--store", set, "--job", "gone"])
        XCTAssertEqual(abandon.status, 0, abandon.stderr)
        XCTAssertTrue(abandon.stdout.contains("3 staged part(s) removed"), abandon.stdout)
        for shard in try shardPaths(set) { XCTAssertFalse(FileManager.default.fileExists(atPath: shard + "/jobs/gone")) }

        let records = try labelRecords(shardPaths(set))
        XCTAssertEqual(records["1"]?.count, 40)
        for k in ["2", "3"] { XCTAssertEqual(records[k], records["1"], "generation \(k): the one-import bytes") }

        // The in-process teacher in parts over the set equals one `noisy label` over it.
        let ckpt = "\(root)/t.ckpt"
        let train = try Processes.noisy(["train", "--store", set, "--size", "8", "--crop", "pad", "--pad", "1", "--model", "mlp",
                                         "--depth", "1", "--width", "0.5", "--epochs", "2", "--batch-size", "4", "--threads", "1",
                                         "--eval-every", "0", "--out", ckpt])
        XCTAssertEqual(train.status, 0, train.stderr)
        let label = ["label", "--store", set, "--checkpoint", ckpt, "--teacher", "mlp", "--threads", "1"]
        XCTAssertEqual(try Processes.noisy(label).status, 0)
        let parts = finish(try (0..<2).map { try start(label + ["--job", "mlp2", "--part", "\($0)", "--parts", "2"]) })
        XCTAssertEqual(parts.filter { $0.contains("committed generation 5 over the shard set") }.count, 1, "\(parts)")
        let labelled = try labelRecords(shardPaths(set))
        XCTAssertEqual(labelled["4"]?.count, 40)
        XCTAssertEqual(labelled["5"], labelled["4"], "label --job over the set: one label run's bytes")
        let v = try Processes.noisy(["verify", "--store", set])
        XCTAssertEqual(v.status, 0, v.stdout + v.stderr)
    }

    /// Two node servers, over shard 0 and over shards 1-2, each labelling with two local
    /// ranks (LOCAL_RANK / LOCAL_WORLD_SIZE, as torchrun sets them): the four sessions
    /// make one generation over the set, the bytes one import of their answers makes. A
    /// label session that is not a job's part is refused by a node server.
    func testNodeServersLabelTheirShardsAsPartsOfOneJob() throws {
        let set = try makeSet()
        var servers: [Process] = []
        defer { for s in servers where s.isRunning { s.terminate(); s.waitUntilExit() } }
        for (node, shards) in ["0", "1-2"].enumerated() {
            servers.append(try Processes.startServer(["--store", set, "--shards", shards, "--socket", "\(root)/n\(node).sock", "--size", "8",
                                                      "--batch-size", "5", "--threads", "1"], log: "\(root)/n\(node).log"))
        }
        let session = """
        import os, sys, numpy as np
        sys.path.insert(0, sys.argv[2])
        import noisy
        s = noisy.connect("unix:" + sys.argv[1]).label_session("unlabeled", teacher="numpy teacher", job=sys.argv[4])
        got_ids, got_p = [], []
        for ids, images in s:
            p = np.stack([np.random.default_rng(int(k)).dirichlet([0.5] * 3) for k in ids]).astype(np.float32)
            s.send(p); got_ids.append(ids.copy()); got_p.append(p)
        g = s.commit()
        name = f"{sys.argv[3]}/node{sys.argv[5]}-rank{os.environ['LOCAL_RANK']}"
        np.save(name + "-ids.npy", np.concatenate(got_ids)); np.save(name + "-p.npy", np.concatenate(got_p))
        print(s.info["shards"], s.receipt["part"], s.receipt["parts"], s.receipt["outcome"], g, "made" if s.receipt["created"] else "-")
        """
        let python = Processes.python
        let notAJob = try Processes.python("""
        import sys
        sys.path.insert(0, sys.argv[2])
        import noisy
        try:
            s = noisy.connect("unix:" + sys.argv[1]).label_session("unlabeled", teacher="t")
            list(s)
        except Exception as e:
            print(e)
        """, ["\(root)/n0.sock", Processes.repositoryRoot + "/python"])
        XCTAssertTrue(notAJob.stdout.contains("must be a label job's part"), notAJob.stdout + notAJob.stderr)

        var workers: [(Process, Pipe)] = []
        for node in 0..<2 {
            for rank in 0..<2 {
                workers.append(try start(["-c", session, "\(root)/n\(node).sock", Processes.repositoryRoot + "/python", root, "nodes", "\(node)"],
                                         environment: ["LOCAL_RANK": "\(rank)", "LOCAL_WORLD_SIZE": "2", "RANK": "\(2 * node + rank)",
                                                       "WORLD_SIZE": "4"], executable: python))
            }
        }
        let outputs = finish(workers)
        XCTAssertEqual(outputs.filter { $0.hasSuffix(" 1 made\n") }.count, 1, "one session's commit makes generation 1: \(outputs)")
        XCTAssertTrue(outputs.allSatisfy { $0.contains(" 2 stored ") }, "each rank's part is part LOCAL_RANK of LOCAL_WORLD_SIZE: \(outputs)")
        XCTAssertEqual(outputs.filter { $0.hasPrefix("[0]") }.count, 2, "node 0 reads shard 0: \(outputs)")
        XCTAssertEqual(outputs.filter { $0.hasPrefix("[1, 2]") }.count, 2, "node 1 reads shards 1 and 2: \(outputs)")
        XCTAssertEqual(try manifestGenerations(set), [1])
        for s in servers { s.terminate(); s.waitUntilExit() }

        // One import of the four sessions' answers, over the set: the same bytes.
        let merged = try Processes.python("""
        import glob, sys, numpy as np
        d = sys.argv[1]
        names = sorted(glob.glob(d + "/node*-rank*-ids.npy"))
        ids = np.concatenate([np.load(n) for n in names]); p = np.concatenate([np.load(n.replace("-ids", "-p")) for n in names])
        np.save(d + "/all-ids.npy", ids); np.save(d + "/all-p.npy", p)
        print(len(ids), len(set(ids.tolist())))
        """, [root])
        XCTAssertEqual(merged.stdout, "40 40\n", "every sample once: \(merged.stderr)")
        let one = try Processes.noisy(["labels", "import", "--store", set, "--predictions", "\(root)/all-p.npy", "--ids", "\(root)/all-ids.npy",
                                       "--teacher", "numpy teacher"])
        XCTAssertEqual(one.status, 0, one.stderr)
        let records = try labelRecords(shardPaths(set))
        XCTAssertEqual(records["1"]?.count, 40)
        XCTAssertEqual(records["2"], records["1"], "the node servers' job: one import's bytes")
        XCTAssertEqual(try Processes.noisy(["verify", "--store", set]).status, 0)
    }

    /// The rest of what reads a set: `labels export` writes the source store's snapshot
    /// files byte for byte (a merge of the shards in id order); `labels samples`, `show`
    /// and `compact` work on it; `run` makes each generation and selection one object over
    /// the set.
    func testExportSamplesShowCompactAndRunReadASet() throws {
        let set = try makeSet()
        let store = "\(root)/s.noisy"
        XCTAssertEqual(try Processes.noisy(["labels", "jobs", "--store", store, "--part", "0", "--parts", "1", "--ids-out", "\(root)/ids.npy"]).status, 0)
        let p = try Processes.python("""
        import sys, numpy as np
        ids = np.load(sys.argv[1] + "/ids.npy")
        np.save(sys.argv[1] + "/p.npy", np.random.default_rng(5).dirichlet([0.4] * 3, len(ids)).astype(np.float32))
        """, [root])
        XCTAssertEqual(p.status, 0, p.stderr)
        for target in [store, set] {
            let r = try Processes.noisy(["labels", "import", "--store", target, "--predictions", "\(root)/p.npy", "--ids", "\(root)/ids.npy", "--teacher", "t"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let f = try Processes.noisy(["labels", "filter", "--store", target, "--generation", "1", "--threshold", "0.4", "--per-class", "9",
                                         "--name", "nine", "--seed", "3"])
            XCTAssertEqual(f.status, 0, f.stderr)
        }
        // Snapshots: every format, all samples and the selection; the data files are the source's.
        for format in ["npy", "jsonl", "safetensors"] {
            for selection in [[], ["--selection", "nine"]] {
                var digests: [[String]] = []
                for (i, target) in [store, set].enumerated() {
                    let out = "\(root)/export-\(format)-\(selection.count)-\(i)"
                    let r = try Processes.noisy(["labels", "export", "--store", target, "--generation", "latest", "--format", format,
                                                 "--out", out, "--json"] + selection)
                    XCTAssertEqual(r.status, 0, r.stderr)
                    XCTAssertNil(try Processes.schemaViolation(schema: "labels-export-manifest.schema.json", json: r.stdoutData))
                    let m = try XCTUnwrap(try JSONSerialization.jsonObject(with: r.stdoutData) as? [String: Any])
                    let files = try XCTUnwrap(m["files"] as? [[String: Any]])
                    digests.append(files.map { "\($0["name"] ?? "") \($0["sha256"] ?? "")" })
                    XCTAssertEqual(m["samples"] as? Int, selection.isEmpty ? 40 : m["samples"] as? Int)
                }
                XCTAssertEqual(digests[1], digests[0], "\(format) \(selection): the set's snapshot is the source store's")
                XCTAssertFalse(digests[0].isEmpty)
            }
        }
        let ids = try Processes.python("""
        import sys, numpy as np
        print(int(np.load(sys.argv[1] + "/export-npy-0-1/ids.npy")[-1]), int(np.load(sys.argv[1] + "/export-npy-0-1/ids.npy").size))
        """, [root])
        XCTAssertEqual(ids.stdout.split(separator: " ").last, "40\n", ids.stderr)

        let sheets = try Processes.noisy(["labels", "samples", "--store", set, "--generation", "1", "--out", "\(root)/sheets", "--count", "2"])
        XCTAssertEqual(sheets.status, 0, sheets.stderr)
        let pngs = try FileManager.default.contentsOfDirectory(atPath: "\(root)/sheets").filter { $0.hasSuffix(".png") }
        XCTAssertEqual(pngs.filter { $0.hasSuffix("-histogram.png") }.count, 3, "\(pngs)")
        let counted = try Processes.python("""
        import sys
        from PIL import Image
        import glob
        print(sum(Image.open(f).size[0] > 0 for f in glob.glob(sys.argv[1] + "/*-confident.png")))
        """, ["\(root)/sheets"])
        XCTAssertNotEqual(counted.stdout, "0\n", counted.stderr)

        // show: the shard that holds the sample, the source store's pixels.
        let lastID = ids.stdout.split(separator: " ").first.map(String.init) ?? "0"
        for (i, target) in [store, set].enumerated() {
            let r = try Processes.noisy(["show", "--store", target, "--id", lastID, "--out", "\(root)/show\(i).png"])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        XCTAssertEqual(FileManager.default.contents(atPath: "\(root)/show0.png"), FileManager.default.contents(atPath: "\(root)/show1.png"))
        let missing = try Processes.noisy(["show", "--store", set, "--id", "999999", "--out", "\(root)/none.png"])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("no sample with id 999999"), missing.stderr)

        // compact: every shard and the manifest; the copy verifies and reads the same.
        let compact = try Processes.noisy(["compact", "--store", set, "--out", "\(root)/compact"])
        XCTAssertEqual(compact.status, 0, compact.stderr)
        let v = try Processes.noisy(["verify", "--store", "\(root)/compact"])
        XCTAssertEqual(v.status, 0, v.stdout + v.stderr)
        XCTAssertEqual(try labelRecords(shardPaths("\(root)/compact")), try labelRecords(shardPaths(set)))


        // run over the set: the loop's generations and selections are committed in the manifest.
        let run = try Processes.noisy(["run", "--store", set, "--iterations", "2", "--depth", "0", "--teacher-epochs", "1", "--student-epochs", "1",
                                       "--keep-per-class", "20", "--threshold", "0", "--size", "8", "--workdir", "\(root)/run",
                                       "--report", "\(root)/report.json", "--batch-size", "8", "--threads", "1"])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertNil(try Processes.schemaViolation(schema: "run-report.schema.json",
                                                   json: try XCTUnwrap(FileManager.default.contents(atPath: "\(root)/report.json"))))
        let data = try XCTUnwrap(FileManager.default.contents(atPath: set + "/manifest.json"))
        let m = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let gens = try XCTUnwrap(m["generations"] as? [[String: Any]])
        XCTAssertEqual(gens.map { $0["generation"] as? Int }, [1, 2, 3], "the run's two generations over the set")
        for g in gens.suffix(2) {
            XCTAssertEqual(g["samples"] as? Int, 40)
            XCTAssertNotNil((g["selection_entries"] as? [String: Any])?["run"], "the run's selection over the set")
        }
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: try XCTUnwrap(FileManager.default.contents(atPath: "\(root)/report.json"))) as? [String: Any])
        let iterations = try XCTUnwrap(report["iterations"] as? [[String: Any]])
        XCTAssertEqual(iterations.compactMap { $0["generation"] as? Int }, [2, 3])
        XCTAssertNotNil(iterations.last?["flip_rate"] as? Double, "the flip rate between the set's generations")
        let entries = ((gens.last?["selection_entries"] as? [String: Any])?["run"] as? [Int])?.reduce(0, +)
        XCTAssertEqual((iterations.last?["kept_per_class"] as? [Int])?.reduce(0, +), entries,
                       "the report's counts are the set's selection (the manifest's entries over every shard)")
        XCTAssertEqual(try Processes.noisy(["verify", "--store", set]).status, 0)
    }

    /// A damaged set: a flipped label bit on shard 1 (generation 1) and a changed image on
    /// shard 2. `salvage` over the set saves every shard, drops generation 1 from every
    /// shard (a generation over a set is one object) with its selection, keeps generation
    /// 2 byte for byte, loses the one sample, and writes a manifest that verifies.
    func testSalvageOfADamagedSetKeepsWhatEveryShardKeptWhole() throws {
        let set = try makeSet()
        XCTAssertEqual(try Processes.noisy(["labels", "jobs", "--store", set, "--part", "0", "--parts", "1", "--ids-out", "\(root)/ids.npy"]).status, 0)
        let p = try Processes.python("""
        import sys, numpy as np
        ids = np.load(sys.argv[1] + "/ids.npy"); rng = np.random.default_rng(9)
        for k in (1, 2): np.save(f"{sys.argv[1]}/p{k}.npy", rng.dirichlet([0.4] * 3, len(ids)).astype(np.float32))
        """, [root])
        XCTAssertEqual(p.status, 0, p.stderr)
        for k in [1, 2] {
            let r = try Processes.noisy(["labels", "import", "--store", set, "--predictions", "\(root)/p\(k).npy", "--ids", "\(root)/ids.npy", "--teacher", "t\(k)"])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        XCTAssertEqual(try Processes.noisy(["labels", "filter", "--store", set, "--generation", "1", "--threshold", "0.3", "--name", "nine"]).status, 0)
        let damaged = "\(root)/damaged"
        try FileManager.default.copyItem(atPath: set, toPath: damaged)
        let shards = try shardPaths(damaged)
        let edit = try Processes.python("""
        import lmdb, struct, sys
        e = lmdb.open(sys.argv[1], max_dbs=32)
        with e.begin(write=True) as t:
            db = e.open_db(b"labels", txn=t)
            k, v = next((k, v) for k, v in t.cursor(db) if struct.unpack(">I", k[:4])[0] == 1)
            v = bytearray(v); v[8] ^= 0x04; t.put(k, bytes(v), db=db)
        e.close()
        e = lmdb.open(sys.argv[2], max_dbs=32)
        with e.begin(write=True) as t:
            samples, images = e.open_db(b"samples", txn=t), e.open_db(b"images", txn=t)
            k = next(k for k, v in t.cursor(samples) if v[1] == 0)   # a labeled sample: no pseudo labels
            v = bytearray(t.get(k, db=images)); v[len(v) // 2] ^= 0x10; t.put(k, bytes(v), db=images)
            print(struct.unpack(">Q", k)[0])
        """, [shards[1], shards[2]])
        XCTAssertEqual(edit.status, 0, edit.stderr)
        let lostID = Int(edit.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        XCTAssertEqual(try Processes.noisy(["verify", "--store", damaged]).status, 1)

        let saved = "\(root)/saved"
        let r = try Processes.noisy(["salvage", "--store", damaged, "--out", saved, "--json"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertNil(try Processes.schemaViolation(schema: "salvage-set.schema.json", json: r.stdoutData))
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: r.stdoutData) as? [String: Any])
        let generations = (report["generations"] as? [[String: Any]] ?? []).map { "\($0["generation"] as? Int ?? 0) \($0["saved"] as? Bool ?? false)" }
        XCTAssertEqual(generations, ["1 false", "2 true"])
        XCTAssertEqual((report["selections"] as? [[String: Any]])?.first?["saved"] as? Bool, false)
        XCTAssertEqual(report["samples_lost"] as? Int, 1)
        let lost = ((report["shards"] as? [[String: Any]])?[2]["lost_samples"] as? [[String: Any]])?.compactMap { $0["id"] as? Int }
        XCTAssertEqual(lost, lostID.map { [$0] }, "the changed image, on shard 2")
        XCTAssertEqual(report["verified"] as? Bool, true)
        let v = try Processes.noisy(["verify", "--store", saved])
        XCTAssertEqual(v.status, 0, v.stdout + v.stderr)
        let before = try labelRecords(shardPaths(set)), after = try labelRecords(shardPaths(saved))
        XCTAssertEqual(after.keys.sorted(), ["2"], "generation 1 is gone from every shard")
        XCTAssertEqual(after["2"], before["2"], "generation 2 over the set, byte for byte")
        let info = try Processes.noisy(["info", "--store", saved])
        XCTAssertTrue(info.stdout.contains("51 samples in 3 shards"), info.stdout)
    }
}
