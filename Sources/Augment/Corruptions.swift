import Foundation
import ImageCodec
import KeyedRandom
import Pixels

/// The ImageNet-C corruptions (Hendrycks & Dietterich, 2019), with the parameters of the
/// reference implementation as packaged on PyPI (`imagecorruptions` 1.1.2): 15 common
/// ones and 4 held out, at severities 1-5.
///
/// Each one follows the reference's arithmetic step by step (float64 where it uses
/// float64, its filters' border rules, its truncation to uint8 at the end), so that the
/// deterministic ones agree with it to within a grey level, and the random ones draw
/// the same distributions. Randomness is keyed: the same (seed, sample, corruption,
/// severity) always gives the same bytes, whatever the thread.
public enum Corruption: String, CaseIterable, Sendable, Codable {
    case gaussianNoise = "gaussian_noise", shotNoise = "shot_noise", impulseNoise = "impulse_noise"
    case defocusBlur = "defocus_blur", glassBlur = "glass_blur", motionBlur = "motion_blur", zoomBlur = "zoom_blur"
    case snow, frost, fog, brightness, contrast
    case elasticTransform = "elastic_transform", pixelate, jpegCompression = "jpeg_compression"
    case speckleNoise = "speckle_noise", gaussianBlur = "gaussian_blur", spatter, saturate

    /// The 15 of ImageNet-C's mCE.
    public static let common: [Corruption] = Array(allCases.prefix(15))
    /// The 4 held-out ("validation") corruptions.
    public static let heldOut: [Corruption] = Array(allCases.suffix(4))

    /// Why a corruption is not built, or nil.
    public var unavailable: String? {
        switch self {
        case .frost:
            "frost blends in the reference's six frost photographs, which noisy does not ship; left out"
        case .spatter:
            "spatter draws its water layer with OpenCV's Canny edges, distance transform and histogram equalisation, not built yet; left out"
        default: nil
        }
    }

    public static var available: [Corruption] { allCases.filter { $0.unavailable == nil } }

    /// Which random draws it makes (none: the result depends on the image alone).
    public var isRandom: Bool {
        switch self {
        case .gaussianNoise, .shotNoise, .impulseNoise, .speckleNoise, .glassBlur, .motionBlur, .snow, .frost, .fog,
             .elasticTransform, .spatter: true
        default: false
        }
    }

    var index: UInt64 { UInt64(Self.allCases.firstIndex(of: self) ?? 0) }
}

public struct CorruptionError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

/// An image as the reference holds it: H x W x 3, float64, interleaved.
struct FloatImage {
    var width: Int, height: Int
    var data: [Double]
    init(width: Int, height: Int, fill: Double = 0) {
        self.width = width; self.height = height; data = [Double](repeating: fill, count: width * height * 3)
    }
    /// From bytes, divided by `scale` (255 for [0, 1], 1 for 0-255); gray becomes three equal channels.
    init(_ image: Image, scale: Double = 255) {
        width = image.width; height = image.height
        data = [Double](repeating: 0, count: width * height * 3)
        let c = image.channels
        for i in 0..<(width * height) {
            for k in 0..<3 { data[3 * i + k] = Double(image.pixels[i * c + (c >= 3 ? k : 0)]) / scale }
        }
    }
    /// np.uint8(np.clip(x, 0, 1) * 255) (or of 0-255 values with `scale` 1): truncation, as the reference returns.
    func bytes(channels: Int, scale: Double = 255) -> Image {
        var out = Image(width: width, height: height, channels: channels)
        for i in 0..<(width * height) {
            for k in 0..<channels {
                let v = data[3 * i + k]
                let clipped = scale == 255 ? min(max(v, 0), 1) * 255 : min(max(v, 0), 255)
                out.pixels[i * channels + k] = UInt8(clipped)
            }
        }
        return out
    }
}

