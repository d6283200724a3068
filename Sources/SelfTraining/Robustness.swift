import Augment
import Batches
import DatasetStore
import Foundation
import ImageCodec
import KeyedRandom
import Parallelism
import Pipeline
import Pixels
import Trainer

/// ImageNet-P-style perturbation sequences: frames a model should not flip between.
public enum Perturbation: String, CaseIterable, Codable, Sendable {
    /// Frame t is shifted t pixels right (edges repeated); consecutive frames compared.
    case translate
    /// Frame t has HSV value (grey: the level) raised by 0.02 t; consecutive frames compared.
    case brightness
    /// Frame t (t >= 1) adds fresh Gaussian noise of standard deviation 0.02 (of the range)
    /// to the clean frame 0; each noisy frame compared with frame 0, as ImageNet-P does for noise.
    case gaussianNoise = "gaussian_noise"
}

public struct RobustnessOptions: Sendable {
    public var corruptions: [Corruption]
    public var severities: [Int]
    public var perturbations: [Perturbation]
    /// Frames per perturbation sequence (frame 0 is the clean image).
    public var frames: Int
    /// At most this many test samples: a seeded draw, the same for every model.
    public var limit: Int?
    public var seed: UInt64
    public var threads: Int

    public init(corruptions: [Corruption] = Corruption.available, severities: [Int] = Array(1...5),
                perturbations: [Perturbation] = Perturbation.allCases, frames: Int = 6, limit: Int? = nil,
                seed: UInt64 = 0, threads: Int = 2) {
        self.corruptions = corruptions; self.severities = severities; self.perturbations = perturbations
        self.frames = frames; self.limit = limit; self.seed = seed; self.threads = threads
    }
}

/// One model's figures. schemas/robustness.schema.json
public struct ModelRobustness: Codable, Sendable {
    public var checkpoint: String
    public var cleanAccuracy: Double
    /// Per corruption: the error at each severity (in the report's severity order).
    public var errors: [String: [Double]]
    /// Per corruption: the error averaged over severities.
    public var meanErrors: [String: Double]
    /// CE_c = sum over severities of E(s, c) / the baseline's sum.
    public var corruptionErrors: [String: Double]
    /// Mean CE over the report's mCE corruptions.
    public var mCE: Double
    /// Relative CE_c = sum_s (E(s, c) - E_clean) / the baseline's same sum.
    public var relativeCorruptionErrors: [String: Double]
    public var relativeMCE: Double
    /// Per perturbation: the flip probability (how often the top-1 prediction changes).
    public var flipProbabilities: [String: Double]
    /// Per perturbation: the flip probability over the baseline's.
    public var flipRates: [String: Double]
    public var mFR: Double

    enum CodingKeys: String, CodingKey {
        case checkpoint, errors, flipProbabilities = "flip_probabilities", flipRates = "flip_rates"
        case cleanAccuracy = "clean_accuracy", meanErrors = "mean_errors", corruptionErrors = "corruption_errors"
        case mCE = "mce", relativeCorruptionErrors = "relative_corruption_errors", relativeMCE = "relative_mce", mFR = "mfr"
    }
}

/// schemas/robustness.schema.json
public struct RobustnessReport: Codable, Sendable {
    public var format = "noisy-robustness"
    public var store: String
    /// Test samples scored (all of the split, or the seeded subset).
    public var samples: Int
    public var testSamples: Int
    public var seed: UInt64
    public var severities: [Int]
    public var corruptions: [String]
    /// The corruptions mCE averages: the evaluated ones among ImageNet-C's 15 common ones
    /// (all evaluated ones when none of those is).
    public var mCECorruptions: [String]
    public var perturbations: [String]
    public var frames: Int
    public var baseline: String
    public var models: [ModelRobustness]

    enum CodingKeys: String, CodingKey {
        case format, store, samples, seed, severities, corruptions, perturbations, frames, baseline, models
        case testSamples = "test_samples", mCECorruptions = "mce_corruptions"
    }
}

