import XCTest
import Augment
import KeyedRandom
import Pixels
import TestSupport

/// The train view's random choices against the libraries users compare us with,
/// run from PyPI in the project's virtual environment: torchvision's
/// RandomResizedCrop.get_params, and timm's RandAugment level functions (timm's
/// `auto_augment.py` is a port of the TF reference the paper used).
final class TorchReferenceTests: XCTestCase {
    var root = ""
    override func setUp() { root = Fixtures.temporaryDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    /// Our boxes for `count` samples of a width x height image, as int32 (x, y, w, h) rows.
    func ourBoxes(width: Int, height: Int, count: Int, scale: ClosedRange<Double>, seed: UInt64) -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(count * 4)
        for i in 0..<count {
            var rng = KeyedRandom(seed: seed, epoch: 0, sample: UInt64(i), purpose: .crop)
            let r = ViewGeometry.randomResizedCrop(width: width, height: height, scale: scale,
                                                   ratio: (3.0 / 4)...(4.0 / 3), rng: &rng)
            out += [Int32(r.x), Int32(r.y), Int32(r.width), Int32(r.height)]
        }
        return out
    }

    /// RandomResizedCrop draws boxes with torchvision's distribution: area fraction,
    /// log aspect ratio and horizontal offset histograms over 100,000 draws agree by
    /// a two-sample chi-square test (p = 0.001). The same test must reject boxes
    /// drawn with another scale range, or it could not fail.
    func testRandomResizedCropMatchesTorchvisionInDistribution() throws {
        let n = 100_000
        var cases: [[String: Any]] = []
        for (w, h) in [(480, 360), (120, 300)] {
            let ours = ourBoxes(width: w, height: h, count: n, scale: 0.08...1, seed: 7)
            let wrong = ourBoxes(width: w, height: h, count: n, scale: 0.2...1, seed: 7)
            let a = "\(root)/ours-\(w)x\(h).bin", b = "\(root)/wrong-\(w)x\(h).bin"
            Fixtures.write(ours.withUnsafeBytes { Array($0) }, to: a)
            Fixtures.write(wrong.withUnsafeBytes { Array($0) }, to: b)
            cases.append(["w": w, "h": h, "ours": a, "wrong": b])
        }
        try JSONSerialization.data(withJSONObject: cases).write(to: URL(fileURLWithPath: "\(root)/cases.json"))
        let r = try Processes.torchScript("""
        import json, math, sys
        import numpy as np, torch
        from torchvision.transforms import RandomResizedCrop
        cases, n = json.load(open(sys.argv[1])), int(sys.argv[2])
        torch.manual_seed(0)

        def features(x, y, w, h, W, H):
            off = np.where(W > w, x / np.maximum(1, W - w), 0.5)
            return {"area": (w * h / (W * H), np.linspace(0, 1, 21)),
                    "log_aspect": (np.log(w / h), np.linspace(math.log(3 / 4) - 0.05, math.log(4 / 3) + 0.05, 21)),
                    "x_offset": (off, np.linspace(0, 1, 11))}

        def chi2(a, b):  # two samples of equal size: sum (a-b)^2 / (a+b), df = bins - 1
            a, b = np.asarray(a, float), np.asarray(b, float)
            keep = a + b > 0
            return float(((a[keep] - b[keep]) ** 2 / (a[keep] + b[keep])).sum()), int(keep.sum()) - 1

        def critical(df, z=3.090):  # p = 0.001, Wilson-Hilferty
            return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3

        out = []
        for c in cases:
            W, H = c["w"], c["h"]
            img = torch.empty(3, H, W)
            ref = np.array([RandomResizedCrop.get_params(img, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) for _ in range(n)])
            ty, tx, th, tw = ref.T  # get_params returns (top, left, height, width)
            theirs = features(tx, ty, tw, th, W, H)
            for name in ("ours", "wrong"):
                b = np.fromfile(c[name], dtype=np.int32).reshape(-1, 4)
                mine = features(b[:, 0], b[:, 1], b[:, 2], b[:, 3], W, H)
                for f, (vals, edges) in theirs.items():
                    s, df = chi2(np.histogram(mine[f][0], edges)[0], np.histogram(vals, edges)[0])
                    out.append({"size": f"{W}x{H}", "sample": name, "feature": f, "chi2": s, "df": df, "critical": critical(df)})
        print(json.dumps(out))
        """, ["\(root)/cases.json", String(n)])
        XCTAssertEqual(r.status, 0, r.stderr)
        struct Stat: Decodable { let size: String; let sample: String; let feature: String; let chi2: Double; let df: Int; let critical: Double }
        let stats = try JSONDecoder().decode([Stat].self, from: r.stdoutData)
        XCTAssertEqual(stats.count, 2 * 2 * 3)
        for s in stats where s.sample == "ours" {
            XCTAssertGreaterThan(s.df, 3, "\(s.size) \(s.feature): the histogram has bins")
            XCTAssertLessThan(s.chi2, s.critical, "\(s.size) \(s.feature): chi-square \(s.chi2) on \(s.df) df vs torchvision")
        }
        // Boxes from scale 0.2-1 must be told apart by their area (the offset and aspect
        // may well agree): the test has the power to fail.
        for s in stats where s.sample == "wrong" && s.feature == "area" {
            XCTAssertGreaterThan(s.chi2, s.critical, "\(s.size): a wrong scale range went unnoticed")
        }
        print("RandomResizedCrop vs torchvision:", stats.filter { $0.sample == "ours" }
            .map { "\($0.size) \($0.feature) chi2 \(String(format: "%.1f", $0.chi2))/\($0.df) df (critical \(String(format: "%.1f", $0.critical)))" }
            .joined(separator: "; "))
    }

