import XCTest
import ImageCodec
import TestSupport
import Digest
import Pixels

final class CodecTests: XCTestCase {
    func testPNGRoundTripIsExact() throws {
        for channels in [1, 3] {
            let img = Fixtures.image(width: 37, height: 23, channels: channels)
            let decoded = try Codec.decode(try Codec.encodePNG(img))
            XCTAssertEqual(decoded, img)
        }
    }

    func testJPEGRoundTripIsClose() throws {
        for (channels, progressive) in [(3, false), (3, true), (1, false), (1, true)] {
            let img = Fixtures.image(width: 64, height: 48, channels: channels)
            let bytes = try Codec.encodeJPEG(img, quality: 95, progressive: progressive)
            let header = try bytes.withUnsafeBytes { try Codec.header($0) }
            XCTAssertEqual(header.progressive, progressive)
            XCTAssertEqual(header.channels, channels)
            let decoded = try Codec.decode(bytes)
            XCTAssertEqual(decoded.channels, channels, "gray stays gray")
            XCTAssertLessThan(Fixtures.meanAbsoluteDifference(decoded, img), 4.0)
        }
    }

    func testCMYKDecodesToRGB() throws {
        // Pillow's rule: R = (255 - C)(255 - K) / 255. Pure cyan ink, no black: R = 0, G = B = 255.
        var cmyk = Image(width: 16, height: 16, channels: 4)
        for i in 0..<(16 * 16) { cmyk.pixels[i * 4] = 255 }
        let bytes = try Codec.encodeJPEG(cmyk, quality: 100)
        let rgb = try Codec.decode(bytes)
        XCTAssertEqual(rgb.channels, 3)
        // libjpeg writes an Adobe marker for CMYK, so values are read as inverted (Photoshop convention).
        let inverted = Image(width: 16, height: 16, channels: 3, pixels: [UInt8](repeating: 0, count: 16 * 16 * 3))
        let plain = Image(width: 16, height: 16, channels: 3,
                          pixels: (0..<(16 * 16)).flatMap { _ in [UInt8(0), 255, 255] })
        let d = min(Fixtures.meanAbsoluteDifference(rgb, inverted), Fixtures.meanAbsoluteDifference(rgb, plain))
        XCTAssertLessThan(d, 3.0)
    }

    func testScaledDecodeSizes() throws {
        let bytes = Fixtures.jpeg(width: 101, height: 67)
        for denom in [1, 2, 4, 8] {
            let img = try Codec.decode(bytes, options: DecodeOptions(scaleDenominator: denom))
            XCTAssertEqual(img.width, (101 + denom - 1) / denom)
            XCTAssertEqual(img.height, (67 + denom - 1) / denom)
        }
        XCTAssertThrowsError(try Codec.decode(bytes, options: DecodeOptions(scaleDenominator: 3)))
    }

    func testRegionDecodeMatchesFullDecodeCrop() throws {
        let bytes = Fixtures.jpeg(width: 160, height: 120, quality: 85)
        let full = try Codec.decode(bytes)
        for rect in [PixelRect(x: 0, y: 0, width: 160, height: 120), PixelRect(x: 17, y: 33, width: 50, height: 41),
                     PixelRect(x: 109, y: 70, width: 51, height: 50)] {
            let region = try Codec.decode(bytes, options: DecodeOptions(region: rect))
            XCTAssertEqual(region.width, rect.width)
            XCTAssertEqual(region.height, rect.height)
            var crop = Image(width: rect.width, height: rect.height, channels: 3)
            for y in 0..<rect.height { for x in 0..<rect.width { for c in 0..<3 { crop[x, y, c] = full[rect.x + x, rect.y + y, c] } } }
            // Bound documented in README: region decode differs from full decode + crop by
            // less than 1 grey level on average (fancy upsampling at the region's edges).
            XCTAssertLessThan(Fixtures.meanAbsoluteDifference(region, crop), 1.0, "\(rect)")
        }
        XCTAssertThrowsError(try Codec.decode(bytes, options: DecodeOptions(region: PixelRect(x: 150, y: 0, width: 20, height: 5))))
    }

