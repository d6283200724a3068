import XCTest
import ImageCodec
import TestSupport

/// preview, bench pipeline and augment through the built binary on a real store.
final class PipelineCLITests: XCTestCase {
    var root = ""
    override func setUp() { root = Fixtures.temporaryDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    func makeStore() throws -> String {
        for i in 0..<24 {
            Fixtures.write(Fixtures.jpeg(width: 120 + i, height: 90 + i % 5, seed: UInt64(i)),
                           to: "\(root)/labeled/\(["cat", "dog", "eel"][i % 3])/\(i).jpg")
        }
        let store = "\(root)/s.noisy"
        let r = try Processes.noisy(["ingest", "--store", store, "--labeled", "\(root)/labeled", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return store
    }

    func testPreviewIsReproducibleForASeed() throws {
        let store = try makeStore()
        func preview(_ seed: Int, _ name: String, _ extra: [String] = []) throws -> [UInt8] {
            let out = "\(root)/\(name).png"
            let r = try Processes.noisy(["preview", "--store", store, "--count", "8", "--seed", "\(seed)", "--size", "48",
                                         "--randaugment", "2,9", "--out", out] + extra)
            XCTAssertEqual(r.status, 0, r.stderr)
            return [UInt8](try XCTUnwrap(FileManager.default.contents(atPath: out)))
        }
        let a = try preview(3, "a"), b = try preview(3, "b", ["--threads", "1"]), c = try preview(4, "c")
        XCTAssertEqual(a, b, "same seed, same PNG bytes (whatever the thread count)")
        XCTAssertNotEqual(a, c)
        let sheet = try Codec.decode(a)
        XCTAssertEqual(sheet.channels, 3)
        XCTAssertGreaterThan(sheet.width, 8 * 48)
        // The teacher view has no randomness: noise options change nothing.
        let teacher = try preview(3, "t", ["--view", "teacher"])
        XCTAssertEqual(teacher, try preview(3, "t2", ["--view", "teacher", "--cutout", "20", "--no-flip"]))
        XCTAssertNotEqual(teacher, a)
    }

    func testBenchPipelineJSONMatchesItsSchema() throws {
        let store = try makeStore()
        let r = try Processes.noisy(["bench", "pipeline", "--store", store, "--size", "64", "--batch-size", "8",
                                     "--batches", "3", "--repeat", "2", "--threads", "2", "--randaugment", "2,9", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertNil(try Processes.schemaViolation(schema: "bench-pipeline.schema.json", json: r.stdoutData))
        let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: r.stdoutData) as? [String: Any])
        XCTAssertGreaterThan(obj["images_per_second"] as? Double ?? 0, 0)
        XCTAssertEqual((obj["runs"] as? [Double])?.count, 2)

        let epochs = try Processes.noisy(["bench", "pipeline", "--store", store, "--size", "32", "--batch-size", "4",
                                          "--epochs", "3", "--json"])
        XCTAssertEqual(epochs.status, 0, epochs.stderr)
        XCTAssertNil(try Processes.schemaViolation(schema: "bench-pipeline.schema.json", json: epochs.stdoutData))
        let e = try XCTUnwrap(JSONSerialization.jsonObject(with: epochs.stdoutData) as? [String: Any])
        XCTAssertEqual((e["rss_after_epoch_bytes"] as? [Int])?.count, 3)
        XCTAssertEqual(e["batches"] as? Int, 18, "24 samples / 4 per batch, 3 epochs")
    }

    func testBadArgumentsGiveOneLineReasons() throws {
        let store = try makeStore()
        let img = "\(root)/labeled/cat/0.jpg"
        let cases: [([String], String)] = [
            (["augment", img, "\(root)/o.png", "--op", "wobble", "--param", "1"], "'wobble' is invalid for '--op"),
            (["augment", "\(root)/missing.jpg", "\(root)/o.png", "--op", "invert"], "missing.jpg"),
            (["augment", img, "\(root)/o.png", "--op", "rotate"], "--param"),
            (["preview", "--store", store, "--randaugment", "x", "--out", "\(root)/p.png"], "--randaugment"),
            (["preview", "--store", store, "--crop", "zoom", "--out", "\(root)/p.png"], "--crop"),
            (["preview", "--store", "\(root)/nowhere", "--out", "\(root)/p.png"], "nowhere"),
            (["bench", "pipeline", "--store", store, "--rank", "2", "--world-size", "2"], "--rank"),
        ]
        for (args, needle) in cases {
            let r = try Processes.noisy(args)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertTrue(r.stderr.contains(needle), "\(args): \(r.stderr)")
            XCTAssertFalse(r.stderr.contains("Fatal error"), r.stderr)
        }
        // --magnitude maps through RandAugment's table: solarize at M=5 inverts pixels >= 128.
        let r = try Processes.noisy(["augment", img, "\(root)/m.png", "--op", "solarize", "--magnitude", "5"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("solarize with parameter 128"), r.stderr)
    }

    /// Every command's help renders (the debug binary also validates option names: no duplicates),
    /// and its text reads as paragraphs in an 80-column terminal: ArgumentParser keeps the
    /// discussion's own line breaks and wraps any line longer than the terminal, which left
    /// stubs of a word or two between full lines. Rendered 200 columns wide, no line before
    /// the usage may be longer than 79.
    func testEveryCommandHasHelpWithExamples() throws {
        let commands = ["ingest", "info", "show", "verify", "compact", "demo", "preview", "augment", "train", "evaluate", "robustness", "label",
                        "run", "serve", "labels import", "labels filter", "labels list", "labels show", "labels tag",
                        "labels delete", "labels diff", "labels export", "labels samples", "bench pipeline", "bench decode",
                        "bench labels", "bench corruptions", "salvage", "shard", "labels jobs", "labels commit", "labels abandon"]
        for c in commands {
            let r = try Processes.run(Processes.noisyBinary, c.split(separator: " ").map(String.init) + ["--help"],
                                      environment: ["COLUMNS": "200"])
            XCTAssertEqual(r.status, 0, "\(c): \(r.stderr)")
            let text = r.stdout.components(separatedBy: "USAGE:")[0].split(separator: "\n").dropFirst()  // the overview line wraps itself
            for line in text where line.count > 79 {  // ArgumentParser wraps a line of 80 in 80 columns
                XCTFail("\(c) --help: a line of \(line.count) characters wraps in 80 columns: \(line)")
            }
            // The usage line always names the command; an example is a line after "Examples:".
            let examples = r.stdout.components(separatedBy: "Examples:").dropFirst().joined()
            XCTAssertTrue(examples.contains("noisy \(c)"), "\(c) --help has an example of itself")
        }
    }
}
