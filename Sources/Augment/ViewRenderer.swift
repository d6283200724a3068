import Batches
import ImageCodec
import KeyedRandom
import Pixels

/// Where a sample's random draws come from: the generator key without its purpose.
public struct SampleKey: Sendable, Equatable {
    public var seed: UInt64
    public var epoch: UInt64
    public var sample: UInt64
    public init(seed: UInt64, epoch: UInt64, sample: UInt64) { self.seed = seed; self.epoch = epoch; self.sample = sample }

    public func random(_ purpose: RandomPurpose) -> KeyedRandom {
        KeyedRandom(seed: seed, epoch: epoch, sample: sample, purpose: purpose)
    }
}

/// A grown-only byte buffer plus the size of the image it holds now.
private struct Plane {
    var storage: [UInt8] = []
    var width = 0, height = 0, channels = 1

    /// Makes room for w x h x ch, reallocating only when the buffer must grow.
    mutating func shape(_ w: Int, _ h: Int, _ ch: Int) {
        let need = w * h * ch
        if storage.count < need { storage = [UInt8](repeating: 0, count: need + need / 4) }
        width = w; height = h; channels = ch
    }

    mutating func withBuffer<T>(_ body: (PixelBuffer) throws -> T) rethrows -> T {
        let (w, h, ch) = (width, height, channels)
        return try storage.withUnsafeMutableBufferPointer { p in
            try body(PixelBuffer(base: p.baseAddress!, width: w, height: h, channels: ch))
        }
    }

    var image: Image {
        Image(width: width, height: height, channels: channels, pixels: Array(storage[0..<(width * height * channels)]))
    }
}

/// Turns encoded bytes into one view of the image, written straight into a batch slot.
///
/// Owns every buffer the work needs (decoded pixels, resize output, op scratch,
/// resampler coefficients); they grow to the largest image seen and are then
/// reused, so steady-state rendering does not allocate. Not thread-safe: each
/// worker thread owns one.
public final class ViewRenderer {
    public let channels: Int
    public let layout: OutputLayout
    private let resampler = Resampler()
    public let augmenter = Augmenter()
    private var a = Plane()
    private var b = Plane()
    /// Float output: v * scale[c] + offset[c] = (v / 255 - mean) / std.
    private var scale: [Float] = []
    private var offset: [Float] = []

    public init(channels: Int, layout: OutputLayout) {
        precondition(channels == 1 || channels == 3, "channels must be 1 or 3")
        self.channels = channels
        self.layout = layout
        if let n = layout.normalization {
            for c in 0..<channels {
                let mean = n.mean[c % n.mean.count], std = n.std[c % n.std.count]
                scale.append(1 / (255 * std))
                offset.append(-mean / std)
            }
        }
    }

    /// Renders `view` of `bytes` into `out` (layout.bytesPerSample bytes).
    public func render(_ bytes: UnsafeRawBufferPointer, view: View, key: SampleKey,
                       into out: UnsafeMutableRawBufferPointer) throws(CodecError) {
        try renderPixels(bytes, view: view, key: key)
        write(into: out)
    }

    /// Renders `view` of `bytes` as an image (for previews and `noisy augment`).
    public func renderImage(_ bytes: UnsafeRawBufferPointer, view: View, key: SampleKey) throws(CodecError) -> Image {
        try renderPixels(bytes, view: view, key: key)
        return a.image
    }

    /// Decodes `bytes` in full, converted to this renderer's channels.
    public func decodeFull(_ bytes: UnsafeRawBufferPointer) throws(CodecError) -> Image {
        let header = try Codec.header(bytes)
        try decode(bytes, header: header, scale: 1, region: nil)
        return a.image
    }

    private func renderPixels(_ bytes: UnsafeRawBufferPointer, view: View, key: SampleKey) throws(CodecError) {
        let header = try Codec.header(bytes)
        switch view {
        case .teacher(let v):
            let box = ViewGeometry.centreCropBox(width: header.width, height: header.height, size: v.size,
                                                 cropFraction: v.cropFraction)
            try decodeAndResize(bytes, header: header, box: box, size: v.size, fast: v.fastDecode, exactRegion: false)
        case .train(let v):
            try trainGeometry(bytes, header: header, view: v, key: key)
            if v.flip {
                var rng = key.random(.flip)
                if rng.unit() < 0.5 { a.withBuffer { $0.flipHorizontally() } }
            }
            if let ra = v.randAugment {
                var rng = key.random(.randAugment)
                a.withBuffer { ra.apply(to: $0, augmenter: augmenter, rng: &rng) }
            }
            if v.cutout > 0 {
                var rng = key.random(.cutout)
                let cx = Int(rng.next(upperBound: UInt64(a.width)))
                let cy = Int(rng.next(upperBound: UInt64(a.height)))
                a.withBuffer { augmenter.apply(.cutout, parameter: Double(v.cutout), to: $0, cutoutCenter: (cx, cy)) }
            }
        }
    }

