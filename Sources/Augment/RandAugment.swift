import Foundation
import ImageCodec
import KeyedRandom
import Pixels

/// RandAugment: N ops per image, each drawn uniformly from a list, at magnitude M.
///
/// Two sets of defaults, because the references disagree:
/// - `.reference` follows the TensorFlow code the paper used (tensorflow/tpu
///   autoaugment.py): every chosen op is applied (p = 1), the level M/10 is not
///   clamped (M = 27 extrapolates: 81 degrees, factor 4.96, ...), translations are
///   100 * L pixels and Cutout is one of the 16 ops (side 2 * int(40 * L)).
/// - `.timm` follows timm's `rand-mN-mstd0.5`: each op applied with p = 0.5,
///   Gaussian noise on M (std 0.5), the level clamped to 1, translations relative
///   to the image (0.45 * L * side).
/// Any field can be changed after picking a preset.
public struct RandAugment: Sendable, Equatable, Codable {
    public var layers: Int
    public var magnitude: Double
    /// Probability that each drawn op is applied.
    public var probability: Double
    /// Standard deviation of Gaussian noise added to the magnitude per op (timm's `mstd`).
    public var magnitudeStd: Double
    /// Upper bound on the level M/10 (nil: no bound, as in the TF reference).
    public var maxLevel: Double?
    /// Translations and Cutout relative to the image size instead of absolute pixels
    /// (224-pixel-equivalent: translate 0.45 * L * side, Cutout side 2 * int(0.18 * L * side)).
    public var relativeGeometry: Bool
    public var ops: [AugmentOp]

    public enum Preset: String, Sendable, CaseIterable { case reference, timm }

    public init(layers: Int, magnitude: Double, preset: Preset = .reference) {
        self.layers = layers
        self.magnitude = magnitude
        switch preset {
        case .reference:
            probability = 1; magnitudeStd = 0; maxLevel = nil; relativeGeometry = false
            ops = AugmentOp.allCases
        case .timm:
            probability = 0.5; magnitudeStd = 0.5; maxLevel = 1; relativeGeometry = true
            ops = AugmentOp.allCases.filter { $0 != .cutout }
        }
    }

    /// The raw parameter of `op` at magnitude `m` for an image of the given size.
    /// `negate` flips the sign of the signed ops (rotate, shear, translate).
    public func parameter(_ op: AugmentOp, magnitude m: Double, width: Int, height: Int, negate: Bool) -> Double {
        var level = max(0, m) / 10
        if let maxLevel { level = min(level, maxLevel) }
        let sign: Double = negate ? -1 : 1
        switch op {
        case .autoContrast, .equalize, .invert: return 0
        case .rotate: return sign * 30 * level
        case .posterize: return Double(Int(4 * level))
        case .solarize: return Double(Int(256 * level))
        case .solarizeAdd: return Double(Int(110 * level))
        case .color, .contrast, .brightness, .sharpness: return 0.1 + 1.8 * level
        case .shearX, .shearY: return sign * 0.3 * level
        case .translateX:
            return sign * (relativeGeometry ? 0.45 * level * Double(width) : 100 * level)
        case .translateY:
            return sign * (relativeGeometry ? 0.45 * level * Double(height) : 100 * level)
        case .cutout:
            let pad = relativeGeometry ? Int(0.18 * level * Double(min(width, height))) : Int(40 * level)
            return Double(2 * pad)
        }
    }

    /// Applies N drawn ops to `image`, every choice from `rng`.
    public func apply(to image: PixelBuffer, augmenter: Augmenter, rng: inout KeyedRandom) {
        guard !ops.isEmpty else { return }
        for _ in 0..<layers {
            let op = ops[Int(rng.next(upperBound: UInt64(ops.count)))]
            let applyIt = rng.unit() < probability
            let negate = rng.unit() < 0.5
            var m = magnitude
            if magnitudeStd > 0 { m += magnitudeStd * rng.gaussian() }
            let cx = Int(rng.next(upperBound: UInt64(max(1, image.width))))
            let cy = Int(rng.next(upperBound: UInt64(max(1, image.height))))
            guard applyIt else { continue }
            let p = parameter(op, magnitude: m, width: image.width, height: image.height, negate: negate)
            augmenter.apply(op, parameter: p, to: image, cutoutCenter: (cx, cy))
        }
    }
}

extension KeyedRandom {
    /// A standard normal draw (Box-Muller).
    public mutating func gaussian() -> Double {
        let u1 = max(unit(), 0x1.0p-53)
        let u2 = unit()
        return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
    }
}
