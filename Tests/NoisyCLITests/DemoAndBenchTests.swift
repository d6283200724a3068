import XCTest
import TestSupport

/// Commands that were only ever run through `--help`: the demo at a tiny scale,
/// `bench decode` and `bench labels`, each checked for what it claims to do.
final class DemoAndBenchTests: XCTestCase {
    var root = ""
    override func setUp() { root = Fixtures.temporaryDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    /// `noisy demo` end to end on a slice: the folders it writes, the store it
    /// ingests, one loop iteration, the report (validated against its schema), and
    /// a second run that reuses the work folder instead of starting over.
    func testDemoRunsTheLoopOnASliceAndReusesItsWorkFolder() throws {
        let work = "\(root)/demo"
        let args = ["demo", "--workdir", work, "--per-class", "5", "--unlabeled", "200", "--validation-per-class", "20", "--iterations", "1",
                    "--teacher-epochs", "2", "--student-epochs", "1", "--keep-per-class", "20", "--threshold", "0",
                    "--batch-size", "32", "--threads", "2", "--robustness-samples", "20"]
        let first = try Processes.noisy(args)
        XCTAssertEqual(first.status, 0, first.stderr)
        // The folders: 10 classes x 5 labeled, 200 unlabeled.
        let fm = FileManager.default
        let classes = try fm.contentsOfDirectory(atPath: "\(work)/folders/labeled").filter { !$0.hasPrefix(".") }
        XCTAssertEqual(classes.count, 10)
        for c in classes { XCTAssertEqual(try fm.contentsOfDirectory(atPath: "\(work)/folders/labeled/\(c)").count, 5, c) }
        XCTAssertEqual(try fm.subpathsOfDirectory(atPath: "\(work)/folders/unlabeled").filter { $0.hasSuffix(".png") }.count, 200)
        // Against the IDX files read by numpy and the PNGs read by Pillow: every image is
        // the training image its name says, under its own label, and the three splits are
        // disjoint (by index and by pixels).
        try checkDemoFolders("\(work)/folders", perClass: 5, validationPerClass: 20, unlabeled: 200)
        let info = try Processes.noisy(["info", "--store", "\(work)/store.noisy", "--json"])
        let i = try XCTUnwrap(JSONSerialization.jsonObject(with: info.stdoutData) as? [String: Any])
        let splits = try XCTUnwrap(i["splits"] as? [String: Any])
        XCTAssertEqual(splits["labeled"] as? Int, 50, "\(splits)")
        XCTAssertEqual(splits["unlabeled"] as? Int, 200, "\(splits)")
        XCTAssertEqual(splits["test"] as? Int, 10_000, "\(splits)")
        XCTAssertEqual(splits["validation"] as? Int, 200, "\(splits)")
        XCTAssertNil(try Processes.schemaViolation(schema: "info.schema.json", json: info.stdoutData))
        // The report: one iteration with a generation, valid against the schema.
        let report = try Data(contentsOf: URL(fileURLWithPath: "\(work)/report.json"))
        XCTAssertNil(try Processes.schemaViolation(schema: "run-report.schema.json", json: report))
        let r = try XCTUnwrap(JSONSerialization.jsonObject(with: report) as? [String: Any])
        XCTAssertEqual((r["iterations"] as? [Any])?.count, 1)
        XCTAssertEqual((r["robustness"] as? [String: Any])?["samples"] as? Int, 20, "the robustness pass on its seeded subset")
        XCTAssertTrue(first.stdout.contains("demo: test (scored once per model): first teacher"), first.stdout)
        XCTAssertTrue(first.stdout.contains("demo: validation: first teacher"), first.stdout)
        // Validation every epoch (2 teacher + 1 student), test once per model.
        XCTAssertEqual(first.stderr.components(separatedBy: ", validation ").count - 1, 3, first.stderr)
        XCTAssertEqual(first.stderr.components(separatedBy: ", test ").count - 1, 2, first.stderr)
        let it = try XCTUnwrap((r["iterations"] as? [[String: Any]])?.first)
        XCTAssertNotNil(it["teacher_validation_accuracy"] as? Double)
        XCTAssertNotNil(it["student_validation_accuracy"] as? Double)
        // The validation images are held out with a fixed seed: another --seed picks
        // other labeled images but the same validation images.
        let other = "\(root)/demo-seed7"
        let o = try Processes.noisy(["demo", "--workdir", other, "--per-class", "5", "--unlabeled", "200", "--validation-per-class", "20",
                                     "--seed", "7", "--ingest-only"])
        XCTAssertEqual(o.status, 0, o.stderr)
        try checkDemoFolders("\(other)/folders", perClass: 5, validationPerClass: 20, unlabeled: 200)
        func names(_ dir: String) throws -> Set<String> { Set(try fm.subpathsOfDirectory(atPath: dir).filter { $0.hasSuffix(".png") }) }
        XCTAssertEqual(try names("\(work)/folders/validation"), try names("\(other)/folders/validation"))
        XCTAssertNotEqual(try names("\(work)/folders/labeled"), try names("\(other)/folders/labeled"))
        let list = try Processes.noisy(["labels", "list", "--store", "\(work)/store.noisy", "--json"])
        XCTAssertEqual((try JSONSerialization.jsonObject(with: list.stdoutData) as? [Any])?.count, 1, "one generation")
        // Run again: the folders and the loop's finished steps are reused, nothing is redone.
        let again = try Processes.noisy(args)
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("demo: reusing"), again.stdout)
        let list2 = try Processes.noisy(["labels", "list", "--store", "\(work)/store.noisy", "--json"])
        XCTAssertEqual((try JSONSerialization.jsonObject(with: list2.stdoutData) as? [Any])?.count, 1, "no second generation")
    }