    func testBadInputsAreErrorsWithReasons() throws {
        let jpeg = Fixtures.jpeg(width: 64, height: 64)
        let png = Fixtures.png(width: 64, height: 64)
        let cases: [(String, [UInt8], String)] = [
            ("empty", [], "empty"),
            ("truncated jpeg", Array(jpeg.prefix(jpeg.count / 2)), "Premature end"),
            ("truncated png", Array(png.prefix(png.count / 2)), "truncated"),
            ("text", Array("hello, I am not a PNG\n".utf8), "not a JPEG, PNG or WebP"),
            ("gif", Array("GIF89a".utf8) + [UInt8](repeating: 0, count: 20), "GIF is not supported"),
            ("damaged webp", Array("RIFF\0\0\0\0WEBPVP8 ".utf8), "WebP header: "),
            ("tiff", Array("II*\0".utf8) + [UInt8](repeating: 0, count: 20), "TIFF is not supported (JPEG, PNG and WebP only)"),
            ("jpeg header only", Array(jpeg.prefix(2)) + [0xFF], "JPEG"),
        ]
        for (name, bytes, expected) in cases {
            XCTAssertThrowsError(try Codec.decode(bytes), name) { error in
                let message = "\(error)"
                XCTAssertTrue(message.contains(expected), "\(name): '\(message)' lacks '\(expected)'")
                XCTAssertFalse(message.contains("\n"), "one line")
            }
        }
        XCTAssertThrowsError(try Codec.decode(Array("plain text".utf8))) { error in
            XCTAssertEqual((error as? CodecError)?.code, .notAnImage)
        }
        // Corrupt entropy data in the middle of the scan.
        var corrupt = jpeg
        for i in stride(from: corrupt.count / 2, to: corrupt.count / 2 + 40, by: 3) { corrupt[i] = 0xFF }
        XCTAssertThrowsError(try Codec.decode(corrupt))
    }

    func testPixelLimitIsCheckedFromTheHeader() throws {
        let bytes = Fixtures.jpeg(width: 200, height: 100)
        XCTAssertThrowsError(try Codec.decode(bytes, options: DecodeOptions(maxPixels: 10_000))) { error in
            XCTAssertEqual((error as? CodecError)?.code, .tooLarge)
            XCTAssertTrue("\(error)".contains("200x100"))
        }
        XCTAssertNoThrow(try Codec.decode(bytes, options: DecodeOptions(maxPixels: 20_000)))
    }

    func testDecodeIntoReusesTheBuffer() throws {
        let bytes = Fixtures.jpeg(width: 64, height: 64)
        var buffer = [UInt8](repeating: 0, count: 64 * 64 * 3 * 2)
        buffer.removeAll(keepingCapacity: true)
        let capacity = buffer.capacity
        try bytes.withUnsafeBytes { raw in _ = try Codec.decode(raw, options: .init(), into: &buffer) }
        XCTAssertEqual(buffer.count, 64 * 64 * 3)
        XCTAssertEqual(buffer.capacity, capacity)
    }

