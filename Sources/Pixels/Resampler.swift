internal import CPixelKernels

/// The resampling filters, with Pillow's kernels and supports.
public enum ResampleFilter: String, Sendable, CaseIterable {
    case bilinear, bicubic, lanczos
    fileprivate var c: Int32 {
        switch self {
        case .bilinear: Int32(PK_FILTER_BILINEAR.rawValue)
        case .bicubic: Int32(PK_FILTER_BICUBIC.rawValue)
        case .lanczos: Int32(PK_FILTER_LANCZOS.rawValue)
        }
    }
}

/// Resizes like Pillow's `Image.resize(size, filter, box)`, byte for byte, and keeps
/// its coefficient and row scratch between calls so steady-state work does not
/// allocate. Not thread-safe: each worker thread owns one.
public final class Resampler {
    private var scratch = pk_scratch()

    public init() {}
    deinit { pk_scratch_release(&scratch) }

    /// Resamples the box `(x0, y0, x1, y1)` of `image` (default: all of it) to `width x height`.
    public func resize(_ image: Image, width: Int, height: Int, box: (Float, Float, Float, Float)? = nil,
                       filter: ResampleFilter = .bilinear) throws(PixelError) -> Image {
        var out = [UInt8](repeating: 0, count: width * height * image.channels)
        try resize(image, width: width, height: height, box: box, filter: filter, into: &out)
        return Image(width: width, height: height, channels: image.channels, pixels: out)
    }

    /// As `resize`, writing into `out` (which must hold width*height*channels bytes).
    public func resize(_ image: Image, width: Int, height: Int, box: (Float, Float, Float, Float)?,
                       filter: ResampleFilter, into out: inout [UInt8]) throws(PixelError) {
        let b = box ?? (0, 0, Float(image.width), Float(image.height))
        guard out.count >= width * height * image.channels else {
            throw PixelError("resize output holds \(out.count) bytes, needs \(width * height * image.channels)")
        }
        let status = out.withUnsafeMutableBufferPointer { dst in
            image.pixels.withUnsafeBufferPointer { src in
                pk_resample(src.baseAddress, Int32(image.width), Int32(image.height), Int32(image.channels),
                            b.0, b.1, b.2, b.3, dst.baseAddress, Int32(width), Int32(height), filter.c, &scratch)
            }
        }
        if status != 0 {
            throw PixelError("cannot resize \(image.width)x\(image.height) box \(b) to \(width)x\(height)")
        }
    }

    /// Resamples between raw buffers: `src` holds sw x sh x ch pixels whose rows
    /// lie `stride` bytes apart (default: packed), `dst` dw x dh x ch packed.
    public func resize(_ src: UnsafePointer<UInt8>, width sw: Int, height sh: Int, channels ch: Int, stride: Int? = nil,
                       box b: (Float, Float, Float, Float), into dst: UnsafeMutablePointer<UInt8>,
                       width dw: Int, height dh: Int, filter: ResampleFilter = .bilinear) throws(PixelError) {
        let status = pk_resample_strided(src, Int32(sw), Int32(sh), stride ?? sw * ch, Int32(ch), b.0, b.1, b.2, b.3,
                                         dst, Int32(dw), Int32(dh), filter.c, &scratch)
        if status != 0 {
            throw PixelError("cannot resize \(sw)x\(sh) box \(b) to \(dw)x\(dh)")
        }
    }

    /// As the raw-buffer `resize`, handing each finished row to `output` (bytes or
    /// floats, mirrored or not): the same values as resizing then writing, in one pass.
    public func resize(_ src: UnsafePointer<UInt8>, width sw: Int, height sh: Int, channels ch: Int, stride: Int? = nil,
                       box b: (Float, Float, Float, Float), into output: PixelOutput,
                       width dw: Int, height dh: Int, filter: ResampleFilter = .bilinear) throws(PixelError) {
        let status = output.withC(channels: ch) { o in
            pk_resample_to(src, Int32(sw), Int32(sh), stride ?? sw * ch, Int32(ch), b.0, b.1, b.2, b.3,
                           Int32(dw), Int32(dh), filter.c, &scratch, o)
        }
        if status != 0 {
            throw PixelError("cannot resize \(sw)x\(sh) box \(b) to \(dw)x\(dh)")
        }
    }
}

/// One channel's samples in memory someone else owns (a decoder's planes): each
/// sample covers `fx x fy` pixels of the image, 2 for subsampled chroma.
public struct SamplePlane: @unchecked Sendable {
    // @unchecked: a borrowed pointer; the owner (the decoder's buffer) documents how
    // long it stays valid, and nothing here writes through it.
    public var base: UnsafePointer<UInt8>
    public var width: Int, height: Int, stride: Int
    public var fx: Int, fy: Int
    public init(base: UnsafePointer<UInt8>, width: Int, height: Int, stride: Int, fx: Int, fy: Int) {
        self.base = base; self.width = width; self.height = height; self.stride = stride; self.fx = fx; self.fy = fy
    }
}

extension Resampler {
    /// Resizes the image box `b` (image pixels, relative to the planes' first sample)
    /// of Y, Cb and Cr planes to `dw x dh`, each plane as a one-channel `resize`, and
    /// hands every row, converted to RGB with libjpeg's arithmetic, to `output`.
    /// `cut`: each plane's filter sees only the samples the box covers (crop, then resize).
    public func resizeYCbCr(_ planes: (SamplePlane, SamplePlane, SamplePlane), box b: (Float, Float, Float, Float),
                            cut: Bool, into output: PixelOutput, width dw: Int, height dh: Int,
                            filter: ResampleFilter = .bilinear) throws(PixelError) {
        func c(_ p: SamplePlane) -> pk_plane {
            pk_plane(data: p.base, width: Int32(p.width), height: Int32(p.height), stride: p.stride,
                     fx: Int32(p.fx), fy: Int32(p.fy))
        }
        // A homogeneous tuple of C structs is laid out as an array of three.
        var all = (c(planes.0), c(planes.1), c(planes.2))
        let status = output.withC(channels: 3) { o in
            withUnsafeBytes(of: &all) { raw in
                pk_resample_ycc_to(raw.baseAddress?.assumingMemoryBound(to: pk_plane.self), b.0, b.1, b.2, b.3,
                                   cut ? 1 : 0, Int32(dw), Int32(dh), filter.c, &scratch, o)
            }
        }
        if status != 0 {
            throw PixelError("cannot resize YCbCr planes \(planes.0.width)x\(planes.0.height) box \(b) to \(dw)x\(dh)")
        }
    }
}

/// A pixel loop refused its arguments (a box outside the image, an output too
/// small) or ran out of memory. Callers' mistakes, not bad input files.
public struct PixelError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