    /// `noisy demo --long` on a slice: the deeper student (width 1, one residual block
    /// per stage, stochastic depth, batch normalisation; the teacher has none) for 3
    /// iterations of 14 epochs, as each student
    /// checkpoint's header says (read with Python's struct and json); options given
    /// explicitly still apply.
    func testLongDemoTrainsTheDeeperStudentForThreeIterations() throws {
        let work = "\(root)/demo-long"
        let r = try Processes.noisy(["demo", "--long", "--workdir", work, "--per-class", "5", "--unlabeled", "100", "--validation-per-class", "10",
                                     "--teacher-epochs", "1", "--keep-per-class", "10", "--threshold", "0",
                                     "--batch-size", "32", "--robustness-samples", "0", "--stochastic-depth", "0.7"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(work)/report.json"))) as? [String: Any])
        let iterations = try XCTUnwrap(report["iterations"] as? [[String: Any]])
        XCTAssertEqual(iterations.count, 3)
        let checkpoints = ["\(work)/run/teacher-0.ckpt"] + iterations.compactMap { $0["student_checkpoint"] as? String }
        XCTAssertEqual(checkpoints.count, 4)
        let headers = try Processes.python("""
        import json, struct, sys
        for path in sys.argv[1:]:
            with open(path, "rb") as f:
                magic, version, length = struct.unpack("<8sIQ", f.read(20))
                assert magic == b"NOISYCKP", magic
                header = json.loads(f.read(length))
            a = header["architecture"]
            print(float(a["width"]), int(a["depth"]), float(a["final_survival"]), a.get("batch_norm", False), header["notes"]["epochs_done"])
        """, checkpoints)
        XCTAssertEqual(headers.status, 0, headers.stderr)
        let lines = headers.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines, ["1.0 0 1.0 False 1"] + Array(repeating: "1.0 1 0.7 True 14", count: 3), headers.stdout)
    }

    /// The demo's folders checked with numpy (the IDX files) and Pillow (the PNGs).
    func checkDemoFolders(_ folders: String, perClass: Int, validationPerClass: Int, unlabeled: Int) throws {
        let r = try Processes.python("""
        import gzip, os, sys
        import numpy as np
        from PIL import Image
        root, per, val, unl = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
        d = "/usr/share/datasets/fashion-mnist"
        imgs = np.frombuffer(gzip.open(d + "/train-images-idx3-ubyte.gz").read(), np.uint8, offset=16).reshape(-1, 28, 28)
        labels = np.frombuffer(gzip.open(d + "/train-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
        names = ["tshirt-top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]
        seen = {}
        for split in ["validation", "labeled", "unlabeled"]:
            idx = []
            for dirpath, _, files in os.walk(os.path.join(root, split)):
                for f in files:
                    i = int(f[len("train-"):-len(".png")])
                    px = np.asarray(Image.open(os.path.join(dirpath, f)).convert("L"))
                    assert (px == imgs[i]).all(), (split, f, "pixels differ from the IDX image")
                    if split != "unlabeled":
                        assert os.path.basename(dirpath) == names[labels[i]], (split, f, "wrong class folder")
                    idx.append(i)
            seen[split] = set(idx)
            assert len(idx) == len(seen[split])
        counts = {s: np.bincount(labels[sorted(seen[s])], minlength=10).tolist() for s in ["validation", "labeled"]}
        assert counts["validation"] == [val] * 10, counts
        assert counts["labeled"] == [per] * 10, counts
        assert len(seen["unlabeled"]) == unl
        assert not (seen["validation"] & seen["labeled"]) and not (seen["validation"] & seen["unlabeled"]) and not (seen["labeled"] & seen["unlabeled"])
        print("ok")
        """, [folders, String(perClass), String(validationPerClass), String(unlabeled)])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "ok")
    }

