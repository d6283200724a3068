internal import CNoisyCodec
import Pixels

/// How to decode: DCT scale (JPEG only), an optional region, and a pixel bound.
public struct DecodeOptions: Sendable, Equatable {
    /// 1, 2, 4 or 8: libjpeg decodes at 1/scale of the full size, skipping IDCT work.
    public var scaleDenominator: Int
    /// A region in the scaled output's coordinates; nil decodes everything.
    public var region: PixelRect?
    /// Refuse headers that claim more pixels than this (0: no bound).
    public var maxPixels: UInt64

    public static let defaultMaxPixels: UInt64 = 100_000_000
    /// JPEG regions: accept the columns libjpeg-turbo really decodes (the region
    /// widened to iMCU boundaries; see `ImageHeader.outputX`), which saves a copy of
    /// every row. The output must then hold `widenedCapacity` bytes.
    public var allowWider = false
    /// Extra columns a widened region may take.
    public static let wideningSlack = Int(NC_CROP_SLACK)

    public init(scaleDenominator: Int = 1, region: PixelRect? = nil, maxPixels: UInt64 = DecodeOptions.defaultMaxPixels) {
        self.scaleDenominator = scaleDenominator
        self.region = region
        self.maxPixels = maxPixels
    }

    var c: nc_decode_options {
        var o = nc_decode_options()
        o.scale_denom = Int32(scaleDenominator)
        if let r = region {
            o.crop_x = Int32(clamping: r.x); o.crop_y = Int32(clamping: r.y)
            o.crop_w = Int32(clamping: r.width); o.crop_h = Int32(clamping: r.height)
        }
        o.max_pixels = maxPixels
        o.allow_wider = allowWider ? 1 : 0
        return o
    }
}

/// A file's header, read without decoding the pixels.
public struct ImageHeader: Sendable, Equatable {
    public var format: ImageFormat
    public var width: Int
    public var height: Int
    /// Channels a decode produces: 1 or 3.
    public var channels: Int
    /// JPEG: 1 when progressive. PNG: 1 when interlaced.
    public var progressive: Bool
    /// Size of the output a decode with the given options produces.
    public var outputWidth: Int
    public var outputHeight: Int
    /// Where the output starts in the scaled image (a region's origin; with
    /// `allowWider`, the widened region's).
    public var outputX: Int = 0
    public var outputY: Int = 0
    /// After a decode: warnings the decoder tolerated because they do not touch the
    /// pixels (JPEG: junk bytes between markers). 0 from a header read.
    public var benignWarnings: Int = 0
}

/// Decode, encode, resize and hash, over the C target. Stateless and thread-safe.
public enum Codec {
    public static func sniff(_ bytes: UnsafeRawBufferPointer) -> SniffedFormat {
        guard let base = bytes.baseAddress else { return .unknown }
        switch nc_sniff(base.assumingMemoryBound(to: UInt8.self), bytes.count) {
        case NC_FORMAT_JPEG: return .supported(.jpeg)
        case NC_FORMAT_PNG: return .supported(.png)
        case NC_FORMAT_GIF: return .unsupported("GIF")
        case NC_FORMAT_WEBP: return .supported(.webp)
        case NC_FORMAT_TIFF: return .unsupported("TIFF")
        case NC_FORMAT_BMP: return .unsupported("BMP")
        default: return .unknown
        }
    }

    /// The format of `bytes`, or an error that says why noisy cannot decode them.
    public static func format(of bytes: UnsafeRawBufferPointer) throws(CodecError) -> ImageFormat {
        if bytes.isEmpty { throw CodecError(.corrupt, "empty file (0 bytes)") }
        switch sniff(bytes) {
        case .supported(let f): return f
        case .unsupported(let name): throw CodecError(.unsupported, "\(name) is not supported (JPEG, PNG and WebP only)")
        case .unknown: throw CodecError(.notAnImage, "not a JPEG, PNG or WebP file (unrecognised signature)")
        }
    }

    /// Reads the header and says what a decode with `options` would produce.
    public static func header(_ bytes: UnsafeRawBufferPointer, options: DecodeOptions = .init()) throws(CodecError) -> ImageHeader {
        let format = try format(of: bytes)
        var plan = nc_plan()
        var opt = options.c
        let base = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        try checked { err in
            switch format {
            case .jpeg: nc_jpeg_plan(base, bytes.count, &opt, &plan, err)
            case .png: nc_png_plan(base, bytes.count, &opt, &plan, err)
            case .webp: nc_webp_plan(base, bytes.count, &opt, &plan, err)
            }
        }
        return ImageHeader(plan: plan, format: format)
    }

