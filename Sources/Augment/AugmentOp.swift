import Pixels
import ImageCodec
import Foundation

/// The 16 operations of the RandAugment reference (tensorflow/tpu autoaugment.py).
/// Raw names are what `noisy augment --op` takes.
public enum AugmentOp: String, CaseIterable, Sendable, Codable {
    case autoContrast = "auto_contrast", equalize, invert, rotate, posterize, solarize
    case solarizeAdd = "solarize_add", color, contrast, brightness, sharpness
    case shearX = "shear_x", shearY = "shear_y", translateX = "translate_x", translateY = "translate_y"
    case cutout

    /// Geometric ops move pixels (and are compared with PIL more loosely).
    public var isGeometric: Bool {
        switch self {
        case .rotate, .shearX, .shearY, .translateX, .translateY, .cutout: true
        default: false
        }
    }

    /// What the raw parameter means, for `--help` and error messages.
    public var parameterMeaning: String {
        switch self {
        case .autoContrast, .equalize, .invert: "none"
        case .rotate: "degrees, counter-clockwise"
        case .posterize: "bits kept (0-8)"
        case .solarize: "threshold: pixels at or above it are inverted"
        case .solarizeAdd: "amount added to pixels below 128"
        case .color, .contrast, .brightness, .sharpness: "enhance factor (1 = unchanged)"
        case .shearX, .shearY: "shear factor"
        case .translateX, .translateY: "pixels"
        case .cutout: "side of the grey square in pixels"
        }
    }

    /// Accepts the raw name, any case, with or without underscores (`ShearX`, `shear_x`).
    public init?(name: String) {
        let key = name.lowercased().replacingOccurrences(of: "_", with: "").replacingOccurrences(of: "-", with: "")
        guard let op = AugmentOp.allCases.first(where: { $0.rawValue.replacingOccurrences(of: "_", with: "") == key })
        else { return nil }
        self = op
    }
}

/// Applies single ops in place, with PIL's pixel maths (ImageOps, ImageEnhance,
/// Image.transform with bilinear sampling and fill 128).
///
/// Holds the scratch buffers the ops need, so that a worker thread that keeps
/// one `Augmenter` applies ops without allocating once its buffers have grown.
/// Not thread-safe: one per thread.
public final class Augmenter {
    /// PIL's fill colour for geometric ops and Cutout in the reference.
    public static let fill: UInt8 = 128

    private var scratch: [UInt8] = []
    private var luts = [UInt8](repeating: 0, count: 768)
    private var hist = [UInt32](repeating: 0, count: 768)

    public init() {}

    /// Applies `op` to an image value.
    public func apply(_ op: AugmentOp, parameter p: Double, to image: inout Image,
                      cutoutCenter: (x: Int, y: Int)? = nil) {
        image.withPixelBuffer { apply(op, parameter: p, to: $0, cutoutCenter: cutoutCenter) }
    }

    /// Applies `op` with its raw parameter. `cutoutCenter` places Cutout's square
    /// (default: the image centre).
    public func apply(_ op: AugmentOp, parameter p: Double, to img: PixelBuffer, cutoutCenter: (x: Int, y: Int)? = nil) {
        let (w, h) = (img.width, img.height)
        switch op {
        case .invert: pointOp(img) { v in 255 - v }
        case .posterize:
            let bits = max(0, min(8, Int(p)))
            let mask = UInt8(truncatingIfNeeded: ~((1 << (8 - bits)) - 1))
            pointOp(img) { v in v & mask }
        case .solarize:
            let t = Int(p)
            pointOp(img) { v in Int(v) < t ? v : 255 - v }
        case .solarizeAdd:
            let add = Int(p)
            pointOp(img) { v in Int(v) < 128 ? UInt8(max(0, min(255, Int(v) + add))) : v }
        case .autoContrast: autoContrast(img)
        case .equalize: equalize(img)
        case .brightness: img.blend(constant: 0, alpha: Float(p))
        case .contrast: img.blend(constant: grayMean(img), alpha: Float(p))
        case .color:
            img.blendWithLuma(alpha: Float(p))  // the luma of a gray image is itself
        case .sharpness:
            prepareScratch(img.count)
            scratch.withUnsafeMutableBufferPointer { s in
                guard let smoothed = s.baseAddress else { return }
                img.smooth(into: smoothed)
                img.blend(from: smoothed, alpha: Float(p))
            }
        case .rotate: affine(img, Self.rotationMatrix(degrees: p, width: w, height: h))
        case .shearX: affine(img, [1, p, 0, 0, 1, 0])
        case .shearY: affine(img, [1, 0, 0, p, 1, 0])
        case .translateX: affine(img, [1, 0, p, 0, 1, 0])
        case .translateY: affine(img, [1, 0, 0, 0, 1, p])
        case .cutout:
            let side = max(0, Int(p))
            let c = cutoutCenter ?? (w / 2, h / 2)
            let half = side / 2
            img.fill(x0: c.x - half, y0: c.y - half, x1: c.x - half + side, y1: c.y - half + side, value: Self.fill)
        }
    }

