import Foundation
import Batches
import ImageCodec
import KeyedRandom
import Pixels

/// How a batch lays out its images.
public enum OutputLayout: Sendable, Equatable {
    /// Bytes, [N, H, W, C].
    case uint8NHWC
    /// Normalised floats, [N, C, H, W], as PyTorch models take them.
    case float32NCHW(Normalization)
    /// Normalised floats, [N, H, W, C]: what the CPU trainer consumes (a convolution
    /// is then one GEMM over every pixel), so it neither transposes nor re-normalises.
    case float32NHWC(Normalization)

    public var name: String {
        switch self { case .uint8NHWC: "uint8-nhwc"; case .float32NCHW: "float32-nchw"; case .float32NHWC: "float32-nhwc" }
    }

    /// The normalisation of float layouts; nil for bytes.
    public var normalization: Normalization? {
        switch self { case .uint8NHWC: nil; case .float32NCHW(let n), .float32NHWC(let n): n }
    }

    /// How the batch value describes these images.
    public var imageLayout: ImageLayout {
        switch self {
        case .uint8NHWC: .uint8NHWC
        case .float32NCHW(let n): .float32(order: .nchw, normalization: n)
        case .float32NHWC(let n): .float32(order: .nhwc, normalization: n)
        }
    }

    public func bytesPerSample(size: Int, channels: Int) -> Int {
        let n = size * size * channels
        switch self { case .uint8NHWC: return n; case .float32NCHW, .float32NHWC: return n * 4 }
    }
}

/// The crop that starts the train view.
public enum TrainCrop: Sendable, Equatable {
    /// torchvision's RandomResizedCrop: a random area fraction and aspect ratio, resized.
    case randomResized(scale: ClosedRange<Double>, ratio: ClosedRange<Double>)
    /// Zero padding then a random crop of the original size: the usual view for
    /// small images (28x28, 32x32) where a resized crop destroys too much.
    case padCrop(padding: Int)

    public static let imageNet = TrainCrop.randomResized(scale: 0.08...1, ratio: (3.0 / 4)...(4.0 / 3))
}

/// The noised student view: crop, flip, RandAugment, Cutout.
public struct TrainView: Sendable, Equatable {
    public var size: Int
    public var crop: TrainCrop
    public var flip: Bool
    public var randAugment: RandAugment?
    /// Side of a grey (128) square placed uniformly at random after RandAugment; 0: off.
    public var cutout: Int
    /// Decode only the crop, at the smallest DCT scale that still covers it (JPEG).
    public var fastDecode: Bool

    public init(size: Int, crop: TrainCrop = .imageNet, flip: Bool = true, randAugment: RandAugment? = nil,
                cutout: Int = 0, fastDecode: Bool = true) {
        self.size = size; self.crop = crop; self.flip = flip
        self.randAugment = randAugment; self.cutout = cutout; self.fastDecode = fastDecode
    }
}

/// The clean teacher view: resize the shorter side to size / cropFraction, centre crop.
/// No randomness: the same bytes always give the same output.
public struct TeacherView: Sendable, Equatable {
    public var size: Int
    /// The centre crop's share of the resized shorter side (timm's crop_pct; 1: no border cut).
    public var cropFraction: Double
    public var fastDecode: Bool
    public init(size: Int, cropFraction: Double = 0.875, fastDecode: Bool = true) {
        self.size = size; self.cropFraction = cropFraction; self.fastDecode = fastDecode
    }
}

public enum View: Sendable, Equatable {
    case train(TrainView)
    case teacher(TeacherView)

    public var size: Int {
        switch self { case .train(let v): v.size; case .teacher(let v): v.size }
    }
}

/// A rectangle in source pixels with fractional edges.
public struct SourceBox: Sendable, Equatable {
    public var x0: Double, y0: Double, x1: Double, y1: Double
    public init(x0: Double, y0: Double, x1: Double, y1: Double) { self.x0 = x0; self.y0 = y0; self.x1 = x1; self.y1 = y1 }
    public var width: Double { x1 - x0 }
    public var height: Double { y1 - y0 }
}

/// What to ask the decoder for, and where the wanted box lies in its output.
public struct DecodePlan: Sendable, Equatable {
    public var scaleDenominator: Int
    /// Region in the scaled image's pixels (nil: all of it).
    public var region: PixelRect?
    /// The wanted box, relative to the decoded pixels.
    public var box: SourceBox
}

