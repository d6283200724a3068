import XCTest
import DatasetStore
import ImageCodec
import TestSupport
import Digest

final class CLITests: XCTestCase {
    var root = ""
    override func setUp() { root = Fixtures.temporaryDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    func makeFolders(bad: Bool = true) {
        for i in 0..<6 {
            Fixtures.write(Fixtures.jpeg(width: 48 + i, height: 40, seed: UInt64(i)), to: "\(root)/labeled/\(["ant", "bee"][i % 2])/\(i).jpg")
            Fixtures.write(Fixtures.png(width: 20, height: 24 + i, seed: UInt64(100 + i)), to: "\(root)/unlabeled/sub/\(i).png")
        }
        Fixtures.write(Fixtures.jpeg(width: 30, height: 30, seed: 200), to: "\(root)/test/ant/t.jpg")
        if bad {
            let j = Fixtures.jpeg(width: 64, height: 64, seed: 7)
            Fixtures.write(Array(j.prefix(j.count - 200)), to: "\(root)/unlabeled/broken.jpg")
            var corrupt = j
            for k in stride(from: j.count / 2, to: j.count / 2 + 40, by: 3) { corrupt[k] = 0xFF }
            Fixtures.write(corrupt, to: "\(root)/unlabeled/garbled.jpg")
            let p = Fixtures.png(width: 64, height: 64, seed: 8)
            Fixtures.write(Array(p.prefix(p.count / 2)), to: "\(root)/unlabeled/broken.png")
            Fixtures.write(Array("not a png".utf8), to: "\(root)/unlabeled/fake.png")
            // Junk between two markers (broken metadata): libjpeg warns, the pixels are whole.
            let dqt = (0..<(j.count - 1)).first { j[$0] == 0xFF && j[$0 + 1] == 0xDB } ?? 2
            Fixtures.write(Array(j[..<dqt]) + [0x00, 0x11, 0x22] + Array(j[dqt...]), to: "\(root)/unlabeled/junk.jpg")
        }
    }

    /// WebP (lossy, lossless with alpha, animated) is ingested like JPEG and PNG,
    /// kept as WebP, and re-encoded to JPEG by --max-side; a damaged one is refused
    /// with a reason that names the format.
    func testWebPFoldersIngestAndReencode() throws {
        let made = try Processes.python("""
        import sys, numpy as np
        from PIL import Image
        d = sys.argv[1]; rng = np.random.RandomState(3)
        im = Image.fromarray(rng.randint(0, 255, (40, 56, 3), dtype=np.uint8))
        import os; os.makedirs(d + "/w", exist_ok=True)
        im.save(d + "/w/lossy.webp", quality=80)
        im.convert("RGBA").save(d + "/w/alpha.webp", lossless=True)
        im.save(d + "/w/anim.webp", save_all=True, append_images=[im.rotate(90)], duration=50)
        b = open(d + "/w/lossy.webp", "rb").read(); open(d + "/w/cut.webp", "wb").write(b[:len(b) // 2])
        """, [root])
        XCTAssertEqual(made.status, 0, made.stderr)
        let store = "\(root)/w.noisy"
        let r = try Processes.noisy(["ingest", "--store", store, "--unlabeled", "\(root)/w", "--json", "--report", "\(root)/r.jsonl"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let summary = try JSONDecoder().decode(IngestSummary.self, from: r.stdoutData)
        XCTAssertEqual(summary.added, 3)
        XCTAssertEqual(summary.skipped, 1)
        let report = String(decoding: try XCTUnwrap(FileManager.default.contents(atPath: "\(root)/r.jsonl")), as: UTF8.self)
        XCTAssertTrue(report.contains("cut.webp") && report.contains("WebP"), report)
        let info = try JSONSerialization.jsonObject(with: Processes.noisy(["info", "--store", store, "--json"]).stdoutData) as? [String: Any]
        XCTAssertEqual(info?["formats"] as? [String: Int], ["webp": 3])
        XCTAssertEqual(try Processes.noisy(["verify", "--store", store]).status, 0)
        let small = "\(root)/small.noisy"
        XCTAssertEqual(try Processes.noisy(["ingest", "--store", small, "--unlabeled", "\(root)/w", "--max-side", "20", "--quiet"]).status, 0)
        let smallInfo = try JSONSerialization.jsonObject(with: Processes.noisy(["info", "--store", small, "--json"]).stdoutData) as? [String: Any]
        XCTAssertEqual(smallInfo?["formats"] as? [String: Int], ["jpeg": 3])
    }

    func testIngestInfoVerifyOutputsMatchTheirSchemasAndCLibrariesStayQuiet() throws {
        makeFolders()
        let store = "\(root)/s.noisy"
        let r = try Processes.noisy(["ingest", "--store", store, "--labeled", "\(root)/labeled", "--unlabeled", "\(root)/unlabeled",
                                     "--test", "\(root)/test", "--json", "--report", "\(root)/report.jsonl"])
        XCTAssertEqual(r.status, 0, r.stderr)
        // Nothing from libjpeg/libpng on stderr: their warnings are our errors, reported in the report.
        XCTAssertFalse(r.stderr.contains("Corrupt JPEG"), r.stderr)
        XCTAssertFalse(r.stderr.contains("Premature end"), r.stderr)
        XCTAssertFalse(r.stderr.lowercased().contains("libpng"), r.stderr)
        XCTAssertNil(try Processes.schemaViolation(schema: "ingest-summary.schema.json", json: r.stdoutData))
        let summary = try JSONDecoder().decode(IngestSummary.self, from: r.stdoutData)
        XCTAssertEqual(summary.added, 14)
        XCTAssertEqual(summary.skipped, 4)
        XCTAssertEqual(summary.acceptedWithWarnings, 1)
        let report = try XCTUnwrap(FileManager.default.contents(atPath: "\(root)/report.jsonl"))
        XCTAssertEqual(String(decoding: report, as: UTF8.self).split(separator: "\n").count, 5)
        XCTAssertNil(try Processes.schemaViolation(schema: "ingest-report.schema.json", json: report, lines: true))
        let entries = try String(decoding: report, as: UTF8.self).split(separator: "\n").map {
            try JSONDecoder().decode(IngestReportEntry.self, from: Data($0.utf8))
        }
        let byName = Dictionary(uniqueKeysWithValues: entries.map { (($0.path as NSString).lastPathComponent, $0) })
        XCTAssertEqual(byName["junk.jpg"]?.status, .accepted)
        XCTAssertTrue(byName["junk.jpg"]?.reason.contains("extraneous bytes between markers") ?? false, "\(entries)")
        // Decoder reasons name the format and the stage before the library's words.
        XCTAssertTrue(byName["broken.jpg"]?.reason.hasPrefix("JPEG entropy data: ") ?? false, "\(String(describing: byName["broken.jpg"]))")
        XCTAssertTrue(byName["broken.png"]?.reason.hasPrefix("PNG image data: ") ?? false, "\(String(describing: byName["broken.png"]))")
        XCTAssertTrue(byName["garbled.jpg"]?.reason.hasPrefix("JPEG ") ?? false, "\(String(describing: byName["garbled.jpg"]))")

        let info = try Processes.noisy(["info", "--store", store, "--json"])
        XCTAssertEqual(info.status, 0, info.stderr)
        XCTAssertNil(try Processes.schemaViolation(schema: "info.schema.json", json: info.stdoutData))
        let parsed = try JSONDecoder().decode(StoreInfo.self, from: info.stdoutData)
        XCTAssertEqual(parsed.splits, ["labeled": 6, "unlabeled": 7, "test": 1, "validation": 0])
        XCTAssertEqual(parsed.classes.map(\.name), ["ant", "bee"])
        XCTAssertEqual(parsed.classes.map(\.labeled), [3, 3])
        XCTAssertEqual(parsed.classes.map(\.test), [1, 0])

        let verify = try Processes.noisy(["verify", "--store", store, "--json"])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
        XCTAssertNil(try Processes.schemaViolation(schema: "verify.schema.json", json: verify.stdoutData))

        // The format record in meta validates too (read with python3-lmdb).
        let meta = try Processes.python("""
        import lmdb, sys
        env = lmdb.open(sys.argv[1], readonly=True, max_dbs=16)
        meta = env.open_db(b"meta", create=False)
        with env.begin() as t: sys.stdout.write(t.get(b"format", db=meta).decode())
        """, [store])
        XCTAssertEqual(meta.status, 0, meta.stderr)
        XCTAssertNil(try Processes.schemaViolation(schema: "store-format.schema.json", json: meta.stdoutData))

        let strict = try Processes.noisy(["ingest", "--store", store, "--unlabeled", "\(root)/unlabeled", "--strict", "--quiet"])
        XCTAssertNotEqual(strict.status, 0)
        XCTAssertTrue(strict.stderr.contains("--strict"), strict.stderr)
    }

    func testShowWritesTheDecodedSampleAsPNG() throws {
        makeFolders(bad: false)
        let store = "\(root)/s.noisy"
        XCTAssertEqual(try Processes.noisy(["ingest", "--store", store, "--labeled", "\(root)/labeled", "--quiet"]).status, 0)
        let r = try Processes.noisy(["show", "--store", store, "--id", "2", "--out", "\(root)/s2.png"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let png = try XCTUnwrap(FileManager.default.contents(atPath: "\(root)/s2.png"))
        let s = try Store(path: store, readOnly: true)
        XCTAssertEqual(try Codec.decode([UInt8](png)), try s.decode(2))
        let missing = try Processes.noisy(["show", "--store", store, "--id", "999", "--out", "\(root)/x.png"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("no sample with id 999"), missing.stderr)
    }

    func testUserErrorsAreOneLineAndWriteNothing() throws {
        let r = try Processes.noisy(["ingest", "--store", "\(root)/new.noisy", "--labeled", "\(root)/missing"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertEqual(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("\(root)/missing"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(root)/new.noisy"), "no store created")

        Fixtures.write(Array("x".utf8), to: "\(root)/junk/readme.txt")
        let notStore = try Processes.noisy(["info", "--store", "\(root)/junk"])
        XCTAssertNotEqual(notStore.status, 0)
        XCTAssertTrue(notStore.stderr.contains("not a store"), notStore.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: "\(root)/junk"), ["readme.txt"])

        let help = try Processes.noisy(["ingest", "--help"])
        XCTAssertTrue(help.stdout.contains("Examples:"), help.stdout)
    }

    func testPythonReaderSeesEveryByteTheSwiftStoreWrote() throws {
        makeFolders(bad: false)
        // A WebP too (format code 3), written by Pillow.
        let webp = try Processes.python("""
        import sys
        from PIL import Image
        Image.new("RGB", (40, 30), (200, 30, 90)).save(sys.argv[1] + "/unlabeled/pillow.webp", quality=80)
        """, [root])
        XCTAssertEqual(webp.status, 0, webp.stderr)
        let store = "\(root)/s.noisy"
        XCTAssertEqual(try Processes.noisy(["ingest", "--store", store, "--labeled", "\(root)/labeled", "--unlabeled",
                                            "\(root)/unlabeled", "--test", "\(root)/test", "--quiet"]).status, 0)
        let script = """
        import hashlib, json, os, sys
        sys.path.insert(0, sys.argv[1])
        import noisy
        root = sys.argv[3]
        out = []
        with noisy.open_store(sys.argv[2]) as st:
            for s in st.samples():
                folder = os.path.join(root, s["split"])
                with open(os.path.join(folder, s["source"]), "rb") as f:
                    assert f.read() == s["data"], s["source"]
                assert set(s) >= {"id", "split", "label", "source", "format", "width", "height", "data"}
                out.append({"id": s["id"], "split": s["split"], "label": s["label"], "source": s["source"],
                            "format": s["format"], "width": s["width"], "height": s["height"],
                            "sha256": hashlib.sha256(s["data"]).hexdigest()})
        print(json.dumps(out))
        """
        let r = try Processes.python(script, [Processes.repositoryRoot + "/python", store, root])
        XCTAssertEqual(r.status, 0, r.stderr)
        struct Row: Decodable { let id: UInt64; let split: String; let label: String?; let source: String
                                let format: String; let width: Int; let height: Int; let sha256: String }
        let rows = try JSONDecoder().decode([Row].self, from: r.stdoutData)
        let s = try Store(path: store, readOnly: true)
        let classes = try s.classes()
        XCTAssertEqual(rows.count, try s.count())
        for row in rows {
            let rec = try XCTUnwrap(s.sample(row.id))
            XCTAssertEqual(row.split, rec.split.rawValue)
            XCTAssertEqual(row.label, rec.classIndex.map { classes[Int($0)] })
            XCTAssertEqual(row.source, rec.source)
            XCTAssertEqual(row.format, rec.format.rawValue)
            XCTAssertEqual([row.width, row.height], [rec.width, rec.height])
            XCTAssertEqual(row.sha256, SHA256.hash(try s.imageBytes(row.id)).hexString)
        }
        XCTAssertEqual(rows.filter { $0.format == "webp" }.map(\.source), ["pillow.webp"])
    }

    func testKilledIngestLeavesWholeSamplesAndReRunFinishes() throws {
        let n = 1200
        for i in 0..<n { Fixtures.write(Fixtures.jpeg(width: 96, height: 72, quality: 80, seed: UInt64(i + 1)), to: "\(root)/u/\(i / 100)/\(i).jpg") }
        let store = "\(root)/s.noisy"
        var gen = SystemRandomNumberGenerator()
        var killedEarly = 0
        for _ in 0..<4 {
            let p = try Processes.spawnNoisy(["ingest", "--store", store, "--unlabeled", "\(root)/u", "--quiet"])
            usleep(UInt32.random(in: 30_000...400_000, using: &gen))
            if p.isRunning { kill(p.processIdentifier, SIGKILL); killedEarly += 1 }
            p.waitUntilExit()
            guard FileManager.default.fileExists(atPath: store + "/data.mdb") else { continue }
            let v = try Processes.noisy(["verify", "--store", store])
            XCTAssertEqual(v.status, 0, "after kill -9 the store verifies: \(v.stdout)")
        }
        let last = try Processes.noisy(["ingest", "--store", store, "--unlabeled", "\(root)/u", "--json"])
        XCTAssertEqual(last.status, 0, last.stderr)
        let summary = try JSONDecoder().decode(IngestSummary.self, from: last.stdoutData)
        XCTAssertEqual(summary.added + summary.alreadyStored, n)
        XCTAssertEqual(summary.duplicates, 0)
        XCTAssertEqual(try Store(path: store, readOnly: true).count(), n, "exactly the expected samples (killed \(killedEarly) runs)")
    }

    func testReadersKeepWorkingWhileIngestWrites() throws {
        let n = 2000
        for i in 0..<n { Fixtures.write(Fixtures.jpeg(width: 96, height: 72, quality: 80, seed: UInt64(i + 7)), to: "\(root)/u/\(i).jpg") }
        let store = "\(root)/s.noisy"
        // Create the store first so readers have something to open.
        Fixtures.write(Fixtures.jpeg(width: 20, height: 20, seed: 1), to: "\(root)/first/a.jpg")
        XCTAssertEqual(try Processes.noisy(["ingest", "--store", store, "--unlabeled", "\(root)/first", "--quiet"]).status, 0)
        // The writer runs at the lowest priority, so that on a busy machine the readers
        // still get their turns while it writes (8 commits of 256 samples).
        let writer = Process()
        writer.executableURL = URL(fileURLWithPath: "/usr/bin/nice")
        writer.arguments = ["-n", "19", Processes.noisyBinary, "ingest", "--store", store, "--unlabeled", "\(root)/u", "--quiet"]
        writer.standardOutput = FileHandle.nullDevice
        writer.standardError = FileHandle.nullDevice
        try writer.run()
        var counts: [Int] = []
        while writer.isRunning || counts.count < 3 {
            let r = try Processes.noisy(["info", "--store", store, "--json"])
            XCTAssertEqual(r.status, 0, "info during ingest: \(r.stderr)")
            if let info = try? JSONDecoder().decode(StoreInfo.self, from: r.stdoutData) { counts.append(info.samples) }
            if counts.count > 200 { break }
        }
        writer.waitUntilExit()
        XCTAssertEqual(writer.terminationStatus, 0)
        XCTAssertEqual(counts, counts.sorted(), "a reader never sees samples disappear")
        XCTAssertTrue(counts.allSatisfy { ($0 - 1) % 256 == 0 || $0 == n + 1 }, "whole batches only: \(counts)")
        // Without this the test would pass even if no read overlapped the write.
        XCTAssertTrue(counts.contains { $0 > 1 && $0 < n + 1 }, "some read saw the ingest half done: \(counts)")
        XCTAssertEqual(try Store(path: store, readOnly: true).count(), n + 1)
    }
}