/// A checkpoint to score: its path (for the report) and the loaded trainer.
public struct RobustnessModel {
    public var path: String
    public var trainer: Trainer
    public var size: Int
    public var channels: Int
    public init(path: String, trainer: Trainer, size: Int, channels: Int) {
        self.path = path; self.trainer = trainer; self.size = size; self.channels = channels
    }
}

/// Scores models on the test split under every corruption and severity, and their
/// stability along perturbation sequences, on the fly: each test image is rendered
/// through the clean teacher view at the models' size, corrupted (keyed by seed and
/// sample id, so every model sees the same corrupted images), and predicted. Nothing
/// is written to the store.
public func evaluateRobustness(stores: [Store], storePath: String, models: [RobustnessModel], baseline: Int,
                               options: RobustnessOptions, progress: (Int, Int) -> Void = { _, _ in }) throws -> RobustnessReport {
    guard let first = stores.first, let m0 = models.first else { throw TrainerError(.io, "nothing to evaluate") }
    let size = m0.size, channels = m0.channels
    let classCount = try first.classes().count
    var items = try stores.flatMap { try $0.index(of: .test) }.sorted { $0.id < $1.id }
    guard !items.isEmpty else { throw TrainerError(.io, "\(storePath): no test split (ingest one with --test)") }
    let testSamples = items.count
    if let limit = options.limit, limit < items.count {
        // A seeded draw of `limit` samples (then in id order), the same for every model.
        var rng = KeyedRandom(seed: options.seed, epoch: 0, sample: 0, purpose: .corruption)
        var order = Array(items.indices)
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next(upperBound: UInt64(i + 1)))) }
        items = order.prefix(limit).sorted().map { items[$0] }
    }
    let source: any SampleSource = stores.count == 1 ? StoreSampleSource(store: first) : try ShardSetSampleSource(stores: stores)
    let renderer = ViewRenderer(channels: channels, layout: .uint8NHWC)
    let clean = View.teacher(TeacherView(size: size, cropFraction: 1))
    let passes = 1 + options.corruptions.count * options.severities.count + options.perturbations.count * options.frames
    var done = 0

    // correct[model][pass key]
    var correct = [[String: Int]](repeating: [:], count: models.count)
    var predictionsByFrame = [[String: [[Int]]]](repeating: [:], count: models.count)   // model -> perturbation -> frame -> top-1 per item
    let chunk = 256
    var start = 0
    while start < items.count {
        let part = Array(items[start..<min(items.count, start + chunk)])
        // The clean views of this chunk, once.
        var views: [Image] = []
        try source.withSamples(part.map { SampleRequest(id: $0.id, wantsLabel: false) }) { _, bytes, _ in
            guard let bytes else { throw TrainerError(.io, "\(storePath): a test sample is missing; noisy verify tells more") }
            views.append(try renderer.renderImage(bytes, view: clean, key: SampleKey(seed: 0, epoch: 0, sample: 0)))
        }
        let labels = part.map { $0.classIndex.map { Int($0) } ?? -1 }
        func score(_ key: String, _ images: [Image]) throws -> [[Int]] {
            let top = try predictTop1(models: models, images: images, size: size, channels: channels, classCount: classCount,
                                      threads: options.threads)
            for (k, t) in top.enumerated() {
                correct[k][key, default: 0] += zip(t, labels).filter { $0 == $1 }.count
            }
            done += 1
            progress(done, passes * ((items.count + chunk - 1) / chunk))
            return top
        }
        _ = try score("clean", views)
        for c in options.corruptions {
            for s in options.severities {
                let corrupted = try parallelMap(views, threads: options.threads) { i, v in
                    try Corruptions.apply(c, severity: s, to: v, seed: options.seed, sample: part[i].id)
                }
                _ = try score("\(c.rawValue)/\(s)", corrupted)
            }
        }
        for p in options.perturbations {
            for t in 0..<options.frames {
                let frames = try parallelMap(views, threads: options.threads) { i, v in
                    perturb(v, p, frame: t, seed: options.seed, sample: part[i].id)
                }
                let top = try score("\(p.rawValue)#\(t)", frames)
                for k in models.indices {
                    var perFrame = predictionsByFrame[k][p.rawValue] ?? [[Int]](repeating: [], count: options.frames)
                    perFrame[t] += top[k]
                    predictionsByFrame[k][p.rawValue] = perFrame
                }
            }
        }
        start += chunk
    }

    let n = Double(items.count)
    func err(_ k: Int, _ key: String) -> Double { 1 - Double(correct[k][key] ?? 0) / n }
    let common = options.corruptions.filter { Corruption.common.contains($0) }
    let mceSet = common.isEmpty ? options.corruptions : common
    var out: [ModelRobustness] = []
    func flipProbability(_ k: Int, _ p: Perturbation) -> Double {
        guard let frames = predictionsByFrame[k][p.rawValue], frames.count >= 2 else { return 0 }
        var flips = 0, pairs = 0
        for t in 1..<frames.count {
            let ref = p == .gaussianNoise ? frames[0] : frames[t - 1]
            flips += zip(frames[t], ref).filter { $0 != $1 }.count
            pairs += frames[t].count
        }
        return pairs > 0 ? Double(flips) / Double(pairs) : 0
    }
    for (k, m) in models.enumerated() {
        var errors: [String: [Double]] = [:], meanErrors: [String: Double] = [:], ce: [String: Double] = [:], rce: [String: Double] = [:]
        let clean = err(k, "clean"), baseClean = err(baseline, "clean")
        for c in options.corruptions {
            let e = options.severities.map { err(k, "\(c.rawValue)/\($0)") }
            let b = options.severities.map { err(baseline, "\(c.rawValue)/\($0)") }
            errors[c.rawValue] = e
            meanErrors[c.rawValue] = e.reduce(0, +) / Double(max(1, e.count))
            // Undefined when the baseline makes no error (or no degradation): left out, and out of the means.
            let bs = b.reduce(0, +)
            if bs > 0 { ce[c.rawValue] = e.reduce(0, +) / bs }
            let rb = b.map { $0 - baseClean }.reduce(0, +), re = e.map { $0 - clean }.reduce(0, +)
            if rb > 0 { rce[c.rawValue] = re / rb }
        }
        var fp: [String: Double] = [:], fr: [String: Double] = [:]
        for p in options.perturbations {
            fp[p.rawValue] = flipProbability(k, p)
            let b = flipProbability(baseline, p)
            if b > 0 { fr[p.rawValue] = flipProbability(k, p) / b }
        }
        func mean(_ d: [String: Double], _ keys: [String]) -> Double {
            let defined = keys.compactMap { d[$0] }
            return defined.isEmpty ? 0 : defined.reduce(0, +) / Double(defined.count)
        }
        out.append(ModelRobustness(checkpoint: m.path, cleanAccuracy: 1 - clean, errors: errors, meanErrors: meanErrors,
                                   corruptionErrors: ce, mCE: mean(ce, mceSet.map(\.rawValue)), relativeCorruptionErrors: rce,
                                   relativeMCE: mean(rce, mceSet.map(\.rawValue)), flipProbabilities: fp, flipRates: fr,
                                   mFR: mean(fr, options.perturbations.map(\.rawValue))))
    }
    return RobustnessReport(store: storePath, samples: items.count, testSamples: testSamples, seed: options.seed,
                            severities: options.severities, corruptions: options.corruptions.map(\.rawValue),
                            mCECorruptions: mceSet.map(\.rawValue), perturbations: options.perturbations.map(\.rawValue),
                            frames: options.frames, baseline: models[baseline].path, models: out)
}

