import XCTest
import Augment
import Batches
import DatasetStore
import Pipeline
import TestSupport

/// `noisy serve` against the real Python client (numpy only) in a real process.
final class ServeTests: ServerTestCase {

    static let clientPath = Processes.repositoryRoot + "/python"

    func makeStore() throws -> String {
        for c in 0..<3 {
            for i in 0..<4 { Fixtures.write(Fixtures.jpeg(width: 50 + i * 7, height: 40 + c * 5, seed: UInt64(c * 10 + i)), to: "\(root)/l/k\(c)/\(i).jpg") }
        }
        for i in 0..<20 { Fixtures.write(Fixtures.jpeg(width: 48, height: 44, seed: UInt64(100 + i)), to: "\(root)/u/\(i).jpg") }
        let store = "\(root)/s.noisy"
        XCTAssertEqual(try Processes.noisy(["ingest", "--store", store, "--labeled", "\(root)/l", "--unlabeled", "\(root)/u", "--quiet"]).status, 0)
        return store
    }

    func client(_ script: String, _ args: [String]) throws -> ProcessResult {
        try Processes.python("import sys; sys.path.insert(0, '\(Self.clientPath)')\n" + script, args)
    }

    /// Elastic resumption through the server: a job at 2 ranks stops after 3 batches,
    /// resumes at 3 ranks for 2 batches, then at 1 rank until the epoch ends. The state
    /// every rank holds is the same, and over the epoch every sample comes exactly once.
    func testAStreamResumesAtAnotherWorldSizeWithEverySampleOnce() throws {
        for c in 0..<3 {
            for i in 0..<20 { Fixtures.write(Fixtures.png(width: 10, height: 10, seed: UInt64(900 + 20 * c + i)), to: "\(root)/l/k\(c)/\(i).png") }
        }
        let store = "\(root)/s.noisy"
        XCTAssertEqual(try Processes.noisy(["ingest", "--store", store, "--labeled", "\(root)/l", "--quiet"]).status, 0)
        let sock = "\(root)/s.sock"
        try startServer(["--store", store, "--socket", sock, "--size", "8", "--batch-size", "4", "--seed", "11", "--threads", "1"],
                        ready: "serving")
        let r = try client("""
        import json, noisy.client as noisy_client
        addr = "unix:" + sys.argv[1]
        def run(world, steps, state):
            conns = [noisy_client.connect(addr, rank=r, world_size=world, state=state) for r in range(world)]
            ids = []
            for batches in zip(*[c.batches(steps) for c in conns]):
                for b in batches: ids += b["ids"].tolist()
            states = [c.state() for c in conns]
            for c in conns: c.close()
            assert all(s == states[0] for s in states), states
            return ids, json.loads(json.dumps(states[0]))
        a, s1 = run(2, 3, None)     # 24 samples: 3 batches of 4 on each of 2 ranks
        b, s2 = run(3, 2, s1)       # 24 more
        c, s3 = run(1, 3, s2)       # the last 12
        # A state from a stream with another seed is refused, with the reason.
        try:
            noisy_client.connect(addr, rank=0, world_size=1, state=dict(s3, labeled=dict(s3["labeled"], seed=999)))
            raise SystemExit("a state with another seed was accepted")
        except noisy_client.ProtocolError as e:
            assert "seed 999" in str(e) and "seed is 11" in str(e), e
        print(json.dumps({"ids": a + b + c, "after_two": s1["labeled"], "end": s3["labeled"]}))
        """, [sock])
        XCTAssertEqual(r.status, 0, r.stderr)
        struct Out: Decodable { let ids: [Int]; let after_two: [String: Int]; let end: [String: Int] }
        let out = try JSONDecoder().decode(Out.self, from: r.stdoutData)
        XCTAssertEqual(out.ids.count, 60)
        XCTAssertEqual(out.ids.sorted(), Array(0..<60), "every sample of the epoch exactly once")
        XCTAssertEqual(out.after_two["epoch"], 0)
        XCTAssertEqual(out.after_two["position"], 24, "the position counts what both ranks took")
        XCTAssertEqual(out.end["epoch"], 1)
        XCTAssertEqual(out.end["position"], 0)
    }

