import XCTest
import Foundation
import TestSupport

/// Labelling with Ray Data (noisy.ray, examples/label_ray.py): a real local Ray on 2 CPUs,
/// the real `noisy` binary, and the stored label bytes read back with python-lmdb.
final class RayLabellingTests: XCTestCase {
    var root = ""
    override func setUp() { root = Fixtures.temporaryDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    func makeStore() throws -> String {
        for c in 0..<3 {
            for i in 0..<4 { Fixtures.write(Fixtures.png(width: 20, height: 20, seed: UInt64(300 + 10 * c + i)), to: "\(root)/l/k\(c)/\(i).png") }
        }
        for i in 0..<30 { Fixtures.write(Fixtures.jpeg(width: 24 + i % 5, height: 20, seed: UInt64(900 + i)), to: "\(root)/u/\(i).jpg") }
        let store = "\(root)/s.noisy"
        let r = try Processes.noisy(["ingest", "--store", store, "--labeled", "\(root)/l", "--unlabeled", "\(root)/u", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return store
    }

    var environment: [String: String] { ["NOISY_BIN": Processes.noisyBinary, "RAY_AUTH_MODE": "disabled"] }

    /// `labels import` of predictions saved as p.npy / ids.npy makes the next generation;
    /// then generations `a` and `b` must hold the same label bytes.
    func assertImportEquals(_ store: String, generation a: Int, next b: Int) throws {
        let one = try Processes.noisy(["labels", "import", "--store", store, "--predictions", "\(root)/p.npy", "--ids", "\(root)/ids.npy",
                                       "--teacher", "check", "--quiet"])
        XCTAssertEqual(one.status, 0, one.stderr)
        let all = try labelRecords([store])
        XCTAssertEqual(all["\(a)"]?.count, 30)
        XCTAssertEqual(all["\(a)"], all["\(b)"])
    }

    /// examples/label_ray.py as the README runs it: a stateful torch teacher on a pool of
    /// actors; the generation holds the bytes of one import of the same predictions, and
    /// the datasink's staging is gone.
    func testTheRayExampleMakesOneGeneration() throws {
        let store = try makeStore()
        let r = try Processes.run(try Processes.torchPython(),
                                  [Processes.repositoryRoot + "/examples/label_ray.py", store, "--job", "ray1", "--cpus", "2", "--save", root],
                                  environment: environment)
        XCTAssertEqual(r.status, 0, "examples/label_ray.py: \(r.stderr.suffix(3000))")
        XCTAssertTrue(r.stdout.contains("job ray1: generation 1, 30 samples"), r.stdout)
        let save = try Processes.python("""
        import sys, numpy as np
        d = np.load(sys.argv[1] + "/predictions.npz")
        np.save(sys.argv[1] + "/p.npy", d["probs"]); np.save(sys.argv[1] + "/ids.npy", d["ids"])
        """, [root])
        XCTAssertEqual(save.status, 0, save.stderr)
        try assertImportEquals(store, generation: 1, next: 2)
        XCTAssertEqual((try? FileManager.default.contentsOfDirectory(atPath: "\(store)/jobs")) ?? [], [], "no staging left")
    }

    /// A map task and a write task that each fail once are retried by Ray; the job still
    /// ends in one generation with the bytes of one import. A run whose predictions miss
    /// samples fails and leaves no generation.
    func testFailedRayTasksAreRetriedAndTheJobFinishesOnce() throws {
        let store = try makeStore()
        let r = try Processes.run(try Processes.torchPython(), ["-c", """
        import os, sys
        sys.path.insert(0, sys.argv[2])
        import numpy as np, ray, noisy, noisy.ray
        store, d = sys.argv[1], sys.argv[3]
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": sys.argv[2]}})

        W = np.array([[0.02, -0.01, 0.005], [-0.01, 0.03, -0.02], [0.0, -0.02, 0.03]], np.float64)
        def teach(ids, data):
            # Per row and element-wise (no BLAS): the same numbers whatever the batching.
            means = np.array([[np.frombuffer(b, np.uint8)[::7].mean() % 97 for _ in range(3)] for b in data])
            z = sum(means[:, k:k + 1] * W[k] for k in range(3))
            e = np.exp(z - z.max(1, keepdims=True))
            return (e / e.sum(1, keepdims=True)).astype(np.float32)

        def once(name):
            try:
                os.close(os.open(os.path.join(d, name), os.O_CREAT | os.O_EXCL)); return True
            except FileExistsError:
                return False

        def teacher(batch):
            if once("map-failed"):
                raise RuntimeError("a map task fails once")
            return {"id": batch["id"], "probs": list(teach(batch["id"], batch["data"]))}

        class FlakySink(noisy.ray.LabelJobDatasink):
            def write(self, blocks, ctx):
                if once("write-failed"):
                    raise RuntimeError("a write task fails once")
                return super().write(blocks, ctx)

        ds = ray.data.read_datasource(noisy.ray.StoreDatasource(store, split="unlabeled"), override_num_blocks=3)
        preds = ds.map_batches(teacher, batch_size=8, max_retries=3, retry_exceptions=True)
        sink = FlakySink(store, job="flaky", teacher="numpy teacher", parts=4)
        preds.write_datasink(sink, ray_remote_args={"max_retries": 3, "retry_exceptions": True})
        assert os.path.exists(os.path.join(d, "map-failed")) and os.path.exists(os.path.join(d, "write-failed"))
        print("generation", sink.generation)

        # The same predictions, computed directly, for the one-import comparison.
        with noisy.open_store(store) as s:
            rows = list(s.get(s.ids("unlabeled")))
        ids = np.array([r["id"] for r in rows], np.int64)
        np.save(d + "/p.npy", teach(ids, [r["data"] for r in rows])); np.save(d + "/ids.npy", ids)

        # Predictions that miss samples: the write fails, and no generation appears.
        short = ds.filter(lambda row: row["id"] % 2 == 0).map_batches(teacher, batch_size=8)
        try:
            short.write_datasink(noisy.ray.LabelJobDatasink(store, job="short", teacher="numpy teacher"))
            raise SystemExit("a job missing samples was committed")
        except Exception as e:
            assert "have no prediction" in str(e), e
        print("refused")
        """, store, Processes.repositoryRoot + "/python", root], environment: environment)
        XCTAssertEqual(r.status, 0, r.stderr.suffix(4000) + r.stdout)
        XCTAssertTrue(r.stdout.contains("generation 1\n") && r.stdout.contains("refused"), r.stdout)
        let list = try Processes.noisy(["labels", "list", "--store", store, "--json"])
        XCTAssertEqual(((try? JSONSerialization.jsonObject(with: list.stdoutData)) as? [Any])?.count, 1, "no generation from the failed run")
        try assertImportEquals(store, generation: 1, next: 2)
    }
}
