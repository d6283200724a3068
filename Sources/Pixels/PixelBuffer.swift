internal import CPixelKernels

/// Pixels the caller owns (tightly packed HWC, 1 or 3 channels), with their size:
/// what ops and views work on, so that a worker thread can keep one grown buffer
/// and reuse it. The loops run in C (CPixelKernels), where they vectorise; this
/// is their only door, so no client imports the C module.
///
/// A borrowed view: valid only while the memory behind `base` is, which is the
/// closure that made it (`Image.withPixelBuffer`, a renderer's plane).
public struct PixelBuffer {
    public var base: UnsafeMutablePointer<UInt8>
    public var width: Int
    public var height: Int
    public var channels: Int
    public init(base: UnsafeMutablePointer<UInt8>, width: Int, height: Int, channels: Int) {
        self.base = base; self.width = width; self.height = height; self.channels = channels
    }
    public var count: Int { width * height * channels }
    public var pixelCount: Int { width * height }
    private var w: Int32 { Int32(width) }
    private var h: Int32 { Int32(height) }
    private var ch: Int32 { Int32(channels) }

    // MARK: Point operations

    /// Per-channel histograms: `hist` holds 256 counts per channel.
    public func histogram(into hist: UnsafeMutableBufferPointer<UInt32>) {
        precondition(hist.count >= 256 * channels, "a histogram needs 256 bins per channel")
        pk_histogram(base, pixelCount, ch, hist.baseAddress)
    }

    /// Maps every byte through its channel's table (`luts` holds 256 entries per channel).
    public func applyLookupTables(_ luts: UnsafeBufferPointer<UInt8>) {
        precondition(luts.count >= 256 * channels, "a lookup table needs 256 entries per channel")
        pk_apply_lut(base, pixelCount, ch, luts.baseAddress)
    }

    /// `Image.blend(other, self, alpha)` into self: other + alpha * (self - other), PIL's rounding.
    public func blend(from other: UnsafePointer<UInt8>, alpha: Float) {
        pk_blend(other, base, count, alpha)
    }

    /// Blends against a solid value (ImageEnhance.Brightness with 0, Contrast with the mean).
    public func blend(constant value: UInt8, alpha: Float) {
        pk_blend_constant(value, base, count, alpha)
    }

    /// Blends RGB pixels against their own luma (ImageEnhance.Color); gray images are left alone.
    public func blendWithLuma(alpha: Float) {
        guard channels == 3 else { return }
        pk_blend_gray(base, pixelCount, alpha)
    }

    // MARK: Neighbourhood and geometry (into a separate buffer of the same size)

    /// ImageFilter.SMOOTH into `out`, which must not overlap self.
    public func smooth(into out: UnsafeMutablePointer<UInt8>) {
        pk_smooth(base, out, w, h, ch)
    }

    /// `Image.transform(AFFINE, m, BILINEAR, fillcolor: fill)` into `out` (no overlap).
    public func affineBilinear(_ m: [Double], fill: UInt8, into out: UnsafeMutablePointer<UInt8>) {
        precondition(m.count == 6, "an affine matrix has 6 coefficients")
        m.withUnsafeBufferPointer { pk_affine_bilinear(base, w, h, ch, $0.baseAddress, fill, out) }
    }

    /// Copies a `target.width x target.height` window whose corner is at (x, y)
    /// in self; parts outside self are `fill`.
    public func window(x: Int, y: Int, into target: PixelBuffer, fill: UInt8) {
        precondition(target.channels == channels, "window: channel counts differ")
        pk_window(base, w, h, ch, Int32(clamping: x), Int32(clamping: y), target.base, target.w, target.h, fill)
    }

    // MARK: In place

    public func flipHorizontally() {
        pk_flip_horizontal(base, w, h, ch)
    }

    /// Fills [x0, x1) x [y0, y1), clipped to the image.
    public func fill(x0: Int, y0: Int, x1: Int, y1: Int, value: UInt8) {
        pk_fill_rect(base, w, h, ch, Int32(clamping: x0), Int32(clamping: y0), Int32(clamping: x1), Int32(clamping: y1), value)
    }

    // MARK: Conversions

    /// RGB to gray with PIL's "L" weights into `gray` (pixelCount bytes), or gray to
    /// RGB by repetition into `rgb`: whichever `target.channels` asks for.
    public func convert(into target: PixelBuffer) {
        precondition(target.pixelCount == pixelCount, "convert: sizes differ")
        switch (channels, target.channels) {
        case (3, 1): pk_rgb_to_gray(base, pixelCount, target.base)
        case (1, 3): pk_gray_to_rgb(base, pixelCount, target.base)
        default: target.base.update(from: base, count: count)
        }
    }
}

extension Image {
    /// Lends the pixels as a `PixelBuffer` for the length of `body`.
    public mutating func withPixelBuffer<T>(_ body: (PixelBuffer) throws -> T) rethrows -> T {
        let (w, h, ch) = (width, height, channels)
        return try pixels.withUnsafeMutableBufferPointer { p in
            if let base = p.baseAddress { return try body(PixelBuffer(base: base, width: w, height: h, channels: ch)) }
            // An empty image: lend a dummy address that no loop will touch (count is 0).
            var none: UInt8 = 0
            return try withUnsafeMutablePointer(to: &none) { try body(PixelBuffer(base: $0, width: w, height: h, channels: ch)) }
        }
    }
}
