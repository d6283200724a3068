import XCTest
@testable import DatasetStore
import ImageCodec
import LMDB
import TestSupport
import Digest
import Pixels

final class IngestTests: XCTestCase {
    var root = ""
    override func setUp() { root = Fixtures.temporaryDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    /// labeled/{cat,dog}, unlabeled/ (nested), test/{cat,dog}: 4 + 3 + 2 distinct images.
    func makeFolders() {
        Fixtures.write(Fixtures.jpeg(width: 64, height: 48, seed: 1), to: "\(root)/labeled/dog/a.jpg")
        Fixtures.write(Fixtures.png(width: 30, height: 20, seed: 2), to: "\(root)/labeled/dog/deep/b.png")
        Fixtures.write(Fixtures.jpeg(width: 40, height: 40, channels: 1, seed: 3), to: "\(root)/labeled/cat/c.JPEG")
        Fixtures.write(Fixtures.jpeg(width: 50, height: 30, progressive: true, seed: 4), to: "\(root)/labeled/cat/d.jpeg")
        Fixtures.write(Fixtures.jpeg(width: 70, height: 50, seed: 5), to: "\(root)/unlabeled/x/1.jpg")
        Fixtures.write(Fixtures.jpeg(width: 70, height: 50, seed: 6), to: "\(root)/unlabeled/2.jpg")
        Fixtures.write(Fixtures.png(width: 16, height: 16, channels: 1, seed: 7), to: "\(root)/unlabeled/3.png")
        Fixtures.write(Fixtures.jpeg(width: 33, height: 33, seed: 8), to: "\(root)/test/cat/t1.jpg")
        Fixtures.write(Fixtures.jpeg(width: 33, height: 33, seed: 9), to: "\(root)/test/dog/t2.jpg")
    }

    func ingest(_ store: Store, labeled: [String] = [], unlabeled: [String] = [], test: [String] = [],
                configure: (inout IngestOptions) -> Void = { _ in }) throws -> (IngestSummary, [IngestReportEntry]) {
        var o = IngestOptions()
        o.labeled = labeled; o.unlabeled = unlabeled; o.test = test
        o.batchSize = 3  // several transactions even for small fixtures
        configure(&o)
        let ing = Ingester(store: store, options: o)
        var refused: [IngestReportEntry] = []
        ing.onRefused = { refused.append($0) }
        return (try ing.run(), refused)
    }

    func testIngestStoresEverySampleWithItsMetadataAndOriginalBytes() throws {
        makeFolders()
        let store = try Store.openOrCreate(path: "\(root)/s.noisy")
        let (summary, refused) = try ingest(store, labeled: ["\(root)/labeled"], unlabeled: ["\(root)/unlabeled"], test: ["\(root)/test"])
        XCTAssertEqual(refused, [])
        XCTAssertEqual(summary.added, 9)
        XCTAssertEqual(summary.addedBySplit, ["labeled": 4, "unlabeled": 3, "test": 2])
        XCTAssertEqual(try store.classes(), ["cat", "dog"], "sorted")
        var seen = 0
        try store.forEachSample { r in
            seen += 1
            let base = r.split == .unlabeled ? "\(root)/unlabeled" : "\(root)/\(r.split.rawValue)"
            let original = try XCTUnwrap(FileManager.default.contents(atPath: base + "/" + r.source))
            XCTAssertEqual(try store.imageBytes(r.id), [UInt8](original), "stored unchanged: \(r.source)")
            XCTAssertEqual(r.contentHash, SHA256.hash([UInt8](original)))
            XCTAssertEqual(r.byteSize, original.count)
            let img = try store.decode(r.id)
            XCTAssertEqual([img.width, img.height, img.channels], [r.width, r.height, r.channels])
            if r.split == .unlabeled { XCTAssertNil(r.classIndex) } else {
                let cls = try XCTUnwrap(r.classIndex)
                XCTAssertTrue(r.source.hasPrefix(["cat", "dog"][Int(cls)] + "/"), r.source)
            }
        }
        XCTAssertEqual(seen, 9)
        XCTAssertEqual(Set(try store.index(of: .labeled).map(\.id)).count, 4)
        XCTAssertEqual(try store.sample(1)?.source, "cat/d.jpeg", "ids follow sorted paths: cat/c.JPEG is 0, cat/d.jpeg is 1")
        let report = try store.verify()
        XCTAssertTrue(report.ok, "\(report.problems)")
    }

    func testReRunAddsNothingAndNewFilesAreAdded() throws {
        makeFolders()
        let store = try Store.openOrCreate(path: "\(root)/s.noisy")
        _ = try ingest(store, labeled: ["\(root)/labeled"], unlabeled: ["\(root)/unlabeled"])
        let (again, refused) = try ingest(store, labeled: ["\(root)/labeled"], unlabeled: ["\(root)/unlabeled"])
        XCTAssertEqual(again.added, 0)
        XCTAssertEqual(again.alreadyStored, 7)
        XCTAssertEqual(refused, [])
        Fixtures.write(Fixtures.jpeg(width: 20, height: 20, seed: 99), to: "\(root)/unlabeled/new.jpg")
        let (third, _) = try ingest(store, unlabeled: ["\(root)/unlabeled"])
        XCTAssertEqual(third.added, 1)
        XCTAssertEqual(try store.count(), 8)
        XCTAssertEqual(try store.sample(7)?.source, "new.jpg", "new ids continue after the largest")
    }

    func testNewClassesAreAppendedNeverRenumbered() throws {
        makeFolders()
        let store = try Store.openOrCreate(path: "\(root)/s.noisy")
        _ = try ingest(store, labeled: ["\(root)/labeled"])
        Fixtures.write(Fixtures.jpeg(width: 20, height: 20, seed: 50), to: "\(root)/more/ant/1.jpg")
        Fixtures.write(Fixtures.jpeg(width: 20, height: 20, seed: 51), to: "\(root)/more/zebra/1.jpg")
        Fixtures.write(Fixtures.jpeg(width: 20, height: 20, seed: 52), to: "\(root)/more/cat/2.jpg")
        let (s, _) = try ingest(store, labeled: ["\(root)/more"])
        XCTAssertEqual(s.newClasses, ["ant", "zebra"])
        XCTAssertEqual(try store.classes(), ["cat", "dog", "ant", "zebra"])
        XCTAssertEqual(try store.ids(forSource: "cat/2.jpg").count, 1)
        let id = try XCTUnwrap(store.ids(forSource: "cat/2.jpg").first)
        XCTAssertEqual(try store.sample(id)?.classIndex, 0)
    }

    func testDuplicatesAreStoredOnceAndLeakageIsReported() throws {
        let bytes = Fixtures.jpeg(width: 32, height: 32, seed: 42)
        Fixtures.write(bytes, to: "\(root)/labeled/cat/one.jpg")
        Fixtures.write(bytes, to: "\(root)/labeled/cat/copy.jpg")
        Fixtures.write(bytes, to: "\(root)/unlabeled/again.jpg")
        Fixtures.write(bytes, to: "\(root)/test/cat/leak.jpg")
        let store = try Store.openOrCreate(path: "\(root)/s.noisy")
        let (s, refused) = try ingest(store, labeled: ["\(root)/labeled"], unlabeled: ["\(root)/unlabeled"], test: ["\(root)/test"])
        XCTAssertEqual(s.added, 1)
        XCTAssertEqual(s.duplicates, 3)
        XCTAssertEqual(s.leakage, 1)
        XCTAssertEqual(Set(refused.map(\.status)), [.duplicate])
        let leak = try XCTUnwrap(refused.first { $0.path.hasSuffix("leak.jpg") })
        XCTAssertEqual(leak.category, .leakage)
        XCTAssertTrue(leak.reason.contains("LEAKAGE"), leak.reason)
        XCTAssertEqual(try store.sample(0)?.source, "cat/copy.jpg", "first in sorted order is kept")
    }

    func testBadInputsAreSkippedWithReasonsAndGoodOnesKept() throws {
        let good = Fixtures.jpeg(width: 64, height: 64, seed: 1)
        let u = "\(root)/unlabeled"
        Fixtures.write(good, to: "\(u)/good.jpg")
        Fixtures.write([], to: "\(u)/zero.jpg")
        Fixtures.write(Array(good.prefix(good.count / 2)), to: "\(u)/truncated.jpg")
        let png = Fixtures.png(width: 64, height: 64, seed: 2)
        Fixtures.write(Array(png.prefix(png.count - 30)), to: "\(u)/truncated.png")
        Fixtures.write(Array("just text\n".utf8), to: "\(u)/text.png")
        Fixtures.write(Array("GIF89a".utf8) + [UInt8](repeating: 1, count: 30), to: "\(u)/anim.gif")
        Fixtures.write(Array("II*\0".utf8) + [UInt8](repeating: 1, count: 30), to: "\(u)/scan.tiff")
        Fixtures.write(Fixtures.jpeg(width: 300, height: 200, seed: 3), to: "\(u)/big.jpg")
        Fixtures.write(Fixtures.jpeg(width: 10, height: 10, seed: 4), to: "\(root)/outside.jpg")
        try FileManager.default.createSymbolicLink(atPath: "\(u)/escape.jpg", withDestinationPath: "\(root)/outside.jpg")
        try FileManager.default.createSymbolicLink(atPath: "\(u)/inside.jpg", withDestinationPath: "\(u)/good.jpg")
        try FileManager.default.createDirectory(atPath: "\(u)/emptydir", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: "\(u)/linked-dir", withDestinationPath: "\(u)/emptydir")
        // A FIFO named like an image: refused without being opened (opening it would
        // block). Root reads files whatever their mode, so a FIFO is what any user,
        // CI's root too, cannot ingest.
        XCTAssertEqual(mkfifo("\(u)/pipe.jpg", 0o644), 0)
        let store = try Store.openOrCreate(path: "\(root)/s.noisy")
        let (s, refused) = try ingest(store, unlabeled: [u]) { $0.maxPixels = 50_000 }
        let byName = Dictionary(uniqueKeysWithValues: refused.map { (($0.path as NSString).lastPathComponent, $0) })
        XCTAssertEqual(byName["zero.jpg"]?.category, .empty)
        XCTAssertEqual(byName["truncated.jpg"]?.category, .corrupt)
        XCTAssertTrue(byName["truncated.jpg"]?.reason.contains("Premature end") ?? false)
        XCTAssertEqual(byName["truncated.png"]?.category, .corrupt)
        XCTAssertEqual(byName["text.png"]?.category, .notAnImage)
        XCTAssertEqual(byName["anim.gif"]?.category, .unsupportedFormat)
        XCTAssertEqual(byName["scan.tiff"]?.category, .unsupportedFormat)
        XCTAssertEqual(byName["big.jpg"]?.category, .tooLarge)
        XCTAssertEqual(byName["escape.jpg"]?.category, .symlinkOutside)
        XCTAssertEqual(byName["linked-dir"]?.category, .symlinkedFolder, "a folder symlink inside is not followed, and says so")
        // The in-folder symlink is followed, and its bytes equal good.jpg: a duplicate, not a second sample.
        XCTAssertEqual(byName["inside.jpg"]?.category, .duplicate)
        XCTAssertEqual(byName["pipe.jpg"]?.category, .notARegularFile)
        XCTAssertTrue(byName["pipe.jpg"]?.reason.contains("FIFO") ?? false)
        for r in refused { XCTAssertFalse(r.reason.contains("\n")) }
        XCTAssertEqual(s.added, 1)
        XCTAssertEqual(try store.ids(forSource: "good.jpg").count, 1)
        XCTAssertTrue(try store.verify().ok)
    }

    /// A file that cannot be opened, for any user (root included): the read path
    /// gives the one-line "unreadable" reason with the system's words.
    func testUnreadableFileGetsAReason() throws {
        let file = "\(root)/plain.jpg"
        Fixtures.write(Fixtures.jpeg(width: 8, height: 8, seed: 9), to: file)
        // A path through a regular file: open fails with ENOTDIR whoever asks.
        let scanned = ScannedFile(split: .unlabeled, path: file + "/inner.jpg", source: "plain.jpg/inner.jpg", className: nil, refusal: nil)
        guard case .refused(let category, let reason) = Ingester.load(scanned) else { return XCTFail("read a path that cannot exist") }
        XCTAssertEqual(category, .unreadable)
        XCTAssertEqual(reason, "cannot open: Not a directory")
    }

    func testMaxSideReencodesAndRecordsTheOriginal() throws {
        Fixtures.write(Fixtures.png(width: 400, height: 200, seed: 1), to: "\(root)/u/wide.png")
        Fixtures.write(Fixtures.jpeg(width: 100, height: 80, seed: 2), to: "\(root)/u/small.jpg")
        let store = try Store.openOrCreate(path: "\(root)/s.noisy")
        let (s, _) = try ingest(store, unlabeled: ["\(root)/u"]) { $0.maxSide = 128; $0.quality = 85 }
        XCTAssertEqual(s.added, 2)
        let small = try XCTUnwrap(store.sample(0))
        XCTAssertFalse(small.reencoded)
        let wide = try XCTUnwrap(store.sample(1))
        XCTAssertTrue(wide.reencoded)
        XCTAssertEqual(wide.format, .jpeg)
        XCTAssertEqual(wide.originalFormat, .png)
        XCTAssertEqual([wide.width, wide.height, wide.originalWidth, wide.originalHeight], [128, 64, 400, 200])
        XCTAssertNotEqual(wide.dataHash, wide.contentHash)
        // Resized with a proper (Lanczos) filter: close to Pillow's own Lanczos resize of
        // the original (both decoded by Pillow; the stored copy went through JPEG q85).
        Fixtures.write(try store.imageBytes(1), to: "\(root)/stored.jpg")
        let pillow = try Processes.python("""
        import sys, numpy as np
        from PIL import Image
        ref = Image.open(sys.argv[1]).convert("RGB").resize((128, 64), Image.LANCZOS)
        ours = Image.open(sys.argv[2]).convert("RGB")
        a, b = np.asarray(ref, dtype=np.int16), np.asarray(ours, dtype=np.int16)
        blurred = Image.open(sys.argv[1]).convert("RGB").resize((128, 64), Image.NEAREST)
        print(float(np.abs(a - b).mean()), float(np.abs(np.asarray(blurred, dtype=np.int16) - b).mean()))
        """, ["\(root)/u/wide.png", "\(root)/stored.jpg"])
        XCTAssertEqual(pillow.status, 0, pillow.stderr)
        let mads = pillow.stdout.split(separator: " ").compactMap { Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        XCTAssertEqual(mads.count, 2, pillow.stdout)
        XCTAssertLessThan(mads.first ?? 99, 3.0, "mean difference from Pillow's Lanczos resize")
        // And the check can tell filters apart: nearest-neighbour is much further away.
        XCTAssertGreaterThan(mads.last ?? 0, 2 * (mads.first ?? 99), "Lanczos vs nearest: \(mads)")
        XCTAssertTrue(try store.verify().ok)
    }

    /// --restart-markers: JPEGs are stored rewritten (restart markers, optimal Huffman
    /// tables), with Pillow's decode of the stored bytes equal to its decode of the
    /// original file and the EXIF and ICC segments kept; small JPEGs and PNGs are stored
    /// as they are, and the store verifies.
    func testRestartMarkersKeepPixelsAndMetadata() throws {
        Fixtures.write(Fixtures.png(width: 320, height: 240, seed: 12), to: "\(root)/src.png")
        Fixtures.write(Fixtures.png(width: 200, height: 100, seed: 13), to: "\(root)/u/graphic.png")
        let made = try Processes.python("""
        import sys
        from PIL import Image
        d = sys.argv[1]
        src = Image.open(d + "/src.png").convert("RGB")
        exif = Image.Exif(); exif[0x010F] = "noisy test camera"; exif[0x0132] = "2026:12:06 07:00:00"
        src.save(d + "/u/photo.jpg", quality=88, exif=exif.tobytes(), icc_profile=b"not-a-real-profile" * 20)
        src.resize((333, 250)).save(d + "/u/progressive.jpg", quality=80, progressive=True)
        src.resize((64, 48)).save(d + "/u/small.jpg", quality=90)
        """, [root])
        XCTAssertEqual(made.status, 0, made.stderr)
        let store = try Store.openOrCreate(path: "\(root)/s.noisy")
        let (s, _) = try ingest(store, unlabeled: ["\(root)/u"]) { $0.restartMarkers = true }
        XCTAssertEqual(s.added, 4)
        XCTAssertEqual(s.restartMarkersAdded, 2)
        XCTAssertTrue(try store.verify().ok)
        var pairs: [String] = []
        for id in 0..<UInt64(4) {
            let r = try XCTUnwrap(store.sample(id))
            let name = (r.source as NSString).lastPathComponent
            let stored = try store.imageBytes(id)
            let original = try XCTUnwrap(FileManager.default.contents(atPath: "\(root)/u/\(name)"))
            XCTAssertEqual(r.contentHash, SHA256.hash([UInt8](original)), name)
            let rewritten = name == "photo.jpg" || name == "progressive.jpg"
            XCTAssertEqual(r.reencoded, rewritten, name)
            XCTAssertEqual(stored != [UInt8](original), rewritten, name)
            XCTAssertEqual([r.width, r.height], [r.originalWidth, r.originalHeight], name)
            Fixtures.write(stored, to: "\(root)/stored-\(name)")
            pairs += ["\(root)/u/\(name)", "\(root)/stored-\(name)"]
        }
        let compared = try Processes.python("""
        import sys
        from PIL import Image
        a = sys.argv[1:]
        for orig, stored in zip(a[0::2], a[1::2]):
            x, y = Image.open(orig), Image.open(stored)
            same = x.convert("RGB").tobytes() == y.convert("RGB").tobytes()
            meta = x.info.get("exif") == y.info.get("exif") and x.info.get("icc_profile") == y.info.get("icc_profile")
            print(orig.rsplit("/", 1)[1], same, meta, "exif" in y.info)
        """, pairs)
        XCTAssertEqual(compared.status, 0, compared.stderr)
        let lines = compared.stdout.split(separator: "\n").map(String.init).sorted()
        XCTAssertEqual(lines, ["graphic.png True True False", "photo.jpg True True True",
                               "progressive.jpg True True False", "small.jpg True True False"])
        // The CLI: the flag, the count in --json, and the summary's schema.
        let cli = try Processes.noisy(["ingest", "--store", "\(root)/cli.noisy", "--unlabeled", "\(root)/u", "--restart-markers", "--json"])
        XCTAssertEqual(cli.status, 0, cli.stderr)
        XCTAssertNil(try Processes.schemaViolation(schema: "ingest-summary.schema.json", json: cli.stdoutData))
        XCTAssertEqual(try JSONDecoder().decode(IngestSummary.self, from: cli.stdoutData).restartMarkersAdded, 2)
    }

    /// With --max-side too, the re-encoded JPEG gets the markers (and stays sliceable):
    /// its crops decode like its full decode.
    func testRestartMarkersApplyToMaxSideReencodes() throws {
        Fixtures.write(Fixtures.png(width: 600, height: 300, seed: 21), to: "\(root)/u/wide.png")
        let store = try Store.openOrCreate(path: "\(root)/s.noisy")
        let (s, _) = try ingest(store, unlabeled: ["\(root)/u"]) { $0.maxSide = 400; $0.restartMarkers = true }
        XCTAssertEqual([s.added, s.restartMarkersAdded], [1, 1])
        let stored = try store.imageBytes(0)
        // A DRI segment (FF DD) before the scan, and restart markers in it.
        let sos = try XCTUnwrap((0..<stored.count - 1).first { stored[$0] == 0xFF && stored[$0 + 1] == 0xDA })
        XCTAssertTrue((0..<sos).contains { stored[$0] == 0xFF && stored[$0 + 1] == 0xDD })
        XCTAssertGreaterThan((sos..<stored.count - 1).filter { stored[$0] == 0xFF && (0xD0...0xD7).contains(stored[$0 + 1]) }.count, 10)
        let box = PixelRect(x: 150, y: 60, width: 90, height: 50)
        let crop = try Codec.decode(stored, options: DecodeOptions(region: PixelRect(x: box.x - 2, y: box.y - 2, width: box.width + 4, height: box.height + 4)))
        Fixtures.write(stored, to: "\(root)/stored.jpg")
        let pillow = try Processes.python("""
        import sys
        from PIL import Image
        im = Image.open(sys.argv[1]); assert im.size == (400, 200), im.size
        sys.stdout.buffer.write(im.convert("RGB").crop((150, 60, 240, 110)).tobytes())
        """, ["\(root)/stored.jpg"])
        XCTAssertEqual(pillow.status, 0, pillow.stderr)
        let theirs = [UInt8](pillow.stdoutData)
        XCTAssertEqual(theirs.count, box.width * box.height * 3)
        var differing = 0
        for y in 0..<box.height {
            for x in 0..<box.width * 3 where theirs.count == box.width * box.height * 3 {
                if crop.pixels[((y + 2) * crop.width + 2) * 3 + x] != theirs[y * box.width * 3 + x] { differing += 1 }
            }
        }
        XCTAssertEqual(differing, 0, "a restart slice's crop against Pillow's decode of the stored file")
        XCTAssertTrue(try store.verify().ok)
    }

    func testVerifyFindsTamperedBytes() throws {
        makeFolders()
        let path = "\(root)/s.noisy"
        do {
            let store = try Store.openOrCreate(path: path)
            _ = try ingest(store, labeled: ["\(root)/labeled"])
        }
        // Flip a byte of sample 1's image behind the store's back.
        do {
            let env = try Environment(path: path, databases: [DatabaseSpec("images")])
            let images = try XCTUnwrap(env.database("images"))
            try env.write { txn in
                var bytes = try XCTUnwrap(txn.get(images, key: Layout.idKey(1)))
                bytes[bytes.count / 2] ^= 0x55
                try txn.put(images, key: Layout.idKey(1), value: bytes)
            }
        }
        let report = try Store(path: path, readOnly: true).verify()
        XCTAssertFalse(report.ok)
        XCTAssertTrue(report.problems.contains { $0.id == 1 && $0.problem.contains("hash") }, "\(report.problems)")
    }

    func testNotAStoreAndMissingFolderAreRefusedWithoutWriting() throws {
        Fixtures.write(Array("hello".utf8), to: "\(root)/notastore/file.txt")
        XCTAssertThrowsError(try Store.openOrCreate(path: "\(root)/notastore")) { error in
            XCTAssertTrue("\(error)".contains("not a store"), "\(error)")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: "\(root)/notastore"), ["file.txt"])
        let store = try Store.openOrCreate(path: "\(root)/s.noisy")
        XCTAssertThrowsError(try ingest(store, labeled: ["\(root)/nope"])) { error in
            XCTAssertTrue("\(error)".contains("no such folder"), "\(error)")
        }
        XCTAssertEqual(try store.count(), 0)
    }
}

extension IngestTests {
    /// A copy of a refused file gets the same refusal (and is counted as skipped), not
    /// "duplicate, kept the first" when nothing was kept.
    func testCopiesOfARefusedFileGetItsRefusal() throws {
        let u = "\(root)/copies"
        Fixtures.write(Array("not an image at all\n".utf8), to: "\(u)/a.jpg")
        Fixtures.write(Array("not an image at all\n".utf8), to: "\(u)/b.jpg")
        let cut = Array(Fixtures.jpeg(width: 64, height: 64, seed: 8).prefix(300))
        Fixtures.write(cut, to: "\(u)/c.jpg")
        Fixtures.write(cut, to: "\(u)/d.jpg")
        Fixtures.write(Fixtures.jpeg(width: 16, height: 16, seed: 9), to: "\(u)/e.jpg")
        Fixtures.write(Fixtures.jpeg(width: 16, height: 16, seed: 9), to: "\(u)/f.jpg")
        let store = try Store.openOrCreate(path: "\(root)/s.noisy")
        let (s, refused) = try ingest(store, unlabeled: [u])
        let byName = Dictionary(uniqueKeysWithValues: refused.map { (($0.path as NSString).lastPathComponent, $0) })
        XCTAssertEqual(byName["a.jpg"]?.category, .notAnImage)
        XCTAssertEqual(byName["b.jpg"]?.category, .notAnImage, "\(byName["b.jpg"].map { "\($0)" } ?? "nil")")
        XCTAssertTrue(byName["b.jpg"]?.reason.contains("a.jpg") ?? false, "names the file it copies")
        XCTAssertEqual(byName["c.jpg"]?.category, .corrupt)
        XCTAssertEqual(byName["d.jpg"]?.category, .corrupt)
        XCTAssertEqual(byName["f.jpg"]?.category, .duplicate, "a copy of a kept file is still a duplicate")
        XCTAssertEqual(s.added, 1)
        XCTAssertEqual(s.skipped, 4, "every refused copy counts as skipped")
        XCTAssertEqual(s.duplicates, 1)
    }
}
