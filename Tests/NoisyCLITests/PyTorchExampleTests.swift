import XCTest
import ImageCodec
import TestSupport

/// The README's PyTorch example (examples/train_torch.py) and `noisy_torch`, run as
/// a user runs them: a real `noisy serve`, a real torch from PyPI, separate processes.
final class PyTorchExampleTests: ServerTestCase {
    /// Three classes a small CNN can tell apart in a few dozen steps: each class has
    /// its own bright quadrant.
    func makeStore() throws -> String {
        var seed: UInt64 = 1
        for c in 0..<3 {
            for i in 0..<24 {
                var img = Fixtures.image(width: 24, height: 24, channels: 3, seed: seed)
                seed += 1
                img.pixels = img.pixels.map { $0 / 4 }
                let (qx, qy) = (c % 2 * 12, c / 2 * 12)
                for y in qy..<(qy + 12) { for x in qx..<(qx + 12) { for k in 0..<3 { img[x, y, k] = 200 + img[x, y, k] / 4 } } }
                Fixtures.write(try Codec.encodePNG(img), to: "\(root)/l/class\(c)/\(i).png")
            }
        }
        let store = "\(root)/s.noisy"
        let r = try Processes.noisy(["ingest", "--store", store, "--labeled", "\(root)/l", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return store
    }

    struct Run { let losses: [Double]; let shapes: Set<String>; let savedAt: Int? }

    func runExample(_ args: [String]) throws -> Run {
        let r = try Processes.run(try Processes.torchPython(),
                                  [Processes.repositoryRoot + "/examples/train_torch.py"] + args)
        XCTAssertEqual(r.status, 0, "examples/train_torch.py: \(r.stderr)")
        var losses: [Double] = [], shapes = Set<String>(), saved: Int?
        for line in r.stdout.split(separator: "\n") {
            let w = line.split(separator: " ")
            if w.first == "step", w.count >= 6, let l = Double(w[3]) { losses.append(l); shapes.insert(w[5...].joined(separator: " ")) }
            if w.first == "saved", let b = Int(w.last ?? "") { saved = b }
        }
        return Run(losses: losses, shapes: shapes, savedAt: saved)
    }

    func testTheReadmeExampleTrainsAndResumes() throws {
        let store = try makeStore()
        let sock = "\(root)/s.sock"
        try startServer(["--store", store, "--socket", sock, "--size", "16", "--batch-size", "12", "--layout", "float32",
                         "--threads", "2", "--seed", "5"])
        let ckpt = "\(root)/ckpt.pt"
        let first = try runExample(["unix:" + sock, "--steps", "60", "--checkpoint", ckpt])
        XCTAssertEqual(first.losses.count, 60)
        XCTAssertEqual(first.shapes, ["(12, 3, 16, 16) torch.float32"], "float32 NCHW batches")
        let early = first.losses.prefix(10).reduce(0, +) / 10, late = first.losses.suffix(10).reduce(0, +) / 10
        XCTAssertLessThan(late, 0.7 * early, "the loss falls: \(early) -> \(late)")
        XCTAssertEqual(first.savedAt, 60, "the checkpoint carries the stream state")
        // Resume: the stream continues at batch 60, with the saved weights (a low loss from the start).
        let resumed = try runExample(["unix:" + sock, "--steps", "10", "--checkpoint", ckpt, "--resume"])
        XCTAssertEqual(resumed.savedAt, 70)
        XCTAssertLessThan(resumed.losses.prefix(5).reduce(0, +) / 5, early, "resumed weights, not a fresh model")
    }

    /// `noisy.torch.NoisyIterableDataset` yields one dict per batch (uint8 NHWC images
    /// become float NCHW in [0, 1], equal to the numpy client's bytes; ids and source
    /// per sample), resumes from `state_dict()`, and takes its rank and world size from
    /// torchrun's environment unless given.
    func testNoisyTorchDatasetBatchesStateAndRanks() throws {
        let store = try makeStore()
        let sock = "\(root)/s.sock"
        try startServer(["--store", store, "--socket", sock, "--size", "16", "--batch-size", "8", "--threads", "1", "--seed", "2"])
        let r = try Processes.torchScript("""
        import os, sys; sys.path.insert(0, sys.argv[2])
        import numpy as np, torch, noisy
        from noisy.torch import NoisyIterableDataset
        addr = "unix:" + sys.argv[1]
        with noisy.connect(addr) as c:
            raw = [{k: v.copy() for k, v in b.items() if k != "index"} for b in c.batches(5)]
        ds = NoisyIterableDataset(addr, steps=3)
        got = list(ds)
        for b, ref in zip(got, raw):
            images = b["images"]
            assert images.dtype == torch.float32 and tuple(images.shape) == (8, 3, 16, 16), (images.dtype, images.shape)
            assert torch.equal(images, torch.from_numpy(ref["images"]).permute(0, 3, 1, 2).float() / 255)
            assert torch.allclose(b["targets"].sum(1), torch.ones(8)) and tuple(b["weights"].shape) == (8,)
            assert b["ids"].tolist() == ref["ids"].astype(np.int64).tolist()
            assert b["source"].tolist() == ref["source"].tolist() == [0] * 8   # labeled only
        # The state after batch 3 resumes at batch 3 of the same stream.
        resumed = NoisyIterableDataset(addr, steps=2)
        resumed.load_state_dict(ds.state_dict())
        assert [b["ids"].tolist() for b in resumed] == [r["ids"].astype(np.int64).tolist() for r in raw[3:5]]
        # Rank and world: explicit arguments win, else torchrun's RANK / WORLD_SIZE.
        os.environ["RANK"], os.environ["WORLD_SIZE"] = "1", "2"
        from_env = NoisyIterableDataset(addr, steps=1)
        assert (from_env.rank, from_env.world_size) == (1, 2), (from_env.rank, from_env.world_size)
        explicit = NoisyIterableDataset(addr, rank=0, world_size=2, steps=1)
        assert (explicit.rank, explicit.world_size) == (0, 2)
        one = set(next(iter(from_env))["ids"].tolist()); zero = set(next(iter(explicit))["ids"].tolist())
        assert len(one) == len(zero) == 8 and not one & zero, (one, zero)
        # uint8 batches can stay NHWC bytes (to convert on the GPU): the server's bytes as they are.
        raw8 = NoisyIterableDataset(addr, rank=0, world_size=1, steps=2, uint8_to_float=False)
        for b, ref in zip(raw8, raw):
            assert b["images"].dtype == torch.uint8 and torch.equal(b["images"], torch.from_numpy(ref["images"]))
        # A world size that contradicts the initialised process group is an error, not a hang.
        import torch.distributed as dist
        del os.environ["RANK"], os.environ["WORLD_SIZE"]
        dist.init_process_group("gloo", init_method="file://" + sys.argv[3], rank=0, world_size=1)
        try:
            NoisyIterableDataset(addr, world_size=2); raise SystemExit("world_size=2 accepted in a group of 1")
        except ValueError as e:
            assert "world_size=2" in str(e) and "1 ranks" in str(e), e
        assert (NoisyIterableDataset(addr).rank, NoisyIterableDataset(addr).world_size) == (0, 1)
        dist.destroy_process_group()
        print("ok", len(got))
        """, [sock, Processes.repositoryRoot + "/python", "\(root)/rendezvous"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, "ok 3\n")
    }

    /// examples/label_torchrun.py under torchrun, 2 ranks: each labels its part of one job
    /// through a serve label session, and the generation that appears when the second part
    /// lands holds the bytes of one `labels import` of the two ranks' predictions.
    func testTheTorchrunLabellingExampleMakesOneGeneration() throws {
        let store = try makeStore()
        for i in 0..<30 { Fixtures.write(Fixtures.png(width: 20, height: 20, seed: UInt64(700 + i)), to: "\(root)/u/\(i).png") }
        XCTAssertEqual(try Processes.noisy(["ingest", "--store", store, "--unlabeled", "\(root)/u", "--quiet"]).status, 0)
        let sock = "\(root)/s.sock"
        try startServer(["--store", store, "--socket", sock, "--size", "16", "--batch-size", "8", "--layout", "float32", "--threads", "2"])
        let r = try Processes.run(try Processes.torchPython(),
                                  ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                                   Processes.repositoryRoot + "/examples/label_torchrun.py", "unix:" + sock, "--job", "tr", "--save", root])
        XCTAssertEqual(r.status, 0, "torchrun examples/label_torchrun.py: \(r.stderr)\n\(serverLog)")
        let lines = r.stdout.split(separator: "\n").filter { $0.hasPrefix("rank ") }
        XCTAssertEqual(lines.count, 2, r.stdout)
        // Exactly one rank's commit makes the generation; a rank whose part lands with the
        // other's may see it too, and says so without "made".
        XCTAssertEqual(lines.filter { $0.contains("generation 1 (made by this rank's commit)") }.count, 1, "one commit makes it: \(r.stdout)")
        XCTAssertTrue(lines.allSatisfy { $0.contains("15 samples, stored") }, r.stdout)
        let check = try Processes.python("""
        import sys, numpy as np
        d = sys.argv[1]
        parts = [np.load(f"{d}/rank-{r}.npz") for r in (0, 1)]
        np.save(d + "/p.npy", np.concatenate([p["probs"] for p in parts])); np.save(d + "/ids.npy", np.concatenate([p["ids"] for p in parts]))
        """, [root])
        XCTAssertEqual(check.status, 0, check.stderr)
        let one = try Processes.noisy(["labels", "import", "--store", store, "--predictions", "\(root)/p.npy", "--ids", "\(root)/ids.npy",
                                       "--teacher", "small_cnn (examples/label_torchrun.py)", "--quiet"])
        XCTAssertEqual(one.status, 0, one.stderr)
        let all = try labelRecords([store])
        XCTAssertEqual(all["1"]?.count, 30)
        XCTAssertEqual(all["1"], all["2"], "the torchrun generation holds the one-import bytes")
        let show = try Processes.noisy(["labels", "show", "--store", store, "--generation", "1", "--json"])
        XCTAssertTrue(show.stdout.contains("\"job\" : \"tr\"") && show.stdout.contains("\"parts\" : 2"), show.stdout)
    }

    /// Two nodes simulated on this machine: the store cut into 2 shards, one `noisy serve`
    /// per node over its shard, and examples/ddp_train.py under two torchrun agents with
    /// c10d rendezvous on 127.0.0.1 (`--nnodes 2 --nproc_per_node 1`). Each rank's loss
    /// falls, both train the same number of batches, no sample of the first epoch
    /// reaches both; a server over a set with a shard missing refuses to start.
    func testTwoNodesServeTheirShardsUnderTorchrun() throws {
        let store = try makeStore()
        let set = "\(root)/set"
        XCTAssertEqual(try Processes.noisy(["shard", "--store", store, "--shards", "2", "--out", set, "--quiet"]).status, 0)
        let opts = ["--size", "16", "--batch-size", "8", "--layout", "float32", "--threads", "1", "--seed", "7"]
        try startServer(["--store", set, "--shards", "0", "--socket", "\(root)/a.sock"] + opts)
        let second = try Processes.startServer(["--store", set, "--shards", "1", "--socket", "\(root)/b.sock"] + opts, log: "\(root)/b.log")
        defer { second.terminate(); second.waitUntilExit() }
        /// Both torchrun agents at once; their output, or nil when either failed.
        func runNodes(port: Int, example: String = "ddp_train.py", arguments: [String] = ["--steps", "60"]) throws -> (ok: Bool, text: String) {
            let nodes = try (0..<2).map { node -> (Process, Pipe) in
                let p = Process()
                p.executableURL = URL(fileURLWithPath: try Processes.torchPython())
                p.arguments = ["-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d",
                               "--rdzv_endpoint", "127.0.0.1:\(port)", "--rdzv_id", "two-nodes-\(port)",
                               Processes.repositoryRoot + "/examples/" + example, "unix:\(root)/\(node == 0 ? "a" : "b").sock"] + arguments
                let out = Pipe()
                p.standardOutput = out
                p.standardError = out
                try p.run()
                return (p, out)
            }
            // A broken run can leave one agent waiting for the other for minutes: end it.
            let watchdog = DispatchWorkItem {
                for (p, _) in nodes where p.isRunning {
                    _ = try? Processes.run("/usr/bin/pkill", ["-KILL", "-P", "\(p.processIdentifier)"])  // its workers first
                    kill(p.processIdentifier, SIGKILL)
                }
            }
            DispatchQueue.global().asyncAfter(deadline: .now() + 150, execute: watchdog)
            defer { watchdog.cancel() }
            var text = "", ok = true
            for (p, out) in nodes {
                let data = out.fileHandleForReading.readDataToEndOfFile()
                p.waitUntilExit()
                ok = ok && p.terminationStatus == 0
                text += String(decoding: data, as: UTF8.self)
            }
            return (ok, text)
        }
        // torchrun's c10d rendezvous store lives in the first agent: when it exits while the
        // other node's rank is still tearing down, that rank can abort after training
        // (seen in about 1 run of 6 here; the example now leaves with a barrier). Such a run
        // is run again, on another port, up to twice.
        var (ok, text) = try runNodes(port: 29_400 + Int(getpid() % 200))
        for attempt in 1...2 where !ok {
            print("two-node run failed; running again on another port:\n\(text.suffix(2000))")
            (ok, text) = try runNodes(port: 29_400 + 200 * attempt + Int(getpid() % 200))
        }
        XCTAssertTrue(ok, String(text.suffix(3000)) + serverLog)
        var ranks: [Int: (batches: Int, first: Double, last: Double)] = [:]
        for line in text.split(separator: "\n") {
            let w = line.split(separator: " ").map(String.init)
            if w.first == "rank", w.count >= 8, let k = Int(w[1]), let n = Int(w[3]), let a = Double(w[5]), let b = Double(w[7]) {
                ranks[k] = (n, a, b)
            }
        }
        XCTAssertEqual(ranks.keys.sorted(), [0, 1], text)
        for (k, v) in ranks {
            XCTAssertEqual(v.batches, 60, "rank \(k)")
            XCTAssertLessThan(v.last, 0.85 * v.first, "rank \(k)'s loss falls: \(v.first) -> \(v.last)")
        }
        XCTAssertTrue(text.contains("world 2 batches per epoch 4 equal batches True samples shared in the first epoch 0"), text)
        XCTAssertTrue(serverLog.contains("rank 0 of 1"), "each node serves its local rank: \(serverLog)")

        // Labelling on the same two nodes (the labeled split: this store has no other): each
        // rank labels its part on its node's shard, and the last part in commits one
        // generation over the set.
        let before = try labelRecords(shardPaths(set)).keys.count
        var label = try runNodes(port: 29_000 + Int(getpid() % 200), example: "label_torchrun.py", arguments: ["--job", "nodes", "--split", "labeled"])
        if !label.ok { label = try runNodes(port: 29_200 + Int(getpid() % 200), example: "label_torchrun.py", arguments: ["--job", "nodes", "--split", "labeled"]) }
        XCTAssertTrue(label.ok, String(label.text.suffix(3000)) + serverLog)
        XCTAssertEqual(label.text.components(separatedBy: "part 0 of 1").count - 1, 2, "each node's one rank labels part 0 of 1 of its shard: \(label.text)")
        XCTAssertEqual(label.text.components(separatedBy: "(made by this rank's commit)").count - 1, 1, "one rank's commit makes it: \(label.text)")
        let labelled = try labelRecords(shardPaths(set))
        XCTAssertEqual(labelled.keys.count, before + 1, "one generation over the set")
        let newest = labelled.keys.compactMap(Int.init).max().map(String.init) ?? ""
        let m = try XCTUnwrap(try JSONSerialization.jsonObject(with: try XCTUnwrap(FileManager.default.contents(atPath: set + "/manifest.json"))) as? [String: Any])
        let listed = (m["generations"] as? [[String: Any]] ?? []).compactMap { $0["generation"] as? Int }
        XCTAssertEqual(listed.last.map(String.init), newest, "committed in the manifest")
        XCTAssertEqual((m["generations"] as? [[String: Any]])?.last?["samples"] as? Int,
                       (m["shards"] as? [[String: Any]])?.compactMap { ($0["splits"] as? [String: Int])?["labeled"] }.reduce(0, +),
                       "every sample of the split over the set, once")

        try FileManager.default.moveItem(atPath: "\(set)/shard-00001-of-00002.noisy", toPath: "\(root)/aside.noisy")
        let refused = try Processes.run(Processes.noisyBinary, ["serve", "--store", set, "--shards", "0", "--socket", "\(root)/c.sock"] + opts)
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("shard 1 of 2") && refused.stderr.contains("is missing"), refused.stderr)
    }

    /// examples/ddp_train.py under torchrun, two ranks on this machine (gloo on CPU), one
    /// `noisy serve` for both: each rank's loss falls, both train the same number of
    /// batches, and no sample of the first epoch reaches two ranks.
    func testTheDDPExampleRunsUnderTorchrun() throws {
        let store = try makeStore()
        let sock = "\(root)/s.sock"
        try startServer(["--store", store, "--socket", sock, "--size", "16", "--batch-size", "8", "--layout", "float32",
                         "--threads", "2", "--seed", "7"])
        let r = try Processes.run(try Processes.torchPython(),
                                  ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                                   Processes.repositoryRoot + "/examples/ddp_train.py", "unix:" + sock, "--steps", "60"])
        XCTAssertEqual(r.status, 0, "torchrun examples/ddp_train.py: \(r.stdout)\n\(r.stderr)")
        var ranks: [Int: (batches: Int, first: Double, last: Double)] = [:]
        for line in r.stdout.split(separator: "\n") {
            let w = line.split(separator: " ").map(String.init)
            if w.first == "rank", w.count >= 8, let k = Int(w[1]), let n = Int(w[3]), let a = Double(w[5]), let b = Double(w[7]) {
                ranks[k] = (n, a, b)
            }
        }
        XCTAssertEqual(ranks.keys.sorted(), [0, 1], r.stdout)
        for (k, v) in ranks {
            XCTAssertEqual(v.batches, 60, "rank \(k)")
            XCTAssertLessThan(v.last, 0.7 * v.first, "rank \(k)'s loss falls: \(v.first) -> \(v.last)")
        }
        XCTAssertTrue(r.stdout.contains("world 2 batches per epoch 4 equal batches True samples shared in the first epoch 0 device cpu"),
                      r.stdout)
    }