/// Frame `t` of a perturbation sequence of a rendered view.
public func perturb(_ image: Image, _ p: Perturbation, frame t: Int, seed: UInt64, sample: UInt64) -> Image {
    guard t > 0 else { return image }
    var out = image
    let c = image.channels
    switch p {
    case .translate:
        for y in 0..<image.height {
            for x in 0..<image.width {
                let sx = max(0, x - t)
                for k in 0..<c { out.pixels[(y * image.width + x) * c + k] = image.pixels[(y * image.width + sx) * c + k] }
            }
        }
    case .brightness:
        if c >= 3 {
            // HSV value + 0.02 t, as the brightness corruption does.
            for i in 0..<(image.width * image.height) {
                let r = Double(image.pixels[c * i]), g = Double(image.pixels[c * i + 1]), b = Double(image.pixels[c * i + 2])
                let v = max(r, g, b)
                let nv = min(255, v + 0.02 * Double(t) * 255)
                let scale = v > 0 ? nv / v : 0
                for (k, x) in [r, g, b].enumerated() { out.pixels[c * i + k] = UInt8(min(255, v > 0 ? x * scale : nv)) }
            }
        } else {
            for i in out.pixels.indices { out.pixels[i] = UInt8(min(255, Double(image.pixels[i]) + 0.02 * Double(t) * 255)) }
        }
    case .gaussianNoise:
        var rng = KeyedRandom(seed: seed, epoch: 1_000 + UInt64(t), sample: sample, purpose: .corruption)
        for i in out.pixels.indices {
            let u1 = max(rng.unit(), 0x1.0p-53), u2 = rng.unit()
            let z = sqrt(-2 * log(u1)) * cos(2 * Double.pi * u2)
            out.pixels[i] = UInt8(min(255, max(0, Double(image.pixels[i]) + 0.02 * 255 * z)))
        }
    }
    return out
}

