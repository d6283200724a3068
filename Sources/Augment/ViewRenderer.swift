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
    /// The JPEG planes of the YCbCr path (`resizePlanes`).
    private let planeBuffer = PlaneBuffer()
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
        let elements = view.size * view.size * channels
        precondition(out.count >= (layout.normalization == nil ? elements : 4 * elements), "the batch slot is too small")
        guard let base = out.baseAddress else { return }
        let target = PixelOutput(base: base, layout: pixelLayout, scale: scale, offset: offset)
        if try renderPixels(bytes, view: view, key: key, direct: target) { return }
        a.withBuffer { $0.write(to: target) }
    }

    private var pixelLayout: PixelOutput.Layout {
        switch layout {
        case .uint8NHWC: .uint8HWC
        case .float32NCHW: .float32CHW
        case .float32NHWC: .float32HWC
        }
    }

    /// Renders `view` of `bytes` as an image (for previews and `noisy augment`).
    public func renderImage(_ bytes: UnsafeRawBufferPointer, view: View, key: SampleKey) throws(CodecError) -> Image {
        _ = try renderPixels(bytes, view: view, key: key, direct: nil)
        return a.image
    }

    /// Decodes `bytes` in full, converted to this renderer's channels.
    public func decodeFull(_ bytes: UnsafeRawBufferPointer) throws(CodecError) -> Image {
        let header = try Codec.header(bytes)
        try decode(bytes, header: header, scale: 1, region: nil)
        return a.image
    }

    /// Where a resize writes: the batch slot (when it is the view's last step), or
    /// the next plane; either way mirrored when the view flips.
    private enum ResizeTarget {
        case slot(PixelOutput)
        case plane(flip: Bool)
    }

    /// Renders into `a`, or, when the resize is the view's last step and `direct` is
    /// given, straight into `direct` (mirrored there when the view flips); true then.
    private func renderPixels(_ bytes: UnsafeRawBufferPointer, view: View, key: SampleKey,
                              direct: PixelOutput?) throws(CodecError) -> Bool {
        let header = try Codec.header(bytes)
        switch view {
        case .teacher(let v):
            let box = ViewGeometry.centreCropBox(width: header.width, height: header.height, size: v.size,
                                                 cropFraction: v.cropFraction)
            let target = direct.map(ResizeTarget.slot) ?? .plane(flip: false)
            let resized = try decodeAndResize(bytes, header: header, box: box, size: v.size, fast: v.fastDecode,
                                              exactRegion: false, target: target)
            return resized && direct != nil
        case .train(let v):
            var flipRandom = key.random(.flip)
            let flip = v.flip && flipRandom.unit() < 0.5
            // Crop and flip are the whole view: the resize writes the slot, mirrored.
            // Otherwise it writes the next plane, mirrored, for the ops that follow.
            let target: ResizeTarget
            if v.randAugment == nil, v.cutout == 0, var slot = direct {
                slot.flip = flip
                target = .slot(slot)
            } else {
                target = .plane(flip: flip)
            }
            let mirrored = try trainGeometry(bytes, header: header, view: v, key: key, target: target)
            if mirrored, case .slot = target { return true }
            if flip && !mirrored { a.withBuffer { $0.flipHorizontally() } }
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
            return false
        }
    }

    /// The crop of the train view, leaving size x size pixels in `a`.
    /// True when the resize ran (and so wrote the target, mirrored as it asks).
    private func trainGeometry(_ bytes: UnsafeRawBufferPointer, header: ImageHeader, view v: TrainView,
                               key: SampleKey, target: ResizeTarget) throws(CodecError) -> Bool {
        switch v.crop {
        case .randomResized(let scale, let ratio):
            var rng = key.random(.crop)
            let r = ViewGeometry.randomResizedCrop(width: header.width, height: header.height,
                                                   scale: scale, ratio: ratio, rng: &rng)
            let box = SourceBox(x0: Double(r.x), y0: Double(r.y), x1: Double(r.x + r.width), y1: Double(r.y + r.height))
            return try decodeAndResize(bytes, header: header, box: box, size: v.size, fast: v.fastDecode,
                                       exactRegion: true, target: target)
        case .padCrop(let padding):
            if header.width == v.size && header.height == v.size {
                try decode(bytes, header: header, scale: 1, region: nil)
            } else {
                let box = ViewGeometry.centreCropBox(width: header.width, height: header.height, size: v.size, cropFraction: 1)
                _ = try decodeAndResize(bytes, header: header, box: box, size: v.size, fast: v.fastDecode,
                                        exactRegion: false, target: .plane(flip: false))
            }
            var rng = key.random(.crop)
            let span = UInt64(2 * padding + 1)
            let dx = Int(rng.next(upperBound: span)) - padding
            let dy = Int(rng.next(upperBound: span)) - padding
            guard dx != 0 || dy != 0 else { return false }
            b.shape(a.width, a.height, a.channels)
            a.withBuffer { src in
                b.withBuffer { dst in
                    src.window(x: dx, y: dy, into: dst, fill: 0)
                }
            }
            swap(&a, &b)
            return false
        }
    }

    /// Decodes the part of the image the box needs, at the smallest sufficient DCT
    /// scale, and resamples the box to size x size (bilinear, Pillow's maths): into
    /// the target (the slot, or the next plane, which becomes `a`), mirrored as it asks.
    /// False when no resize was needed: `a` then holds the pixels, unmirrored.
    private func decodeAndResize(_ bytes: UnsafeRawBufferPointer, header: ImageHeader, box: SourceBox,
                                 size: Int, fast: Bool, exactRegion: Bool, target: ResizeTarget) throws(CodecError) -> Bool {
        let plan = ViewGeometry.decodePlan(format: header.format, width: header.width, height: header.height, box: box,
                                           outWidth: size, outHeight: size, fast: fast, exactRegion: exactRegion)
        if fast, header.format == .jpeg, channels == 3 {
            let options = DecodeOptions(scaleDenominator: plan.scaleDenominator, region: plan.region)
            if let planes = try Codec.decodePlanes(bytes, options: options, into: planeBuffer) {
                try resizePlanes(planes, plan: plan, size: size, cut: exactRegion && plan.scaleDenominator == 1,
                                 target: target)
                return true
            }
        }
        let shift = try decode(bytes, header: header, scale: plan.scaleDenominator, region: plan.region)
        var bx = plan.box
        bx.x0 += Double(shift); bx.x1 += Double(shift)
        if bx.x0 == 0, bx.y0 == 0, bx.x1 == Double(a.width), bx.y1 == Double(a.height), a.width == size, a.height == size {
            return false
        }
        // With an exact region the integer box is resized as a crop of its own
        // (a strided view, no copy): its edges clamp as in torchvision's
        // crop-then-resize. Otherwise the filter may read pixels round the box.
        let cut = exactRegion && plan.scaleDenominator == 1
        let (ox, oy) = cut ? (Int(bx.x0), Int(bx.y0)) : (0, 0)
        let (sw, sh) = cut ? (Int(bx.width), Int(bx.height)) : (a.width, a.height)
        let box: (Float, Float, Float, Float) = cut ? (0, 0, Float(sw), Float(sh))
            : (Float(bx.x0), Float(bx.y0), Float(bx.x1), Float(bx.y1))
        let resampler = self.resampler
        func resize(into target: PixelOutput) throws(CodecError) {
            let result = a.withBuffer { src in
                Result { () throws(CodecError) in
                    do {
                        try resampler.resize(src.base + (oy * src.width + ox) * src.channels, width: sw, height: sh,
                                             channels: src.channels, stride: src.width * src.channels, box: box,
                                             into: target, width: size, height: size)
                    } catch {
                        // The box comes from the view geometry, inside the decoded image; what
                        // is left is running out of memory for the filter's coefficients.
                        throw CodecError(.noMemory, "resize: \(error)")
                    }
                }
            }
            try result.get()
        }
        try write(target, size: size, channels: a.channels, resize)
        return true
    }

    /// Runs `resize` into the target: the slot, or the next plane (size x size x
    /// channels bytes, mirrored as the target asks), which then becomes `a`.
    private func write(_ target: ResizeTarget, size: Int, channels: Int,
                       _ resize: (PixelOutput) throws(CodecError) -> Void) throws(CodecError) {
        switch target {
        case .slot(let slot):
            try resize(slot)
        case .plane(let flip):
            b.shape(size, size, channels)
            let done: Result<Void, CodecError> = b.storage.withUnsafeMutableBytes { out in
                guard let base = out.baseAddress else { return .success(()) }
                return Result { () throws(CodecError) in try resize(PixelOutput(base: base, layout: .uint8HWC, flip: flip)) }
            }
            try done.get()
            swap(&a, &b)
        }
    }

    /// The YCbCr path of `decodeAndResize`: the plan's box, moved to the planes' first
    /// sample, resized from the planes into the target (or the next plane, then `a`).
    private func resizePlanes(_ planes: DecodedPlanes, plan: DecodePlan, size: Int, cut: Bool,
                              target: ResizeTarget) throws(CodecError) {
        let dx = Double((plan.region?.x ?? 0) - planes.originX), dy = Double((plan.region?.y ?? 0) - planes.originY)
        let box = (Float(plan.box.x0 + dx), Float(plan.box.y0 + dy), Float(plan.box.x1 + dx), Float(plan.box.y1 + dy))
        let resampler = self.resampler
        func resize(into output: PixelOutput) throws(CodecError) {
            do {
                try resampler.resizeYCbCr(planes.planes, box: box, cut: cut, into: output, width: size, height: size)
            } catch {
                // The box lies inside the decoded planes; what is left is running out of memory.
                throw CodecError(.noMemory, "resize: \(error)")
            }
        }
        try write(target, size: size, channels: 3, resize)
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
}