    func testTrainBatchesEqualTheInProcessPipelineAndResumeExactly() throws {
        let store = try makeStore()
        let sock = "\(root)/s.sock"
        try startServer(["--store", store, "--socket", sock, "--size", "32", "--batch-size", "8", "--seed", "3",
                         "--randaugment", "2,9", "--threads", "2"], ready: "serving")
        // The same configuration in process: the bytes must match.
        let s = try Store(path: store, readOnly: true)
        let config = PipelineConfig(view: .train(TrainView(size: 32, randAugment: RandAugment(layers: 2, magnitude: 9))),
                                    channels: 3, layout: .uint8NHWC, batchSize: 8, seed: 3, threads: 1)
        let loader = try BatchLoader(store: s, config: config)
        var images = Data(), targets = Data(), ids = Data()
        for _ in 0..<6 {
            let b = try loader.next()
            guard case .uint8(let px) = b.images else { return XCTFail("layout") }
            images.append(contentsOf: px)
            targets.append(b.targets.withUnsafeBytes { Data($0) })
            ids.append(b.ids.map { Int64($0) }.withUnsafeBytes { Data($0) })
        }
        try images.write(to: URL(fileURLWithPath: "\(root)/images.bin"))
        try targets.write(to: URL(fileURLWithPath: "\(root)/targets.bin"))
        try ids.write(to: URL(fileURLWithPath: "\(root)/ids.bin"))
        let r = try client("""
        import json, numpy as np, noisy.client as noisy_client
        d, sock = sys.argv[1], sys.argv[2]
        want_img = np.fromfile(d + "/images.bin", np.uint8).reshape(6, 8, 32, 32, 3)
        want_t = np.fromfile(d + "/targets.bin", np.float32).reshape(6, 8, 3)
        want_ids = np.fromfile(d + "/ids.bin", np.int64).reshape(6, 8)
        headers = open(d + "/headers.jsonl", "w")
        c = noisy_client.connect("unix:" + sock, rank=0, world_size=1)
        headers.write(json.dumps(c.info) + "\\n")
        assert c.info["batches_per_epoch"] == 1 and c.info["classes"] == ["k0", "k1", "k2"], c.info
        saved = None
        for k, b in enumerate(c.batches(6)):
            assert b["images"].dtype == np.uint8 and b["images"].shape == (8, 32, 32, 3), b["images"].shape
            assert np.array_equal(b["images"], want_img[k]), "images differ at batch %d" % k
            assert np.array_equal(b["targets"], want_t[k]) and np.array_equal(b["ids"], want_ids[k])
            assert b["weights"].dtype == np.float32 and (b["source"] == 0).all()
            if k == 2: saved = c.state()
        c.close()
        again = noisy_client.connect("unix:" + sock, rank=0, world_size=1, state=json.loads(json.dumps(saved)))
        for k, b in enumerate(again.batches(3), start=3):
            assert b["index"] == k and np.array_equal(b["images"], want_img[k]), "resume differs at %d" % k
        again.close()
        print("ok")
        """, [root, sock])
        XCTAssertEqual(r.status, 0, r.stderr + serverLog)
        XCTAssertEqual(r.stdout, "ok\n")
        XCTAssertNil(try Processes.schemaViolation(schema: "wire-header.schema.json",
                                                   json: try XCTUnwrap(FileManager.default.contents(atPath: "\(root)/headers.jsonl")), lines: true))
        server?.interrupt()
        server?.waitUntilExit()
        XCTAssertEqual(server?.terminationStatus, 0, serverLog)
        XCTAssertFalse(FileManager.default.fileExists(atPath: sock), "the socket file is removed on a clean stop")
    }

