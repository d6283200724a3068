import Augment
import Batches

/// Everything that decides which batches a stream yields.
public struct PipelineConfig: Sendable {
    public var view: View
    /// Output channels: 1 or 3 (gray stores stay gray; mixed stores are converted).
    public var channels: Int
    public var layout: OutputLayout
    public var batchSize: Int
    /// Pseudo-labeled samples per labeled one in every batch (paper: 1-3, up to 14).
    /// Ignored when there is no pseudo-labeled source.
    public var ratio: Double
    public var seed: UInt64
    public var rank: Int
    public var worldSize: Int
    /// Worker threads that decode and augment.
    public var threads: Int
    /// Finished batches allowed to wait for the consumer (memory bound).
    public var prefetch: Int
    /// Batches a loader may have planned and not yet handed out: at least one per thread.
    public var prefetchBound: Int { max(prefetch, threads) }
    /// Label smoothing for labeled targets: (1 - e) one-hot + e / C.
    public var labelSmoothing: Float
    public var labeledWeight: Float
    public var pseudoWeight: Float
    /// What stream this is, stamped on every state it emits; a state that names another
    /// origin is refused. The store-backed loader sets it (the store and the view).
    public var origin: String?
    /// Items of each epoch the labeled and pseudo-labeled sources take (nil: all): the
    /// shard-set loader sets what every node can take, for equal batch counts.
    public var labeledEpochLength: Int?
    public var pseudoEpochLength: Int?

    public init(view: View, channels: Int = 3, layout: OutputLayout = .uint8NHWC, batchSize: Int = 64,
                ratio: Double = 1, seed: UInt64 = 0, rank: Int = 0, worldSize: Int = 1, threads: Int = 2,
                prefetch: Int = 4, labelSmoothing: Float = 0, labeledWeight: Float = 1, pseudoWeight: Float = 1) {
        self.view = view; self.channels = channels; self.layout = layout; self.batchSize = batchSize
        self.ratio = ratio; self.seed = seed; self.rank = rank; self.worldSize = worldSize
        self.threads = threads; self.prefetch = prefetch; self.labelSmoothing = labelSmoothing
        self.labeledWeight = labeledWeight; self.pseudoWeight = pseudoWeight
    }

    /// Samples per batch from each source: R/(R+1) of the batch pseudo-labeled
    /// (rounded, at least one of each kind when both sources exist).
    public func split(hasPseudo: Bool) -> (labeled: Int, pseudo: Int) {
        guard hasPseudo else { return (batchSize, 0) }
        let p = Int((Double(batchSize) * ratio / (ratio + 1)).rounded())
        let pseudo = max(1, min(batchSize - 1, p))
        return (batchSize - pseudo, pseudo)
    }
}

/// One sample slot of a planned batch.
struct PlannedSample: Sendable {
    var id: UInt64
    var origin: SampleOrigin
    var classIndex: Int
    var epoch: UInt64
    /// Position in its source's epoch permutation: replacements come from the positions after it.
    var position: Int
}

struct PlannedBatch: Sendable {
    var index: Int
    var samples: [PlannedSample]
    var stateAfter: StreamState
}

/// Decides, sequentially and cheaply, which samples make batch k. Each source has
/// its own sampler and epoch counter and reshuffles when it wraps, so the small
/// labeled source cycles many times while the pseudo-labeled one makes one pass.
struct BatchPlanner: Sendable {
    let labeledItems: [LabeledItem]
    let pseudoItems: [UInt64]
    var labeled: EpochSampler
    var pseudo: EpochSampler?
    let perBatch: (labeled: Int, pseudo: Int)
    private(set) var batches: Int
    let origin: String?

    init(config: PipelineConfig, labeled: [LabeledItem], pseudo: [UInt64]?, state: StreamState) throws {
        guard config.batchSize >= 1 else { throw PipelineError(.invalidConfiguration, "batch size must be at least 1") }
        guard !labeled.isEmpty else { throw PipelineError(.invalidConfiguration, "the store has no labeled samples") }
        labeledItems = labeled
        pseudoItems = pseudo ?? []
        perBatch = config.split(hasPseudo: pseudo != nil)
        do {
            self.labeled = try EpochSampler(count: labeled.count, state: state.labeled, rank: config.rank, worldSize: config.worldSize,
                                            epochLength: config.labeledEpochLength)
            if let pseudo {
                guard !pseudo.isEmpty else { throw PipelineError(.invalidConfiguration, "the pseudo-label selection is empty") }
                guard let ps = state.pseudoLabeled else { throw PipelineError(.badState, "the resume state has no pseudo-labeled sampler") }
                self.pseudo = try EpochSampler(count: pseudo.count, state: ps, rank: config.rank, worldSize: config.worldSize,
                                               epochLength: config.pseudoEpochLength)
            } else {
                self.pseudo = nil
            }
        } catch let e as SamplerError {
            throw PipelineError(e.kind == .state ? .badState : .invalidConfiguration, e.description)
        }
        batches = state.batches
        origin = config.origin
    }

    var state: StreamState { StreamState(labeled: labeled.state, pseudoLabeled: pseudo?.state, batches: batches, origin: origin) }

    /// Batches in one epoch of the main source (the pseudo-labeled one when there is one):
    /// the same number on every rank.
    var batchesPerEpoch: Int {
        if let pseudo { return max(1, pseudo.perRank / perBatch.pseudo) }
        return max(1, labeled.perRank / perBatch.labeled)
    }

    mutating func plan() -> PlannedBatch {
        var samples: [PlannedSample] = []
        samples.reserveCapacity(perBatch.labeled + perBatch.pseudo)
        for _ in 0..<perBatch.labeled {
            let n = labeled.next()
            let item = labeledItems[n.item]
            samples.append(PlannedSample(id: item.id, origin: .labeled, classIndex: item.classIndex, epoch: n.epoch, position: n.position))
        }
        if pseudo != nil {
            for _ in 0..<perBatch.pseudo {
                let n = pseudo!.next()
                samples.append(PlannedSample(id: pseudoItems[n.item], origin: .pseudoLabeled, classIndex: -1, epoch: n.epoch, position: n.position))
            }
        }
        let index = batches
        batches += 1
        return PlannedBatch(index: index, samples: samples, stateAfter: state)
    }

    /// The sample `k` places after `s` in its epoch's permutation (wrapping): the
    /// deterministic replacement for a sample that does not decode.
    func replacement(for s: PlannedSample, attempt k: Int, seed: (labeled: UInt64, pseudo: UInt64)) -> PlannedSample {
        let count = s.origin == .labeled ? labeledItems.count : pseudoItems.count
        let sampleSeed = s.origin == .labeled ? seed.labeled : seed.pseudo
        let order = EpochSampler.permutation(count: count, seed: sampleSeed, epoch: s.epoch)
        let position = (s.position + k) % count
        var r = s
        r.position = position
        if s.origin == .labeled {
            let item = labeledItems[order[position]]
            r.id = item.id; r.classIndex = item.classIndex
        } else {
            r.id = pseudoItems[order[position]]
        }
        return r
    }
}
