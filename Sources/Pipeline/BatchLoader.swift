import Augment
import Batches
import Foundation
import ImageCodec

/// The in-process batch stream: plans batches in order, renders them on a pool
/// of worker threads into reused buffers, and hands them out in order.
///
/// Batch k depends only on (config, k's plan): which thread renders it, and how
/// many threads there are, never changes its bytes. At most `prefetch` batches
/// wait for the consumer, so memory stays flat however long the run.
public final class BatchLoader: BatchStream {
    private let core: LoaderCore

    /// - Parameters:
    ///   - source: images, and the pseudo-labeled source's labels when it has one
    ///     (then batches mix both at `config.ratio`).
    ///   - labeled: the labeled split's samples with their classes.
    ///   - classCount: C, the width of every target.
    ///   - state: where to resume (nil: from the start of `config.seed`).
    ///   - log: one line per sample replaced because it failed to decode.
    ///   - storage: where batch images are rendered (shared memory a client maps);
    ///     nil: buffers the loader owns and reuses.
    public init(config: PipelineConfig, source: any SampleSource, labeled: [LabeledItem], classCount: Int,
                state: StreamState? = nil, storage: (any ExternalImageStorage)? = nil,
                log: @escaping @Sendable (String) -> Void = { _ in }) throws {
        try LoaderCore.check(config: config, classCount: classCount, labeled: labeled)
        let pseudoLabels = source.pseudoLabels
        if let p = pseudoLabels, p.classCount != classCount {
            throw PipelineError(.invalidConfiguration, "the pseudo labels have \(p.classCount) classes, the store has \(classCount)")
        }
        let pseudo = try pseudoLabels?.entries()
        // A state resumes only the stream it came from: the same seed, and pseudo labels
        // (or none) as it had.
        if let state, state.labeled.seed != config.seed {
            throw PipelineError(.badState, "the resume state comes from a stream with seed \(state.labeled.seed); this stream's seed is \(config.seed)")
        }
        if let state, pseudo == nil, state.pseudoLabeled != nil {
            throw PipelineError(.badState, "the resume state comes from a stream with pseudo labels; this stream has none (give the generation it was made with)")
        }
        if let theirs = state?.origin, let ours = config.origin, theirs != ours {
            throw PipelineError(.badState, "the resume state comes from another stream (\(theirs)); this one is \(ours)")
        }
        var start = state ?? StreamState.start(seed: config.seed, pseudoLabeled: pseudo != nil)
        start.origin = config.origin
        let planner = try BatchPlanner(config: config, labeled: labeled, pseudo: pseudo, state: start)
        core = LoaderCore(config: config, source: source, classCount: classCount, plan: .stream(planner), state: start,
                          storage: storage, log: log)
    }

    deinit { core.stop() }

    public func next() throws -> Batch {
        guard let b = try core.next() else { preconditionFailure("a training stream never ends") }
        return b
    }
    public var state: StreamState { core.currentState }
    public var batchesPerEpoch: Int { core.batchesPerEpoch }
    public var classCount: Int { core.classCount }
    /// Samples replaced so far because they failed to decode.
    public var replacedCount: Int { core.replacedTotal }

    /// Gives a consumed batch's image buffer back for reuse.
    public func recycle(_ batch: consuming Batch) { core.recycle(batch.images) }
}

/// A fixed list of samples, in order, through one view (the clean teacher view
/// when evaluating or labelling): every sample once, the last batch partial. The
/// same engine as `BatchLoader` (worker threads, one batch each, reused buffers),
/// so the bytes never depend on the thread count; a sample that cannot be read
/// or decoded is an error naming it, since labelling must not skip or replace samples.
public final class SequenceLoader {
    private let core: LoaderCore
    public let count: Int
    public let batchSize: Int

