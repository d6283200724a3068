/// Why each random draw is made: part of the key, so that two purposes never
/// share a stream (the crop of sample 7 does not move when flips change).
public enum RandomPurpose: UInt64, Sendable {
    case shuffle = 1, crop = 2, flip = 3, randAugment = 4, cutout = 5, replacement = 6, corruption = 7
}

/// A counter-based generator: its stream is a pure function of
/// (seed, epoch, sample id, purpose), never of which thread asks or when, so that
/// augmentation results do not depend on thread count or scheduling.
///
/// Each output is SplitMix64's finaliser over the key hash plus a counter: a
/// statistically sound (not cryptographic) mix, the same construction as
/// JAX's/Philox-style "random access" generators, with a cheap 64-bit state.
public struct KeyedRandom: RandomNumberGenerator, Sendable {
    private let key: UInt64
    private var counter: UInt64 = 0

    public init(seed: UInt64, epoch: UInt64, sample: UInt64, purpose: RandomPurpose) {
        var h = Self.mix(seed &+ splitMix64Gamma)
        h = Self.mix(h ^ epoch &+ 0xD1B5_4A32_D192_ED03)
        h = Self.mix(h ^ sample &+ 0x8CB9_2BA7_2F3D_8DD7)
        key = Self.mix(h ^ purpose.rawValue)
    }

    @inline(__always) static func mix(_ x: UInt64) -> UInt64 { splitMix64Finalize(x) }

    public mutating func next() -> UInt64 {
        counter &+= 1
        return Self.mix(key &+ counter &* splitMix64Gamma)
    }

    /// Uniform in [0, 1) with 53 bits.
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}
