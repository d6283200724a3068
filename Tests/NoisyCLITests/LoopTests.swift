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

    func testTrainEvaluateLabelAndTheLoopWithLineageAndResume() throws {
        let store = try makeStore()
        let small = ["--size", "28", "--batch-size", "16", "--threads", "1"]
        let train = try Processes.noisy(["train", "--store", store, "--crop", "pad", "--pad", "2", "--model", "cnn", "--depth", "0",
                                         "--epochs", "2", "--out", "\(root)/t.ckpt", "--json"] + small)
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
                    "--keep-per-class", "20", "--threshold", "0", "--workdir", "\(root)/run", "--report", "\(root)/report.json", "--batch-size", "16", "--threads", "1"]
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
        XCTAssertTrue(again.stdout.contains("iter  teacher"), again.stdout)
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
