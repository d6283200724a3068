import XCTest
import Foundation
import ImageCodec
import Pixels
import TestSupport

/// `noisy robustness`: corruption errors and flip rates of checkpoints, checked against an
/// independent path (the corrupted images written by `noisy augment`, ingested as a test
/// split and scored by `noisy evaluate`), and its refusals of bad input.
final class RobustnessTests: XCTestCase {
    var root = ""
    override func setUp() { root = Fixtures.temporaryDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    /// 3 classes with their own bright quadrant, 32x32 (the models' size, so the clean
    /// teacher view is the image itself): 12 labeled and 10 test images per class.
    func writeImages(_ folder: String, perClass: Int, seed: UInt64) throws {
        var s = seed
        for c in 0..<3 {
            for i in 0..<perClass {
                var img = Fixtures.image(width: 32, height: 32, channels: 3, seed: s)
                s += 1
                img.pixels = img.pixels.map { $0 / 4 }
                let (qx, qy) = (c % 2 * 16, c / 2 * 16)
                for y in qy..<(qy + 16) { for x in qx..<(qx + 16) { for k in 0..<3 { img[x, y, k] = 180 + img[x, y, k] / 3 } } }
                Fixtures.write(try Codec.encodePNG(img), to: "\(folder)/class\(c)/\(i).png")
            }
        }
    }

    func testRobustnessScoresCheckpointsAgainstABaseline() throws {
        try writeImages("\(root)/l", perClass: 12, seed: 1)
        try writeImages("\(root)/t", perClass: 10, seed: 500)
        let store = "\(root)/s.noisy"
        XCTAssertEqual(try Processes.noisy(["ingest", "--store", store, "--labeled", "\(root)/l", "--test", "\(root)/t", "--quiet"]).status, 0)
        for (name, epochs) in [("a", 1), ("b", 6)] {
            let r = try Processes.noisy(["train", "--store", store, "--size", "32", "--crop", "pad", "--pad", "1", "--model", "mlp",
                                         "--depth", "1", "--width", "0.5", "--epochs", "\(epochs)", "--batch-size", "8", "--threads", "1",
                                         "--eval-every", "0", "--out", "\(root)/\(name).ckpt"])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        let r = try Processes.noisy(["robustness", "--store", store, "--checkpoint", "\(root)/a.ckpt", "--checkpoint", "\(root)/b.ckpt",
                                     "--corruptions", "contrast,gaussian_noise,pixelate,fog", "--severities", "1-5", "--json",
                                     "--plot", "\(root)/robustness.png", "--threads", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertNil(try Processes.schemaViolation(schema: "robustness.schema.json", json: r.stdoutData))
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: r.stdoutData) as? [String: Any])
        let models = try XCTUnwrap(report["models"] as? [[String: Any]])
        XCTAssertEqual(models.count, 2)
        XCTAssertEqual(report["samples"] as? Int, 30)
        XCTAssertEqual(report["mce_corruptions"] as? [String], ["contrast", "gaussian_noise", "pixelate", "fog"])

        // Clean accuracy: what `noisy evaluate` says.
        for (k, name) in ["a", "b"].enumerated() {
            let e = try Processes.noisy(["evaluate", "--store", store, "--checkpoint", "\(root)/\(name).ckpt", "--json"])
            let acc = try XCTUnwrap((try JSONSerialization.jsonObject(with: e.stdoutData) as? [String: Any])?["accuracy"] as? Double)
            XCTAssertEqual(models[k]["clean_accuracy"] as? Double ?? -1, acc, accuracy: 1e-9, "\(name): clean accuracy")
        }
        // The baseline (the first) is 100% of itself.
        let base = models[0]
        XCTAssertEqual(base["mce"] as? Double ?? 0, 1, accuracy: 1e-9)
        for v in (base["corruption_errors"] as? [String: Double] ?? [:]).values { XCTAssertEqual(v, 1, accuracy: 1e-9) }
        // CE and mCE by their definitions, from the reported errors.
        let ea = try XCTUnwrap(base["errors"] as? [String: [Double]]), eb = try XCTUnwrap(models[1]["errors"] as? [String: [Double]])
        let ceB = try XCTUnwrap(models[1]["corruption_errors"] as? [String: Double])
        var sum = 0.0, count = 0
        for (c, errs) in eb where ea[c]!.reduce(0, +) > 0 {
            let want = errs.reduce(0, +) / ea[c]!.reduce(0, +)
            XCTAssertEqual(ceB[c] ?? -1, want, accuracy: 1e-9, c)
            sum += want; count += 1
        }
        XCTAssertEqual(models[1]["mce"] as? Double ?? -1, sum / Double(max(1, count)), accuracy: 1e-9)

        // An independent path: the corrupted test images written by `noisy augment`,
        // ingested as a store's test split, scored by `noisy evaluate`, give the same error
        // (contrast at severity 5 and pixelate at 3: deterministic corruptions).
        for (corruption, severity) in [("contrast", 5), ("pixelate", 3)] {
            let dir = "\(root)/c-\(corruption)"
            for c in 0..<3 {
                try FileManager.default.createDirectory(atPath: "\(dir)/class\(c)", withIntermediateDirectories: true)
                for i in 0..<10 {
                    let a = try Processes.noisy(["augment", "\(root)/t/class\(c)/\(i).png", "\(dir)/class\(c)/\(i).png",
                                                 "--corruption", corruption, "--severity", "\(severity)"])
                    XCTAssertEqual(a.status, 0, a.stderr)
                }
            }
            let cs = "\(root)/c-\(corruption).noisy"
            XCTAssertEqual(try Processes.noisy(["ingest", "--store", cs, "--labeled", "\(root)/l", "--test", dir, "--quiet"]).status, 0)
            for (k, name) in ["a", "b"].enumerated() {
                let e = try Processes.noisy(["evaluate", "--store", cs, "--checkpoint", "\(root)/\(name).ckpt", "--json"])
                let acc = try XCTUnwrap((try JSONSerialization.jsonObject(with: e.stdoutData) as? [String: Any])?["accuracy"] as? Double)
                let errs = try XCTUnwrap((models[k]["errors"] as? [String: [Double]])?[corruption])
                XCTAssertEqual(errs[severity - 1], 1 - acc, accuracy: 1e-9, "\(name) \(corruption) \(severity)")
            }
        }
        // `noisy serve --corruption`: label sessions stream the same corrupted views (with the
        // teacher view `noisy robustness` uses: no crop), with each sample's class, and make
        // no generation.
        let server = try Processes.startServer(["--store", store, "--socket", "\(root)/c.sock", "--size", "32", "--batch-size", "7",
                                                "--crop-fraction", "1", "--threads", "1", "--corruption", "contrast", "--severity", "5"], log: "\(root)/serve.log")
        defer { if server.isRunning { server.terminate(); server.waitUntilExit() } }
        let streamed = try Processes.python("""
        import os, sys
        import numpy as np
        from PIL import Image
        sys.path.insert(0, sys.argv[2])
        import noisy
        st = noisy.open_store(sys.argv[3])
        s = noisy.connect("unix:" + sys.argv[1]).label_session("test", teacher="scoring")
        got = {}
        for ids, images in s:
            for i, img, t in zip(ids, images, s.targets):
                got[int(i)] = (img.copy(), int(t))
            s.send(np.full((len(ids), 3), 1 / 3, np.float32))
        try:
            s.commit()
            print("committed")
        except Exception as e:
            print("refused:", "makes no generation" in str(e))
        same = 0
        for rec in st.get(sorted(got)):
            parts = rec["source"].split("/")[-2:]
            ref = np.array(Image.open(os.path.join(sys.argv[4], *parts)))
            img, t = got[rec["id"]]
            same += int(np.array_equal(ref, img.reshape(ref.shape)) and t == rec["class_index"])
        print(same, len(got), s.info["corruption"]["name"], s.info["corruption"]["severity"])
        """, ["\(root)/c.sock", Processes.repositoryRoot + "/python", store, "\(root)/c-contrast"])
        XCTAssertEqual(streamed.stdout, "refused: True\n30 30 contrast 5\n", streamed.stderr + ((try? String(contentsOfFile: "\(root)/serve.log", encoding: .utf8)) ?? ""))
        server.terminate(); server.waitUntilExit()

        // Flip rates: probabilities in [0, 1]; the baseline's rates are 1 where defined.
        for m in models {
            for v in (m["flip_probabilities"] as? [String: Double] ?? [:]).values { XCTAssertTrue((0...1).contains(v)) }
        }
        for v in (base["flip_rates"] as? [String: Double] ?? [:]).values { XCTAssertEqual(v, 1, accuracy: 1e-9) }
        let plot = try Processes.python("""
        import sys
        from PIL import Image
        im = Image.open(sys.argv[1]); print(im.size[0] > 300 and im.size[1] > 200, len(set(im.getdata())) > 4)
        """, ["\(root)/robustness.png"])
        XCTAssertEqual(plot.stdout, "True True\n", plot.stderr)
        // The table: the same figures, one column per checkpoint.
        let table = try Processes.noisy(["robustness", "--store", store, "--checkpoint", "\(root)/a.ckpt", "--checkpoint", "\(root)/b.ckpt",
                                         "--baseline", "\(root)/b.ckpt", "--corruptions", "contrast", "--severities", "5", "--limit", "12",
                                         "--perturbations", "translate"])
        XCTAssertEqual(table.status, 0, table.stderr)
        XCTAssertTrue(table.stdout.contains("12 of 30 test samples") && table.stdout.contains("mCE") && table.stdout.contains("mFR"), table.stdout)
        XCTAssertTrue(table.stdout.contains("baseline \(root)/b.ckpt"), table.stdout)

        // The same figures whatever the thread count (the corruptions' randomness is keyed by sample).
        let threaded = try [1, 2].map { t in
            try Processes.noisy(["robustness", "--store", store, "--checkpoint", "\(root)/a.ckpt", "--checkpoint", "\(root)/b.ckpt",
                                 "--corruptions", "gaussian_noise,glass_blur", "--severities", "2,4", "--limit", "15", "--json",
                                 "--threads", "\(t)"]).stdout
        }
        XCTAssertEqual(threaded[0], threaded[1])
        XCTAssertTrue(threaded[0].contains("glass_blur"), threaded[0])

        // noisy bench corruptions: its JSON follows its schema.
        let bench = try Processes.noisy(["bench", "corruptions", "--images", "\(root)/t/class0", "--corruptions", "contrast,fog",
                                         "--repeat", "1", "--json"])
        XCTAssertEqual(bench.status, 0, bench.stderr)
        XCTAssertNil(try Processes.schemaViolation(schema: "bench-corruptions.schema.json", json: bench.stdoutData))
        XCTAssertTrue(bench.stdout.contains("\"images\" : 10"), bench.stdout)

        // Bad input: one line each, before any work.
        let a = "\(root)/a.ckpt"
        let cases: [([String], String)] = [
            (["--checkpoint", a, "--corruptions", "fogg"], "unknown corruption 'fogg'"),
            (["--checkpoint", a, "--corruptions", "frost"], "frost photographs"),
            (["--checkpoint", a, "--severities", "2-6"], "severities are 1 to 5"),
            (["--checkpoint", a, "--baseline", "\(root)/b.ckpt"], "is not among the --checkpoint files"),
            (["--checkpoint", a, "--checkpoint", "\(root)/none.ckpt"], "no such checkpoint"),
        ]
        for (args, needle) in cases {
            let e = try Processes.noisy(["robustness", "--store", store] + args)
            XCTAssertNotEqual(e.status, 0, "\(args)")
            XCTAssertTrue(e.stderr.contains(needle) && e.stderr.split(separator: "\n").count <= 3, "\(args): \(e.stderr)")
        }
        // A checkpoint of another class list.
        try FileManager.default.createDirectory(atPath: "\(root)/two", withIntermediateDirectories: true)
        for c in 0..<2 { try FileManager.default.copyItem(atPath: "\(root)/l/class\(c)", toPath: "\(root)/two/class\(c)") }
        let two = "\(root)/two.noisy"
        XCTAssertEqual(try Processes.noisy(["ingest", "--store", two, "--labeled", "\(root)/two", "--quiet"]).status, 0)
        XCTAssertEqual(try Processes.noisy(["train", "--store", two, "--size", "32", "--model", "mlp", "--depth", "1", "--width", "0.5",
                                            "--epochs", "1", "--batch-size", "8", "--threads", "1", "--eval-every", "0",
                                            "--out", "\(root)/two.ckpt"]).status, 0)
        let mismatch = try Processes.noisy(["robustness", "--store", store, "--checkpoint", a, "--checkpoint", "\(root)/two.ckpt"])
        XCTAssertNotEqual(mismatch.status, 0)
        XCTAssertTrue(mismatch.stderr.contains("a model of 2 classes; the store has 3"), mismatch.stderr)
    }
}