    func makeStore() throws -> String {
        for c in 0..<3 {
            for k in 0..<6 {
                Fixtures.write(Fixtures.jpeg(width: 64 + 8 * k, height: 48 + 4 * c, seed: UInt64(10 * c + k + 1)), to: "\(root)/l/c\(c)/\(k).jpg")
            }
        }
        for k in 0..<30 { Fixtures.write(Fixtures.png(width: 20, height: 20, seed: UInt64(100 + k)), to: "\(root)/u/\(k).png") }
        let store = "\(root)/s.noisy"
        let r = try Processes.noisy(["ingest", "--store", store, "--labeled", "\(root)/l", "--unlabeled", "\(root)/u", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return store
    }

    /// `bench decode` decodes every labeled sample in each run and reports rates
    /// that agree with the pixel count it decoded.
    func testBenchDecodeReportsEveryLabeledSample() throws {
        let store = try makeStore()
        let r = try Processes.noisy(["bench", "decode", "--store", store, "--repeat", "2", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertNil(try Processes.schemaViolation(schema: "bench-decode.schema.json", json: r.stdoutData))
        let j = try XCTUnwrap(JSONSerialization.jsonObject(with: r.stdoutData) as? [String: Any])
        XCTAssertEqual(j["samples"] as? Int, 18)
        XCTAssertEqual((j["runs"] as? [Double])?.count, 2)
        // 18 images of known sizes: megapixels per image is their mean area.
        var totalPixels = 0
        for c in 0..<3 { for k in 0..<6 { totalPixels += (64 + 8 * k) * (48 + 4 * c) } }
        let meanPixels = Double(totalPixels) / 18
        let ips = try XCTUnwrap(j["images_per_second"] as? Double), mps = try XCTUnwrap(j["megapixels_per_second"] as? Double)
        XCTAssertEqual(mps * 1e6 / ips, meanPixels, accuracy: meanPixels * 0.25, "rates and pixel counts agree")
        let empty = try Processes.noisy(["bench", "decode", "--store", "\(root)/nowhere.noisy"])
        XCTAssertNotEqual(empty.status, 0)
        XCTAssertTrue(empty.stderr.contains("nowhere.noisy"), empty.stderr)
    }

    /// `bench labels` looks up distributions in a real generation.
    func testBenchLabelsLooksUpAGeneration() throws {
        let store = try makeStore()
        let made = try Processes.python("""
        import sys, numpy as np
        np.save(sys.argv[1] + "/p.npy", np.random.RandomState(1).dirichlet([1.0] * 3, size=30).astype(np.float32))
        np.save(sys.argv[1] + "/ids.npy", np.arange(18, 48, dtype=np.int64))
        """, [root])
        XCTAssertEqual(made.status, 0, made.stderr)
        let imported = try Processes.noisy(["labels", "import", "--store", store, "--predictions", "\(root)/p.npy",
                                            "--ids", "\(root)/ids.npy", "--teacher", "t", "--quiet"])
        XCTAssertEqual(imported.status, 0, imported.stderr)
        let r = try Processes.noisy(["bench", "labels", "--store", store, "--generation", "latest", "--lookups", "2000",
                                     "--repeat", "2", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertNil(try Processes.schemaViolation(schema: "bench-labels.schema.json", json: r.stdoutData))
        let j = try XCTUnwrap(JSONSerialization.jsonObject(with: r.stdoutData) as? [String: Any])
        XCTAssertEqual(j["samples"] as? Int, 30)
        XCTAssertEqual(j["precision"] as? String, "f16")
        let missing = try Processes.noisy(["bench", "labels", "--store", store, "--generation", "9"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("9"), missing.stderr)
    }
}

/// The benchmark scripts run as the README shows them (`tools/bench/x.py ...`): their
/// shebang must name Debian's /usr/bin/python3, which owns python3-pil, -numpy and
/// -lmdb, not whatever `python3` comes first on PATH (a pyenv one has none of them).
final class BenchScriptTests: XCTestCase {
    func testEveryBenchScriptRunsWithDebiansPython() throws {
        let dir = Processes.repositoryRoot + "/tools/bench"
        let scripts = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".py") }.sorted()
        XCTAssertGreaterThan(scripts.count, 5)
        for name in scripts {
            let text = try String(contentsOfFile: dir + "/" + name, encoding: .utf8)
            XCTAssertEqual(text.split(separator: "\n").first.map(String.init), "#!/usr/bin/python3", name)
            XCTAssertTrue(FileManager.default.isExecutableFile(atPath: dir + "/" + name), "\(name) is executable")
        }
        // Run one directly, through its shebang, with a PATH whose first python3 is not Debian's.
        let fake = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: fake) }
        Fixtures.write(Array("#!/bin/sh\necho wrong python >&2; exit 9\n".utf8), to: fake + "/python3")
        chmod(fake + "/python3", 0o755)
        let path = fake + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin")
        let r = try Processes.run(dir + "/ingest_memory.py", ["--help"], environment: ["PATH": path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("usage: ingest_memory.py"), r.stdout)
    }
}
