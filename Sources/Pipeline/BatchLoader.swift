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
    ///   - labeled: the labeled split's samples with their classes.
    ///   - classCount: C, the width of every target.
    ///   - pseudoLabels: the pseudo-labeled source (nil: labeled-only batches).
    ///   - state: where to resume (nil: from the start of `config.seed`).
    ///   - log: one line per sample replaced because it failed to decode.
    public init(config: PipelineConfig, source: any ImageSource, labeled: [LabeledItem], classCount: Int,
                pseudoLabels: (any SoftLabelProvider)? = nil, state: StreamState? = nil,
                log: @escaping @Sendable (String) -> Void = { _ in }) throws {
        guard config.channels == 1 || config.channels == 3 else { throw PipelineError("channels must be 1 or 3") }
        guard config.threads >= 1 else { throw PipelineError("threads must be at least 1") }
        guard classCount >= 1 else { throw PipelineError("the store has no classes") }
        if let p = pseudoLabels, p.classCount != classCount {
            throw PipelineError("the pseudo labels have \(p.classCount) classes, the store has \(classCount)")
        }
        if let bad = labeled.first(where: { $0.classIndex < 0 || $0.classIndex >= classCount }) {
            throw PipelineError("labeled sample \(bad.id) has class \(bad.classIndex), outside 0..<\(classCount)")
        }
        let pseudo = try pseudoLabels?.entries()
        let start = state ?? StreamState.start(seed: config.seed, pseudoLabeled: pseudo != nil)
        let planner = try BatchPlanner(config: config, labeled: labeled, pseudo: pseudo, state: start)
        core = LoaderCore(config: config, source: source, classCount: classCount, labels: pseudoLabels,
                          planner: planner, state: start, log: log)
    }

    deinit { core.stop() }

    public func next() throws -> Batch { try core.next() }
    public var state: StreamState { core.currentState }
    public var batchesPerEpoch: Int { core.batchesPerEpoch }
    public var classCount: Int { core.classCount }
    /// Samples replaced so far because they failed to decode.
    public var replacedCount: Int { core.replacedTotal }

    /// Gives a consumed batch's image buffer back for reuse.
    public func recycle(_ batch: consuming Batch) { core.recycle(batch.images) }
}

/// The state the workers share. Every mutable field is read and written only
/// while holding `cond`, which is what makes `@unchecked Sendable` safe here.
final class LoaderCore: @unchecked Sendable {
    let config: PipelineConfig
    let classCount: Int
    let batchesPerEpoch: Int
    private let source: any ImageSource
    private let labels: (any SoftLabelProvider)?
    private let catalog: BatchPlanner  // immutable copy: items and seeds for replacements
    private let log: @Sendable (String) -> Void
    private let bytesPerSample: Int
    private let prefetch: Int

    private let cond = NSCondition()
    private var planner: BatchPlanner
    private var ready: [Int: Result<Batch, Error>] = [:]
    private var nextIndex: Int
    private var state: StreamState
    private var started = false
    private var stopping = false
    private var running = 0
    // Image buffers of consumed batches, kept apart by type so that taking one
    // out (popLast) moves it without another reference: writes then never copy.
    private var byteBuffers: [[UInt8]] = []
    private var floatBuffers: [[Float]] = []
    private var replaced = 0

    init(config: PipelineConfig, source: any ImageSource, classCount: Int, labels: (any SoftLabelProvider)?,
         planner: BatchPlanner, state: StreamState, log: @escaping @Sendable (String) -> Void) {
        self.config = config; self.source = source; self.classCount = classCount; self.labels = labels
        self.planner = planner; self.catalog = planner; self.state = state; self.log = log
        nextIndex = state.batches
        batchesPerEpoch = planner.batchesPerEpoch
        bytesPerSample = config.layout.bytesPerSample(size: config.view.size, channels: config.channels)
        prefetch = max(config.prefetch, config.threads)
    }

    var currentState: StreamState { cond.lock(); defer { cond.unlock() }; return state }
    var replacedTotal: Int { cond.lock(); defer { cond.unlock() }; return replaced }

