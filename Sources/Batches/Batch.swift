/// Where a sample in a batch came from.
public enum SampleOrigin: UInt8, Sendable, Codable {
    case labeled = 0
    case pseudoLabeled = 1
    /// No target: a sample being labelled by a teacher (its targets and weight are 0).
    case unlabeled = 2
}

/// Per-channel normalisation for float output: (v / 255 - mean) / std. A list of
/// one value applies to every channel.
public struct Normalization: Sendable, Equatable, Codable {
    public var mean: [Float]
    public var std: [Float]
    public init(mean: [Float], std: [Float]) { self.mean = mean; self.std = std }

    /// ImageNet's statistics (torchvision's defaults); for one channel, their averages.
    public static func imageNet(channels: Int) -> Normalization {
        channels == 1 ? .init(mean: [0.449], std: [0.226])
                      : .init(mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])
    }

    /// The CPU trainer's input: v / 255 - 0.5 on every channel.
    public static let centred = Normalization(mean: [0.5], std: [1])
}

/// The axis order of float images.
public enum AxisOrder: String, Sendable, Codable { case nhwc, nchw }

/// What a batch's `images` hold: the contract between the pipeline that renders
/// them and the trainer that consumes them, so neither guesses.
public enum ImageLayout: Sendable, Equatable {
    /// Bytes, [N, H, W, C].
    case uint8NHWC
    /// Floats in the given order, each (v / 255 - mean) / std.
    case float32(order: AxisOrder, normalization: Normalization)
}

/// A batch's pixels: bytes [N, H, W, C] or normalised floats (see `Batch.layout`).
public enum BatchImages: Sendable {
    case uint8([UInt8])
    case float32([Float])
    /// Rendered into memory the loader does not own (a shared-memory slot that a
    /// client process maps); `Batch.layout` says what the bytes are.
    case external(ExternalImageBuffer)

    public var byteCount: Int {
        switch self {
        case .uint8(let a): a.count
        case .float32(let a): a.count * 4
        case .external(let b): b.used
        }
    }
}

/// A region of memory that a loader renders one batch's images into, lent by an
/// `ExternalImageStorage` (a slot of `noisy serve`'s shared memory).
///
/// `@unchecked Sendable`: the pointer is written by the one worker that renders the
/// batch, and only read after the batch is handed over under the loader's lock
/// (a happens-before edge); the storage keeps the memory mapped while it lives.
public final class ExternalImageBuffer: @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let capacity: Int
    /// Which slot of its storage this is.
    public let slot: Int
    /// Bytes of images written (set by the loader before the batch is handed over).
    public private(set) var used = 0

    public init(base: UnsafeMutableRawPointer, capacity: Int, slot: Int) {
        self.base = base; self.capacity = capacity; self.slot = slot
    }

    /// Records how many bytes the batch's images take (at most `capacity`).
    public func setUsed(_ bytes: Int) { used = min(bytes, capacity) }
}

/// Lends buffers for batch images that live outside the loader (shared memory).
public protocol ExternalImageStorage: AnyObject, Sendable {
    /// A free buffer of at least `bytes`. Throws when none is free: the lender sizes
    /// its slots so that a loader within its prefetch bound always finds one.
    func acquire(bytes: Int) throws -> ExternalImageBuffer
}

/// What a trainer consumes. A value: nothing in it points back at the store.
public struct Batch: Sendable {
    /// Position of this batch in the stream (0, 1, ...), across epochs.
    public var index: Int
    public var count: Int
    public var channels: Int
    public var height: Int
    public var width: Int
    public var images: BatchImages
    /// How `images` are laid out and normalised.
    public var layout: ImageLayout
    public var classCount: Int
    /// count x classCount probabilities: one-hot (optionally smoothed) for labeled
    /// samples, the teacher's soft distribution for pseudo-labeled ones.
    public var targets: [Float]
    /// Per-sample loss weights.
    public var weights: [Float]
    public var ids: [UInt64]
    public var origins: [SampleOrigin]
    /// Samples that failed to decode and were replaced by the next in the permutation.
    public var replaced: Int
    /// The stream state after this batch: restoring it continues with batch index + 1.
    public var stateAfter: StreamState