    /// Shared-memory batches are the socket's batches byte for byte; a batch stays valid
    /// while the client holds it; and 1,000 sessions (stopped, dropped, killed with
    /// SIGKILL while holding slots) leave no descriptor and no mapping behind, in the
    /// server or in the client.
    func testSharedMemoryBatchesEqualSocketBatchesAndLeakNothing() throws {
        let store = try makeStore()
        let sock = "\(root)/s.sock"
        try startServer(["--store", store, "--socket", sock, "--size", "32", "--batch-size", "8", "--seed", "5",
                         "--layout", "float32", "--randaugment", "2,9", "--threads", "2"], ready: "serving")
        let pid = try XCTUnwrap(server?.processIdentifier)
        let r = try client("""
        import gc, os, signal, subprocess, time, numpy as np, noisy.client as noisy_client
        addr, pid, path = "unix:" + sys.argv[1], sys.argv[2], sys.argv[3]
        def fds(p): return len(os.listdir(f"/proc/{p}/fd"))
        def memfds(p): return sum("memfd:noisy-batches" in line for line in open(f"/proc/{p}/maps"))
        def settle(want_fds):
            for _ in range(200):
                if fds(pid) == want_fds and memfds(pid) == 0: return
                time.sleep(0.05)
            raise SystemExit(f"server holds {fds(pid)} descriptors (before: {want_fds}) and {memfds(pid)} shared mappings")
        base = fds(pid)
        a = noisy_client.connect(addr, rank=0, world_size=1, shared_memory=False)
        b = noisy_client.connect(addr, rank=0, world_size=1)
        assert b.shared_memory and not a.shared_memory, b.info
        assert b.info["shared_memory"]["hold"] == 2 and b.info["shared_memory"]["slots"] >= 3, b.info
        assert memfds(pid) == 1 and memfds(os.getpid()) == 1, "the session's memory is mapped on both sides"
        previous = None
        for k, (x, y) in enumerate(zip(a.batches(12), b.batches(12))):
            assert y["images"].dtype == np.float32 and y["images"].shape == (8, 3, 32, 32), y["images"].shape
            for name in ("images", "targets", "weights", "ids", "source"):
                assert np.array_equal(x[name], y[name]), f"{name} differ at batch {k}"
            if previous is not None:   # the batch before is still held (hold=2): unchanged
                assert np.array_equal(previous[0], previous[1]["images"]), f"batch {k - 1} changed while held"
            previous = (x["images"].copy(), y)
        a.close(); b.close()
        del a, b, x, y, previous
        # 1,000 sessions: stopped cleanly, dropped without a stop, or dropped mid-stream.
        for i in range(1000):
            c = noisy_client.connect(addr, rank=0, world_size=1)
            assert c.shared_memory
            for _ in c.batches(1 + i % 3): pass
            if i % 3 == 0: c.close()
            else: c.sock.close()
        del c
        # Three clients killed while they hold slots.
        child = ("import sys, time; sys.path.insert(0, sys.argv[2]); import noisy.client as n; "
                 "c = n.connect(sys.argv[1], rank=0, world_size=1); it = c.batches(); next(it); next(it); "
                 "print('holding', flush=True); time.sleep(60)")
        for _ in range(3):
            p = subprocess.Popen([sys.executable, "-c", child, addr, path], stdout=subprocess.PIPE, text=True)
            assert p.stdout.readline().strip() == "holding"
            os.kill(p.pid, signal.SIGKILL); p.wait()
        gc.collect()
        settle(base)
        assert memfds(os.getpid()) == 0, "the client unmaps a session's memory once its batches are gone"
        # Ranks of one job must agree on the world size: the disagreeing one is refused, not hung.
        c = noisy_client.connect(addr, rank=0, world_size=2)
        try:
            noisy_client.connect(addr, rank=1, world_size=3); raise SystemExit("world size 3 accepted beside 2")
        except noisy_client.ProtocolError as e:
            assert "rank 1 says the world has 3 ranks" in str(e) and "says 2" in str(e), e
        c.close()
        settle(base)
        c = noisy_client.connect(addr, rank=2, world_size=3)   # the old job is gone: a new size is fine
        next(c.batches()); c.close()
        print("ok")
        """, [sock, String(pid), Self.clientPath])
        XCTAssertEqual(r.status, 0, r.stderr + String(serverLog.suffix(3000)))
        XCTAssertEqual(r.stdout, "ok\n")
        XCTAssertTrue(serverLog.contains("shared memory ("), serverLog)
    }