    /// Decodes `bytes` to 8-bit gray or RGB. Truncated or corrupt data is an error.
    public static func decode(_ bytes: UnsafeRawBufferPointer, options: DecodeOptions = .init()) throws(CodecError) -> Image {
        var pixels: [UInt8] = []
        let header = try decode(bytes, options: options, into: &pixels)
        return Image(width: header.outputWidth, height: header.outputHeight, channels: header.channels, pixels: pixels)
    }

    public static func decode(_ bytes: [UInt8], options: DecodeOptions = .init()) throws(CodecError) -> Image {
        try decodeWithHeader(bytes, options: options).image
    }

    /// Decodes and also returns the header (format, full size, progressive).
    public static func decodeWithHeader(_ bytes: [UInt8], options: DecodeOptions = .init()) throws(CodecError) -> (header: ImageHeader, image: Image) {
        let result = bytes.withUnsafeBytes { raw in
            Result { () throws(CodecError) -> (ImageHeader, Image) in
                var pixels: [UInt8] = []
                let h = try decode(raw, options: options, into: &pixels)
                return (h, Image(width: h.outputWidth, height: h.outputHeight, channels: h.channels, pixels: pixels))
            }
        }
        return try result.get()
    }

    /// Decodes into a caller-owned buffer, reusing its storage when it is large
    /// enough: the batch pipeline decodes without allocating in steady state.
    @discardableResult
    public static func decode(_ bytes: UnsafeRawBufferPointer, options: DecodeOptions, into pixels: inout [UInt8]) throws(CodecError) -> ImageHeader {
        let header = try header(bytes, options: options)
        let need = header.outputWidth * header.outputHeight * header.channels
        if pixels.count != need {
            if pixels.capacity >= need {
                pixels.removeAll(keepingCapacity: true)
                pixels.append(contentsOf: repeatElement(0, count: need))
            } else {
                pixels = [UInt8](repeating: 0, count: need)
            }
        }
        var opt = options.c
        var plan = nc_plan()
        let base = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let format = header.format
        let failure = pixels.withUnsafeMutableBufferPointer { out -> CodecError? in
            do {
                try checked { err in decodeC(format, base, bytes.count, &opt, out.baseAddress, out.count, &plan, err) }
                return nil
            } catch let error as CodecError { return error } catch { return CodecError(.corrupt, "\(error)") }
        }
        if let failure { throw failure }
        var decoded = header
        decoded.benignWarnings = Int(plan.info.warnings)
        return decoded
    }

    /// Decodes into caller-owned memory, which must hold the output that `header`
    /// (with the same options) announces: the allocation-free path of the pipeline.
    @discardableResult
    public static func decode(_ bytes: UnsafeRawBufferPointer, format: ImageFormat, options: DecodeOptions,
                              into out: UnsafeMutableBufferPointer<UInt8>) throws(CodecError) -> ImageHeader {
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else {
            throw CodecError(.corrupt, "empty file (0 bytes)")
        }
        var opt = options.c
        var plan = nc_plan()
        try checked { err in decodeC(format, base, bytes.count, &opt, out.baseAddress, out.count, &plan, err) }
        return ImageHeader(plan: plan, format: format)
    }

    /// Decodes a JPEG to its Y, Cb and Cr planes (no chroma upsampling, no colour
    /// conversion) into `buffer`, or returns nil, having decoded nothing, where the
    /// file takes the RGB decode: not YCbCr with luma sampled 1 or 2 times chroma's,
    /// or without restart markers that tile its rows (`addingRestartMarkers`).
    /// The planes point into `buffer` and stay valid until its next use.
    public static func decodePlanes(_ bytes: UnsafeRawBufferPointer, options: DecodeOptions,
                                    into buffer: PlaneBuffer) throws(CodecError) -> DecodedPlanes? {
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else {
            throw CodecError(.corrupt, "empty file (0 bytes)")
        }
        var opt = options.c
        var out = nc_planes()
        var planar = true
        try checked { err in
            let status = nc_jpeg_decode_planes(base, bytes.count, &opt, &buffer.c, &out, err)
            if status == Int32(NC_NOT_PLANAR.rawValue) { planar = false; return 0 }
            return status
        }
        guard planar, let data = buffer.c.data else { return nil }
        func plane(_ p: nc_plane) -> SamplePlane {
            SamplePlane(base: UnsafePointer(data + p.offset), width: Int(p.width), height: Int(p.height),
                        stride: Int(p.stride), fx: Int(p.fx), fy: Int(p.fy))
        }
        return DecodedPlanes(originX: Int(out.origin_x), originY: Int(out.origin_y),
                             planes: (plane(out.planes.0), plane(out.planes.1), plane(out.planes.2)))
    }