public enum Corruptions {
    /// Applies `corruption` at `severity` (1-5). Gray images are corrupted as three equal
    /// channels (as the reference does) and the first channel is returned.
    public static func apply(_ corruption: Corruption, severity: Int, to image: Image, seed: UInt64,
                             sample: UInt64) throws -> Image {
        guard (1...5).contains(severity) else { throw CorruptionError("severity \(severity): use 1 to 5") }
        if let why = corruption.unavailable { throw CorruptionError("\(corruption.rawValue): \(why)") }
        guard image.width >= 1, image.height >= 1, image.channels == 1 || image.channels >= 3 else {
            throw CorruptionError("an image of \(image.width)x\(image.height)x\(image.channels) cannot be corrupted")
        }
        var rng = KeyedRandom(seed: seed, epoch: corruption.index * 8 + UInt64(severity), sample: sample, purpose: .corruption)
        let channels = image.channels >= 3 ? 3 : 1
        let s = severity - 1
        switch corruption {
        case .gaussianNoise:
            let c = [0.08, 0.12, 0.18, 0.26, 0.38][s]
            var x = FloatImage(image)
            for i in x.data.indices { x.data[i] += rng.normal() * c }
            return x.bytes(channels: channels)
        case .shotNoise:
            let c = [60.0, 25, 12, 5, 3][s]
            var x = FloatImage(image)
            for i in x.data.indices { x.data[i] = Double(rng.poisson(x.data[i] * c)) / c }
            return x.bytes(channels: channels)
        case .impulseNoise:
            let c = [0.03, 0.06, 0.09, 0.17, 0.27][s]
            var x = FloatImage(image)
            // skimage's random_noise 's&p': a mask of flips, then a mask of salt among them.
            let flips = x.data.indices.map { _ in rng.unit() <= c }
            let salt = x.data.indices.map { _ in rng.unit() <= 0.5 }
            for i in x.data.indices where flips[i] { x.data[i] = salt[i] ? 1 : 0 }
            return x.bytes(channels: channels)
        case .speckleNoise:
            let c = [0.15, 0.2, 0.35, 0.45, 0.6][s]
            var x = FloatImage(image)
            for i in x.data.indices { x.data[i] += x.data[i] * rng.normal() * c }
            return x.bytes(channels: channels)
        case .gaussianBlur:
            let c = [1.0, 2, 3, 4, 6][s]
            return gaussian(FloatImage(image), sigmaY: c, sigmaX: c, mode: .nearest, truncate: 4).bytes(channels: channels)
        case .glassBlur:
            return glassBlur(image, s, &rng).bytes(channels: channels)
        case .defocusBlur:
            return defocusBlur(FloatImage(image), s).bytes(channels: channels)
        case .motionBlur:
            let angle = -45 + 90 * rng.unit()
            return motionBlur(image, severity: severity, angle: angle)
        case .zoomBlur:
            return zoomBlur(image, s).bytes(channels: channels)
        case .snow:
            return snow(image, s, &rng).bytes(channels: channels)
        case .fog:
            return fog(image, s, &rng).bytes(channels: channels)
        case .brightness:
            let c = [0.1, 0.2, 0.3, 0.4, 0.5][s]
            var x = FloatImage(image)
            if image.channels == 1 {
                for i in x.data.indices { x.data[i] = min(max(x.data[i] + c, 0), 1) }
            } else {
                mapHSV(&x) { _, _, v in v = min(max(v + c, 0), 1) }
            }
            return x.bytes(channels: channels)
        case .contrast:
            let c = [0.4, 0.3, 0.2, 0.1, 0.05][s]
            var x = FloatImage(image)
            var means = [0.0, 0.0, 0.0]
            for i in x.data.indices { means[i % 3] += x.data[i] }
            for k in 0..<3 { means[k] /= Double(x.width * x.height) }
            for i in x.data.indices { x.data[i] = (x.data[i] - means[i % 3]) * c + means[i % 3] }
            return x.bytes(channels: channels)
        case .saturate:
            let c = [(0.3, 0.0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)][s]
            var x = FloatImage(image)
            mapHSV(&x) { _, sat, _ in sat = min(max(sat * c.0 + c.1, 0), 1) }
            return x.bytes(channels: channels)
        case .elasticTransform:
            let (dx, dy) = elasticField(width: image.width, height: image.height, &rng)
            return elasticTransform(image, severity: severity, uniformX: dx, uniformY: dy)
        case .pixelate:
            let c = [0.6, 0.5, 0.4, 0.3, 0.25][s]
            let rgb = FloatImage(image, scale: 1).bytes(channels: 3, scale: 1)
            let small = boxResize(rgb, width: Int(Double(image.width) * c), height: Int(Double(image.height) * c))
            return firstChannels(nearestResize(small, width: image.width, height: image.height), channels)
        case .jpegCompression:
            let q = [25, 18, 15, 10, 7][s]
            let rgb = FloatImage(image, scale: 1).bytes(channels: 3, scale: 1)
            do {
                let encoded = try Codec.encodeJPEG(rgb, quality: q)
                return firstChannels(try Codec.decode(encoded), channels)
            } catch { throw CorruptionError("jpeg_compression: \(error)") }
        case .frost, .spatter:
            throw CorruptionError("\(corruption.rawValue): not built")
        }
    }

