import XCTest
import DatasetStore
import TestSupport

/// Other processes using a store while it is written, killed readers, and copies:
/// readers never fail or see half a write, stale reader slots are cleared on open,
/// and a copied or compacted store holds the same bytes.
final class ConcurrentAccessTests: ServerTestCase {

    func makeStore(unlabeled: Int) throws -> String {
        for c in 0..<3 {
            for i in 0..<6 { Fixtures.write(Fixtures.png(width: 20, height: 20, seed: UInt64(c * 100 + i + 1)), to: "\(root)/l/k\(c)/\(i).png") }
        }
        for i in 0..<unlabeled { Fixtures.write(Fixtures.png(width: 20, height: 20, seed: UInt64(10_000 + i)), to: "\(root)/u/\(i).png") }
        let store = "\(root)/s.noisy"
        let r = try Processes.noisy(["ingest", "--store", store, "--labeled", "\(root)/l", "--unlabeled", "\(root)/u", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return store
    }

    /// Every kind of reader, each on its own thread, over and over while `writer`
    /// runs (at least once each). Returns the sample counts `info` saw, in order.
    func readWhile(_ writer: Process, store: String, sock: String) throws -> [Int] {
        let box = ReaderLog()
        let python = Processes.repositoryRoot + "/python"
        let root = self.root
        let readers: [@Sendable () throws -> String?] = [
            {
                let info = try Processes.noisy(["info", "--store", store, "--json"])
                guard info.status == 0 else { return "info: \(info.stderr)" }
                box.count(((try? JSONSerialization.jsonObject(with: info.stdoutData) as? [String: Any])?["samples"] as? Int) ?? -1)
                return nil
            },
            {
                let show = try Processes.noisy(["show", "--store", store, "--id", "3", "--out", "\(root)/shown.png"])
                return show.status == 0 ? nil : "show: \(show.stderr)"
            },
            {
                let bench = try Processes.noisy(["bench", "pipeline", "--store", store, "--size", "16", "--batches", "2", "--repeat", "1",
                                                 "--threads", "1", "--batch-size", "8", "--json"])
                return bench.status == 0 ? nil : "pipeline: \(bench.stderr)"
            },
            {
                let client = try Processes.python("""
                import sys; sys.path.insert(0, sys.argv[2])
                import numpy as np, noisy.client as noisy_client
                c = noisy_client.connect("unix:" + sys.argv[1], rank=0, world_size=1)
                for b in c.batches(3):
                    assert b["images"].shape == (8, 16, 16, 3) and np.isfinite(b["targets"]).all(), b["images"].shape
                c.close(); print("ok")
                """, [sock, python])
                return client.stdout == "ok\n" ? nil : "serve: \(client.stderr)"
            },
        ]
        let running = WriterFlag(writer)
        DispatchQueue.concurrentPerform(iterations: readers.count) { k in
            var rounds = 0
            repeat {
                do {
                    if let failure = try readers[k]() { box.fail(failure) }
                } catch { box.fail("\(error)") }
                rounds += 1
            } while running.isRunning && rounds < 200
            box.rounds(k, rounds)
        }
        writer.waitUntilExit()
        XCTAssertEqual(writer.terminationStatus, 0)
        XCTAssertEqual(box.failures, [], "readers during a write")
        print("reader rounds during the write (info, show, pipeline, serve): \(box.perReader)")
        return box.counts
    }

    func testInfoShowPipelineAndServeKeepWorkingWhileIngestAndImportWrite() throws {
        let store = try makeStore(unlabeled: 40)
        // A short path: a unix socket path must fit in 108 bytes.
        let sock = "/tmp/noisy-concurrent-\(getpid()).sock"
        defer { try? FileManager.default.removeItem(atPath: sock) }
        try startServer(["--store", store, "--socket", sock, "--size", "16", "--batch-size", "8", "--threads", "1"])
        let more = 3000
        for i in 0..<more { Fixtures.write(Fixtures.png(width: 20, height: 20, seed: UInt64(50_000 + i)), to: "\(root)/more/\(i / 100)/\(i).png") }
        let writer = try Processes.spawnNoisy(["ingest", "--store", store, "--unlabeled", "\(root)/more", "--quiet"])
        let counts = try readWhile(writer, store: store, sock: sock)
        XCTAssertEqual(counts, counts.sorted(), "a reader never sees samples disappear")
        XCTAssertTrue(counts.allSatisfy { ($0 - 58) % 256 == 0 || $0 == 58 + more }, "whole batches only: \(counts)")
        // Without this the test would pass even if no read overlapped the write.
        XCTAssertTrue(counts.contains { $0 > 58 && $0 < 58 + more }, "some read saw the ingest half done: \(counts)")

        let n = 58 + more - 18
        let made = try Processes.python("""
        import sys, numpy as np
        d, n = sys.argv[1], int(sys.argv[2])
        np.save(d + "/p.npy", np.random.RandomState(0).dirichlet([0.5] * 3, size=n).astype(np.float32))
        np.save(d + "/ids.npy", np.arange(18, 18 + n, dtype=np.int64))
        """, [root, String(n)])
        XCTAssertEqual(made.status, 0, made.stderr)
        for _ in 0..<3 {
            let importer = try Processes.spawnNoisy(["labels", "import", "--store", store, "--predictions", "\(root)/p.npy",
                                                     "--ids", "\(root)/ids.npy", "--teacher", "t", "--quiet", "--precision", "f32"])
            _ = try readWhile(importer, store: store, sock: sock)
            let list = try Processes.noisy(["labels", "list", "--store", store, "--json"])
            for g in (try JSONSerialization.jsonObject(with: list.stdoutData) as? [[String: Any]]) ?? [] {
                XCTAssertEqual(g["samples"] as? Int, n, "a visible generation is whole")
            }
        }
        server?.interrupt()
        server?.waitUntilExit()
        XCTAssertEqual(server?.terminationStatus, 0, serverLog)
    }

    /// A reader killed inside a read transaction leaves its slot in the lock file
    /// while other processes keep the store open (when the last one closes, LMDB
    /// resets the table itself). Opening the store clears such stale slots
    /// (mdb_reader_check), so nothing needs repair and old pages are not pinned.
    func testStaleReaderSlotsAreClearedOnOpen() throws {
        let store = try makeStore(unlabeled: 10)
        func holdReader() throws -> Process {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Processes.python)
            p.arguments = ["-c", """
            import lmdb, sys, time
            env = lmdb.open(sys.argv[1], readonly=True, max_dbs=32)
            txn = env.begin()
            print("holding", flush=True)
            time.sleep(60)
            """, store]
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            let said = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)  // the read slot is taken
            XCTAssertTrue(said.hasPrefix("holding"), said)
            return p
        }
        let survivor = try holdReader()
        defer { survivor.terminate(); survivor.waitUntilExit() }
        let victim = try holdReader()
        let pid = victim.processIdentifier
        kill(pid, SIGKILL)
        victim.waitUntilExit()
        let readers = """
        import lmdb, sys
        print(lmdb.open(sys.argv[1], readonly=True, max_dbs=32).readers())
        """
        let before = try Processes.python(readers, [store])
        XCTAssertTrue(before.stdout.contains(" \(pid) "), "the killed reader's slot is still there: \(before.stdout)")
        XCTAssertEqual(try Processes.noisy(["info", "--store", store]).status, 0)
        let after = try Processes.python(readers, [store])
        XCTAssertEqual(after.status, 0, after.stderr)
        XCTAssertFalse(after.stdout.contains(" \(pid) "), "opening the store cleared the stale slot: \(after.stdout)")
        XCTAssertTrue(after.stdout.contains(" \(survivor.processIdentifier) "), "the live reader keeps its slot: \(after.stdout)")
        // And the store takes writes as before.
        Fixtures.write(Fixtures.png(width: 20, height: 20, seed: 77_777), to: "\(root)/late/a.png")
        XCTAssertEqual(try Processes.noisy(["ingest", "--store", store, "--unlabeled", "\(root)/late", "--quiet"]).status, 0)
        XCTAssertEqual(try Processes.noisy(["verify", "--store", store]).status, 0)
    }