    /// As `decodePlanes` over a byte array.
    public static func decodePlanes(_ bytes: [UInt8], options: DecodeOptions, into buffer: PlaneBuffer) throws(CodecError) -> DecodedPlanes? {
        try bytes.withUnsafeBytes { raw in
            Result { () throws(CodecError) in try decodePlanes(raw, options: options, into: buffer) }
        }.get()
    }

    /// The C decoder of `format`.
    private static func decodeC(_ format: ImageFormat, _ data: UnsafePointer<UInt8>, _ count: Int, _ opt: UnsafePointer<nc_decode_options>,
                                _ out: UnsafeMutablePointer<UInt8>?, _ cap: Int, _ plan: UnsafeMutablePointer<nc_plan>,
                                _ err: UnsafeMutablePointer<CChar>) -> Int32 {
        switch format {
        case .jpeg: nc_jpeg_decode(data, count, opt, out, cap, plan, err)
        case .png: nc_png_decode(data, count, opt, out, cap, plan, err)
        case .webp: nc_webp_decode(data, count, opt, out, cap, plan, err)
        }
    }

    public static func encodePNG(_ image: Image) throws(CodecError) -> [UInt8] {
        try takeBuffer { out, len, err in
            nc_png_encode(image.pixels, Int32(image.width), Int32(image.height), Int32(image.channels), out, len, err)
        }
    }

    /// Encodes gray or RGB pixels (or CMYK with `components: 4`, for test fixtures).
    public static func encodeJPEG(_ image: Image, quality: Int = 90, progressive: Bool = false) throws(CodecError) -> [UInt8] {
        try takeBuffer { out, len, err in
            nc_jpeg_encode(image.pixels, Int32(image.width), Int32(image.height), Int32(image.channels),
                           Int32(quality), progressive ? 1 : 0, out, len, err)
        }
    }

    /// The JPEG losslessly rewritten with restart markers that tile its MCU rows (and
    /// optimal Huffman tables, metadata kept), or nil when it is kept as it is: already
    /// sliceable, not YCbCr or gray, arithmetic-coded, or small. It decodes to the same
    /// pixels; a crop of it then reads only the restart segments it covers, which is what
    /// makes train views of large crops cheaper than a region decode (`noisy ingest
    /// --restart-markers`).
    public static func addingRestartMarkers(_ jpeg: [UInt8]) throws(CodecError) -> [UInt8]? {
        try takeOptionalBuffer { out, len, err in nc_jpeg_add_restarts(jpeg, jpeg.count, out, len, err) }
    }

    /// Runs a C function that returns a malloc'd buffer, copies it into an array and frees it.
    private static func takeBuffer(_ body: (UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>, UnsafeMutablePointer<Int>, UnsafeMutablePointer<CChar>) -> Int32) throws(CodecError) -> [UInt8] {
        guard let bytes = try takeOptionalBuffer(body) else { throw CodecError(.noMemory, "encoder returned no buffer") }
        return bytes
    }

    /// As `takeBuffer`, for functions that may succeed without a buffer (nil).
    private static func takeOptionalBuffer(_ body: (UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>, UnsafeMutablePointer<Int>, UnsafeMutablePointer<CChar>) -> Int32) throws(CodecError) -> [UInt8]? {
        var out: UnsafeMutablePointer<UInt8>? = nil
        var len = 0
        try checked { err in body(&out, &len, err) }
        guard let out else { return nil }
        defer { nc_free(out) }
        return Array(UnsafeBufferPointer(start: out, count: len))
    }

}

extension ImageHeader {
    init(plan: nc_plan, format: ImageFormat) {
        self.init(format: format, width: Int(plan.info.width), height: Int(plan.info.height),
                  channels: Int(plan.out_channels), progressive: plan.info.progressive != 0,
                  outputWidth: Int(plan.out_width), outputHeight: Int(plan.out_height),
                  outputX: Int(plan.out_x), outputY: Int(plan.out_y), benignWarnings: Int(plan.info.warnings))
    }
}

/// Memory that `Codec.decodePlanes` grows and reuses. Not thread-safe: each worker owns one.
public final class PlaneBuffer {
    var c = nc_buffer()
    public init() {}
    deinit { nc_free(c.data) }
}

/// A JPEG's Y, Cb and Cr planes; sample (0, 0) of each starts at scaled pixel (originX, originY).
public struct DecodedPlanes {
    public var originX: Int, originY: Int
    public var planes: (SamplePlane, SamplePlane, SamplePlane)
}
