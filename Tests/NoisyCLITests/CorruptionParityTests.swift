import XCTest
import Foundation
import Augment
import DatasetStore
import ImageCodec
import Pixels
import Synchronization
import TestSupport

/// The ImageNet-C corruptions against the reference implementation as packaged on PyPI
/// (imagecorruptions 1.1.2, in .venv-ic/), run in a real Python process on photographs
/// (scikit-image's bundled chelsea.png and coffee.png, resized by Pillow) and on seeded
/// synthetic images (colour and grey, at least 32 px, the package's minimum).
///
/// Deterministic corruptions (and elastic_transform with the reference's own displacement
/// field, motion_blur with its own angle) must agree within 1 grey level on average; the
/// random ones in distribution: over 12 seeds (60 for fog, whose plasma fractal varies most
/// from draw to draw, and 40 for impulse noise, whose salt-to-pepper balance does), the mean
/// absolute change per pixel, the mean change and its standard
/// deviation within 5% of the reference's.
final class CorruptionParityTests: XCTestCase {
    var root = ""
    override func setUp() { root = Fixtures.temporaryDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    static let deterministic = ["brightness", "contrast", "saturate", "pixelate", "jpeg_compression", "defocus_blur",
                                "gaussian_blur", "zoom_blur", "elastic_transform", "motion_blur"]
    static let random = ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "glass_blur", "snow", "fog"]
    static let seeds = 12
    /// Draws per corruption: the plasma fractal's low frequencies make fog's mean change vary
    /// most from draw to draw.
    static func draws(_ c: String) -> Int { ["fog": 60, "impulse_noise": 40][c] ?? seeds }