    func testRanksOverTCPAreDisjointAndEqualAndGarbageDoesNotStopTheServer() throws {
        let store = try makeStore()
        try startServer(["--store", store, "--listen", "127.0.0.1:0", "--size", "16", "--batch-size", "3", "--seed", "1",
                         "--handshake-timeout", "0.5"],
                        ready: "serving")
        guard let portText = serverLog.split(separator: ":").last?.split(separator: "\n").first, let port = Int(portText) else {
            return XCTFail("no port in \(serverLog)")
        }
        let r = try client("""
        import os, socket, struct, numpy as np, noisy.client as noisy_client
        addr = "127.0.0.1:" + sys.argv[1]
        # Garbage, a wrong version, an oversized header and a silent client first: each is refused alone.
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); s.sendall(os.urandom(64)); s.close()
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); s.sendall(b"NOIS" + struct.pack("<IQ", 1 << 30, 0)); s.close()
        try:
            noisy_client.VERSION = 9; noisy_client.connect(addr); raise SystemExit("version 9 accepted")
        except noisy_client.ProtocolError as e:
            assert "version 9 is not supported" in str(e), e
        noisy_client.VERSION = 1
        idle = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
        rude = noisy_client.connect(addr, rank=0, world_size=2)
        next(rude.batches()); rude.sock.close()          # gone mid-stream, without a stop
        seen, counts = [], []
        for rank in range(2):
            c = noisy_client.connect(addr, rank=rank, world_size=2)
            n = c.info["batches_per_epoch"]; counts.append(n)
            assert not c.shared_memory, "shared memory cannot travel over TCP: batches come through the socket"
            ids = np.concatenate([b["ids"] for b in c.batches(n)]); c.close()
            assert len(set(ids.tolist())) == len(ids)
            seen.append(set(ids.tolist()))
        assert counts[0] == counts[1] == 2, counts
        assert not (seen[0] & seen[1]), "ranks overlap"
        import time; time.sleep(1.0)   # past the 0.5 s handshake timeout
        idle.close()
        print("ok")
        """, [String(port)])
        XCTAssertEqual(r.status, 0, r.stderr + serverLog)
        let log = serverLog
        XCTAssertTrue(log.contains("bad magic"), log)
        XCTAssertTrue(log.contains("limit"), log)
        XCTAssertTrue(log.contains("protocol version 9 is not supported"), log)
        XCTAssertTrue(log.contains("timed out"), "a silent client is dropped after the handshake timeout: \(log)")
        server?.terminate()
        server?.waitUntilExit()
        XCTAssertEqual(server?.terminationStatus, 0)
    }