    /// The crop of the train view, leaving size x size pixels in `a`.
    private func trainGeometry(_ bytes: UnsafeRawBufferPointer, header: ImageHeader, view v: TrainView,
                               key: SampleKey) throws(CodecError) {
        switch v.crop {
        case .randomResized(let scale, let ratio):
            var rng = key.random(.crop)
            let r = ViewGeometry.randomResizedCrop(width: header.width, height: header.height,
                                                   scale: scale, ratio: ratio, rng: &rng)
            let box = SourceBox(x0: Double(r.x), y0: Double(r.y), x1: Double(r.x + r.width), y1: Double(r.y + r.height))
            try decodeAndResize(bytes, header: header, box: box, size: v.size, fast: v.fastDecode, exactRegion: true)
        case .padCrop(let padding):
            if header.width == v.size && header.height == v.size {
                try decode(bytes, header: header, scale: 1, region: nil)
            } else {
                let box = ViewGeometry.centreCropBox(width: header.width, height: header.height, size: v.size, cropFraction: 1)
                try decodeAndResize(bytes, header: header, box: box, size: v.size, fast: v.fastDecode, exactRegion: false)
            }
            var rng = key.random(.crop)
            let span = UInt64(2 * padding + 1)
            let dx = Int(rng.next(upperBound: span)) - padding
            let dy = Int(rng.next(upperBound: span)) - padding
            guard dx != 0 || dy != 0 else { return }
            b.shape(a.width, a.height, a.channels)
            a.withBuffer { src in
                b.withBuffer { dst in
                    src.window(x: dx, y: dy, into: dst, fill: 0)
                }
            }
            swap(&a, &b)
        }
    }

    /// Decodes the part of the image the box needs, at the smallest sufficient DCT
    /// scale, and resamples the box to size x size (bilinear, Pillow's maths).
    private func decodeAndResize(_ bytes: UnsafeRawBufferPointer, header: ImageHeader, box: SourceBox,
                                 size: Int, fast: Bool, exactRegion: Bool) throws(CodecError) {
        let plan = ViewGeometry.decodePlan(format: header.format, width: header.width, height: header.height, box: box,
                                           outWidth: size, outHeight: size, fast: fast, exactRegion: exactRegion)
        let shift = try decode(bytes, header: header, scale: plan.scaleDenominator, region: plan.region)
        var bx = plan.box
        bx.x0 += Double(shift); bx.x1 += Double(shift)
        if bx.x0 == 0, bx.y0 == 0, bx.x1 == Double(a.width), bx.y1 == Double(a.height), a.width == size, a.height == size {
            return
        }
        // With an exact region the integer box is resized as a crop of its own
        // (a strided view, no copy): its edges clamp as in torchvision's
        // crop-then-resize. Otherwise the filter may read pixels round the box.
        let cut = exactRegion && plan.scaleDenominator == 1
        let (ox, oy) = cut ? (Int(bx.x0), Int(bx.y0)) : (0, 0)
        let (sw, sh) = cut ? (Int(bx.width), Int(bx.height)) : (a.width, a.height)
        let box: (Float, Float, Float, Float) = cut ? (0, 0, Float(sw), Float(sh))
            : (Float(bx.x0), Float(bx.y0), Float(bx.x1), Float(bx.y1))
        b.shape(size, size, a.channels)
        let resampler = self.resampler
        let result = a.withBuffer { src in
            b.withBuffer { dst in
                Result { () throws(CodecError) in
                    do {
                        try resampler.resize(src.base + (oy * src.width + ox) * src.channels, width: sw, height: sh,
                                             channels: src.channels, stride: src.width * src.channels, box: box,
                                             into: dst.base, width: size, height: size)
                    } catch {
                        // The box comes from the view geometry, inside the decoded image; what
                        // is left is running out of memory for the filter's coefficients.
                        throw CodecError(.noMemory, "resize: \(error)")
                    }
                }
            }
        }
        try result.get()
        swap(&a, &b)
    }

    /// Decodes into `a`, then converts to the renderer's channel count. JPEG regions
    /// may come back widened to iMCU columns (no row copy); returns how many columns
    /// the decoded pixels start left of the requested region.
    @discardableResult
    private func decode(_ bytes: UnsafeRawBufferPointer, header: ImageHeader, scale: Int, region: PixelRect?) throws(CodecError) -> Int {
        let scaledWidth = (header.width + scale - 1) / scale
        let (w, h): (Int, Int) = region.map { (min(scaledWidth, $0.width + DecodeOptions.wideningSlack), $0.height) }
            ?? (scaledWidth, (header.height + scale - 1) / scale)
        a.shape(w, h, header.channels)
        var options = DecodeOptions(scaleDenominator: scale, region: region)
        options.allowWider = header.format == .jpeg
        let got = try a.storage.withUnsafeMutableBufferPointer { out in
            Result { () throws(CodecError) in try Codec.decode(bytes, format: header.format, options: options, into: out) }
        }.get()
        a.shape(got.outputWidth, got.outputHeight, got.channels)
        let shift = region.map { $0.x - got.outputX } ?? 0
        guard a.channels != channels else { return shift }
        b.shape(a.width, a.height, channels)
        a.withBuffer { src in
            b.withBuffer { dst in
                src.convert(into: dst)
            }
        }
        swap(&a, &b)
        return shift
    }

    private func write(into out: UnsafeMutableRawBufferPointer) {
        let layout = self.layout
        a.withBuffer { img in
            switch layout {
            case .uint8NHWC:
                out.baseAddress!.copyMemory(from: img.base, byteCount: min(img.count, out.count))
            case .float32NCHW:
                img.toFloatCHW(scale: scale, offset: offset, into: out.baseAddress!.assumingMemoryBound(to: Float.self))
            case .float32NHWC:
                img.toFloatHWC(scale: scale, offset: offset, into: out.baseAddress!.assumingMemoryBound(to: Float.self))
            }
        }
    }
}
