import XCTest
import ImageCodec
import TestSupport
import Pixels

/// Decoded pixels and resampling must equal Pillow's (same libjpeg-turbo defaults,
/// same resampling coefficients). Pillow writes the file flavours our encoder does
/// not (CMYK, palette, alpha, 16-bit), then writes its own decode for comparison.
final class PillowParityTests: XCTestCase {
    var root = ""
    override func setUp() { root = Fixtures.temporaryDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    struct Case: Decodable { let name: String; let width: Int; let height: Int; let channels: Int; let compare: String }

    func testDecodeEqualsPillow() throws {
        // A natural-looking RGB source written by our encoder; Pillow derives every flavour from it.
        Fixtures.write(Fixtures.png(width: 123, height: 77, seed: 11), to: "\(root)/source.png")
        let script = """
        import json, sys, numpy as np
        from PIL import Image
        d = sys.argv[1]
        src = Image.open(d + "/source.png").convert("RGB")
        cases = []
        def emit(name, img_path, compare="exact"):
            im = Image.open(img_path)
            im.load()
            mode = "L" if im.mode in ("1", "L", "LA", "I;16", "I") else "RGB"
            if compare == "exact":
                out = im.convert(mode)
                open(d + "/" + name + ".raw", "wb").write(out.tobytes())
            cases.append({"name": name, "width": im.size[0], "height": im.size[1],
                          "channels": 1 if mode == "L" else 3, "compare": compare})
        src.save(d + "/baseline.jpg", quality=90); emit("baseline.jpg", d + "/baseline.jpg")
        src.save(d + "/q75-444.jpg", quality=75, subsampling=0); emit("q75-444.jpg", d + "/q75-444.jpg")
        src.save(d + "/progressive.jpg", quality=85, progressive=True); emit("progressive.jpg", d + "/progressive.jpg")
        src.convert("L").save(d + "/gray.jpg", quality=90); emit("gray.jpg", d + "/gray.jpg")
        src.convert("CMYK").save(d + "/cmyk.jpg", quality=95); emit("cmyk.jpg", d + "/cmyk.jpg")
        src.convert("L").save(d + "/gray.png"); emit("gray.png", d + "/gray.png")
        src.convert("LA").save(d + "/gray-alpha.png"); emit("gray-alpha.png", d + "/gray-alpha.png")
        src.save(d + "/rgb.png"); emit("rgb.png", d + "/rgb.png")
        rgba = src.convert("RGBA"); rgba.putalpha(128); rgba.save(d + "/rgba.png"); emit("rgba.png", d + "/rgba.png")
        src.convert("P", palette=Image.ADAPTIVE, colors=64).save(d + "/palette.png"); emit("palette.png", d + "/palette.png")
        src.convert("1").save(d + "/bilevel.png"); emit("bilevel.png", d + "/bilevel.png")
        # A palette with a transparency chunk (tRNS), once with one transparent entry and
        # once with a full alpha table: convert("RGB") drops the transparency.
        pal = src.convert("P", palette=Image.ADAPTIVE, colors=32)
        pal.save(d + "/palette-trns.png", transparency=3); emit("palette-trns.png", d + "/palette-trns.png")
        pal.save(d + "/palette-alpha.png", transparency=bytes(range(0, 256, 8))); emit("palette-alpha.png", d + "/palette-alpha.png")
        # 16-bit gray, compared with Pillow's own I;16 -> L (it clips): once spread over
        # the whole 16-bit range, once with every value in 0-255 (a high byte would be black).
        g16 = (np.asarray(src.convert("L"), dtype=np.uint16) * 257 + 3).astype(np.uint16)
        Image.fromarray(g16).save(d + "/gray16.png"); emit("gray16.png", d + "/gray16.png")
        low = np.asarray(src.convert("L"), dtype=np.uint16)
        Image.fromarray(low).save(d + "/gray16-low.png"); emit("gray16-low.png", d + "/gray16-low.png")
        # CMYK without an Adobe marker (APP14 cut out by hand): Pillow still reads it as inverted CMYK.
        b = open(d + "/cmyk.jpg", "rb").read(); i = b.index(b"\\xff\\xee"); n = int.from_bytes(b[i + 2:i + 4], "big")
        open(d + "/cmyk-no-adobe.jpg", "wb").write(b[:i] + b[i + 2 + n:]); emit("cmyk-no-adobe.jpg", d + "/cmyk-no-adobe.jpg")
        # Junk between markers (broken metadata): libjpeg warns of extraneous bytes, the pixels are whole.
        b = open(d + "/baseline.jpg", "rb").read(); i = b.index(b"\\xff\\xdb")
        open(d + "/junk-between-markers.jpg", "wb").write(b[:i] + b"\\x00\\x11\\x22\\x33\\x44" + b[i:])
        emit("junk-between-markers.jpg", d + "/junk-between-markers.jpg")
        # WebP: lossy, lossless, with alpha (lossy and lossless), and an animation (its first frame).
        src.save(d + "/lossy.webp", quality=80); emit("lossy.webp", d + "/lossy.webp")
        src.save(d + "/lossless.webp", lossless=True); emit("lossless.webp", d + "/lossless.webp")
        rgba.save(d + "/alpha-lossy.webp", quality=70); emit("alpha-lossy.webp", d + "/alpha-lossy.webp")
        rgba.save(d + "/alpha-lossless.webp", lossless=True); emit("alpha-lossless.webp", d + "/alpha-lossless.webp")
        frames = [src, src.transpose(Image.FLIP_LEFT_RIGHT), src.convert("L").convert("RGB")]
        frames[0].save(d + "/animated.webp", save_all=True, append_images=frames[1:], duration=100, lossless=True)
        emit("animated.webp", d + "/animated.webp")
        print(json.dumps(cases))
        """
        let r = try Processes.python(script, [root])
        XCTAssertEqual(r.status, 0, r.stderr)
        let cases = try JSONDecoder().decode([Case].self, from: r.stdoutData)
        XCTAssertEqual(cases.count, 22)
        for c in cases {
            let bytes = try XCTUnwrap(FileManager.default.contents(atPath: "\(root)/\(c.name)"))
            let ours = try Codec.decode([UInt8](bytes))
            XCTAssertEqual([ours.width, ours.height, ours.channels], [c.width, c.height, c.channels], c.name)
            let theirs = try XCTUnwrap(FileManager.default.contents(atPath: "\(root)/\(c.name).raw"))
            XCTAssertEqual(ours.pixels.count, theirs.count, c.name)
            let mismatches = zip(ours.pixels, theirs).filter { $0 != $1 }.count
            XCTAssertEqual(mismatches, 0, "\(c.name): \(mismatches) of \(theirs.count) bytes differ from Pillow")
        }
    }

    func testResampleEqualsPillow() throws {
        let src = Fixtures.image(width: 97, height: 61, seed: 5)
        Fixtures.write(try Codec.encodePNG(src), to: "\(root)/src.png")
        let jobs: [(String, Int, Int, [Float]?)] = [
            ("bilinear", 224, 224, nil), ("bilinear", 40, 30, nil), ("bicubic", 50, 20, nil), ("lanczos", 33, 64, nil),
            ("bilinear", 32, 32, [10.5, 3.25, 70.0, 50.75]), ("lanczos", 128, 96, [0, 0, 97, 61]), ("bicubic", 97, 30, nil),
            // Many taps per pixel, odd and even counts (the split 16-bit weights of the AVX2 pass).
            ("lanczos", 12, 9, nil), ("bicubic", 23, 61, nil), ("bilinear", 31, 17, [1.5, 2.5, 96.0, 60.0]),
            // Bilinear downscales of up to 3.5x (8 taps or fewer: the one-channel AVX2 pass), to the last column.
            ("bilinear", 57, 40, [0.0, 0.0, 97.0, 61.0]), ("bilinear", 29, 20, [3.25, 1.0, 97.0, 61.0]),
            ("bicubic", 61, 45, [20.5, 10.0, 97.0, 58.5]),
        ]
        let spec = jobs.map { j in ["filter": j.0, "w": j.1, "h": j.2, "box": j.3 as Any? ?? NSNull()] as [String: Any] }
        let specData = try JSONSerialization.data(withJSONObject: spec)
        try specData.write(to: URL(fileURLWithPath: "\(root)/jobs.json"))
        let script = """
        import json, sys
        from PIL import Image
        d = sys.argv[1]
        im = Image.open(d + "/src.png").convert("RGB")
        F = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}
        for i, j in enumerate(json.load(open(d + "/jobs.json"))):
            box = tuple(j["box"]) if j["box"] else None
            out = im.resize((j["w"], j["h"]), F[j["filter"]], box=box)
            open(f"{d}/r{i}.raw", "wb").write(out.tobytes())
            # One channel (mode L): the pass that resizes a JPEG's Y, Cb and Cr planes.
            gray = im.convert("L")
            open(d + "/gray.raw", "wb").write(gray.tobytes())
            open(f"{d}/g{i}.raw", "wb").write(gray.resize((j["w"], j["h"]), F[j["filter"]], box=box).tobytes())
        """
        let r = try Processes.python(script, [root])
        XCTAssertEqual(r.status, 0, r.stderr)
        let resampler = Resampler()
        for (i, j) in jobs.enumerated() {
            let box = j.3.map { ($0[0], $0[1], $0[2], $0[3]) }
            let ours = try resampler.resize(src, width: j.1, height: j.2, box: box, filter: ResampleFilter(rawValue: j.0)!)
            let theirs = [UInt8](try XCTUnwrap(FileManager.default.contents(atPath: "\(root)/r\(i).raw")))
            XCTAssertEqual(ours.pixels, theirs, "job \(i) \(j.0) \(j.1)x\(j.2) box \(String(describing: j.3))")
        }
        let grayPixels = [UInt8](try XCTUnwrap(FileManager.default.contents(atPath: "\(root)/gray.raw")))
        let gray = Image(width: src.width, height: src.height, channels: 1, pixels: grayPixels)
        for (i, j) in jobs.enumerated() {
            let box = j.3.map { ($0[0], $0[1], $0[2], $0[3]) }
            let ours = try resampler.resize(gray, width: j.1, height: j.2, box: box, filter: ResampleFilter(rawValue: j.0)!)
            let theirs = [UInt8](try XCTUnwrap(FileManager.default.contents(atPath: "\(root)/g\(i).raw")))
            XCTAssertEqual(ours.pixels, theirs, "gray job \(i) \(j.0) \(j.1)x\(j.2) box \(String(describing: j.3))")
        }
    }
}