    /// The magnitude -> parameter table of both presets against timm's level
    /// functions, at M = 0 ... 27. timm ported them from the TF reference
    /// (`_rotate_level_to_arg`, `_enhance_level_to_arg`, ...): the `timm` preset must
    /// equal timm with its defaults (level clamped at M = 10, translations relative
    /// at 0.45); the `reference` preset must equal the same functions with the TF
    /// code's settings (no clamp, translations of 100 pixels). timm clamps two ops
    /// that the TF code does not (Solarize at 256, SolarizeAdd at 128): there the
    /// reference preset must equal timm's value before the clamp.
    func testRandAugmentParametersMatchTimmAndTheTFFormulas() throws {
        let (w, h) = (224, 160)
        let magnitudes = stride(from: 0.0, through: 27.0, by: 1.5).map { $0 }
        // Our op names -> timm's op names (timm's RandAugment uses the relative translations).
        let names: [AugmentOp: (timm: String, reference: String)] = [
            .rotate: ("Rotate", "Rotate"), .posterize: ("Posterize", "Posterize"), .solarize: ("Solarize", "Solarize"),
            .solarizeAdd: ("SolarizeAdd", "SolarizeAdd"), .color: ("Color", "Color"), .contrast: ("Contrast", "Contrast"),
            .brightness: ("Brightness", "Brightness"), .sharpness: ("Sharpness", "Sharpness"),
            .shearX: ("ShearX", "ShearX"), .shearY: ("ShearY", "ShearY"),
            .translateX: ("TranslateXRel", "TranslateX"), .translateY: ("TranslateYRel", "TranslateY"),
        ]
        var rows: [[String: Any]] = []
        for preset in RandAugment.Preset.allCases {
            let ra = RandAugment(layers: 2, magnitude: 9, preset: preset)
            for (op, name) in names {
                for m in magnitudes {
                    var p = ra.parameter(op, magnitude: m, width: w, height: h, negate: false)
                    // timm returns translations relative to the image; ours are pixels.
                    if preset == .timm, op == .translateX { p /= Double(w) }
                    if preset == .timm, op == .translateY { p /= Double(h) }
                    rows.append(["preset": preset.rawValue, "op": op.rawValue, "timm_name": preset == .timm ? name.timm : name.reference,
                                 "m": m, "ours": p])
                }
            }
        }
        XCTAssertEqual(rows.count, 2 * names.count * magnitudes.count)
        try JSONSerialization.data(withJSONObject: rows).write(to: URL(fileURLWithPath: "\(root)/rows.json"))
        let r = try Processes.torchScript("""
        import json, sys
        from timm.data import auto_augment as aa
        rows = json.load(open(sys.argv[1]))
        out = []
        for row in rows:
            if row["preset"] == "timm":
                hp = dict(aa._HPARAMS_DEFAULT)   # timm's defaults: translate_pct 0.45
                m = max(0.0, min(row["m"], 10.0))  # AugmentOp clamps M to magnitude_max = 10
            else:
                hp = dict(aa._HPARAMS_DEFAULT, translate_const=100)  # the TF code's 100 pixels
                m = row["m"]                       # the TF code does not clamp
            args = aa.LEVEL_TO_ARG[row["timm_name"]](m, hp)
            v = abs(float(args[0])) if args else 0.0   # signed ops come back randomly negated
            out.append(dict(row, timm=v))
        print(json.dumps(out))
        """, ["\(root)/rows.json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        struct Row: Decodable { let preset: String; let op: String; let m: Double; let ours: Double; let timm: Double }
        let results = try JSONDecoder().decode([Row].self, from: r.stdoutData)
        XCTAssertEqual(results.count, rows.count)
        var clamped = 0
        for x in results {
            if x.preset == "reference", x.op == "solarize", x.ours > 256 {
                XCTAssertEqual(x.timm, 256, "timm clamps Solarize at 256 (both a no-op)"); clamped += 1; continue
            }
            if x.preset == "reference", x.op == "solarize_add", x.ours > 128 {
                XCTAssertEqual(x.timm, 128, "timm clamps SolarizeAdd at 128; the TF code does not"); clamped += 1; continue
            }
            XCTAssertEqual(x.ours, x.timm, accuracy: 1e-9, "\(x.preset) \(x.op) at M=\(x.m)")
        }
        XCTAssertGreaterThan(clamped, 0, "M up to 27 reaches the ops timm clamps")
    }
}