    /// The README shows examples/train_torch.py as the tests run it, character for character.
    func testTheReadmeShowsTheExampleAsTheTestsRunIt() throws {
        let readme = try String(contentsOfFile: Processes.repositoryRoot + "/README.md", encoding: .utf8)
        let example = try String(contentsOfFile: Processes.repositoryRoot + "/examples/train_torch.py", encoding: .utf8)
        XCTAssertTrue(readme.contains("```python\n" + example + "```"), "README.md's copy of examples/train_torch.py is stale")
    }

    /// `pip install ./python` works offline with Debian's setuptools, and the result
    /// imports as `noisy` with numpy as its only dependency.
    func testThePythonPackageInstallsWithPip() throws {
        let venv = "\(root)/venv"
        let made = try Processes.run("/usr/bin/python3", ["-m", "venv", "--system-site-packages", venv])
        XCTAssertEqual(made.status, 0, made.stderr)
        let pip = try Processes.run(venv + "/bin/python", ["-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                                                          "--no-index", "--disable-pip-version-check", "--target", "\(root)/site",
                                                          Processes.repositoryRoot + "/python"])
        XCTAssertEqual(pip.status, 0, pip.stderr)
        let check = try Processes.run(venv + "/bin/python", ["-c", """
        import importlib.util, sys
        sys.path.insert(0, sys.argv[1])
        import noisy
        assert noisy.__file__.startswith(sys.argv[1]), noisy.__file__
        assert callable(noisy.connect) and callable(noisy.open_store) and noisy.__version__
        assert importlib.util.find_spec("noisy.torch") is not None and "torch" not in sys.modules
        print("noisy", noisy.__version__)
        """, "\(root)/site"])
        XCTAssertEqual(check.status, 0, check.stderr)
        XCTAssertEqual(check.stdout, "noisy 0.1.0\n")
    }
}