    func testSHA256KnownVectors() {
        XCTAssertEqual(SHA256.hash([]).hexString, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hash(Array("abc".utf8)).hexString, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let long = [UInt8](repeating: 0x61, count: 1_000_000)
        XCTAssertEqual(SHA256.hash(long).hexString, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    func testResizeIdentityAndDownscale() throws {
        let img = Fixtures.image(width: 40, height: 30)
        let r = Resampler()
        XCTAssertEqual(try r.resize(img, width: 40, height: 30), img)
        let small = try r.resize(img, width: 10, height: 8, filter: .lanczos)
        XCTAssertEqual(small.width, 10)
        XCTAssertEqual(small.pixels.count, 10 * 8 * 3)
        // A flat image stays flat under any filter.
        let flat = Image(width: 33, height: 17, channels: 1, fill: 77)
        for f in ResampleFilter.allCases {
            XCTAssertTrue(try r.resize(flat, width: 12, height: 40, filter: f).pixels.allSatisfy { $0 == 77 })
        }
    }
}

/// Replays the fuzz corpus (tools/fuzz/run.sh keeps the inputs that reached new code):
/// every input either decodes or is refused with an error; none may crash.
final class FuzzCorpusReplayTests: XCTestCase {
    func testEveryKeptFuzzInputDecodesOrIsRefused() throws {
        let dir = Processes.repositoryRoot + "/Tests/Fixtures/fuzz/decode"
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        XCTAssertGreaterThan(files.count, 20, "the corpus is part of the repository")
        var decoded = 0, refused = 0
        let planeBuffer = PlaneBuffer()
        for name in files {
            let bytes = [UInt8](try XCTUnwrap(FileManager.default.contents(atPath: dir + "/" + name)))
            for scale in [1, 2, 8] {
                for region in [nil, PixelRect(x: 1, y: 1, width: 2, height: 2)] as [PixelRect?] {
                    do {
                        let img = try Codec.decode(bytes, options: DecodeOptions(scaleDenominator: scale, region: region, maxPixels: 1 << 22))
                        XCTAssertTrue(img.channels == 1 || img.channels == 3, "\(name): \(img.channels) channels")
                        XCTAssertEqual(img.pixels.count, img.width * img.height * img.channels, "\(name): pixels match the size")
                        if let region { XCTAssertLessThanOrEqual(img.width, region.width + DecodeOptions.wideningSlack, name) }
                        decoded += 1
                    } catch {
                        refused += 1
                        XCTAssertFalse(error.message.isEmpty, "\(name): a refusal says why")
                    }
                    do {
                        _ = try Codec.decodePlanes(bytes, options: DecodeOptions(scaleDenominator: scale, region: region, maxPixels: 1 << 22),
                                                   into: planeBuffer)
                    } catch {
                        XCTAssertFalse(error.message.isEmpty, "\(name): a refusal says why")
                    }
                }
            }
        }
        // JPEGs: the restart-marker rewrite either refuses with a reason or yields a file
        // whose crops (restart slices) decode like the rewrite's own region decode.
        var rewritten = 0, planar = 0
        for name in files {
            let bytes = [UInt8](try XCTUnwrap(FileManager.default.contents(atPath: dir + "/" + name)))
            guard case .supported(.jpeg) = bytes.withUnsafeBytes({ Codec.sniff($0) }) else { continue }
            let restarted: [UInt8]?
            do { restarted = try Codec.addingRestartMarkers(bytes) } catch {
                XCTAssertFalse(error.message.isEmpty, "\(name): a refusal says why")
                continue
            }
            guard let restarted, let whole = try? Codec.decode(restarted, options: DecodeOptions(maxPixels: 1 << 22)) else { continue }
            rewritten += 1
            let original = try Codec.decode(bytes, options: DecodeOptions(maxPixels: 1 << 22))
            XCTAssertEqual([whole.width, whole.height, whole.channels], [original.width, original.height, original.channels], name)
            let differing = zip(whole.pixels, original.pixels).filter { $0 != $1 }.count
            XCTAssertEqual(differing, 0, "\(name): the rewrite is lossless")
            let box = PixelRect(x: whole.width / 2, y: whole.height / 3, width: max(1, whole.width / 4), height: max(1, whole.height / 3))
            let crop = try Codec.decode(restarted, options: DecodeOptions(region: box, maxPixels: 1 << 22))
            XCTAssertEqual([crop.width, crop.height], [box.width, box.height], name)
            // The YCbCr path's planes of the same crop: luma covers the crop, chroma covers luma.
            if let planes = try Codec.decodePlanes(restarted, options: DecodeOptions(region: box, maxPixels: 1 << 22), into: planeBuffer) {
                let (y, cb) = (planes.planes.0, planes.planes.1)
                XCTAssertLessThanOrEqual(planes.originX, box.x, name)
                XCTAssertGreaterThanOrEqual(planes.originX + y.width, box.x + box.width, name)
                XCTAssertGreaterThanOrEqual(planes.originY + y.height, box.y + box.height, name)
                XCTAssertEqual((y.width + cb.fx - 1) / cb.fx, cb.width, name)
                XCTAssertLessThanOrEqual(y.width, y.stride, name)
                planar += 1
            }
        }
        // The corpus keeps inputs of both kinds: a run where everything decodes, or
        // nothing does, means the decoder (or the corpus) changed.
        XCTAssertGreaterThan(decoded, 0, "some kept inputs decode")
        XCTAssertGreaterThan(refused, 0, "some kept inputs are refused")
        XCTAssertGreaterThan(planar, 0, "some rewrites take the YCbCr path")
        print("fuzz corpus: \(files.count) inputs, \(decoded) decodes, \(refused) refusals, \(rewritten) restart rewrites, \(planar) planar crops")
    }
}
