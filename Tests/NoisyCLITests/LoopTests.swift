import XCTest
import Datasets
import ImageCodec
import TestSupport

/// `noisy train`, `evaluate`, `label` and `run` on a small Fashion-MNIST slice:
/// lineage, resumption and the report's schema (accuracy is the demo's business).
final class LoopTests: XCTestCase {
    var root = ""
    override func setUp() { root = Fixtures.temporaryDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    /// 8 labeled per class, 160 unlabeled, 60 test images from Fashion-MNIST.
    func makeStore() throws -> String {
        let fm = try FashionMNIST.load()
        var perClass = [Int](repeating: 0, count: 10)
        var unlabeled = 0
        for i in 0..<2000 {
            let c = Int(fm.train.labels[i])
            let png = try Codec.encodePNG(fm.train.image(i))
            if perClass[c] < 8 {
                Fixtures.write(png, to: "\(root)/l/\(FashionMNIST.classNames[c])/\(i).png"); perClass[c] += 1
            } else if unlabeled < 160 {
                Fixtures.write(png, to: "\(root)/u/\(i).png"); unlabeled += 1
            }
        }
        for i in 0..<60 {
            Fixtures.write(try Codec.encodePNG(fm.test.image(i)), to: "\(root)/t/\(FashionMNIST.classNames[Int(fm.test.labels[i])])/\(i).png")
        }
        let store = "\(root)/s.noisy"
        let r = try Processes.noisy(["ingest", "--store", store, "--labeled", "\(root)/l", "--unlabeled", "\(root)/u", "--test", "\(root)/t", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return store
    }

    /// A validation split: ingested from its own folder and held out (a copy of one of
    /// its images in the labeled folder is leakage), stored under split code 3 as
    /// python-lmdb reads it, scored every epoch by `train`, while test is scored once.
    func testValidationIsHeldOutAndScoredEveryEpochWhileTestIsScoredOnce() throws {
        let fm = try FashionMNIST.load()
        var perClass = [Int](repeating: 0, count: 10)
        var leaked = ""
        for i in 3000..<4000 {
            let c = Int(fm.train.labels[i])
            guard perClass[c] < 4 else { continue }
            perClass[c] += 1
            let png = try Codec.encodePNG(fm.train.image(i))
            Fixtures.write(png, to: "\(root)/v/\(FashionMNIST.classNames[c])/\(i).png")
            if leaked.isEmpty { leaked = "\(FashionMNIST.classNames[c])/\(i).png"; Fixtures.write(png, to: "\(root)/l2/\(leaked)") }
        }
        let store = try makeStore()
        let leak = try Processes.noisy(["ingest", "--store", store, "--labeled", "\(root)/l2", "--validation", "\(root)/v",
                                        "--strict", "--json", "--report", "\(root)/report.jsonl", "--quiet"])
        XCTAssertEqual(leak.status, 3, "a leak fails --strict: \(leak.stderr)")
        XCTAssertNil(try Processes.schemaViolation(schema: "ingest-summary.schema.json", json: leak.stdoutData))
        let summary = try XCTUnwrap(JSONSerialization.jsonObject(with: leak.stdoutData) as? [String: Any])
        XCTAssertEqual(summary["leakage"] as? Int, 1, "\(summary)")
        let report = try String(contentsOfFile: "\(root)/report.jsonl", encoding: .utf8)
        XCTAssertTrue(report.contains("LEAKAGE: validation image identical to"), report)
        // The labeled copy came first and stays; its validation twin is refused.
        let splits = try Processes.python("""
        import lmdb, sys
        env = lmdb.open(sys.argv[1], readonly=True, max_dbs=16, lock=False)
        counts = {}
        with env.begin() as t:
            for k, _ in t.cursor(db=env.open_db(b"split_index", txn=t, create=False)):
                counts[k[0]] = counts.get(k[0], 0) + 1
        print(" ".join(f"{c}:{n}" for c, n in sorted(counts.items())))
        """, [store])
        XCTAssertEqual(splits.stdout, "0:81 1:160 2:60 3:39\n", splits.stderr)
        let ids = try Processes.python("""
        import sys
        sys.path.insert(0, sys.argv[1])
        import noisy
        with noisy.open_store(sys.argv[2]) as st: print(len(st.ids("validation")))
        """, [Processes.repositoryRoot + "/python", store])
        XCTAssertEqual(ids.stdout, "39\n", ids.stderr)
        let info = try Processes.noisy(["info", "--store", store, "--json"])
        XCTAssertNil(try Processes.schemaViolation(schema: "info.schema.json", json: info.stdoutData))
        let classes = try XCTUnwrap((try JSONSerialization.jsonObject(with: info.stdoutData) as? [String: Any])?["classes"] as? [[String: Any]])
        XCTAssertEqual(classes.compactMap { $0["validation"] as? Int }.reduce(0, +), 39)

        let train = try Processes.noisy(["train", "--store", store, "--crop", "pad", "--pad", "2", "--model", "cnn", "--depth", "0",
                                         "--epochs", "3", "--out", "\(root)/t.ckpt", "--json", "--size", "28", "--batch-size", "16", "--threads", "1"])
        XCTAssertEqual(train.status, 0, train.stderr)
        let lines = train.stdout.split(separator: "\n").filter { $0.hasPrefix("{") }
        XCTAssertNil(try Processes.schemaViolation(schema: "epoch-report.schema.json", json: Data(lines.joined(separator: "\n").utf8), lines: true))
        let epochs = try lines.map { try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        XCTAssertEqual(epochs.count, 3)
        XCTAssertEqual(epochs.map { $0["validation_accuracy"] != nil }, [true, true, true], "validation every epoch")
        XCTAssertEqual(epochs.map { $0["test_accuracy"] != nil }, [false, false, true], "test once, after the last epoch")
        for (split, n) in [("validation", 39), ("test", 60)] {
            let e = try Processes.noisy(["evaluate", "--store", store, "--checkpoint", "\(root)/t.ckpt", "--split", split, "--json"])
            XCTAssertEqual(e.status, 0, e.stderr)
            let j = try XCTUnwrap(JSONSerialization.jsonObject(with: e.stdoutData) as? [String: Any])
            XCTAssertEqual(j["samples"] as? Int, n)
            XCTAssertEqual(j["accuracy"] as? Double, epochs[2]["\(split)_accuracy"] as? Double, "\(split): evaluate agrees with train's last epoch")
        }
        let bad = try Processes.noisy(["evaluate", "--store", store, "--checkpoint", "\(root)/t.ckpt", "--split", "labeled"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--split must be test or validation"), bad.stderr)
    }

    func testTrainEvaluateLabelAndTheLoopWithLineageAndResume() throws {
        let store = try makeStore()
        let small = ["--size", "28", "--batch-size", "16", "--threads", "1"]
        // With batch normalisation: its running statistics go through the checkpoint into evaluate and label.
        let train = try Processes.noisy(["train", "--store", store, "--crop", "pad", "--pad", "2", "--model", "cnn", "--depth", "0",
                                         "--batch-norm", "--epochs", "2", "--out", "\(root)/t.ckpt", "--json"] + small)
        XCTAssertEqual(train.status, 0, train.stderr)
        XCTAssertEqual(train.stdout.split(separator: "\n").filter { $0.hasPrefix("{") }.count, 2, "one JSON report per epoch: \(train.stdout)")
        XCTAssertNil(try Processes.schemaViolation(schema: "epoch-report.schema.json",
                                                   json: Data(train.stdout.split(separator: "\n").filter { $0.hasPrefix("{") }.joined(separator: "\n").utf8), lines: true))
        let header = try Processes.python("""
        import json, struct, sys
        b = open(sys.argv[1], "rb").read(); assert b[:8] == b"NOISYCKP"
        (n,) = struct.unpack("<Q", b[12:20]); sys.stdout.write(b[20:20 + n].decode())
        """, ["\(root)/t.ckpt"])
        XCTAssertNil(try Processes.schemaViolation(schema: "checkpoint.schema.json", json: header.stdoutData))
        let arch = (try JSONSerialization.jsonObject(with: header.stdoutData) as? [String: Any])?["architecture"] as? [String: Any]
        XCTAssertEqual(arch?["batch_norm"] as? Bool, true)
        let eval = try Processes.noisy(["evaluate", "--store", store, "--checkpoint", "\(root)/t.ckpt", "--json"])
        XCTAssertEqual(eval.status, 0, eval.stderr)
        XCTAssertNil(try Processes.schemaViolation(schema: "evaluation.schema.json", json: eval.stdoutData))
        let e = try XCTUnwrap(JSONSerialization.jsonObject(with: eval.stdoutData) as? [String: Any])
        XCTAssertEqual(e["samples"] as? Int, 60)
        XCTAssertEqual((e["confusion"] as? [[Int]])?.flatMap { $0 }.reduce(0, +), 60)
        let label = try Processes.noisy(["label", "--store", store, "--checkpoint", "\(root)/t.ckpt", "--teacher", "t", "--json"])
        XCTAssertEqual(label.status, 0, label.stderr)
        let shown = try Processes.noisy(["labels", "show", "--store", store, "--generation", "1", "--json"])
        let g = try XCTUnwrap((try JSONSerialization.jsonObject(with: shown.stdoutData) as? [String: Any])?["generation"] as? [String: Any])
        XCTAssertEqual(g["samples"] as? Int, 160)
        XCTAssertEqual((g["teacher"] as? [String: Any])?["checkpoint"] as? String, "\(root)/t.ckpt")
        XCTAssertNil(try Processes.schemaViolation(schema: "labels-import.schema.json", json: label.stdoutData))
        // `label` equals exporting the predictions and importing them: export, re-import, compare.
        XCTAssertEqual(try Processes.noisy(["labels", "export", "--store", store, "--generation", "1", "--out", "\(root)/e1"]).status, 0)
        let reimport = try Processes.noisy(["labels", "import", "--store", store, "--predictions", "\(root)/e1/probs.npy",
                                            "--ids", "\(root)/e1/ids.npy", "--teacher", "same", "--quiet"])
        XCTAssertEqual(reimport.status, 0, reimport.stderr)
        XCTAssertEqual(try Processes.noisy(["labels", "export", "--store", store, "--generation", "2", "--out", "\(root)/e2"]).status, 0)
        let same = try Processes.python("""
        import sys, numpy as np
        a, b = sys.argv[1], sys.argv[2]
        assert np.array_equal(np.load(a + "/probs.npy"), np.load(b + "/probs.npy")) and np.array_equal(np.load(a + "/ids.npy"), np.load(b + "/ids.npy"))
        print("equal")
        """, ["\(root)/e1", "\(root)/e2"])
        XCTAssertEqual(same.stdout, "equal\n", same.stderr)
        XCTAssertEqual(try Processes.noisy(["labels", "delete", "--store", store, "--generation", "2"]).status, 0)

        // The loop, killed once after its first generation appears, then resumed.
        let args = ["run", "--store", store, "--iterations", "2", "--depth", "0", "--teacher-epochs", "1", "--student-epochs", "1",
                    "--keep-per-class", "20", "--threshold", "0", "--workdir", "\(root)/run", "--report", "\(root)/report.json", "--batch-size", "16", "--threads", "1",
                    "--batch-norm", "students", "--teacher-randaugment", "2,5"]
        let first = try Processes.spawnNoisy(args)
        var sawGeneration = false
        for _ in 0..<600 where first.isRunning {
            let list = try Processes.noisy(["labels", "list", "--store", store, "--json"])
            if ((try? JSONSerialization.jsonObject(with: list.stdoutData) as? [Any])?.count ?? 0) >= 2 { sawGeneration = true; break }
            usleep(100_000)
        }
        if first.isRunning { kill(first.processIdentifier, SIGKILL) }
        first.waitUntilExit()
        XCTAssertTrue(sawGeneration, "the loop made its first generation")
        let again = try Processes.noisy(args)
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("iter  validation (teacher -> student)  test (teacher -> student)"), again.stdout)
        let report = try XCTUnwrap(FileManager.default.contents(atPath: "\(root)/report.json"))
        XCTAssertNil(try Processes.schemaViolation(schema: "run-report.schema.json", json: report))
        let r = try XCTUnwrap(JSONSerialization.jsonObject(with: report) as? [String: Any])
        let its = try XCTUnwrap(r["iterations"] as? [[String: Any]])
        XCTAssertEqual(its.count, 2)
        // Lineage: iteration 2's teacher is iteration 1's student, and its generation says so.
        XCTAssertEqual(its[1]["teacher_checkpoint"] as? String, its[0]["student_checkpoint"] as? String)
        let gens = try XCTUnwrap(try JSONSerialization.jsonObject(with: Processes.noisy(["labels", "list", "--store", store, "--json"]).stdoutData) as? [[String: Any]])
        XCTAssertEqual(gens.count, 3, "one generation from `label`, one per iteration: the kill left no duplicate")
        XCTAssertEqual(its[0]["generation"] as? Int, 3, "numbers continue after the deleted generation 2")
        let g3 = try XCTUnwrap(its[1]["generation"] as? Int)
        let detail = try XCTUnwrap((try JSONSerialization.jsonObject(with: Processes.noisy(["labels", "show", "--store", store, "--generation", String(g3), "--json"]).stdoutData) as? [String: Any])?["generation"] as? [String: Any])
        XCTAssertEqual((detail["teacher"] as? [String: Any])?["checkpoint"] as? String, its[0]["student_checkpoint"] as? String)
        XCTAssertEqual(detail["parent"] as? Int, its[0]["generation"] as? Int)
        XCTAssertEqual(try Processes.noisy(["verify", "--store", store]).status, 0)
    }

    /// `--warm-start`: student 2 begins from student 1's weights, student 1 from scratch.
    /// At a learning rate of 1e-6 and no weight decay its weights barely move from where
    /// it began, so python reads both checkpoints (schemas/checkpoint.md) and finds
    /// student 2 within 1e-3 of student 1 with the flag, and far from it without. A
    /// resumed run whose student no longer fits the teacher's weights stops with one line.
    func testWarmStartBeginsEachLaterStudentFromItsTeachersWeights() throws {
        let store = try makeStore()
        func run(_ dir: String, iterations: Int = 2, _ extra: [String]) throws -> ProcessResult {
            try Processes.noisy(["run", "--store", store, "--iterations", String(iterations), "--depth", "0", "--teacher-epochs", "1",
                                 "--student-epochs", "1", "--student-lr", "1e-6", "--weight-decay", "0", "--threshold", "0",
                                 "--workdir", "\(root)/\(dir)", "--batch-size", "16", "--threads", "1", "--seed", "7"] + extra)
        }
        let warm = try run("warm", ["--warm-start"])
        XCTAssertEqual(warm.status, 0, warm.stderr)
        XCTAssertTrue(warm.stderr.contains("iteration 2: student (cnn w2.0, 1 epochs, from the teacher's weights)"), warm.stderr)
        XCTAssertFalse(warm.stderr.contains("iteration 1: student (cnn w2.0, 1 epochs, from"), "the first student starts from scratch")
        let cold = try run("cold", [])
        XCTAssertEqual(cold.status, 0, cold.stderr)
        let distance = try Processes.python("""
        import json, struct, sys
        import numpy as np
        def weights(path):
            b = open(path, "rb").read(); assert b[:8] == b"NOISYCKP"
            (n,) = struct.unpack("<Q", b[12:20]); h = json.loads(b[20:20 + n])
            p = sum(q["count"] for q in h["parameters"])
            return np.frombuffer(b, dtype="<f4", count=p, offset=20 + n)
        for d in sys.argv[1:]:
            a, b = weights(d + "/student-1.ckpt"), weights(d + "/student-2.ckpt")
            print(float(np.abs(a - b).max()))
        """, ["\(root)/warm", "\(root)/cold"])
        let d = distance.stdout.split(separator: "\n").compactMap { Double($0) }
        XCTAssertEqual(d.count, 2, distance.stderr)
        XCTAssertLessThan(d.first ?? 1, 1e-3, "student 2 began at student 1's weights")
        XCTAssertGreaterThan(d.last ?? 0, 1e-2, "without the flag student 2 began from its own random weights")
        // Resumed for a third iteration with a wider student: student 2's weights do not fit it.
        let wider = try run("warm", iterations: 3, ["--warm-start", "--student-width", "3"])
        XCTAssertNotEqual(wider.status, 0)
        let line = wider.stderr.split(separator: "\n").first { $0.hasPrefix("Error: ") }.map(String.init) ?? wider.stderr
        XCTAssertTrue(line.contains("\(root)/warm/student-2.ckpt: cannot start from its weights"), wider.stderr)
        XCTAssertFalse(wider.stderr.contains("Fatal error"), wider.stderr)
    }

    /// Loop options that cannot work are refused (ArgumentParser's error line, then the usage)
    /// before any training, and the store is left as it was.
    func testBadLoopOptionsAreRefusedBeforeTraining() throws {
        for c in ["a", "b"] { Fixtures.write(Fixtures.png(width: 8, height: 8, channels: 1, seed: c == "a" ? 1 : 2), to: "\(root)/l/\(c)/x.png") }
        let store = "\(root)/s.noisy"
        XCTAssertEqual(try Processes.noisy(["ingest", "--store", store, "--labeled", "\(root)/l", "--quiet"]).status, 0)
        let cases: [([String], String)] = [
            (["--depth", "1", "--student-depth", "0"], "--student-depth must be at least --depth"),
            (["--label-temperature", "0"], "--label-temperature"),
            (["--student-lr=-1"], "--student-lr"),
            (["--weight-decay=-0.1"], "--weight-decay"),
            (["--student-epochs", "12,x"], "--student-epochs wants positive integers"),
            (["--teacher-width", "2", "--student-width", "1"], "at least as wide as the teacher"),
            (["--randaugment", "2"], "--randaugment wants N,M such as 2,5, or none (got '2')"),
            (["--teacher-randaugment", "2,x"], "--teacher-randaugment wants N,M such as 2,5, or none (got '2,x')"),
        ]
        for (extra, needle) in cases {
            let r = try Processes.noisy(["run", "--store", store, "--workdir", "\(root)/run"] + extra)
            XCTAssertNotEqual(r.status, 0, "\(extra)")
            XCTAssertTrue(r.stderr.contains(needle), "\(extra): \(r.stderr)")
            XCTAssertTrue(r.stderr.hasPrefix("Error: ") && r.stderr.split(separator: "\n").first?.contains(needle) == true,
                          "the reason is the first line: \(r.stderr)")
            XCTAssertFalse(r.stderr.contains("Fatal error"), r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: "\(root)/run/teacher-0.ckpt"), "nothing trained: \(extra)")
        }
        let list = try Processes.noisy(["labels", "list", "--store", store, "--json"])
        XCTAssertEqual((try JSONSerialization.jsonObject(with: list.stdoutData) as? [Any])?.count, 0, "no generation was made")
    }
}
