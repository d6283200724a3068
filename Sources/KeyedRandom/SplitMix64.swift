/// SplitMix64's output function (Steele, Lea and Flood, 2014): the one 64-bit mix
/// every seeded choice in noisy goes through. One home, so that two modules can
/// never drift apart on the constants.
@inline(__always)
public func splitMix64Finalize(_ x: UInt64) -> UInt64 {
    var z = x
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

/// The golden-ratio increment of SplitMix64 (2^64 / phi, odd).
public let splitMix64Gamma: UInt64 = 0x9E37_79B9_7F4A_7C15

/// A small sequential seeded generator: for choices made once (which demo images
/// are labeled) and for the trainer's noise (dropout, stochastic depth), which is
/// drawn on one thread in step order. The batch pipeline uses `KeyedRandom`
/// instead, so that its choices do not depend on the order threads run in.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= splitMix64Gamma
        return splitMix64Finalize(state)
    }
}

/// The tie-break key that `labels filter` has used since format 1 to order equally
/// confident samples: a truncated SplitMix mix (its first xor-shift is missing).
/// Kept bit for bit, under a name that says so, because stored selections were
/// made with it and a re-run with the same seed must pick the same samples.
/// New code uses `splitMix64Finalize`.
@inline(__always)
public func legacySelectionTieKey(seed: UInt64, id: UInt64) -> UInt64 {
    var z = (seed ^ splitMix64Gamma) &+ id &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 30)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}