public enum ViewGeometry {
    /// torchvision's RandomResizedCrop.get_params: ten tries at a random area and
    /// log-uniform aspect ratio, then a centre crop clamped to the ratio range.
    public static func randomResizedCrop(width: Int, height: Int, scale: ClosedRange<Double>,
                                         ratio: ClosedRange<Double>, rng: inout KeyedRandom) -> PixelRect {
        let area = Double(width * height)
        let logLo = log(ratio.lowerBound), logHi = log(ratio.upperBound)
        for _ in 0..<10 {
            let target = area * (scale.lowerBound + (scale.upperBound - scale.lowerBound) * rng.unit())
            let aspect = exp(logLo + (logHi - logLo) * rng.unit())
            let w = Int((target * aspect).squareRoot().rounded(.toNearestOrEven))
            let h = Int((target / aspect).squareRoot().rounded(.toNearestOrEven))
            if w > 0, w <= width, h > 0, h <= height {
                let y = Int(rng.next(upperBound: UInt64(height - h + 1)))
                let x = Int(rng.next(upperBound: UInt64(width - w + 1)))
                return PixelRect(x: x, y: y, width: w, height: h)
            }
        }
        let inRatio = Double(width) / Double(height)
        var w = width, h = height
        if inRatio < ratio.lowerBound {
            h = Int((Double(w) / ratio.lowerBound).rounded(.toNearestOrEven))
        } else if inRatio > ratio.upperBound {
            w = Int((Double(h) * ratio.upperBound).rounded(.toNearestOrEven))
        }
        return PixelRect(x: (width - w) / 2, y: (height - h) / 2, width: w, height: h)
    }

    /// The source box of resize-shorter-side-then-centre-crop (torchvision Resize + CenterCrop,
    /// timm's eval transform), done as one resample of that box.
    public static func centreCropBox(width: Int, height: Int, size: Int, cropFraction: Double) -> SourceBox {
        let short = max(size, Int((Double(size) / cropFraction).rounded(.down)))
        let (rw, rh): (Int, Int) = width <= height
            ? (short, Int(Double(short) * Double(height) / Double(width)))
            : (Int(Double(short) * Double(width) / Double(height)), short)
        let top = Int((Double(rh - size) / 2).rounded(.toNearestOrEven))
        let left = Int((Double(rw - size) / 2).rounded(.toNearestOrEven))
        let sx = Double(width) / Double(rw), sy = Double(height) / Double(rh)
        return SourceBox(x0: Double(left) * sx, y0: Double(top) * sy,
                         x1: Double(left + size) * sx, y1: Double(top + size) * sy)
    }

    /// Picks the smallest DCT scale (largest denominator) whose output still has at
    /// least `outWidth x outHeight` pixels across the box, and the region to decode.
    /// `margin` keeps that many extra pixels round the box, for the resampling filter.
    /// With `exactRegion` and no scaling the caller cuts the integer box out of the
    /// region before resizing: crop-then-resize, torchvision's order.
    public static func decodePlan(format: ImageFormat, width: Int, height: Int, box: SourceBox,
                                  outWidth: Int, outHeight: Int, fast: Bool, exactRegion: Bool) -> DecodePlan {
        guard fast else { return DecodePlan(scaleDenominator: 1, region: nil, box: box) }
        var d = 1
        if format == .jpeg {
            for candidate in [8, 4, 2] where box.width / Double(candidate) >= Double(outWidth)
                && box.height / Double(candidate) >= Double(outHeight) {
                d = candidate
                break
            }
        }
        let sw = (width + d - 1) / d, sh = (height + d - 1) / d
        let scaled = SourceBox(x0: box.x0 / Double(d), y0: box.y0 / Double(d), x1: box.x1 / Double(d), y1: box.y1 / Double(d))
        // At full scale a margin of 2 pixels (one chroma sample of 4:2:0): libjpeg-turbo
        // upsamples chroma at a region's edges by replication, so the crop's own edge
        // pixels must come from inside the decoded region to equal a full decode.
        let margin = exactRegion && d == 1 ? 2 : max(2, Int((scaled.width / Double(outWidth)).rounded(.up)) + 2)
        let x0 = max(0, Int(scaled.x0.rounded(.down)) - margin)
        let y0 = max(0, Int(scaled.y0.rounded(.down)) - margin)
        let x1 = min(sw, Int(scaled.x1.rounded(.up)) + margin)
        let y1 = min(sh, Int(scaled.y1.rounded(.up)) + margin)
        let region = PixelRect(x: x0, y: y0, width: max(1, x1 - x0), height: max(1, y1 - y0))
        let relative = SourceBox(x0: scaled.x0 - Double(x0), y0: scaled.y0 - Double(y0),
                                 x1: min(Double(region.width), scaled.x1 - Double(x0)),
                                 y1: min(Double(region.height), scaled.y1 - Double(y0)))
        let whole = region.x == 0 && region.y == 0 && region.width == sw && region.height == sh
        return DecodePlan(scaleDenominator: d, region: whole ? nil : region, box: relative)
    }
}