    static func firstChannels(_ image: Image, _ channels: Int) -> Image {
        guard channels == 1, image.channels == 3 else { return image }
        var out = Image(width: image.width, height: image.height, channels: 1)
        for i in 0..<(image.width * image.height) { out.pixels[i] = image.pixels[3 * i] }
        return out
    }

    // MARK: Colour (skimage.color.rgb2hsv / hsv2rgb)

    static func mapHSV(_ x: inout FloatImage, _ body: (inout Double, inout Double, inout Double) -> Void) {
        for i in 0..<(x.width * x.height) {
            let r = x.data[3 * i], g = x.data[3 * i + 1], b = x.data[3 * i + 2]
            let v = max(r, g, b), delta = v - min(r, g, b)
            var s = v == 0 ? 0 : delta / v
            if delta == 0 { s = 0 }
            var h = 0.0
            if delta != 0 {
                if b == v { h = 4 + (r - g) / delta } else if g == v { h = 2 + (b - r) / delta } else { h = (g - b) / delta }
                h = (h / 6).truncatingRemainder(dividingBy: 1)
                if h < 0 { h += 1 }
            }
            var vv = v
            body(&h, &s, &vv)
            let hi = Int((h * 6).rounded(.down)), f = h * 6 - Double(hi)
            let p = vv * (1 - s), q = vv * (1 - f * s), t = vv * (1 - (1 - f) * s)
            let rgb: (Double, Double, Double)
            switch ((hi % 6) + 6) % 6 {
            case 0: rgb = (vv, t, p)
            case 1: rgb = (q, vv, p)
            case 2: rgb = (p, vv, t)
            case 3: rgb = (p, q, vv)
            case 4: rgb = (t, p, vv)
            default: rgb = (vv, p, q)
            }
            x.data[3 * i] = rgb.0; x.data[3 * i + 1] = rgb.1; x.data[3 * i + 2] = rgb.2
        }
    }

    // MARK: Filters

    enum Border { case nearest, reflect, reflect101 }

    /// Index `i` of a line of `n` samples under a border rule (scipy's 'nearest' and
    /// 'reflect', OpenCV's BORDER_REFLECT_101).
    @inline(__always) static func border(_ i: Int, _ n: Int, _ mode: Border) -> Int {
        if i >= 0 && i < n { return i }
        if n == 1 { return 0 }
        switch mode {
        case .nearest: return i < 0 ? 0 : n - 1
        case .reflect:
            let period = 2 * n
            var j = i % period
            if j < 0 { j += period }
            return j < n ? j : period - 1 - j
        case .reflect101:
            let period = 2 * n - 2
            var j = i % period
            if j < 0 { j += period }
            return j < n ? j : period - j
        }
    }

    /// scipy.ndimage.gaussian_filter over the two spatial axes (skimage's gaussian with
    /// a channel axis): radius int(truncate * sigma + 0.5), weights exp(-x²/2σ²) summed to 1.
    static func gaussian(_ x: FloatImage, sigmaY: Double, sigmaX: Double, mode: Border, truncate: Double) -> FloatImage {
        func kernel(_ sigma: Double) -> [Double] {
            let r = Int(truncate * sigma + 0.5)
            guard sigma > 0, r > 0 else { return [1] }
            var k = (-r...r).map { exp(-0.5 * Double($0 * $0) / (sigma * sigma)) }
            let sum = k.reduce(0, +)
            for i in k.indices { k[i] /= sum }
            return k
        }
        return separable(x, rows: kernel(sigmaY), columns: kernel(sigmaX), mode: mode)
    }