    public init(index: Int, count: Int, channels: Int, height: Int, width: Int, images: BatchImages,
                layout: ImageLayout, classCount: Int, targets: [Float], weights: [Float], ids: [UInt64], origins: [SampleOrigin],
                replaced: Int = 0, stateAfter: StreamState) {
        self.index = index; self.count = count; self.channels = channels; self.height = height; self.width = width
        self.images = images; self.layout = layout; self.classCount = classCount; self.targets = targets; self.weights = weights
        self.ids = ids; self.origins = origins; self.replaced = replaced; self.stateAfter = stateAfter
    }

    /// The index of the largest target of sample i (its hard label).
    public func argmaxTarget(_ i: Int) -> Int {
        var best = 0
        for c in 1..<classCount where targets[i * classCount + c] > targets[i * classCount + best] { best = c }
        return best
    }
}

/// Where one source's sampler stands: enough to reproduce exactly the samples that come next.
///
/// The position is global: how many items of this epoch's permutation all ranks have
/// taken together. Every rank holds the same state, and it means the same thing at
/// any world size, so a job stopped at W ranks resumes at W' mid-epoch (elastic).
public struct SamplerState: Codable, Sendable, Equatable {
    public var seed: UInt64
    public var epoch: UInt64
    /// Items of this epoch taken by all ranks together.
    public var position: Int
    /// A state written before positions were global (JSON `step`): that rank's items
    /// this epoch, at the world size it was saved with. The sampler converts it
    /// (`step * worldSize`) and then drops it; it only resumes at the same world size.
    public var legacyStep: Int?

    public init(seed: UInt64, epoch: UInt64 = 0, position: Int = 0) {
        self.seed = seed
        self.epoch = epoch
        self.position = position
    }

    enum CodingKeys: String, CodingKey { case seed, epoch, position, legacyStep = "step" }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        seed = try c.decode(UInt64.self, forKey: .seed)
        epoch = try c.decode(UInt64.self, forKey: .epoch)
        legacyStep = try c.decodeIfPresent(Int.self, forKey: .legacyStep)
        guard let p = try c.decodeIfPresent(Int.self, forKey: .position) ?? (legacyStep == nil ? nil : 0) else {
            throw DecodingError.keyNotFound(CodingKeys.position, .init(codingPath: c.codingPath,
                                                                       debugDescription: "a sampler state needs `position`"))
        }
        position = p
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(seed, forKey: .seed)
        try c.encode(epoch, forKey: .epoch)
        try c.encode(position, forKey: .position)
        try c.encodeIfPresent(legacyStep, forKey: .legacyStep)
    }
}

/// Where a batch stream stands: one sampler state per source and the batch counter.
/// Saved in checkpoints and sent by streaming clients to resume exactly.
public struct StreamState: Codable, Sendable, Equatable {
    public var labeled: SamplerState
    public var pseudoLabeled: SamplerState?
    /// Batches delivered so far.
    public var batches: Int
    /// What stream this is (the store it reads and the view it renders), when a store
    /// backs it: a state resumes only the stream it came from.
    public var origin: String?

    public init(labeled: SamplerState, pseudoLabeled: SamplerState? = nil, batches: Int = 0, origin: String? = nil) {
        self.labeled = labeled; self.pseudoLabeled = pseudoLabeled; self.batches = batches; self.origin = origin
    }

    /// The state of a fresh stream: both sources at epoch 0; the pseudo-labeled
    /// sampler's seed is derived so that the two orders are unrelated.
    public static func start(seed: UInt64, pseudoLabeled: Bool) -> StreamState {
        StreamState(labeled: SamplerState(seed: seed),
                    pseudoLabeled: pseudoLabeled ? SamplerState(seed: seed ^ 0x5053_4555_444F_4C42) : nil)
    }
}

/// A source of batches: the pipeline in process, or a remote stream.
public protocol BatchStream: AnyObject {
    /// The next batch; blocks until it is ready.
    func next() throws -> Batch
    /// The state after the last batch returned (or the starting state).
    var state: StreamState { get }
    /// Batches that make one epoch of the stream's main source on this rank.
    var batchesPerEpoch: Int { get }
}