    /// - Parameter items: the samples in order, each with its class when known
    ///   (a one-hot target, weight 1) or nil (unlabeled: zero target and weight).
    public init(items: [(id: UInt64, classIndex: Int?)], source: any SampleSource, classCount: Int, view: View,
                channels: Int, layout: OutputLayout, batchSize: Int, threads: Int) throws {
        let config = PipelineConfig(view: view, channels: channels, layout: layout, batchSize: batchSize,
                                    threads: threads, prefetch: threads)
        try LoaderCore.check(config: config, classCount: classCount, labeled: [])
        if let bad = items.first(where: { ($0.classIndex ?? 0) < 0 || ($0.classIndex ?? 0) >= classCount }) {
            throw PipelineError(.invalidConfiguration, "sample \(bad.id) has class \(bad.classIndex ?? -1), outside 0..<\(classCount)")
        }
        count = items.count
        self.batchSize = batchSize
        let plan = SequencePlan(items: items, batchSize: batchSize)
        core = LoaderCore(config: config, source: source, classCount: classCount, plan: .sequence(plan),
                          state: StreamState.start(seed: 0, pseudoLabeled: false), storage: nil, log: { _ in })
    }

    deinit { core.stop() }

    public var batchCount: Int { (count + batchSize - 1) / batchSize }

    /// The next batch in order, or nil after the last.
    public func next() throws -> Batch? { try core.next() }

    public func recycle(_ batch: consuming Batch) { core.recycle(batch.images) }
}

/// Batches of a fixed list: batch k holds items [k*B, (k+1)*B).
struct SequencePlan: Sendable {
    let items: [(id: UInt64, classIndex: Int?)]
    let batchSize: Int
    private(set) var batches = 0

    init(items: [(id: UInt64, classIndex: Int?)], batchSize: Int) {
        self.items = items
        self.batchSize = batchSize
    }

    mutating func plan(state: StreamState) -> PlannedBatch? {
        let lo = batches * batchSize
        guard lo < items.count else { return nil }
        let chunk = items[lo..<min(items.count, lo + batchSize)]
        let samples = chunk.enumerated().map { j, item in
            PlannedSample(id: item.id, origin: item.classIndex == nil ? .unlabeled : .labeled, classIndex: item.classIndex ?? -1,
                          epoch: 0, position: lo + j)
        }
        defer { batches += 1 }
        var after = state
        after.batches = batches + 1
        return PlannedBatch(index: batches, samples: samples, stateAfter: after)
    }
}

/// What decides batch k: an endless training stream (epochs, mixing, replacement
/// of bad samples), or a fixed sequence (each sample once, bad samples fail).
enum BatchPlan: Sendable {
    case stream(BatchPlanner)
    case sequence(SequencePlan)

    var planned: Int {
        switch self { case .stream(let p): p.batches; case .sequence(let p): p.batches }
    }

    mutating func next(state: StreamState) -> PlannedBatch? {
        switch self {
        case .stream(var p):
            let b = p.plan()
            self = .stream(p)
            return b
        case .sequence(var p):
            let b = p.plan(state: state)
            self = .sequence(p)
            return b
        }
    }
}

/// The state the workers share. Every mutable field is read and written only
/// while holding `cond`, which is what makes `@unchecked Sendable` safe here.
final class LoaderCore: @unchecked Sendable {
    let config: PipelineConfig
    let classCount: Int
    let batchesPerEpoch: Int
    private let source: any SampleSource
    private let labels: (any SoftLabelProvider)?
    private let catalog: BatchPlan  // immutable copy: items and seeds for replacements
    private let log: @Sendable (String) -> Void
    private let storage: (any ExternalImageStorage)?
    private let bytesPerSample: Int
    private let prefetch: Int

    private let cond = NSCondition()
    private var plan: BatchPlan
    private var ready: [Int: Result<Batch, Error>] = [:]
    private var nextIndex: Int
    private var state: StreamState
    private var started = false
    private var stopping = false
    private var exhausted = false
    private var running = 0
    // Image buffers of consumed batches, kept apart by type so that taking one
    // out (popLast) moves it without another reference: writes then never copy.
    private var byteBuffers: [[UInt8]] = []
    private var floatBuffers: [[Float]] = []
    private var replaced = 0

    static func check(config: PipelineConfig, classCount: Int, labeled: [LabeledItem]) throws {
        guard config.channels == 1 || config.channels == 3 else {
            throw PipelineError(.invalidConfiguration, "channels must be 1 or 3 (got \(config.channels))")
        }
        guard config.threads >= 1 else { throw PipelineError(.invalidConfiguration, "threads must be at least 1") }
        guard config.batchSize >= 1 else { throw PipelineError(.invalidConfiguration, "batch size must be at least 1") }
        guard classCount >= 1 else { throw PipelineError(.invalidConfiguration, "the store has no classes") }
        if let bad = labeled.first(where: { $0.classIndex < 0 || $0.classIndex >= classCount }) {
            throw PipelineError(.invalidConfiguration, "labeled sample \(bad.id) has class \(bad.classIndex), outside 0..<\(classCount)")
        }
    }

