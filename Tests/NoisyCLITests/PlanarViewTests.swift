import XCTest
import Augment
import ImageCodec
import KeyedRandom
import Pixels
import TestSupport

/// The YCbCr path of the fast view: a restart-marked JPEG's crop is decoded to its raw
/// Y, Cb and Cr planes and resized plane by plane, then converted. Checked against
/// Pillow (Debian's python3-pil over the same libjpeg-turbo): the conversion to the
/// byte, the one-channel resize in PillowParityTests, and whole views within the
/// documented bound of Pillow's decode + crop + resize (README, "Fast decode").
final class PlanarViewTests: XCTestCase {
    var root = ""
    override func setUp() { root = Fixtures.temporaryDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    /// Pillow writes the flavours; noisy adds restart markers (losslessly, as ingest does).
    private func flavours() throws -> [(String, [UInt8])] {
        Fixtures.write(Fixtures.png(width: 301, height: 203, seed: 41), to: "\(root)/a.png")
        Fixtures.write(Fixtures.png(width: 480, height: 360, seed: 42), to: "\(root)/b.png")
        let made = try Processes.python("""
        import sys
        from PIL import Image
        d = sys.argv[1]
        a = Image.open(d + "/a.png").convert("RGB")
        b = Image.open(d + "/b.png").convert("RGB")
        b.save(d + "/420.jpg", quality=85)
        a.save(d + "/420-odd.jpg", quality=90)
        a.save(d + "/444.jpg", quality=90, subsampling=0)
        b.save(d + "/422.jpg", quality=80, subsampling=1)
        a.save(d + "/progressive.jpg", quality=85, progressive=True)
        a.convert("L").save(d + "/gray.jpg", quality=90)
        """, [root])
        XCTAssertEqual(made.status, 0, made.stderr)
        var files: [(String, [UInt8])] = []
        for name in ["420.jpg", "420-odd.jpg", "444.jpg", "422.jpg", "progressive.jpg", "gray.jpg"] {
            files.append((name, [UInt8](try XCTUnwrap(FileManager.default.contents(atPath: "\(root)/\(name)")))))
        }
        let photo = "/usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg"
        let data = try XCTUnwrap(FileManager.default.contents(atPath: photo), "python-matplotlib-data is missing: run tools/bootstrap.sh")
        files.append(("grace_hopper.jpg", [UInt8](data)))
        return files
    }

    /// Planes of restart-marked files resized to their own size (no resize) and
    /// converted equal libjpeg's RGB decode in Pillow of the original, byte for byte: 4:4:4 at full scale, and 4:2:0 at scale 1/2,
    /// where libjpeg-turbo decodes chroma at luma's size (a scaled IDCT) and so
    /// upsamples nothing. Which plane is subsampled where is checked too.
    func testPlanesConvertToRGBLikeLibjpeg() throws {
        let files = Dictionary(uniqueKeysWithValues: try flavours())
        let r = try Processes.python("""
        import sys
        from PIL import Image
        d = sys.argv[1]
        im = Image.open(d + "/444.jpg"); im.load()
        open(d + "/444.raw", "wb").write(im.convert("RGB").tobytes())
        im = Image.open(d + "/420.jpg")
        im.draft("RGB", ((im.width + 1) // 2, (im.height + 1) // 2))
        print(im.size[0], im.size[1])
        open(d + "/420-half.raw", "wb").write(im.convert("RGB").tobytes())
        """, [root])
        XCTAssertEqual(r.status, 0, r.stderr)
        let resampler = Resampler(), buffer = PlaneBuffer()
        for (name, scale, raw) in [("444.jpg", 1, "444.raw"), ("420.jpg", 2, "420-half.raw")] {
            let bytes = try XCTUnwrap(try Codec.addingRestartMarkers(try XCTUnwrap(files[name])))
            let header = try bytes.withUnsafeBytes { try Codec.header($0) }
            let (w, h) = ((header.width + scale - 1) / scale, (header.height + scale - 1) / scale)
            let planes = try XCTUnwrap(try bytes.withUnsafeBytes {
                try Codec.decodePlanes($0, options: DecodeOptions(scaleDenominator: scale), into: buffer)
            }, name)
            XCTAssertEqual([planes.planes.1.fx, planes.planes.1.fy, planes.planes.0.fx], [1, 1, 1], name)
            XCTAssertEqual([planes.planes.0.width, planes.planes.0.height], [w, h], name)
            var out = [UInt8](repeating: 0, count: w * h * 3)
            try out.withUnsafeMutableBytes { o in
                try resampler.resizeYCbCr(planes.planes, box: (0, 0, Float(w), Float(h)), cut: false,
                                          into: PixelOutput(base: o.baseAddress!, layout: .uint8HWC), width: w, height: h)
            }
            let theirs = [UInt8](try XCTUnwrap(FileManager.default.contents(atPath: "\(root)/\(raw)")))
            XCTAssertEqual(theirs.count, out.count, name)
            XCTAssertEqual(zip(out, theirs).filter { $0 != $1 }.count, 0, "\(name) at 1/\(scale): planes converted differ from Pillow's decode")
        }
        // 4:2:0 at full scale hands out chroma at half resolution each way; 4:2:2 at half width.
        for (name, fx, fy) in [("420.jpg", 2, 2), ("422.jpg", 2, 1)] {
            let bytes = try XCTUnwrap(try Codec.addingRestartMarkers(try XCTUnwrap(files[name])))
            let planes = try XCTUnwrap(try bytes.withUnsafeBytes { try Codec.decodePlanes($0, options: DecodeOptions(), into: buffer) })
            XCTAssertEqual([planes.planes.1.fx, planes.planes.1.fy, planes.planes.2.fx, planes.planes.2.fy], [fx, fy, fx, fy], name)
            XCTAssertEqual(planes.planes.1.width, (planes.planes.0.width + fx - 1) / fx, name)
        }
        // Gray, and streams without restart markers, crop or not, take the RGB decode.
        let gray = try XCTUnwrap(try Codec.addingRestartMarkers(try XCTUnwrap(files["gray.jpg"])))
        XCTAssertNil(try gray.withUnsafeBytes { try Codec.decodePlanes($0, options: DecodeOptions(), into: buffer) })
        let plain = try XCTUnwrap(files["420.jpg"])
        XCTAssertNil(try plain.withUnsafeBytes { try Codec.decodePlanes($0, options: DecodeOptions(), into: buffer) })
        let crop = DecodeOptions(scaleDenominator: 1, region: PixelRect(x: 100, y: 80, width: 120, height: 90))
        XCTAssertNil(try plain.withUnsafeBytes { try Codec.decodePlanes($0, options: crop, into: buffer) })
        let sliced = try XCTUnwrap(try Codec.addingRestartMarkers(plain))
        let planes = try XCTUnwrap(try sliced.withUnsafeBytes { try Codec.decodePlanes($0, options: crop, into: buffer) })
        // Only the restart segments round the crop and its 2 pixels of margin: columns
        // from 96 (segments of one 16-pixel MCU), rows from 64.
        XCTAssertEqual([planes.originX, planes.originY], [96, 64])
        XCTAssertLessThanOrEqual(planes.planes.0.width, 160)
    }

    /// Train and teacher views of restart-marked files stay within the documented
    /// bound of Pillow's decode + crop + resize (the exact view, which equals Pillow
    /// byte for byte: PillowParityTests, BatchLoaderTests), while the same files
    /// without restart markers, and gray ones, still give the exact view.
    func testYCbCrViewsStayWithinTheBound() throws {
        let files = try flavours()
        let fast = ViewRenderer(channels: 3, layout: .uint8NHWC)
        let exact = ViewRenderer(channels: 3, layout: .uint8NHWC)
        var planar = 0, total = 0.0, worst = 0.0, largest = 0
        for (name, original) in files {
            let rewritten = try XCTUnwrap(try Codec.addingRestartMarkers(original), name)
            for s in 0..<24 as Range<UInt64> {
                let key = SampleKey(seed: 11, epoch: 0, sample: s)
                let size = [64, 160, 224][Int(s % 3)]
                var slow = TrainView(size: size)
                slow.fastDecode = false
                var view: View = .train(TrainView(size: size)), exactView: View = .train(slow)
                if s % 4 == 3 {
                    var t = TeacherView(size: size)
                    view = .teacher(t)
                    t.fastDecode = false
                    exactView = .teacher(t)
                }
                let reference = try original.withUnsafeBytes { try exact.renderImage($0, view: exactView, key: key) }
                // The file as it was: the RGB decode, as before.
                let plainView = try original.withUnsafeBytes { try fast.renderImage($0, view: view, key: key) }
                let a = try rewritten.withUnsafeBytes { try fast.renderImage($0, view: view, key: key) }
                XCTAssertEqual(a.pixels.count, reference.pixels.count)
                let mad = Fixtures.meanAbsoluteDifference(a, reference)
                if name == "gray.jpg" {
                    // Gray takes the RGB decode: restart slices change nothing there.
                    XCTAssertEqual(zip(a.pixels, plainView.pixels).filter { $0 != $1 }.count, 0, "\(name) sample \(s)")
                    continue
                }
                if mad == 0 { continue }  // a DCT-scaled view may still match; those count as non-planar
                planar += 1
                total += mad
                worst = max(worst, mad)
                largest = max(largest, zip(a.pixels, reference.pixels).map { abs(Int($0) - Int($1)) }.max() ?? 0)
                if Fixtures.meanAbsoluteDifference(plainView, reference) == 0 {
                    XCTAssertNotEqual(plainView.pixels, a.pixels, "\(name) sample \(s)")
                }
            }
        }
        XCTAssertGreaterThan(planar, 100, "the YCbCr path must be exercised")
        let mean = total / Double(max(1, planar))
        // The documented bound (README, "Fast decode").
        XCTAssertLessThan(mean, 1.0, "mean absolute difference of YCbCr views")
        XCTAssertLessThan(worst, 3.0, "worst mean absolute difference of a YCbCr view")
        print(String(format: "YCbCr views: %d differing from the exact view, mean MAD %.3f, worst %.3f, largest pixel difference %d",
                     planar, mean, worst, largest))
    }

    /// A restart-marked file damaged inside a segment the crop needs is refused with
    /// a reason; damage in a segment it does not need changes nothing; no crash either way.
    func testDamagedSegmentsAreRefusedNotCrashed() throws {
        let original = try XCTUnwrap(try flavours().first { $0.0 == "420.jpg" }?.1)
        let rewritten = try XCTUnwrap(try Codec.addingRestartMarkers(original))
        let buffer = PlaneBuffer()
        // 480 pixels = 30 MCUs of 16: a restart after every MCU, 30 segments per MCU row.
        let segments = RestartSliceTests.segments(rewritten)
        XCTAssertEqual(segments.count, 30 * 23)
        var damaged = rewritten
        let first = segments[0]  // the top left corner
        for i in stride(from: first.lowerBound, to: first.upperBound - 1, by: 2) { damaged[i] = 0xFF; damaged[i + 1] = 0x00 }
        let top = DecodeOptions(scaleDenominator: 1, region: PixelRect(x: 0, y: 0, width: 40, height: 20))
        XCTAssertThrowsError(try damaged.withUnsafeBytes { try Codec.decodePlanes($0, options: top, into: buffer) }) { error in
            let message = (error as? CodecError)?.message ?? ""
            XCTAssertTrue(message.hasPrefix("JPEG"), message)
        }
        // The bottom right corner never reads the first row's segments.
        let corner = DecodeOptions(scaleDenominator: 1, region: PixelRect(x: 400, y: 300, width: 60, height: 50))
        let a = try XCTUnwrap(try damaged.withUnsafeBytes { try Codec.decodePlanes($0, options: corner, into: buffer) })
        let firstA = Array(UnsafeBufferPointer(start: a.planes.0.base, count: a.planes.0.stride * a.planes.0.height))
        let b = try XCTUnwrap(try rewritten.withUnsafeBytes { try Codec.decodePlanes($0, options: corner, into: buffer) })
        let firstB = Array(UnsafeBufferPointer(start: b.planes.0.base, count: b.planes.0.stride * b.planes.0.height))
        XCTAssertEqual(firstA, firstB)
    }
}
