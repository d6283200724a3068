import XCTest
import ImageCodec
import KeyedRandom
import TestSupport
import Pixels

/// `Codec.addingRestartMarkers` (ingest --restart-markers) and the decoder's restart
/// slices, against Pillow (Debian's python3-pil over the same libjpeg-turbo): the
/// rewritten file decodes to the original's pixels, and every crop of it, at every DCT
/// scale, equals the same crop of Pillow's decode of the original file.
final class RestartSliceTests: XCTestCase {
    var root = ""
    override func setUp() { root = Fixtures.temporaryDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    /// The flavours Pillow writes: MCU rows of odd and even length, 4:2:0, 4:2:2, 4:4:4, progressive, gray, and sizes that are no
    /// multiple of the MCU.
    static let flavours = """
    import sys
    from PIL import Image
    d = sys.argv[1]
    a = Image.open(d + "/a.png").convert("RGB")   # 301 x 203
    b = Image.open(d + "/b.png").convert("RGB")   # 320 x 240
    a.save(d + "/odd-420.jpg", quality=90)
    b.save(d + "/even-420.jpg", quality=85)
    a.save(d + "/odd-444.jpg", quality=90, subsampling=0)
    b.save(d + "/even-422.jpg", quality=80, subsampling=1)
    a.save(d + "/progressive.jpg", quality=85, progressive=True)
    a.convert("L").save(d + "/gray.jpg", quality=90)
    """
    static let names = ["odd-420.jpg", "even-420.jpg", "odd-444.jpg", "even-422.jpg", "progressive.jpg", "gray.jpg"]

    struct Crop: Codable { var scale: Int; var x: Int; var y: Int; var w: Int; var h: Int }

    func testRestartSlicesDecodeLikePillowAtEveryScale() throws {
        Fixtures.write(Fixtures.png(width: 301, height: 203, seed: 31), to: "\(root)/a.png")
        Fixtures.write(Fixtures.png(width: 320, height: 240, seed: 32), to: "\(root)/b.png")
        let made = try Processes.python(Self.flavours, [root])
        XCTAssertEqual(made.status, 0, made.stderr)
        var rng = SplitMix64(seed: 2026)
        var plan: [String: [Crop]] = [:]
        for name in Self.names {
            let original = try XCTUnwrap(FileManager.default.contents(atPath: "\(root)/\(name)"))
            let rewritten = try XCTUnwrap(try Codec.addingRestartMarkers([UInt8](original)), name)
            XCTAssertTrue(Self.markers(rewritten).contains(0xDD), "\(name): no DRI segment")
            XCTAssertFalse(Self.markers(rewritten).contains(0xC2), "\(name): still progressive")
            // Already sliceable: a second pass keeps it as it is.
            XCTAssertNil(try Codec.addingRestartMarkers(rewritten), name)
            Fixtures.write(rewritten, to: "\(root)/\(name).rst")
            let header = try rewritten.withUnsafeBytes { try Codec.header($0) }
            var crops: [Crop] = []
            for scale in [1, 2, 4, 8] {
                let sw = (header.width + scale - 1) / scale, sh = (header.height + scale - 1) / scale
                // Corners, a full row band, a full image, then random boxes.
                crops.append(Crop(scale: scale, x: 0, y: 0, w: min(sw, 20), h: min(sh, 9)))
                crops.append(Crop(scale: scale, x: sw - min(sw, 17), y: sh - min(sh, 5), w: min(sw, 17), h: min(sh, 5)))
                crops.append(Crop(scale: scale, x: 0, y: sh / 3, w: sw, h: max(1, sh / 4)))
                crops.append(Crop(scale: scale, x: 0, y: 0, w: sw, h: sh))
                for _ in 0..<10 {
                    let w = 1 + Int(rng.next() % UInt64(sw)), h = 1 + Int(rng.next() % UInt64(sh))
                    crops.append(Crop(scale: scale, x: Int(rng.next() % UInt64(sw - w + 1)), y: Int(rng.next() % UInt64(sh - h + 1)), w: w, h: h))
                }
            }
            plan[name] = crops
        }
        try JSONEncoder().encode(plan).write(to: URL(fileURLWithPath: "\(root)/plan.json"))
        // Pillow: the rewritten file's full decode against the original's, then every crop of
        // the original at its scale (draft() asks libjpeg for the DCT-scaled decode).
        let reference = try Processes.python("""
        import json, sys
        from PIL import Image
        d = sys.argv[1]
        plan = json.load(open(d + "/plan.json"))
        same = {}
        for name, crops in plan.items():
            orig = Image.open(d + "/" + name); orig.load()
            mode = "L" if orig.mode == "L" else "RGB"
            same[name] = orig.convert(mode).tobytes() == Image.open(d + "/" + name + ".rst").convert(mode).tobytes()
            out = bytearray()
            for c in crops:
                s = c["scale"]
                want = ((orig.size[0] + s - 1) // s, (orig.size[1] + s - 1) // s)
                im = Image.open(d + "/" + name)
                if s > 1:
                    # draft() picks the largest scale whose floor-divided size fits the request.
                    im.draft(mode, (orig.size[0] // s, orig.size[1] // s))
                im = im.convert(mode)
                assert im.size == want, (name, s, im.size)
                out += im.crop((c["x"], c["y"], c["x"] + c["w"], c["y"] + c["h"])).tobytes()
            open(d + "/" + name + ".crops", "wb").write(out)
        print(json.dumps(same))
        """, [root])
        XCTAssertEqual(reference.status, 0, reference.stderr)
        let lossless = try JSONDecoder().decode([String: Bool].self, from: reference.stdoutData)
        for name in Self.names {
            XCTAssertEqual(lossless[name], true, "\(name): Pillow decodes the rewritten file differently")
            let rewritten = try XCTUnwrap(FileManager.default.contents(atPath: "\(root)/\(name).rst"))
            let theirs = try XCTUnwrap(FileManager.default.contents(atPath: "\(root)/\(name).crops"))
            var offset = 0, badCrops = 0
            for c in plan[name] ?? [] {
                let image = try Self.crop([UInt8](rewritten), c)
                let n = image.pixels.count
                XCTAssertLessThanOrEqual(offset + n, theirs.count, name)
                guard offset + n <= theirs.count else { break }
                if !image.pixels.elementsEqual(theirs[offset..<offset + n]) { badCrops += 1 }
                offset += n
            }
            XCTAssertEqual(offset, theirs.count, name)
            XCTAssertEqual(badCrops, 0, "\(name): \(badCrops) of \(plan[name]?.count ?? 0) crops differ from Pillow")
        }
    }

    /// The decoder really reads only the crop's restart segments: with the entropy data
    /// of one segment right of the crop destroyed, the crop still decodes (to Pillow's
    /// pixels of the intact file), while a full decode and a crop that needs that
    /// segment are refused.
    func testACropReadsOnlyItsRestartSegments() throws {
        Fixtures.write(Fixtures.png(width: 301, height: 203, seed: 31), to: "\(root)/a.png")
        Fixtures.write(Fixtures.png(width: 320, height: 240, seed: 32), to: "\(root)/b.png")
        let made = try Processes.python(Self.flavours, [root])
        XCTAssertEqual(made.status, 0, made.stderr)
        let original = try XCTUnwrap(FileManager.default.contents(atPath: "\(root)/even-420.jpg"))
        var bytes = try XCTUnwrap(try Codec.addingRestartMarkers([UInt8](original)))
        // 320 pixels = 20 MCUs of 16: a restart after every MCU, 20 segments per MCU row.
        let segments = Self.segments(bytes)
        XCTAssertEqual(segments.count, 20 * 15)
        let last = try XCTUnwrap(segments.count > 19 ? segments[19] : nil)  // the right end of MCU row 0
        for i in stride(from: last.lowerBound, to: last.upperBound - 1, by: 2) { bytes[i] = 0xFF; bytes[i + 1] = 0x00 }
        let crop = Crop(scale: 1, x: 10, y: 4, w: 100, h: 10)
        let ours = try Self.crop(bytes, crop)
        let reference = try Processes.python("""
        import sys
        from PIL import Image
        sys.stdout.buffer.write(Image.open(sys.argv[1]).convert("RGB").crop((10, 4, 110, 14)).tobytes())
        """, ["\(root)/even-420.jpg"])
        XCTAssertEqual(reference.status, 0, reference.stderr)
        let theirs = [UInt8](reference.stdoutData)
        XCTAssertEqual(ours.pixels.count, theirs.count)
        XCTAssertEqual(zip(ours.pixels, theirs).filter { $0 != $1 }.count, 0, "bytes that differ from Pillow")
        XCTAssertThrowsError(try Codec.decode(bytes)) { error in
            XCTAssertTrue("\(error)".contains("JPEG entropy data"), "\(error)")
        }
        XCTAssertThrowsError(try Self.crop(bytes, Crop(scale: 1, x: 280, y: 4, w: 30, h: 10)))
        // Markers out of order are not trusted: the decoder falls back to the whole stream,
        // and libjpeg's own check refuses it.
        var renumbered = try XCTUnwrap(try Codec.addingRestartMarkers([UInt8](original)))
        let marker = segments[3].upperBound  // RST3 after segment 3
        XCTAssertEqual(renumbered[marker + 1], 0xD3)
        renumbered[marker + 1] = 0xD5
        XCTAssertThrowsError(try Self.crop(renumbered, crop)) { error in
            XCTAssertTrue("\(error)".contains("JPEG"), "\(error)")
        }
    }

    /// Decodes `c` with a 2-pixel margin (chroma upsampling replicates at a region's
    /// edges, as it does in the pipeline) and returns the crop itself.
    static func crop(_ bytes: [UInt8], _ c: Crop) throws -> Image {
        let header = try bytes.withUnsafeBytes { try Codec.header($0) }
        let sw = (header.width + c.scale - 1) / c.scale, sh = (header.height + c.scale - 1) / c.scale
        let x0 = max(0, c.x - 2), y0 = max(0, c.y - 2)
        let x1 = min(sw, c.x + c.w + 2), y1 = min(sh, c.y + c.h + 2)
        let wide = try Codec.decode(bytes, options: DecodeOptions(scaleDenominator: c.scale,
                                                                   region: PixelRect(x: x0, y: y0, width: x1 - x0, height: y1 - y0)))
        var pixels: [UInt8] = []
        let ch = wide.channels
        for y in (c.y - y0)..<(c.y - y0 + c.h) {
            let start = (y * wide.width + (c.x - x0)) * ch
            pixels += wide.pixels[start..<start + c.w * ch]
        }
        return Image(width: c.w, height: c.h, channels: ch, pixels: pixels)
    }

    /// Marker codes of the segments before the entropy-coded data.
    static func markers(_ b: [UInt8]) -> [UInt8] {
        var p = 2, out: [UInt8] = []
        while p + 4 <= b.count, b[p] == 0xFF {
            out.append(b[p + 1])
            if b[p + 1] == 0xDA { break }
            p += 2 + Int(b[p + 2]) << 8 + Int(b[p + 3])
        }
        return out
    }

    /// Byte ranges of the restart segments (each up to its RSTn or EOI marker).
    static func segments(_ b: [UInt8]) -> [Range<Int>] {
        var p = 2
        while p + 4 <= b.count, b[p] == 0xFF, b[p + 1] != 0xDA { p += 2 + Int(b[p + 2]) << 8 + Int(b[p + 3]) }
        guard p + 4 <= b.count else { return [] }
        var start = p + 2 + Int(b[p + 2]) << 8 + Int(b[p + 3]), q = start
        var out: [Range<Int>] = []
        while q + 1 < b.count {
            if b[q] == 0xFF, (0xD0...0xD7).contains(b[q + 1]) || b[q + 1] == 0xD9 {
                out.append(start..<q)
                if b[q + 1] == 0xD9 { break }
                q += 2
                start = q
            } else {
                q += b[q] == 0xFF && b[q + 1] == 0x00 ? 2 : 1
            }
        }
        return out
    }
}