    init(config: PipelineConfig, source: any SampleSource, classCount: Int, plan: BatchPlan, state: StreamState,
         storage: (any ExternalImageStorage)?, log: @escaping @Sendable (String) -> Void) {
        self.config = config; self.source = source; self.classCount = classCount; labels = source.pseudoLabels
        self.plan = plan; catalog = plan; self.state = state; self.storage = storage; self.log = log
        nextIndex = state.batches
        switch plan {
        case .stream(let p): batchesPerEpoch = p.batchesPerEpoch
        case .sequence(let p): batchesPerEpoch = (p.items.count + p.batchSize - 1) / p.batchSize
        }
        bytesPerSample = config.layout.bytesPerSample(size: config.view.size, channels: config.channels)
        prefetch = config.prefetchBound
    }

    var currentState: StreamState { cond.lock(); defer { cond.unlock() }; return state }
    var replacedTotal: Int { cond.lock(); defer { cond.unlock() }; return replaced }

    /// The next batch in order; nil once a sequence has handed out its last.
    func next() throws -> Batch? {
        cond.lock()
        if !started {
            started = true
            running = config.threads
            for _ in 0..<config.threads {
                let t = Thread { [self] in self.work() }
                t.stackSize = 1 << 20
                t.start()
            }
        }
        while ready[nextIndex] == nil {
            if exhausted && plan.planned <= nextIndex { cond.unlock(); return nil }
            cond.wait()
        }
        guard let result = ready.removeValue(forKey: nextIndex) else { preconditionFailure("a ready batch vanished") }
        nextIndex += 1
        cond.broadcast()
        if case .success(let b) = result { state = b.stateAfter; replaced += b.replaced }
        cond.unlock()
        return try result.get()
    }

    func recycle(_ images: BatchImages) {
        cond.lock(); defer { cond.unlock() }
        switch images {
        case .uint8(let a): if byteBuffers.count < prefetch { byteBuffers.append(a) }
        case .float32(let a): if floatBuffers.count < prefetch { floatBuffers.append(a) }
        case .external: break  // its storage takes it back (the client releases the slot)
        }
    }

    /// Stops the workers and waits for them to leave.
    func stop() {
        cond.lock()
        stopping = true
        cond.broadcast()
        while running > 0 { cond.wait() }
        cond.unlock()
    }

    private func work() {
        let renderer = ViewRenderer(channels: config.channels, layout: config.layout)
        while true {
            cond.lock()
            while !stopping && (exhausted || plan.planned >= nextIndex + prefetch) { cond.wait() }
            if stopping {
                running -= 1
                cond.broadcast()
                cond.unlock()
                return
            }
            guard let planned = plan.next(state: state) else {
                exhausted = true
                cond.broadcast()
                cond.unlock()
                continue
            }
            var bytes = byteBuffers.popLast() ?? []
            var floats = floatBuffers.popLast() ?? []
            cond.unlock()
            let result = Result { try render(planned, bytes: &bytes, floats: &floats, renderer: renderer) }
            cond.lock()
            ready[planned.index] = result
            cond.broadcast()
            cond.unlock()
        }
    }