    /// Writes the fixtures and the reference's outputs into `root`.
    func runReference() throws {
        let script = """
        import os, sys, warnings
        warnings.simplefilter("ignore")
        import numpy as np
        import skimage, skimage.filters
        import imagecorruptions.corruptions as icc
        from imagecorruptions import corrupt
        from PIL import Image
        # scikit-image 0.20 renamed gaussian's `multichannel=True` to `channel_axis=-1`; the
        # package still passes the old name. The same filter, under its new argument name:
        _gaussian = skimage.filters.gaussian
        def gaussian(image, *args, multichannel=None, **kw):
            if multichannel:
                kw["channel_axis"] = -1
            return _gaussian(image, *args, **kw)
        icc.gaussian = gaussian
        # impulse_noise calls skimage's random_noise, which draws from a fresh
        # np.random.default_rng(None) each time; seed it from numpy's global state, which
        # np.random.seed(k) sets, so that every run of this test sees the same draws.
        _random_noise = skimage.util.random_noise
        icc.sk.util.random_noise = lambda image, mode, **kw: _random_noise(image, mode=mode, seed=int(np.random.randint(2**31)), **kw)
        root, det, rand, seeds = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(","), int(sys.argv[4])
        data = os.path.join(os.path.dirname(skimage.__file__), "data")
        rng = np.random.default_rng(1)
        y, x = np.mgrid[0:72, 0:96]
        synth = np.stack([(x * 2.5) % 256, (y * 3.1) % 256, ((x + y) * 1.7) % 256], -1)
        synth[20:50, 30:60] = [200, 40, 90]
        images = {
            "synth": (synth + rng.normal(0, 6, synth.shape)).clip(0, 255).astype(np.uint8),
            "grey": (np.add.outer(np.arange(40) * 5, np.arange(48) * 3) % 256 + rng.normal(0, 8, (40, 48))).clip(0, 255).astype(np.uint8),
            "chelsea": np.array(Image.open(os.path.join(data, "chelsea.png")).convert("RGB").resize((120, 80), Image.BICUBIC)),
            "coffee": np.array(Image.open(os.path.join(data, "coffee.png")).convert("RGB").resize((96, 64), Image.BICUBIC)),
        }
        os.makedirs(root + "/ref", exist_ok=True)
        for name, img in images.items():
            Image.fromarray(img).save(f"{root}/{name}.png")
        def run(img, c, s, seed, out):
            h, w = img.shape[:2]
            if c == "elastic_transform":
                np.random.seed(seed); m = h * 0.005
                field = np.stack([np.random.uniform(-m, m, size=(h, w)), np.random.uniform(-m, m, size=(h, w))])
                np.save(out + ".field.npy", field)
            if c == "motion_blur":
                np.random.seed(seed); open(out + ".angle", "w").write(repr(float(np.random.uniform(-45, 45))))
            np.random.seed(seed)
            Image.fromarray(corrupt(img, severity=s, corruption_name=c)).save(out)
        for name, img in images.items():
            for c in det:
                for s in range(1, 6):
                    run(img, c, s, 7, f"{root}/ref/{name}-{c}-{s}.png")
        for name in ("synth", "chelsea"):
            for c in rand:
                for s in (1, 3, 5):
                    for k in range(1, {"fog": 60, "impulse_noise": 40}.get(c, seeds) + 1):
                        run(images[name], c, s, k, f"{root}/ref/{name}-{c}-{s}-{k}.png")
        """
        let r = try Processes.run(try Processes.referencePython(),
                                  ["-c", script, root, Self.deterministic.joined(separator: ","), Self.random.joined(separator: ","), "\(Self.seeds)"])
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    func load(_ path: String) throws -> Image {
        try Codec.decode([UInt8](try XCTUnwrap(FileManager.default.contents(atPath: path), path)))
    }

    func save(_ image: Image, _ path: String) throws {
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(try Codec.encodePNG(image))), path)
    }

    func testCorruptionsMatchTheImagecorruptionsPackage() throws {
        try runReference()
        try FileManager.default.createDirectory(atPath: root + "/ours", withIntermediateDirectories: true)
        for name in ["synth", "grey", "chelsea", "coffee"] {
            let image = try load("\(root)/\(name).png")
            for c in Self.deterministic {
                for s in 1...5 {
                    let ref = "\(root)/ref/\(name)-\(c)-\(s).png"
                    let out: Image
                    switch c {
                    case "elastic_transform":
                        let f = try NPYFile(path: ref + ".field.npy")
                        XCTAssertEqual(f.dtype, "<f8")
                        let v = Array(f.data.bindMemory(to: Double.self)), n = image.width * image.height
                        out = Corruptions.elasticTransform(image, severity: s, uniformX: Array(v[..<n]), uniformY: Array(v[n..<(2 * n)]))
                    case "motion_blur":
                        let angle = try XCTUnwrap(Double(try String(contentsOfFile: ref + ".angle", encoding: .utf8)))
                        out = Corruptions.motionBlur(image, severity: s, angle: angle)
                    default:
                        out = try Corruptions.apply(try XCTUnwrap(Corruption(rawValue: c)), severity: s, to: image, seed: 7, sample: 0)
                    }
                    XCTAssertEqual(out.channels, image.channels, "\(name) \(c): the input's channels")
                    try save(out, "\(root)/ours/\(name)-\(c)-\(s).png")
                }
            }
        }
        for name in ["synth", "chelsea"] {
            let image = try load("\(root)/\(name).png")
            for c in Self.random {
                for s in [1, 3, 5] {
                    for k in 1...Self.draws(c) {
                        let out = try Corruptions.apply(try XCTUnwrap(Corruption(rawValue: c)), severity: s, to: image, seed: UInt64(k), sample: 0)
                        try save(out, "\(root)/ours/\(name)-\(c)-\(s)-\(k).png")
                    }
                }
            }
        }
        // The CLI writes what the library computes.
        let cli = try Processes.noisy(["augment", "\(root)/chelsea.png", "\(root)/cli.png", "--corruption", "fog", "--severity", "4", "--seed", "3"])
        XCTAssertEqual(cli.status, 0, cli.stderr)
        XCTAssertEqual(try load("\(root)/cli.png"),
                       try Corruptions.apply(.fog, severity: 4, to: try load("\(root)/chelsea.png"), seed: 3, sample: 0))

        let compare = try Processes.run(try Processes.referencePython(), ["-c", """
        import json, sys
        import numpy as np
        from PIL import Image
        root, det, rand, seeds = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(","), int(sys.argv[4])
        load = lambda p: np.array(Image.open(p)).astype(np.float64)
        out = {"deterministic": {}, "random": {}}
        for c in det:
            worst = 0.0
            for name in ("synth", "grey", "chelsea", "coffee"):
                for s in range(1, 6):
                    a, b = load(f"{root}/ref/{name}-{c}-{s}.png"), load(f"{root}/ours/{name}-{c}-{s}.png")
                    if a.ndim == 3 and b.ndim == 2:
                        a = a[..., 0]   # a grey input: the reference returns three equal channels, noisy the first
                    worst = max(worst, float(np.abs(a - b).mean()))
            out["deterministic"][c] = worst
        for c in rand:
            worst = {"mean_abs": 0.0, "mean": 0.0, "std": 0.0}
            for name in ("synth", "chelsea"):
                x = load(f"{root}/{name}.png")
                for s in (1, 3, 5):
                    n = {"fog": 60, "impulse_noise": 40}.get(c, seeds)
                    r = np.stack([load(f"{root}/ref/{name}-{c}-{s}-{k}.png") - x for k in range(1, n + 1)])
                    o = np.stack([load(f"{root}/ours/{name}-{c}-{s}-{k}.png") - x for k in range(1, n + 1)])
                    scale = np.abs(r).mean()
                    worst["mean_abs"] = max(worst["mean_abs"], abs(np.abs(o).mean() - scale) / scale)
                    worst["mean"] = max(worst["mean"], abs(o.mean() - r.mean()) / scale)
                    worst["std"] = max(worst["std"], abs(o.std() - r.std()) / r.std())
            out["random"][c] = worst
        print(json.dumps(out))
        """, root, Self.deterministic.joined(separator: ","), Self.random.joined(separator: ","), "\(Self.seeds)"])
        XCTAssertEqual(compare.status, 0, compare.stderr)
        struct Report: Decodable { let deterministic: [String: Double]; let random: [String: [String: Double]] }
        let report = try JSONDecoder().decode(Report.self, from: compare.stdoutData)
        var table = "corruption: worst mean |difference| in grey levels (deterministic) or worst relative difference of mean |change|, mean change, std of change (random)\n"
        for c in Self.deterministic {
            let d = try XCTUnwrap(report.deterministic[c], c)
            table += String(format: "  %@: %.4f\n", c, d)
            XCTAssertLessThanOrEqual(d, 1.0, "\(c): within 1 grey level on average")
        }
        for c in Self.random {
            let r = try XCTUnwrap(report.random[c], c)
            table += String(format: "  %@: %.1f%% %.1f%% %.1f%%\n", c, 100 * (r["mean_abs"] ?? 1), 100 * (r["mean"] ?? 1), 100 * (r["std"] ?? 1))
            for (k, v) in r { XCTAssertLessThanOrEqual(v, 0.05, "\(c): \(k) within 5%") }
        }
        print(table)
    }

    /// Keyed randomness: the same (seed, sample, corruption, severity) gives the same bytes,
    /// whatever thread computes it; another seed, sample or severity gives others.
    func testCorruptionsAreKeyed() throws {
        var img = Image(width: 40, height: 36, channels: 3)
        for i in img.pixels.indices { img.pixels[i] = UInt8((i * 37 + i / 7) % 256) }
        let image = img
        for c in Corruption.available where c.isRandom {
            let a = try Corruptions.apply(c, severity: 3, to: image, seed: 1, sample: 9)
            let fromThreads = Mutex([Image?](repeating: nil, count: 4))
            DispatchQueue.concurrentPerform(iterations: 4) { i in
                let r = try? Corruptions.apply(c, severity: 3, to: image, seed: 1, sample: 9)
                fromThreads.withLock { $0[i] = r }
            }
            XCTAssertTrue(fromThreads.withLock { $0.allSatisfy { $0 == a } }, "\(c): the same bytes on every thread")
            XCTAssertNotEqual(try Corruptions.apply(c, severity: 3, to: image, seed: 2, sample: 9), a, "\(c): another seed")
            XCTAssertNotEqual(try Corruptions.apply(c, severity: 3, to: image, seed: 1, sample: 10), a, "\(c): another sample")
        }
        XCTAssertThrowsError(try Corruptions.apply(.fog, severity: 6, to: image, seed: 1, sample: 0))
        XCTAssertThrowsError(try Corruptions.apply(.frost, severity: 1, to: image, seed: 1, sample: 0))
        try save(image, "\(root)/in.png")
        let bad = try Processes.noisy(["augment", "\(root)/in.png", "\(root)/out.png", "--corruption", "fogg"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("unknown corruption 'fogg'") && bad.stderr.split(separator: "\n").count <= 3, bad.stderr)
        let left = try Processes.noisy(["augment", "\(root)/in.png", "\(root)/out.png", "--corruption", "frost"])
        XCTAssertNotEqual(left.status, 0)
        XCTAssertTrue(left.stderr.contains("frost photographs"), left.stderr)
        let severity = try Processes.noisy(["augment", "\(root)/in.png", "\(root)/out.png", "--corruption", "fog", "--severity", "6"])
        XCTAssertNotEqual(severity.status, 0)
        XCTAssertTrue(severity.stderr.contains("--severity 6: use 1 to 5"), severity.stderr)
    }
}