/// Top-1 predictions of every model for images already at the models' size: each image
/// goes through the clean teacher view (at its own size: the identity) into the trainer's
/// layout.
func predictTop1(models: [RobustnessModel], images: [Image], size: Int, channels: Int, classCount: Int,
                 threads: Int) throws -> [[Int]] {
    var encoded: [UInt64: [UInt8]] = [:]
    for (i, img) in images.enumerated() { encoded[UInt64(i)] = try Codec.encodePNG(img) }
    let loader = try SequenceLoader(items: images.indices.map { (id: UInt64($0), classIndex: nil) },
                                    source: InMemorySampleSource(images: encoded), classCount: classCount,
                                    view: .teacher(TeacherView(size: size, cropFraction: 1)), channels: channels,
                                    layout: .trainer, batchSize: 256, threads: threads)
    var out = [[Int]](repeating: [], count: models.count)
    while let b = try loader.next() {
        for (k, m) in models.enumerated() {
            let p = try m.trainer.predict(b)
            for i in 0..<b.count {
                var best = 0
                for j in 1..<classCount where p[i * classCount + j] > p[i * classCount + best] { best = j }
                out[k].append(best)
            }
        }
        loader.recycle(b)
    }
    return out
}

/// `body(i, x)` for every element, on `threads` workers, results in order.
func parallelMap<T: Sendable, R: Sendable>(_ xs: [T], threads: Int, _ body: @escaping @Sendable (Int, T) throws -> R) throws -> [R] {
    let workers = max(1, min(threads, xs.count))
    let slots = ConcurrentSlots<[(Int, Result<R, any Error>)]>(count: workers, initial: [])
    slots.forEachWorker { w in
        var mine: [(Int, Result<R, any Error>)] = []
        for i in stride(from: w, to: xs.count, by: workers) { mine.append((i, Result { try body(i, xs[i]) })) }
        slots[w] = mine
    }
    var out = [R?](repeating: nil, count: xs.count)
    for list in slots.values { for (i, r) in list { out[i] = try r.get() } }
    return out.compactMap { $0 }
}