    /// Renders a planned batch into `bytes` or `floats` (whichever the layout uses),
    /// reusing their storage when it has the right size; the buffer moves into the batch.
    /// Each sample's image and label are read in one snapshot.
    private func render(_ plan: PlannedBatch, bytes: inout [UInt8], floats: inout [Float],
                        renderer: ViewRenderer) throws -> Batch {
        var samples = plan.samples
        let n = samples.count
        let per = bytesPerSample
        let isFloat = config.layout.normalization != nil
        // Lent memory (shared with a client), or our own buffers resized to fit.
        let external = try storage?.acquire(bytes: n * per)
        if external == nil && isFloat && floats.count * 4 != n * per {
            floats = [Float](repeating: 0, count: n * per / 4)
        } else if external == nil && !isFloat && bytes.count != n * per {
            bytes = [UInt8](repeating: 0, count: n * per)
        }
        var targets = [Float](repeating: 0, count: n * classCount)
        var weights = [Float](repeating: 0, count: n)
        var failures: [(slot: Int, reason: String)] = []

        /// Renders slot i and fills its target; returns why it failed, if it did.
        func fill(_ i: Int, _ s: PlannedSample, _ image: UnsafeRawBufferPointer?, _ label: UnsafeRawBufferPointer?) throws -> String? {
            guard let image else { return "missing from the store" }
            let key = SampleKey(seed: config.seed, epoch: s.epoch, sample: s.id)
            let view = config.view
            func into(_ raw: UnsafeMutableRawBufferPointer) -> String? {
                do {
                    try renderer.render(image, view: view, key: key,
                                        into: UnsafeMutableRawBufferPointer(rebasing: raw[(i * per)..<((i + 1) * per)]))
                    return nil
                } catch {
                    return "\(error)"
                }
            }
            let reason = if let external { into(UnsafeMutableRawBufferPointer(start: external.base, count: n * per)) }
                         else if isFloat { floats.withUnsafeMutableBytes(into) } else { bytes.withUnsafeMutableBytes(into) }
            if let reason { return reason }
            try target(i, s, label, &targets, &weights)
            return nil
        }

        try source.withSamples(samples.map { SampleRequest(id: $0.id, wantsLabel: $0.origin == .pseudoLabeled) }) { i, image, label in
            if let reason = try fill(i, samples[i], image, label) { failures.append((i, reason)) }
        }
        var replacedHere = 0
        for (slot, firstReason) in failures {
            guard case .stream(let catalog) = catalog else {
                throw PipelineError(.badSample, "sample \(samples[slot].id): \(firstReason)")
            }
            var reason = firstReason
            var done = false
            for attempt in 1...32 {
                let original = samples[slot]
                let r = catalog.replacement(for: plan.samples[slot], attempt: attempt,
                                            seed: (catalog.labeled.state.seed, catalog.pseudo?.state.seed ?? 0))
                log("batch \(plan.index): sample \(original.id) skipped (\(reason)); replaced by sample \(r.id)")
                samples[slot] = r
                var again: String?
                try source.withSamples([SampleRequest(id: r.id, wantsLabel: r.origin == .pseudoLabeled)]) { _, image, label in
                    again = try fill(slot, r, image, label)
                }
                if let again { reason = again } else { done = true; break }
            }
            guard done else {
                throw PipelineError(.badSample, "batch \(plan.index): 32 samples in a row failed to decode; last: \(reason)")
            }
            replacedHere += 1
        }

        let images: BatchImages
        if let external {
            external.setUsed(n * per)
            images = .external(external)
        } else if isFloat { images = .float32(floats); floats = [] } else { images = .uint8(bytes); bytes = [] }
        return Batch(index: plan.index, count: n, channels: config.channels, height: config.view.size,
                     width: config.view.size, images: images, layout: config.layout.imageLayout, classCount: classCount,
                     targets: targets, weights: weights, ids: samples.map(\.id), origins: samples.map(\.origin),
                     replaced: replacedHere, stateAfter: plan.stateAfter)
    }

    /// Writes sample i's target row and weight: one-hot (smoothed) for a labeled
    /// sample, the stored distribution for a pseudo-labeled one, zero for unlabeled.
    private func target(_ i: Int, _ s: PlannedSample, _ label: UnsafeRawBufferPointer?,
                        _ targets: inout [Float], _ weights: inout [Float]) throws {
        let row = i * classCount
        switch s.origin {
        case .labeled:
            let eps = config.labelSmoothing
            let off = eps / Float(classCount)
            for c in 0..<classCount { targets[row + c] = off }
            targets[row + s.classIndex] += 1 - eps
            weights[i] = config.labeledWeight
        case .pseudoLabeled:
            guard let labels else { throw PipelineError(.badLabel, "pseudo-labeled sample \(s.id) without pseudo labels") }
            guard let label else { throw PipelineError(.badLabel, "sample \(s.id) has no stored pseudo label") }
            try targets.withUnsafeMutableBufferPointer { t in
                try labels.decode(label, of: s.id, into: UnsafeMutableBufferPointer(rebasing: t[row..<(row + classCount)]))
            }
            weights[i] = config.pseudoWeight
        case .unlabeled:
            for c in 0..<classCount { targets[row + c] = 0 }
            weights[i] = 0
        }
    }
}
