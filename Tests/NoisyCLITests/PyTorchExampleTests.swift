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

    /// `noisy_torch` turns uint8 NHWC batches into float NCHW in [0, 1], and equals the
    /// numpy client's bytes.
    func testNoisyTorchConvertsUint8Batches() throws {
        let store = try makeStore()
        let sock = "\(root)/s.sock"
        try startServer(["--store", store, "--socket", sock, "--size", "16", "--batch-size", "8", "--threads", "1", "--seed", "2"])
        let r = try Processes.torchScript("""
        import sys; sys.path.insert(0, sys.argv[2])
        import numpy as np, torch, noisy_client
        from noisy_torch import NoisyIterableDataset
        raw = [b["images"].copy() for b in noisy_client.connect("unix:" + sys.argv[1]).batches(3)]
        got = list(NoisyIterableDataset("unix:" + sys.argv[1], steps=3))
        for (images, targets, weights), ref in zip(got, raw):
            assert images.dtype == torch.float32 and tuple(images.shape) == (8, 3, 16, 16), (images.dtype, images.shape)
            assert torch.equal(images, torch.from_numpy(ref).permute(0, 3, 1, 2).float() / 255)
            assert torch.allclose(targets.sum(1), torch.ones(8)) and tuple(weights.shape) == (8,)
        print("ok", len(got))
        """, [sock, Processes.repositoryRoot + "/tools/python"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, "ok 3\n")
    }
}
