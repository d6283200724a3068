import Augment
import Batches
import KeyedRandom

/// Walks a source of `count` items epoch after epoch. Each epoch is a permutation
/// derived from (seed, epoch) alone. The ranks take it in rounds: from the global
/// position g, rank r of w takes item g + r, and g advances by w. A round that would
/// not fill every rank ends the epoch (fewer than w items sit out, different ones
/// every epoch), so ranks are disjoint and equal in length. Because g counts what all
/// ranks took together, the same state resumes at another world size: the new ranks
/// continue the same epoch from g, and nothing is taken twice or skipped, save the
/// last round's remainder.
public struct EpochSampler: Sendable {
    public let count: Int
    /// Positions of each epoch's permutation that are taken (at most `count`): a node
    /// serving part of a shard set takes the length every node can, so that every rank
    /// of every node gets the same number of items (the rest of each permutation, other
    /// items every epoch, sits out).
    public let epochLength: Int
    public let rank: Int
    public let worldSize: Int
    public private(set) var state: SamplerState
    private var order: [Int] = []
    private var orderEpoch: UInt64 = .max

    /// Items one rank takes in a whole epoch.
    public var perRank: Int { epochLength / worldSize }

    public init(count: Int, state: SamplerState, rank: Int = 0, worldSize: Int = 1, epochLength: Int? = nil) throws(SamplerError) {
        guard worldSize >= 1, (0..<worldSize).contains(rank) else {
            throw SamplerError(.ranks, "rank \(rank) is not in 0..<\(worldSize)")
        }
        let length = min(count, epochLength ?? count)
        guard length >= worldSize else {
            throw SamplerError(.ranks, "\(length) items cannot be shared by \(worldSize) ranks")
        }
        var state = state
        if let step = state.legacyStep {
            guard step >= 0, step < length / worldSize else {
                throw SamplerError(.state, "step \(step) is outside an epoch of \(length / worldSize) items per rank")
            }
            state.position = step * worldSize
            state.legacyStep = nil
        }
        guard state.position >= 0, state.position <= length else {
            throw SamplerError(.state, "position \(state.position) is outside an epoch of \(length) items")
        }
        self.count = count
        self.epochLength = length
        self.rank = rank
        self.worldSize = worldSize
        self.state = state
        advanceIfDone()
    }

    /// The permutation of epoch `epoch`: the same for every rank.
    public static func permutation(count: Int, seed: UInt64, epoch: UInt64) -> [Int] {
        var p = Array(0..<count)
        var rng = KeyedRandom(seed: seed, epoch: epoch, sample: 0, purpose: .shuffle)
        // Fisher-Yates with an unbiased bounded draw.
        var i = count - 1
        while i > 0 {
            let j = Int(rng.next(upperBound: UInt64(i + 1)))
            p.swapAt(i, j)
            i -= 1
        }
        return p
    }

    /// Starts the next epoch when what is left cannot fill a round of every rank.
    private mutating func advanceIfDone() {
        if epochLength - state.position < worldSize {
            state.position = 0
            state.epoch += 1
        }
    }

    /// The next item, the epoch it belongs to and its position in that epoch's permutation.
    public mutating func next() -> (item: Int, epoch: UInt64, position: Int) {
        if orderEpoch != state.epoch {
            order = Self.permutation(count: count, seed: state.seed, epoch: state.epoch)
            orderEpoch = state.epoch
        }
        let position = state.position + rank
        let item = order[position]
        let epoch = state.epoch
        state.position += worldSize
        advanceIfDone()
        return (item, epoch, position)
    }
}

/// A sampler that cannot be set up as asked.
public struct SamplerError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The rank is outside the world, or the ranks outnumber the items.
        case ranks
        /// A resume state that does not fit this source.
        case state
    }
    public let kind: Kind
    public let description: String
    public init(_ kind: Kind, _ d: String) { self.kind = kind; description = d }
}