    func next() throws -> Batch {
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
        while ready[nextIndex] == nil { cond.wait() }
        let result = ready.removeValue(forKey: nextIndex)!
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
            while !stopping && planner.batches >= nextIndex + prefetch { cond.wait() }
            if stopping {
                running -= 1
                cond.broadcast()
                cond.unlock()
                return
            }
            let plan = planner.plan()
            var bytes = byteBuffers.popLast() ?? []
            var floats = floatBuffers.popLast() ?? []
            cond.unlock()
            let result = Result { try render(plan, bytes: &bytes, floats: &floats, renderer: renderer) }
            cond.lock()
            ready[plan.index] = result
            cond.broadcast()
            cond.unlock()
        }
    }

    /// Renders a planned batch into `bytes` or `floats` (whichever the layout uses),
    /// reusing their storage when it has the right size; the buffer moves into the batch.
    private func render(_ plan: PlannedBatch, bytes: inout [UInt8], floats: inout [Float],
                        renderer: ViewRenderer) throws -> Batch {
        var samples = plan.samples
        let n = samples.count
        let per = bytesPerSample
        let isFloat: Bool
        switch config.layout {
        case .uint8NHWC:
            isFloat = false
            if bytes.count != n * per { bytes = [UInt8](repeating: 0, count: n * per) }
        case .float32NCHW:
            isFloat = true
            if floats.count * 4 != n * per { floats = [Float](repeating: 0, count: n * per / 4) }
        }
        var failures: [(slot: Int, reason: String)] = []

        func renderSlot(_ i: Int, _ encoded: UnsafeRawBufferPointer?, _ s: PlannedSample) -> String? {
            guard let encoded else { return "missing from the store" }
            let key = SampleKey(seed: config.seed, epoch: s.epoch, sample: s.id)
            let view = config.view
            func into(_ raw: UnsafeMutableRawBufferPointer) -> String? {
                do {
                    try renderer.render(encoded, view: view, key: key,
                                        into: UnsafeMutableRawBufferPointer(rebasing: raw[(i * per)..<((i + 1) * per)]))
                    return nil
                } catch {
                    return "\(error)"
                }
            }
            return isFloat ? floats.withUnsafeMutableBytes(into) : bytes.withUnsafeMutableBytes(into)
        }

        try source.withImages(samples.map(\.id)) { i, bytes in
            if let reason = renderSlot(i, bytes, samples[i]) { failures.append((i, reason)) }
        }
        var replacedHere = 0
        for (slot, firstReason) in failures {
            var reason = firstReason
            var done = false
            for attempt in 1...32 {
                let original = samples[slot]
                let r = catalog.replacement(for: plan.samples[slot], attempt: attempt,
                                            seed: (catalog.labeled.state.seed, catalog.pseudo?.state.seed ?? 0))
                log("batch \(plan.index): sample \(original.id) skipped (\(reason)); replaced by sample \(r.id)")
                samples[slot] = r
                var again: String?
                try source.withImages([r.id]) { _, bytes in again = renderSlot(slot, bytes, r) }
                if let again { reason = again } else { done = true; break }
            }
            guard done else {
                throw PipelineError("batch \(plan.index): 32 samples in a row failed to decode; last: \(reason)")
            }
            replacedHere += 1
        }

        var targets = [Float](repeating: 0, count: n * classCount)
        var weights = [Float](repeating: 0, count: n)
        let eps = config.labelSmoothing
        for (i, s) in samples.enumerated() {
            let row = i * classCount
            switch s.origin {
            case .labeled:
                let off = eps / Float(classCount)
                for c in 0..<classCount { targets[row + c] = off }
                targets[row + s.classIndex] += 1 - eps
                weights[i] = config.labeledWeight
            case .pseudoLabeled:
                guard let labels else { throw PipelineError("pseudo-labeled sample \(s.id) without a label provider") }
                try targets.withUnsafeMutableBufferPointer { t in
                    try labels.distribution(of: s.id, into: UnsafeMutableBufferPointer(rebasing: t[row..<(row + classCount)]))
                }
                weights[i] = config.pseudoWeight
            }
        }
        let images: BatchImages
        if isFloat { images = .float32(floats); floats = [] } else { images = .uint8(bytes); bytes = [] }
        return Batch(index: plan.index, count: n, channels: config.channels, height: config.view.size,
                     width: config.view.size, images: images, classCount: classCount, targets: targets,
                     weights: weights, ids: samples.map(\.id), origins: samples.map(\.origin),
                     replaced: replacedHere, stateAfter: plan.stateAfter)
    }
}