    /// Image.rotate(degrees) about the centre, with PIL's matrix (cos/sin rounded to 15 digits).
    static func rotationMatrix(degrees: Double, width: Int, height: Int) -> [Double] {
        let angle = -(degrees.truncatingRemainder(dividingBy: 360) + (degrees < 0 ? 360 : 0)) * .pi / 180
        func r15(_ v: Double) -> Double { (v * 1e15).rounded() / 1e15 }
        var m = [r15(cos(angle)), r15(sin(angle)), 0, r15(-sin(angle)), r15(cos(angle)), 0]
        let cx = Double(width) / 2, cy = Double(height) / 2
        m[2] = m[0] * -cx + m[1] * -cy + cx
        m[5] = m[3] * -cx + m[4] * -cy + cy
        return m
    }

    private func prepareScratch(_ n: Int) {
        if scratch.count < n { scratch = [UInt8](repeating: 0, count: n) }
    }

    private func affine(_ img: PixelBuffer, _ m: [Double]) {
        prepareScratch(img.count)
        scratch.withUnsafeMutableBufferPointer { s in
            guard let out = s.baseAddress else { return }
            img.affineBilinear(m, fill: Self.fill, into: out)
            img.base.update(from: out, count: img.count)
        }
    }

    /// A table op, the same table for every channel.
    private func pointOp(_ img: PixelBuffer, _ f: (UInt8) -> UInt8) {
        for v in 0..<256 { luts[v] = f(UInt8(v)) }
        for c in 1..<img.channels { for v in 0..<256 { luts[c * 256 + v] = luts[v] } }
        applyLuts(img)
    }

    private func applyLuts(_ img: PixelBuffer) {
        luts.withUnsafeBufferPointer { img.applyLookupTables($0) }
    }

    private func histogram(_ img: PixelBuffer) {
        hist.withUnsafeMutableBufferPointer { img.histogram(into: $0) }
    }

    /// ImageOps.autocontrast(cutoff=0): stretch each channel's [lo, hi] to [0, 255].
    private func autoContrast(_ img: PixelBuffer) {
        histogram(img)
        for c in 0..<img.channels {
            let h = c * 256
            guard let lo = (0..<256).first(where: { hist[h + $0] != 0 }),
                  let hi = (0..<256).reversed().first(where: { hist[h + $0] != 0 }), hi > lo else {
                for v in 0..<256 { luts[h + v] = UInt8(v) }
                continue
            }
            let scale = 255.0 / Double(hi - lo)
            let offset = -Double(lo) * scale
            for v in 0..<256 { luts[h + v] = UInt8(max(0, min(255, Int(Double(v) * scale + offset)))) }
        }
        applyLuts(img)
    }

    /// ImageOps.equalize: PIL's cumulative table with step = (total - last bin) // 255.
    private func equalize(_ img: PixelBuffer) {
        histogram(img)
        for c in 0..<img.channels {
            let h = c * 256
            var nonzero = 0, total = 0, last = 0
            for v in 0..<256 where hist[h + v] != 0 {
                nonzero += 1; total += Int(hist[h + v]); last = Int(hist[h + v])
            }
            let step = (total - last) / 255
            guard nonzero > 1, step > 0 else {
                for v in 0..<256 { luts[h + v] = UInt8(v) }
                continue
            }
            var n = step / 2
            for v in 0..<256 {
                luts[h + v] = UInt8(min(255, n / step))
                n += Int(hist[h + v])
            }
        }
        applyLuts(img)
    }

    /// int(mean of the luma + 0.5), as ImageEnhance.Contrast computes it.
    private func grayMean(_ img: PixelBuffer) -> UInt8 {
        let n = img.width * img.height
        guard n > 0 else { return 0 }
        var total = 0
        if img.channels == 1 {
            histogram(img)
            for v in 0..<256 { total += v * Int(hist[v]) }
        } else {
            let px = img.base
            for i in 0..<n {
                let p = 3 * i
                total += (Int(px[p]) * 19595 + Int(px[p + 1]) * 38470 + Int(px[p + 2]) * 7471 + 0x8000) >> 16
            }
        }
        return UInt8(max(0, min(255, Int(Double(total) / Double(n) + 0.5))))
    }
}