    /// Correlates along y with `rows`, then along x with `columns`, channel by channel.
    static func separable(_ x: FloatImage, rows: [Double], columns: [Double], mode: Border) -> FloatImage {
        let w = x.width, h = x.height
        // Source offsets per output row (y pass) and column (x pass), taps in order: the same
        // sums in the same order as a tap-by-tap border lookup, without it in the inner loop.
        let ry = rows.count / 2, rx = columns.count / 2
        let rowOffsets = (0..<h).flatMap { y in rows.indices.map { border(y + $0 - ry, h, mode) * w * 3 } }
        let colOffsets = (0..<w).flatMap { xx in columns.indices.map { border(xx + $0 - rx, w, mode) * 3 } }
        var tmp = x, out = x
        rows.withUnsafeBufferPointer { k in
            x.data.withUnsafeBufferPointer { src in
                tmp.data.withUnsafeMutableBufferPointer { dst in
                    for y in 0..<h {
                        let base = y * k.count
                        for i in 0..<(w * 3) {
                            var acc = 0.0
                            for j in 0..<k.count { acc += k[j] * src[rowOffsets[base + j] + i] }
                            dst[y * w * 3 + i] = acc
                        }
                    }
                }
            }
        }
        columns.withUnsafeBufferPointer { k in
            tmp.data.withUnsafeBufferPointer { src in
                out.data.withUnsafeMutableBufferPointer { dst in
                    for y in 0..<h {
                        let row = y * w * 3
                        for xx in 0..<w {
                            let base = xx * k.count
                            for c in 0..<3 {
                                var acc = 0.0
                                for j in 0..<k.count { acc += k[j] * src[row + colOffsets[base + j] + c] }
                                dst[row + xx * 3 + c] = acc
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    static func defocusBlur(_ x: FloatImage, _ s: Int) -> FloatImage {
        let (radius, aliasBlur) = [(3.0, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)][s]
        // The reference's disk: an aliased disk (float32, summed to 1), smoothed by
        // cv2.GaussianBlur (3x3, or 5x5 above radius 8; BORDER_REFLECT_101).
        let half = radius <= 8 ? 8 : Int(radius)
        let ksize = radius <= 8 ? 3 : 5
        let n = 2 * half + 1
        var disk = [Float](repeating: 0, count: n * n)
        for y in 0..<n { for x in 0..<n {
            let dy = Double(y - half), dx = Double(x - half)
            disk[y * n + x] = dx * dx + dy * dy <= radius * radius ? 1 : 0
        } }
        let total = disk.reduce(0, +)
        for i in disk.indices { disk[i] /= total }
        var g = (0..<ksize).map { i -> Double in
            let t = Double(i) - Double(ksize - 1) * 0.5
            return exp(-0.5 / (aliasBlur * aliasBlur) * t * t)
        }
        let gs = g.reduce(0, +)
        g = g.map { Double(Float($0 / gs)) }
        var smooth = [Double](repeating: 0, count: n * n), pass = [Double](repeating: 0, count: n * n)
        let r = ksize / 2
        for y in 0..<n { for x in 0..<n {
            var acc = 0.0
            for (j, w) in g.enumerated() { acc += w * Double(disk[y * n + border(x + j - r, n, .reflect101)]) }
            pass[y * n + x] = Double(Float(acc))
        } }
        for y in 0..<n { for x in 0..<n {
            var acc = 0.0
            for (j, w) in g.enumerated() { acc += w * pass[border(y + j - r, n, .reflect101) * n + x] }
            smooth[y * n + x] = Double(Float(acc))
        } }
        // cv2.filter2D: correlation, BORDER_REFLECT_101. The non-zero taps in row-major order
        // (the order of the sums), with border tables for rows and columns.
        let taps = (0..<(n * n)).filter { smooth[$0] != 0 }
        let weights = taps.map { smooth[$0] }, tapY = taps.map { $0 / n }, tapX = taps.map { $0 % n }
        let w = x.width, h = x.height
        let ys = (0..<(h + n)).map { border($0 - half, h, .reflect101) * w * 3 }
        let xs = (0..<(w + n)).map { border($0 - half, w, .reflect101) * 3 }
        var out = x
        x.data.withUnsafeBufferPointer { src in
            out.data.withUnsafeMutableBufferPointer { dst in
                for y in 0..<h {
                    for xx in 0..<w {
                        var a0 = 0.0, a1 = 0.0, a2 = 0.0
                        for t in 0..<weights.count {
                            let o = ys[y + tapY[t]] + xs[xx + tapX[t]]
                            let k = weights[t]
                            a0 += k * src[o]; a1 += k * src[o + 1]; a2 += k * src[o + 2]
                        }
                        let o = (y * w + xx) * 3
                        dst[o] = a0; dst[o + 1] = a1; dst[o + 2] = a2
                    }
                }
            }
        }
        return out
    }

    /// The reference's motion blur of 0-255 values: 2r+1 copies of the image shifted
    /// along `angle` (degrees), edges repeated, weighted by a half Gaussian; float32.
    static func motionBlurField(_ x: [Double], width: Int, height: Int, planes: Int, radius: Int, sigma: Double, angle: Double) -> [Double] {
        let width1 = radius * 2 + 1
        var k = (0..<width1).map { exp(-Double($0 * $0) / (2 * sigma * sigma)) / (sqrt(2 * Double.pi) * sigma) }
        let z = k.reduce(0, +)
        k = k.map { $0 / z }
        let a = angle * Double.pi / 180
        let point = (Double(width1) * sin(a), Double(width1) * cos(a))
        let hyp = hypot(point.0, point.1)
        var blurred = [Double](repeating: 0, count: x.count)
        for i in 0..<width1 {
            let dy = -Int((Double(i) * point.0 / hyp - 0.5).rounded(.up))
            let dx = -Int((Double(i) * point.1 / hyp - 0.5).rounded(.up))
            if abs(dy) >= height || abs(dx) >= width { break }
            let w = k[i]
            for y in 0..<height {
                let sy = min(max(y - dy, 0), height - 1)
                for xx in 0..<width {
                    let sx = min(max(xx - dx, 0), width - 1)
                    for c in 0..<planes { blurred[(y * width + xx) * planes + c] += w * x[(sy * width + sx) * planes + c] }
                }
            }
        }
        return blurred
    }

    /// Motion blur at a given angle (the reference draws it uniformly in [-45, 45]).
    public static func motionBlur(_ image: Image, severity: Int, angle: Double) -> Image {
        let (radius, sigma) = [(10, 3.0), (15, 5), (15, 8), (15, 12), (20, 15)][max(0, min(4, severity - 1))]
        let rgb = FloatImage(image, scale: 1)
        var out = rgb
        out.data = motionBlurField(rgb.data, width: image.width, height: image.height, planes: 3, radius: radius, sigma: sigma, angle: angle)
        return out.bytes(channels: image.channels >= 3 ? 3 : 1, scale: 1)
    }

    /// scipy.ndimage.zoom(order=1) of the centre of a plane stack (clipped_zoom): the
    /// central ceil(n/z) samples per axis, zoomed to round(ceil(n/z) * z); float32.
    static func clippedZoom(_ x: [Double], width: Int, height: Int, planes: Int, zoom: Double) -> (data: [Double], width: Int, height: Int) {
        let ch = Int((Double(height) / zoom).rounded(.up)), cw = Int((Double(width) / zoom).rounded(.up))
        let top = (height - ch) / 2, left = (width - cw) / 2
        let oh = Int((Double(ch) * zoom).rounded(.toNearestOrEven)), ow = Int((Double(cw) * zoom).rounded(.toNearestOrEven))
        let sy = oh > 1 ? Double(ch - 1) / Double(oh - 1) : 0, sx = ow > 1 ? Double(cw - 1) / Double(ow - 1) : 0
        var out = [Double](repeating: 0, count: ow * oh * planes)
        for y in 0..<oh {
            let fy = Double(y) * sy
            let y0 = min(Int(fy), ch - 1), y1 = min(y0 + 1, ch - 1), wy = fy - Double(y0)
            for xx in 0..<ow {
                let fx = Double(xx) * sx
                let x0 = min(Int(fx), cw - 1), x1 = min(x0 + 1, cw - 1), wx = fx - Double(x0)
                for c in 0..<planes {
                    func at(_ yy: Int, _ xq: Int) -> Double { x[((top + yy) * width + left + xq) * planes + c] }
                    out[(y * ow + xx) * planes + c] = (1 - wy) * ((1 - wx) * at(y0, x0) + wx * at(y0, x1)) + wy * ((1 - wx) * at(y1, x0) + wx * at(y1, x1))
                }
            }
        }
        return (out, ow, oh)
    }

    /// numpy.arange(start, stop, step): ceil((stop - start) / step) values, filled as numpy
    /// fills them (start + i * ((start + step) - start)), whose rounding decides some zoom
    /// sizes (70 x 1.1500000000000001 rounds to 81, 70 x 1.15 to 80).
    static func arange(_ start: Double, _ stop: Double, _ step: Double) -> [Double] {
        let n = Int(((stop - start) / step).rounded(.up))
        let delta = (start + step) - start
        return (0..<max(0, n)).map { start + Double($0) * delta }
    }

    static func zoomBlur(_ image: Image, _ s: Int) -> FloatImage {
        let zooms = [arange(1, 1.11, 0.01), arange(1, 1.16, 0.01), arange(1, 1.21, 0.02), arange(1, 1.26, 0.02), arange(1, 1.31, 0.03)][s]
        // float32, as the reference holds it.
        let x32 = FloatImage(image).data.map { Float($0) }
        let x = x32.map { Double($0) }
        var acc = [Float](repeating: 0, count: x.count)
        for z in zooms {
            let layer = clippedZoom(x, width: image.width, height: image.height, planes: 3, zoom: z)
            for y in 0..<min(image.height, layer.height) {
                for xx in 0..<min(image.width, layer.width) {
                    for c in 0..<3 { acc[(y * image.width + xx) * 3 + c] += Float(layer.data[(y * layer.width + xx) * 3 + c]) }
                }
            }
        }
        var out = FloatImage(width: image.width, height: image.height)
        let n = Float(zooms.count + 1)
        for i in x.indices { out.data[i] = Double((x32[i] + acc[i]) / n) }
        return out
    }

    static func glassBlur(_ image: Image, _ s: Int, _ rng: inout KeyedRandom) -> FloatImage {
        let (sigma, delta, iterations) = [(0.7, 1, 2), (0.9, 2, 1), (1.0, 2, 3), (1.1, 3, 2), (1.5, 4, 2)][s]
        let blurred = gaussian(FloatImage(image), sigmaY: sigma, sigmaX: sigma, mode: .nearest, truncate: 4)
        var x = blurred.data.map { UInt8(max(0, min(255, $0 * 255))) }
        let w = image.width, h = image.height
        for _ in 0..<iterations {
            var yy = h - delta
            while yy > delta {
                var xx = w - delta
                while xx > delta {
                    let dx = Int(rng.next(upperBound: UInt64(2 * delta))) - delta
                    let dy = Int(rng.next(upperBound: UInt64(2 * delta))) - delta
                    let hp = yy + dy, wp = xx + dx
                    // The reference's `x[h, w], x[h', w'] = x[h', w'], x[h, w]` swaps numpy
                    // views: both end up holding x[h', w']. That is what it computes, so that
                    // is what this does.
                    if hp >= 0, hp < h, wp >= 0, wp < w {
                        for c in 0..<3 { x[(yy * w + xx) * 3 + c] = x[(hp * w + wp) * 3 + c] }
                    }
                    xx -= 1
                }
                yy -= 1
            }
        }
        var f = FloatImage(width: w, height: h)
        f.data = x.map { Double($0) / 255 }
        return gaussian(f, sigmaY: sigma, sigmaX: sigma, mode: .nearest, truncate: 4)
    }

    /// The reference's plasma fractal (diamond-square), side a power of two, in [0, 1].
    static func plasmaFractal(size: Int, wibbleDecay: Double, _ rng: inout KeyedRandom) -> [Double] {
        var map = [Double](repeating: 0, count: size * size)
        var step = size
        var wibble = 100.0
        func at(_ y: Int, _ x: Int) -> Double { map[((y % size + size) % size) * size + (x % size + size) % size] }
        func wibbled(_ v: Double) -> Double { v / 4 + wibble * (-wibble + 2 * wibble * rng.unit()) }
        while step >= 2 {
            let half = step / 2
            // Squares: each centre from its four corners (np.roll wraps around).
            var centres: [(Int, Int, Double)] = []
            for y in stride(from: 0, to: size, by: step) {
                for x in stride(from: 0, to: size, by: step) {
                    centres.append((y + half, x + half, at(y, x) + at(y + step, x) + at(y, x + step) + at(y + step, x + step)))
                }
            }
            for (y, x, sum) in centres { map[y * size + x] = wibbled(sum) }
            // Diamonds: the edge midpoints, first those on corner rows, then those on corner columns.
            var rowsMid: [(Int, Int, Double)] = []
            for y in stride(from: 0, to: size, by: step) {
                for x in stride(from: half, to: size, by: step) {
                    rowsMid.append((y, x, at(y + half, x) + at(y - half, x) + at(y, x - half) + at(y, x + half)))
                }
            }
            for (y, x, sum) in rowsMid { map[y * size + x] = wibbled(sum) }
            var colsMid: [(Int, Int, Double)] = []
            for y in stride(from: half, to: size, by: step) {
                for x in stride(from: 0, to: size, by: step) {
                    colsMid.append((y, x, at(y, x + half) + at(y, x - half) + at(y - half, x) + at(y + half, x)))
                }
            }
            for (y, x, sum) in colsMid { map[y * size + x] = wibbled(sum) }
            step /= 2
            wibble /= wibbleDecay
        }
        let lo = map.min() ?? 0
        for i in map.indices { map[i] -= lo }
        let hi = map.max() ?? 1
        return hi > 0 ? map.map { $0 / hi } : map
    }

    static func fog(_ image: Image, _ s: Int, _ rng: inout KeyedRandom) -> FloatImage {
        let (strength, decay) = [(1.5, 2.0), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)][s]
        var x = FloatImage(image)
        let maxVal = x.data.max() ?? 0
        var size = 1
        while size < max(image.width, image.height, 3) { size *= 2 }
        let plasma = plasmaFractal(size: size, wibbleDecay: decay, &rng)
        for y in 0..<x.height {
            for xx in 0..<x.width {
                for c in 0..<3 { x.data[(y * x.width + xx) * 3 + c] += strength * plasma[y * size + xx] }
            }
        }
        for i in x.data.indices { x.data[i] = x.data[i] * maxVal / (maxVal + strength) }
        return x
    }

    static func snow(_ image: Image, _ s: Int, _ rng: inout KeyedRandom) -> FloatImage {
        let c = [(0.1, 0.3, 3.0, 0.5, 10, 4.0, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
                 (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)][s]
        let w = image.width, h = image.height
        let layer0 = (0..<(w * h)).map { _ in c.0 + c.1 * rng.normal() }
        var zoomed = clippedZoom(layer0, width: w, height: h, planes: 1, zoom: c.2)
        for i in zoomed.data.indices {
            if zoomed.data[i] < c.3 { zoomed.data[i] = 0 }
            zoomed.data[i] = min(max(zoomed.data[i], 0), 1)
        }
        let angle = -135 + 90 * rng.unit()
        let blurred = motionBlurField(zoomed.data, width: zoomed.width, height: zoomed.height, planes: 1, radius: c.4, sigma: c.5, angle: angle)
        var snowLayer = [Double](repeating: 0, count: w * h)
        for y in 0..<min(h, zoomed.height) {
            for xx in 0..<min(w, zoomed.width) {
                snowLayer[y * w + xx] = Double(UInt8(truncatingIfNeeded: Int((blurred[y * zoomed.width + xx] * 255).rounded(.toNearestOrEven)))) / 255
            }
        }
        var x = FloatImage(image)
        for i in 0..<(w * h) {
            let gray = Double(Float(0.299) * Float(x.data[3 * i]) + Float(0.587) * Float(x.data[3 * i + 1]) + Float(0.114) * Float(x.data[3 * i + 2]))
            let y = i / w, xx = i % w
            let flake = snowLayer[i] + snowLayer[(h - 1 - y) * w + (w - 1 - xx)]
            for k in 0..<3 {
                let v = Double(Float(x.data[3 * i + k]))
                x.data[3 * i + k] = c.6 * v + (1 - c.6) * max(v, gray * 1.5 + 0.5) + flake
            }
        }
        return x
    }

    /// The two uniform fields the reference smooths into an elastic displacement.
    static func elasticField(width: Int, height: Int, _ rng: inout KeyedRandom) -> ([Double], [Double]) {
        let m = Double(height) * 0.005
        let dx = (0..<(width * height)).map { _ in -m + 2 * m * rng.unit() }
        let dy = (0..<(width * height)).map { _ in -m + 2 * m * rng.unit() }
        return (dx, dy)
    }

    /// The elastic transform for given uniform fields (H x W, drawn in [-0.005 H, 0.005 H]):
    /// smoothed (reflect, truncate 3, sigma 1% of each side), scaled, and sampled with
    /// bilinear interpolation and reflected borders.
    public static func elasticTransform(_ image: Image, severity: Int, uniformX: [Double], uniformY: [Double]) -> Image {
        let alphas: [Double] = [250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1, 250 * 0.12]
        let alpha = alphas[max(0, min(4, severity - 1))]
        let w = image.width, h = image.height
        func smooth(_ f: [Double]) -> [Float] {
            var img = FloatImage(width: w, height: h)
            for i in 0..<(w * h) { for k in 0..<3 { img.data[3 * i + k] = f[i] } }
            let g = gaussian(img, sigmaY: Double(h) * 0.01, sigmaX: Double(w) * 0.01, mode: .reflect, truncate: 3)
            return (0..<(w * h)).map { Float(g.data[3 * $0] * alpha) }
        }
        let dx = smooth(uniformX), dy = smooth(uniformY)
        let src = FloatImage(image).data.map { Float($0) }
        var out = FloatImage(width: w, height: h)
        for y in 0..<h {
            for x in 0..<w {
                let fy = Double(y) + Double(dy[y * w + x]), fx = Double(x) + Double(dx[y * w + x])
                let y0 = Int(fy.rounded(.down)), x0 = Int(fx.rounded(.down))
                let wy = fy - Double(y0), wx = fx - Double(x0)
                let ya = border(y0, h, .reflect), yb = border(y0 + 1, h, .reflect)
                let xa = border(x0, w, .reflect), xb = border(x0 + 1, w, .reflect)
                for c in 0..<3 {
                    func at(_ yy: Int, _ xx: Int) -> Double { Double(src[(yy * w + xx) * 3 + c]) }
                    let v = (1 - wy) * ((1 - wx) * at(ya, xa) + wx * at(ya, xb)) + wy * ((1 - wx) * at(yb, xa) + wx * at(yb, xb))
                    out.data[(y * w + x) * 3 + c] = Double(Float(v))
                }
            }
        }
        return out.bytes(channels: image.channels >= 3 ? 3 : 1)
    }

    // MARK: Pillow resizes (pixelate)

    /// Pillow's BOX resize of 8-bit images: per axis, each output pixel averages the
    /// inputs its box covers (fractional at the ends), in 22-bit fixed point;
    /// horizontal pass first.
    static func boxResize(_ image: Image, width: Int, height: Int) -> Image {
        func coefficients(_ inSize: Int, _ outSize: Int) -> [(start: Int, weights: [Int32])] {
            let scale = Double(inSize) / Double(outSize)
            let filterScale = max(scale, 1)
            let support = 0.5 * filterScale
            return (0..<outSize).map { xx in
                let center = (Double(xx) + 0.5) * scale
                let ss = 1 / filterScale
                let lo = max(Int(center - support + 0.5), 0)
                let hi = min(Int(center + support + 0.5), inSize)
                var k = (lo..<hi).map { x -> Double in
                    let t = (Double(x) - center + 0.5) * ss
                    return t > -0.5 && t <= 0.5 ? 1 : 0
                }
                let sum = k.reduce(0, +)
                if sum != 0 { k = k.map { $0 / sum } }
                return (lo, k.map { Int32($0 < 0 ? -0.5 + $0 * Double(1 << 22) : 0.5 + $0 * Double(1 << 22)) })
            }
        }
        let c = image.channels
        let ch = coefficients(image.width, max(1, width))
        var mid = Image(width: max(1, width), height: image.height, channels: c)
        for y in 0..<image.height {
            for (x, k) in ch.enumerated() {
                for p in 0..<c {
                    var acc = Int64(1 << 21)
                    for (j, w) in k.weights.enumerated() { acc += Int64(w) * Int64(image.pixels[(y * image.width + k.start + j) * c + p]) }
                    mid.pixels[(y * mid.width + x) * c + p] = UInt8(min(max(acc >> 22, 0), 255))
                }
            }
        }
        let cv = coefficients(image.height, max(1, height))
        var out = Image(width: mid.width, height: max(1, height), channels: c)
        for (y, k) in cv.enumerated() {
            for x in 0..<mid.width {
                for p in 0..<c {
                    var acc = Int64(1 << 21)
                    for (j, w) in k.weights.enumerated() { acc += Int64(w) * Int64(mid.pixels[((k.start + j) * mid.width + x) * c + p]) }
                    out.pixels[(y * out.width + x) * c + p] = UInt8(min(max(acc >> 22, 0), 255))
                }
            }
        }
        return out
    }

    /// Pillow's NEAREST resize (ImagingScaleAffine): the source coordinate starts at half a
    /// step and grows by in/out per pixel, accumulated in floating point as Pillow does,
    /// and is truncated.
    static func nearestResize(_ image: Image, width: Int, height: Int) -> Image {
        func table(_ inSize: Int, _ outSize: Int) -> [Int] {
            let step = Double(inSize) / Double(outSize)
            var at = step * 0.5
            return (0..<outSize).map { _ in
                let i = min(max(Int(at), 0), inSize - 1)
                at += step
                return i
            }
        }
        let c = image.channels
        var out = Image(width: width, height: height, channels: c)
        let xs = table(image.width, width), ys = table(image.height, height)
        for (y, iy) in ys.enumerated() {
            for (x, ix) in xs.enumerated() {
                for p in 0..<c { out.pixels[(y * width + x) * c + p] = image.pixels[(iy * image.width + ix) * c + p] }
            }
        }
        return out
    }
}

extension KeyedRandom {
    /// A standard normal draw (Box-Muller, one of the pair).
    mutating func normal() -> Double {
        let u1 = max(unit(), 0x1.0p-53), u2 = unit()
        return sqrt(-2 * log(u1)) * cos(2 * Double.pi * u2)
    }

    /// A Poisson draw of mean `lambda` (inversion; the means here are at most 60).
    mutating func poisson(_ lambda: Double) -> Int {
        guard lambda > 0 else { return 0 }
        let u = unit()
        var k = 0, p = exp(-lambda), cdf = p
        while u > cdf && k < 10_000 {
            k += 1
            p *= lambda / Double(k)
            cdf += p
        }
        return k
    }
}