    /// A store copied with cp, or compacted, verifies and holds the same samples and generations.
    func testCopiedAndCompactedStoresWorkTheSame() throws {
        let store = try makeStore(unlabeled: 30)
        let made = try Processes.python("""
        import sys, numpy as np
        np.save(sys.argv[1] + "/p.npy", np.random.RandomState(0).dirichlet([0.5] * 3, size=30).astype(np.float32))
        np.save(sys.argv[1] + "/ids.npy", np.arange(18, 48, dtype=np.int64))
        """, [root])
        XCTAssertEqual(made.status, 0, made.stderr)
        XCTAssertEqual(try Processes.noisy(["labels", "import", "--store", store, "--predictions", "\(root)/p.npy", "--ids", "\(root)/ids.npy",
                                            "--teacher", "t", "--quiet"]).status, 0)
        let copied = "\(root)/elsewhere/copied.noisy"
        try FileManager.default.createDirectory(atPath: "\(root)/elsewhere", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: store, toPath: copied)
        let compacted = "\(root)/compacted.noisy"
        let c = try Processes.noisy(["compact", "--store", store, "--out", compacted])
        XCTAssertEqual(c.status, 0, c.stderr)
        func exportOf(_ s: String, _ dir: String) throws -> Data {
            let v = try Processes.noisy(["verify", "--store", s])
            XCTAssertEqual(v.status, 0, "\(s): \(v.stdout)")
            let e = try Processes.noisy(["labels", "export", "--store", s, "--generation", "1", "--format", "npy", "--out", dir])
            XCTAssertEqual(e.status, 0, e.stderr)
            return (FileManager.default.contents(atPath: dir + "/probs.npy") ?? Data()) + (FileManager.default.contents(atPath: dir + "/ids.npy") ?? Data())
        }
        let original = try exportOf(store, "\(root)/e0")
        XCTAssertFalse(original.isEmpty)
        XCTAssertEqual(try exportOf(copied, "\(root)/e1"), original)
        XCTAssertEqual(try exportOf(compacted, "\(root)/e2"), original)
        func samples(_ s: String) throws -> [String] {
            let st = try Store(path: s, readOnly: true)
            return try (0..<UInt64(st.count())).map { id in
                let r = try XCTUnwrap(try st.sample(id))
                return "\(r.source) \(r.contentHash) \(try st.imageBytes(id).count)"
            }
        }
        let want = try samples(store)
        XCTAssertEqual(try samples(copied), want)
        XCTAssertEqual(try samples(compacted), want)
    }
}

/// What the reader threads saw. `@unchecked Sendable`: every access holds the lock.
private final class ReaderLog: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var counts: [Int] = []
    private(set) var failures: [String] = []
    private(set) var perReader: [Int: Int] = [:]
    func count(_ n: Int) { lock.withLock { counts.append(n) } }
    func fail(_ s: String) { lock.withLock { failures.append(s) } }
    func rounds(_ k: Int, _ n: Int) { lock.withLock { perReader[k] = n } }
}

/// The writer process, polled from the reader threads. `@unchecked Sendable`:
/// Process.isRunning is safe to read from any thread.
private final class WriterFlag: @unchecked Sendable {
    let process: Process
    init(_ p: Process) { process = p }
    var isRunning: Bool { process.isRunning }
}
