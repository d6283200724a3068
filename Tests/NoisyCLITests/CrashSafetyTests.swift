import XCTest
import KeyedRandom
import ImageCodec
import TestSupport

/// kill -9 at random points of every writing command: afterwards the store opens and
/// verifies, nothing half-written is visible, and re-running the command ends with
/// exactly the bytes an uninterrupted run produces. Each command is killed at least
/// 20 times, at uniform random points of a clean run's duration, each time from a
/// fresh copy of the same starting store.
final class CrashSafetyTests: XCTestCase {
    var root = ""
    override func setUp() { root = Fixtures.temporaryDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    static let kills = 20

    /// SHA-256 of every entry (key and value) of the named databases, read with
    /// python-lmdb: two stores with equal digests hold the same bytes, up to the
    /// wall-clock "created" times in selection records.
    func digest(_ store: String, _ dbs: [String]) throws -> [String: String] {
        let r = try Processes.python("""
        import hashlib, json, lmdb, re, sys
        env = lmdb.open(sys.argv[1], readonly=True, max_dbs=32, lock=False)
        out = {}
        with env.begin() as t:
            for name in sys.argv[2:]:
                h = hashlib.sha256(); n = 0
                for k, v in t.cursor(env.open_db(name.encode(), txn=t, create=False)):
                    v = re.sub(rb'"created" ?: ?"[^"]*"', b'"created":""', v)
                    h.update(len(k).to_bytes(4, "little") + k + len(v).to_bytes(4, "little") + v); n += 1
                out[name] = f"{n}:{h.hexdigest()}"
        print(json.dumps(out))
        """, [store] + dbs)
        XCTAssertEqual(r.status, 0, r.stderr)
        return (try? JSONDecoder().decode([String: String].self, from: r.stdoutData)) ?? [:]
    }

    /// Runs `arguments(target)` until it has been killed `kills` times at random points
    /// of `duration`. The target is a fresh store (a copy of `base`; nil: none yet) or
    /// the output file of a command that writes no store. After each kill, a store that
    /// exists must verify and `check` runs; then `finish` re-runs the command as needed
    /// and compares with the reference. Returns how many runs were killed while working.
    func killRounds(label: String, base: String?, duration: Double, arguments: (String) -> [String],
                    check: (String) throws -> Void, finish: (String) throws -> Void) throws -> Int {
        var killed = 0, attempt = 0
        // Kill points from a fixed seed per label: a failure names a reproducible point.
        var gen = SplitMix64(seed: label.utf8.reduce(UInt64(14_695_981_039_346_656_037)) { ($0 ^ UInt64($1)) &* 1_099_511_628_211 })
        while killed < Self.kills && attempt < 3 * Self.kills {
            attempt += 1
            let target = "\(root)/\(label)-\(attempt).noisy"
            if let base { try FileManager.default.copyItem(atPath: base, toPath: target) }
            let p = try Processes.spawnNoisy(arguments(target))
            usleep(UInt32(1e6 * Double.random(in: 0.02...0.95, using: &gen) * duration))
            let sent = p.isRunning && kill(p.processIdentifier, SIGKILL) == 0
            p.waitUntilExit()
            if p.terminationReason == .uncaughtSignal {
                XCTAssertEqual(p.terminationStatus, SIGKILL, "\(label): died of signal \(p.terminationStatus), not our kill")
                XCTAssertTrue(sent, "\(label): died of a signal nobody sent")
                killed += 1
            } else {
                // It finished before the signal landed: then it must have succeeded.
                XCTAssertEqual(p.terminationStatus, 0, "\(label): exited \(p.terminationStatus) without being killed")
            }
            if FileManager.default.fileExists(atPath: target + "/data.mdb") {
                let v = try Processes.noisy(["verify", "--store", target])
                XCTAssertEqual(v.status, 0, "\(label): after kill -9 the store verifies: \(v.stdout)\(v.stderr)")
            }
            try check(target)
            try finish(target)
            try? FileManager.default.removeItem(atPath: target)
        }
        XCTAssertGreaterThanOrEqual(killed, Self.kills, "\(label): the runs must be killed while working")
        print("\(label): \(killed) kill points in \(attempt) runs")
        return killed
    }

    /// Runs to completion; returns seconds.
    func timed(_ arguments: [String]) throws -> Double {
        let t = Date()
        let r = try Processes.noisy(arguments)
        XCTAssertEqual(r.status, 0, "\(arguments.joined(separator: " ")): \(r.stderr)")
        return Date().timeIntervalSince(t)
    }

    func writeImages(_ count: Int, side: Int, to dir: String, seed: UInt64 = 1) throws {
        for i in 0..<count {
            Fixtures.write(Fixtures.png(width: side, height: side, seed: seed &+ UInt64(i) &* 7919), to: "\(dir)/\(i / 100)/\(i).png")
        }
    }

    /// Three classes of 8x8 images, 60 labeled, `unlabeled` unlabeled, 30 test.
    func makeStore(unlabeled: Int) throws -> String {
        for c in 0..<3 {
            for i in 0..<20 { Fixtures.write(Fixtures.png(width: 8, height: 8, seed: UInt64(100_000 + c * 100 + i)), to: "\(root)/in/l/c\(c)/\(i).png") }
            for i in 0..<10 { Fixtures.write(Fixtures.png(width: 8, height: 8, seed: UInt64(200_000 + c * 100 + i)), to: "\(root)/in/t/c\(c)/\(i).png") }
        }
        try writeImages(unlabeled, side: 8, to: "\(root)/in/u", seed: 300_000)
        let store = "\(root)/base.noisy"
        let r = try Processes.noisy(["ingest", "--store", store, "--labeled", "\(root)/in/l", "--unlabeled", "\(root)/in/u",
                                     "--test", "\(root)/in/t", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return store
    }

    static let sampleDBs = ["samples", "images", "hashes", "sources", "split_index", "classes"]

    func testKilledIngestFinishesWithTheSameBytes() throws {
        try writeImages(1500, side: 24, to: "\(root)/in/u")
        Fixtures.write(Array("not an image".utf8), to: "\(root)/in/u/bad.png")
        let args = { (s: String) in ["ingest", "--store", s, "--unlabeled", "\(self.root)/in/u", "--quiet"] }
        let reference = "\(root)/reference.noisy"
        let duration = try timed(args(reference))
        let expected = try digest(reference, Self.sampleDBs)
        XCTAssertEqual(expected["samples"]?.hasPrefix("1500:"), true, "\(expected)")
        _ = try killRounds(label: "ingest", base: nil, duration: duration, arguments: args, check: { _ in }, finish: { s in
            XCTAssertEqual(try self.timed(args(s)) >= 0, true)
            XCTAssertEqual(try self.digest(s, Self.sampleDBs), expected, "re-run ingest ends with the reference bytes")
        })
    }

    func testKilledLabelsImportAndFilterFinishWithTheSameBytes() throws {
        let n = 6000
        let base = try makeStore(unlabeled: n)
        let made = try Processes.python("""
        import sys, numpy as np
        d, n = sys.argv[1], int(sys.argv[2])
        p = np.random.RandomState(3).dirichlet([0.3] * 3, size=n).astype(np.float32)
        np.save(d + "/p.npy", p); np.save(d + "/ids.npy", np.arange(60, 60 + n, dtype=np.int64))
        """, [root, String(n)])
        XCTAssertEqual(made.status, 0, made.stderr)
        let importArgs = { (s: String) in ["labels", "import", "--store", s, "--predictions", "\(self.root)/p.npy",
                                           "--ids", "\(self.root)/ids.npy", "--teacher", "t", "--quiet", "--precision", "f32"] }
        let generationDBs = ["labels", "selections", "tags"]
        func generations(_ s: String) throws -> [[String: Any]] {
            let r = try Processes.noisy(["labels", "list", "--store", s, "--json"])
            XCTAssertEqual(r.status, 0, r.stderr)
            return (try JSONSerialization.jsonObject(with: r.stdoutData) as? [[String: Any]]) ?? []
        }
        let imported = "\(root)/imported.noisy"
        try FileManager.default.copyItem(atPath: base, toPath: imported)
        let importTime = try timed(importArgs(imported))
        let expectedImport = try digest(imported, generationDBs)
        _ = try killRounds(label: "labels import", base: base, duration: importTime, arguments: importArgs, check: { s in
            for g in try generations(s) { XCTAssertEqual(g["samples"] as? Int, n, "a visible generation is whole") }
        }, finish: { s in
            if try generations(s).isEmpty { _ = try self.timed(importArgs(s)) }
            XCTAssertEqual(try generations(s).count, 1)
            XCTAssertEqual(try self.digest(s, generationDBs), expectedImport, "the re-run import ends with the reference bytes")
        })

        let filterArgs = { (s: String) in ["labels", "filter", "--store", s, "--generation", "1", "--threshold", "0.5",
                                           "--per-class", "900", "--name", "kept"] }
        func selections(_ s: String) throws -> [String: Int] {
            let r = try Processes.noisy(["labels", "show", "--store", s, "--generation", "1", "--json"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let rows = ((try JSONSerialization.jsonObject(with: r.stdoutData) as? [String: Any])?["selections"] as? [[String: Any]]) ?? []
            return Dictionary(uniqueKeysWithValues: rows.compactMap { row in
                (row["name"] as? String).map { ($0, row["entries"] as? Int ?? -1) }
            })
        }
        let filtered = "\(root)/filtered.noisy"
        try FileManager.default.copyItem(atPath: imported, toPath: filtered)
        let filterTime = try timed(filterArgs(filtered))
        let expectedFilter = try digest(filtered, generationDBs)
        let keptCount = try XCTUnwrap(try selections(filtered)["kept"])
        XCTAssertGreaterThan(keptCount, 0)
        _ = try killRounds(label: "labels filter", base: imported, duration: filterTime, arguments: filterArgs, check: { s in
            if let c = try selections(s)["kept"] { XCTAssertEqual(c, keptCount, "a visible selection is whole") }
        }, finish: { s in
            if try selections(s)["kept"] == nil { _ = try self.timed(filterArgs(s)) }
            XCTAssertEqual(try self.digest(s, generationDBs), expectedFilter, "the re-run filter ends with the reference bytes")
        })
    }

    func testKilledTrainAndLabelFinishWithTheSameBytes() throws {
        let base = try makeStore(unlabeled: 3000)
        let trainArgs = { (ckpt: String) in ["train", "--store", base, "--size", "8", "--crop", "pad", "--pad", "1", "--model", "mlp",
                                             "--depth", "1", "--width", "0.5", "--epochs", "40", "--batch-size", "8", "--threads", "1",
                                             "--eval-every", "0", "--out", ckpt] }
        let reference = "\(root)/reference.ckpt"
        let trainTime = try timed(trainArgs(reference))
        let expected = try XCTUnwrap(FileManager.default.contents(atPath: reference))
        _ = try killRounds(label: "train", base: nil, duration: trainTime, arguments: trainArgs, check: { ckpt in
            guard FileManager.default.fileExists(atPath: ckpt) else { return }
            // Whatever was left is a whole checkpoint (written to .partial, then renamed).
            let e = try Processes.noisy(["evaluate", "--store", base, "--checkpoint", ckpt, "--json"])
            XCTAssertEqual(e.status, 0, "a checkpoint left by kill -9 loads: \(e.stderr)")
        }, finish: { ckpt in
            _ = try self.timed(trainArgs(ckpt))
            XCTAssertEqual(FileManager.default.contents(atPath: ckpt), expected, "resumed training ends with the reference checkpoint's bytes")
        })

        let labelArgs = { (s: String) in ["label", "--store", s, "--checkpoint", reference, "--teacher", "t", "--threads", "1"] }
        let labelled = "\(root)/labelled.noisy"
        try FileManager.default.copyItem(atPath: base, toPath: labelled)
        let labelTime = try timed(labelArgs(labelled))
        let dbs = ["labels", "selections", "tags"]
        let expectedLabels = try digest(labelled, dbs)
        XCTAssertEqual(expectedLabels["labels"]?.hasPrefix("3000:"), true, "\(expectedLabels)")
        func count(_ s: String) throws -> Int {
            let r = try Processes.noisy(["labels", "list", "--store", s, "--json"])
            let rows = (try JSONSerialization.jsonObject(with: r.stdoutData) as? [[String: Any]]) ?? []
            for row in rows { XCTAssertEqual(row["samples"] as? Int, 3000, "a visible generation is whole") }
            return rows.count
        }
        _ = try killRounds(label: "label", base: base, duration: labelTime, arguments: labelArgs, check: { s in
            XCTAssertLessThanOrEqual(try count(s), 1)
        }, finish: { s in
            if try count(s) == 0 { _ = try self.timed(labelArgs(s)) }
            XCTAssertEqual(try self.digest(s, dbs), expectedLabels, "the re-run label ends with the reference bytes")
        })
    }

    /// Runs noisy under a file-size limit (bash's `ulimit -f`, KiB): the writes past
    /// it fail as they would on a full disk.
    func noisyLimited(kib: Int, _ arguments: [String]) throws -> ProcessResult {
        try Processes.run("/bin/bash", ["-c", "ulimit -f \(kib) && exec \"$0\" \"$@\"", Processes.noisyBinary] + arguments)
    }

    func fileKiB(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0) / 1024
    }

    /// Disk full during ingest and import, under a file-size limit (`ulimit -f`).
    func testOutOfSpaceUnderAFileSizeLimitStopsCleanlyAndTheReRunFinishes() throws {
        let store = "\(root)/s.noisy"
        try checkOutOfSpace(store: store, ingestRoom: { args in try self.noisyLimited(kib: 1800, args) },
                            importRoom: { args in try self.noisyLimited(kib: self.fileKiB(store + "/data.mdb") + 200, args) })
    }

    /// Disk full for real: the store on a 2 MiB tmpfs; "freeing space" grows the
    /// filesystem. Where mounting is refused (no CAP_SYS_ADMIN) it runs the
    /// file-size-limit variant instead, so the test never skips, and says which ran.
    func testOutOfSpaceOnASmallFilesystemStopsCleanlyAndTheReRunFinishes() throws {
        let mountPoint = "\(root)/tiny"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let mounted = try Processes.run("/bin/mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", mountPoint])
        guard mounted.status == 0 else {
            print("out of space: variant=file-size-limit (mounting a tmpfs was refused: \(mounted.stderr.trimmingCharacters(in: .whitespacesAndNewlines)))")
            try testOutOfSpaceUnderAFileSizeLimitStopsCleanlyAndTheReRunFinishes()
            return
        }
        print("out of space: variant=tmpfs (a 2 MiB filesystem)")
        defer { _ = try? Processes.run("/bin/umount", [mountPoint]) }
        func resize(_ size: String) throws {
            XCTAssertEqual(try Processes.run("/bin/mount", ["-o", "remount,size=\(size)", mountPoint]).status, 0)
        }
        let store = "\(mountPoint)/s.noisy"
        try checkOutOfSpace(store: store, ingestRoom: { args in
            let r = try Processes.noisy(args)
            try resize("16m")
            return r
        }, importRoom: { args in
            try resize("\(self.fileKiB(store + "/data.mdb") + 200)k")
            let r = try Processes.noisy(args)
            try resize("16m")
            return r
        })
    }

    /// Ingest, then import, each first run with too little room (`ingestRoom`,
    /// `importRoom` run the command that way and give the room back): a one-line
    /// message naming the store, the committed part stays, verify passes, and the
    /// re-run with room finishes the job.
    func checkOutOfSpace(store: String, ingestRoom: ([String]) throws -> ProcessResult,
                         importRoom: ([String]) throws -> ProcessResult) throws {
        // Random pixels do not compress: 600 PNGs of 40x40 are about 2.9 MB, a
        // transaction of 256 about 1.2 MB; the limit falls in the second one.
        try writeImages(600, side: 40, to: "\(root)/in/u")
        // 500 classes (one labeled image each), so that a generation is large.
        for c in 0..<500 { Fixtures.write(Fixtures.png(width: 4, height: 4, seed: UInt64(9_000 + c)), to: "\(root)/in/l/c\(c)/0.png") }
        let ingest = ["ingest", "--store", store, "--labeled", "\(root)/in/l", "--unlabeled", "\(root)/in/u", "--quiet"]
        let full = try ingestRoom(ingest)
        XCTAssertEqual(full.status, 1, "ingest without room fails: \(full.stdout) \(full.stderr)")
        XCTAssertEqual(full.stderr.split(separator: "\n").count, 1, full.stderr)
        XCTAssertTrue(full.stderr.contains(store) && full.stderr.contains("space"), full.stderr)
        print("ingest out of space: \(full.stderr)")
        XCTAssertEqual(try Processes.noisy(["verify", "--store", store]).status, 0)
        let done = try Processes.noisy(ingest + ["--json"])
        XCTAssertEqual(done.status, 0, done.stderr)
        let summary = try XCTUnwrap(try JSONSerialization.jsonObject(with: done.stdoutData) as? [String: Any])
        XCTAssertEqual((summary["added"] as? Int ?? 0) + (summary["already_stored"] as? Int ?? 0), 1100)
        XCTAssertGreaterThan(summary["already_stored"] as? Int ?? 0, 0, "the batches before the limit were kept")
        XCTAssertEqual(try Processes.noisy(["verify", "--store", store]).status, 0)

        // Import: predictions (600 x 500 float32, 1.2 MB) bigger than the room left.
        let n = 600
        let made = try Processes.python("""
        import sys, numpy as np
        d, n = sys.argv[1], int(sys.argv[2])
        np.save(d + "/p.npy", np.random.RandomState(0).dirichlet([0.5] * 500, size=n).astype(np.float32))
        np.save(d + "/ids.npy", np.arange(500, 500 + n, dtype=np.int64))
        """, [root, String(n)])
        XCTAssertEqual(made.status, 0, made.stderr)
        let importArgs = ["labels", "import", "--store", store, "--predictions", "\(root)/p.npy", "--ids", "\(root)/ids.npy",
                          "--teacher", "t", "--precision", "f32", "--quiet"]
        let limited = try importRoom(importArgs)
        XCTAssertEqual(limited.status, 1, "import without room fails: \(limited.stdout) \(limited.stderr)")
        XCTAssertEqual(limited.stderr.split(separator: "\n").count, 1, limited.stderr)
        XCTAssertTrue(limited.stderr.contains("space"), limited.stderr)
        print("import out of space: \(limited.stderr)")
        let list = try Processes.noisy(["labels", "list", "--store", store, "--json"])
        XCTAssertEqual((try JSONSerialization.jsonObject(with: list.stdoutData) as? [Any])?.count, 0, "no half generation")
        XCTAssertEqual(try Processes.noisy(["verify", "--store", store]).status, 0)
        let again = try Processes.noisy(importArgs)
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.hasPrefix("generation 1:"), again.stdout)
        XCTAssertEqual(try Processes.noisy(["verify", "--store", store]).status, 0)
    }

    /// A creation killed before its data file was moved into place leaves only the
    /// staging folder: the store does not exist yet, and the next ingest creates it.
    func testAnInterruptedCreationLeavesNoStoreAndTheNextRunCreatesIt() throws {
        let store = "\(root)/s.noisy"
        try FileManager.default.createDirectory(atPath: store + "/.creating", withIntermediateDirectories: true)
        Fixtures.write(Array(repeating: 0, count: 4096), to: store + "/.creating/data.mdb")
        let info = try Processes.noisy(["info", "--store", store])
        XCTAssertEqual(info.status, 1)
        XCTAssertTrue(info.stderr.contains("not a store (no data.mdb inside)"), info.stderr)
        try writeImages(5, side: 8, to: "\(root)/in/u")
        let r = try Processes.noisy(["ingest", "--store", store, "--unlabeled", "\(root)/in/u", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try Processes.noisy(["verify", "--store", store]).status, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: store + "/.creating"), "the staging folder is gone")
    }
}