    func testLabelSessionEqualsImportAndBrokenSessionsWriteNothing() throws {
        let store = try makeStore()
        let sock = "\(root)/s.sock"
        try startServer(["--store", store, "--socket", sock, "--size", "24", "--batch-size", "6", "--crop-fraction", "1"], ready: "serving")
        let script = """
        import os, numpy as np, noisy.client as noisy_client
        d, sock, mode = sys.argv[1], sys.argv[2], sys.argv[3]
        def probs(ids):
            rng = np.random.RandomState(0)
            table = rng.dirichlet([1, 1, 1], size=100).astype(np.float32)
            p = table[ids % 100]; return p / p.sum(1, keepdims=True)
        s = noisy_client.connect("unix:" + sock).label_session("unlabeled", teacher="python teacher")
        assert s.info["samples"] == 20 and s.info["batches"] == 4, s.info
        all_ids = []
        for k, (ids, images) in enumerate(s):
            assert images.shape == (len(ids), 24, 24, 3) and images.dtype == np.uint8
            all_ids += ids.tolist()
            if mode == "die" and k == 1: os._exit(0)      # killed mid-session: nothing may be written
            s.send(probs(ids))
        if mode == "abort": s.abort(); print("aborted"); raise SystemExit
        g = s.commit()
        ids = np.array(all_ids, dtype=np.int64)
        np.save(d + "/ids.npy", ids); np.save(d + "/p.npy", probs(ids))
        print(g)
        """
        for mode in ["die", "abort"] {
            let r = try client(script, [root, sock, mode])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        usleep(200_000)
        let none = try Processes.noisy(["labels", "list", "--store", store, "--json"])
        XCTAssertEqual((try JSONSerialization.jsonObject(with: none.stdoutData) as? [Any])?.count, 0, "broken sessions commit nothing")
        let r = try client(script, [root, sock, "commit"])
        XCTAssertEqual(r.status, 0, r.stderr + serverLog)
        XCTAssertEqual(r.stdout, "1\n")
        let imp = try Processes.noisy(["labels", "import", "--store", store, "--predictions", "\(root)/p.npy", "--ids", "\(root)/ids.npy",
                                       "--teacher", "same, via NPY", "--quiet"])
        XCTAssertEqual(imp.status, 0, imp.stderr)
        for g in ["1", "2"] {
            XCTAssertEqual(try Processes.noisy(["labels", "export", "--store", store, "--generation", g, "--out", "\(root)/ex\(g)"]).status, 0)
        }
        let cmp = try Processes.python("""
        import sys, numpy as np
        d = sys.argv[1]
        for name in ["ids.npy", "probs.npy", "multiplicity.npy"]:
            a, b = np.load(d + "/ex1/" + name), np.load(d + "/ex2/" + name)
            assert a.shape == b.shape and np.array_equal(a, b), name
        print("equal")
        """, [root])
        XCTAssertEqual(cmp.stdout, "equal\n", cmp.stderr)
        // SIGTERM during a label session: the server stops cleanly and commits nothing.
        let waiter = Process()
        waiter.executableURL = URL(fileURLWithPath: Processes.python)
        waiter.arguments = ["-c", """
        import sys, time; sys.path.insert(0, '\(Self.clientPath)'); import noisy.client as noisy_client
        s = noisy_client.connect("unix:" + sys.argv[1]).label_session("unlabeled", teacher="interrupted")
        for ids, images in s:
            print("first", flush=True); time.sleep(30)
        """, sock]
        let out = Pipe()
        waiter.standardOutput = out
        waiter.standardError = FileHandle.nullDevice
        try waiter.run()
        _ = out.fileHandleForReading.availableData  // "first": the session is open
        server?.terminate()
        server?.waitUntilExit()
        XCTAssertEqual(server?.terminationStatus, 0, serverLog)
        waiter.terminate()
        waiter.waitUntilExit()
        let gens = try Processes.noisy(["labels", "list", "--store", store, "--json"])
        XCTAssertEqual((try JSONSerialization.jsonObject(with: gens.stdoutData) as? [Any])?.count, 2, "no third generation")
    }

    func testTokenIsRequiredWhenConfiguredAndRemoteNeedsOne() throws {
        let store = try makeStore()
        try "s3cret\n".write(toFile: "\(root)/token.txt", atomically: true, encoding: .utf8)
        let refused = try Processes.noisy(["serve", "--store", store, "--listen", "0.0.0.0:0", "--allow-remote"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("--allow-remote needs --token-file"), refused.stderr)
        let notLoopback = try Processes.noisy(["serve", "--store", store, "--listen", "10.1.2.3:0"])
        XCTAssertNotEqual(notLoopback.status, 0)
        XCTAssertTrue(notLoopback.stderr.contains("not a loopback address"), notLoopback.stderr)
        let sock = "\(root)/t.sock"
        try startServer(["--store", store, "--socket", sock, "--size", "16", "--batch-size", "4", "--token-file", "\(root)/token.txt"],
                        ready: "serving")
        let r = try client("""
        import noisy.client as noisy_client
        addr = "unix:" + sys.argv[1]
        for token in (None, "wrong"):
            try:
                noisy_client.connect(addr, token=token); raise SystemExit("accepted token %r" % token)
            except noisy_client.ProtocolError as e:
                assert "wrong token" in str(e), e
        c = noisy_client.connect(addr, token="s3cret")
        b = next(c.batches()); assert b["images"].shape == (4, 16, 16, 3); c.close()
        print("ok")
        """, [sock])
        XCTAssertEqual(r.stdout, "ok\n", r.stderr + serverLog)
        server?.terminate()
        server?.waitUntilExit()
    }
}
