import XCTest
import Datasets
import ImageCodec
import TestSupport
import Pixels

/// Every RandAugment op, run through `noisy augment`, against python3-pil's
/// ImageOps / ImageEnhance / Image.transform (bilinear, fill 128) on natural
/// images (Fashion-MNIST, a photograph from python-matplotlib-data) and synthetic ones.
final class AugmentParityTests: XCTestCase {
    var root = ""
    override func setUp() { root = Fixtures.temporaryDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    static let photograph = "/usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg"

    /// (op, raw parameter) pairs, including magnitudes past 10 as the paper uses (M = 27).
    static let cases: [(String, Double)] = [
        ("auto_contrast", 0), ("equalize", 0), ("invert", 0),
        ("rotate", 23.5), ("rotate", -81), ("posterize", 2), ("posterize", 4), ("posterize", 8),
        ("solarize", 128), ("solarize", 230), ("solarize_add", 30), ("solarize_add", 99),
        ("color", 0.3), ("color", 4.96), ("contrast", 0.1), ("contrast", 1.9), ("contrast", 4.96),
        ("brightness", 0.4), ("brightness", 1.6), ("sharpness", 0.2), ("sharpness", 4.96),
        ("shear_x", 0.3), ("shear_x", -0.81), ("shear_y", 0.17), ("translate_x", 27.3), ("translate_y", -12),
        ("translate_x", 90), ("translate_x", -300), ("translate_y", 7),  // whole pixels: the row-copy path
        ("cutout", 20),
    ]

    func testEveryOpMatchesPIL() throws {
        // Inputs: two Fashion-MNIST samples (gray), the photograph (RGB JPEG), a synthetic RGB PNG
        // and a synthetic gray PNG with a narrow range (where autocontrast/equalize do most).
        var inputs: [String] = []
        let fm = try FashionMNIST.load().train
        for i in [0, 7] {
            let path = "\(root)/fmnist\(i).png"
            Fixtures.write(try Codec.encodePNG(fm.image(i)), to: path)
            inputs.append(path)
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: Self.photograph), "python-matplotlib-data is missing: run tools/bootstrap.sh")
        inputs.append(Self.photograph)
        Fixtures.write(Fixtures.png(width: 160, height: 120, seed: 3), to: "\(root)/synthetic.png")
        inputs.append("\(root)/synthetic.png")
        var narrow = Fixtures.image(width: 64, height: 48, channels: 1, seed: 9)
        narrow.pixels = narrow.pixels.map { 90 + $0 / 4 }
        Fixtures.write(try Codec.encodePNG(narrow), to: "\(root)/narrow.png")
        inputs.append("\(root)/narrow.png")

        var jobs: [[String: Any]] = []
        for (k, input) in inputs.enumerated() {
            for (j, c) in Self.cases.enumerated() {
                let out = "\(root)/out-\(k)-\(j).png"
                var args = ["augment", input, out, "--op", c.0, "--param=\(c.1)"]
                if c.0 == "cutout" { args += ["--center", "11,9"] }
                let r = try Processes.noisy(args)
                XCTAssertEqual(r.status, 0, "\(args): \(r.stderr)")
                jobs.append(["input": input, "op": c.0, "param": c.1, "ours": out])
            }
        }
        try JSONSerialization.data(withJSONObject: jobs).write(to: URL(fileURLWithPath: "\(root)/jobs.json"))
        let script = """
        import json, sys
        import numpy as np
        from PIL import Image, ImageEnhance, ImageOps
        jobs = json.load(open(sys.argv[1]))
        out = []
        for j in jobs:
            im = Image.open(j["input"]); im.load()
            im = im.convert("L" if im.mode in ("L", "1", "LA") else "RGB")
            fill = 128 if im.mode == "L" else (128, 128, 128)
            op, p = j["op"], j["param"]
            aff = lambda m: im.transform(im.size, Image.AFFINE, m, resample=Image.BILINEAR, fillcolor=fill)
            if op == "auto_contrast": r = ImageOps.autocontrast(im)
            elif op == "equalize": r = ImageOps.equalize(im)
            elif op == "invert": r = ImageOps.invert(im)
            elif op == "rotate": r = im.rotate(p, resample=Image.BILINEAR, fillcolor=fill)
            elif op == "posterize": r = ImageOps.posterize(im, int(p))
            elif op == "solarize": r = ImageOps.solarize(im, int(p))
            elif op == "solarize_add":
                t = [min(255, i + int(p)) if i < 128 else i for i in range(256)]
                r = im.point(t * len(im.getbands()))
            elif op == "color": r = ImageEnhance.Color(im).enhance(p)
            elif op == "contrast": r = ImageEnhance.Contrast(im).enhance(p)
            elif op == "brightness": r = ImageEnhance.Brightness(im).enhance(p)
            elif op == "sharpness": r = ImageEnhance.Sharpness(im).enhance(p)
            elif op == "shear_x": r = aff((1, p, 0, 0, 1, 0))
            elif op == "shear_y": r = aff((1, 0, 0, p, 1, 0))
            elif op == "translate_x": r = aff((1, 0, p, 0, 1, 0))
            elif op == "translate_y": r = aff((1, 0, 0, 0, 1, p))
            elif op == "cutout":
                a = np.array(im); side = int(p); x0, y0 = 11 - side // 2, 9 - side // 2
                a[max(0, y0):max(0, y0 + side), max(0, x0):max(0, x0 + side)] = 128
                r = Image.fromarray(a)
            ours = np.asarray(Image.open(j["ours"]), dtype=np.int16)
            theirs = np.asarray(r, dtype=np.int16)
            same_shape = ours.shape == theirs.shape
            mad = float(np.abs(ours - theirs).mean()) if same_shape else 999.0
            worst_px = int(np.abs(ours - theirs).max()) if same_shape else 999
            changed = float(np.abs(theirs - np.asarray(im, dtype=np.int16)).mean())
            out.append({"op": op, "param": p, "input": j["input"], "mad": mad, "max": worst_px, "changed": changed})
        print(json.dumps(out))
        """
        let r = try Processes.python(script, ["\(root)/jobs.json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        struct Result: Decodable { let op: String; let param: Double; let input: String; let mad: Double; let max: Int; let changed: Double }
        let results = try JSONDecoder().decode([Result].self, from: r.stdoutData)
        XCTAssertEqual(results.count, inputs.count * Self.cases.count)
        // The README claims PIL's output byte for byte: every pixel of every op equal.
        var worst: [String: Double] = [:]
        for x in results {
            XCTAssertEqual(x.max, 0, "\(x.op)(\(x.param)) on \(x.input): differs from PIL by up to \(x.max) (mean \(x.mad))")
            worst[x.op] = max(worst[x.op] ?? 0, x.mad)
        }
        // The comparison means something only if the ops change the images.
        let moved = results.filter { $0.changed > 1 }.count
        XCTAssertGreaterThan(moved, results.count / 2, "most ops should visibly change the inputs")
        print("worst mean absolute difference per op:", worst.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.4f", $0.value))" }.joined(separator: ", "))
    }
}
