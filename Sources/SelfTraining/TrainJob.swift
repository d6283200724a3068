import Augment
import Batches
import DatasetStore
import Foundation
import ImageCodec
import Pipeline
import Trainer

/// A model and how long and fast to train it: a role in the loop, or one `noisy train`.
public struct ModelRecipe: Codable, Sendable, Equatable {
    public var kind: String
    public var width: Double
    public var depth: Int
    public var dropout: Double
    public var finalSurvival: Double
    public var epochs: Int
    public var learningRate: Double
    public var emaDecay: Double
    public var batchNorm: Bool
    public init(kind: String = "cnn", width: Double = 1, depth: Int = 1, dropout: Double = 0.3, finalSurvival: Double = 0.8,
                epochs: Int = 30, learningRate: Double = 0.05, emaDecay: Double = 0, batchNorm: Bool = false) {
        self.kind = kind; self.width = width; self.depth = depth; self.dropout = dropout
        self.finalSurvival = finalSurvival; self.epochs = epochs; self.learningRate = learningRate; self.emaDecay = emaDecay
        self.batchNorm = batchNorm
    }
}

/// Everything `noisy train` needs.
public struct TrainJobConfig: Sendable {
    public var pipeline: PipelineConfig
    public var recipe: ModelRecipe
    public var weightDecay: Double
    public var generation: Int?
    public var selection: String?
    public var labelOptions: LabelReadOptions
    /// Checkpoint written after every epoch (and read to resume).
    public var checkpoint: String
    public var blasThreads: Int
    /// Validation accuracy every this many epochs (and always after the last); 0: only
    /// after the last. The test split is scored once, after the last epoch, for the report.
    public var evaluateEvery: Int = 1
    /// A checkpoint of the same architecture whose weights the model starts from,
    /// instead of the seed's random ones (the loop's `warmStart`). Its optimiser state
    /// and schedule are not used: the job warms up and decays from step 0 as usual.
    /// Ignored when the job resumes from its own checkpoint, which holds later weights.
    public var initialWeights: String?

    public init(pipeline: PipelineConfig, recipe: ModelRecipe, weightDecay: Double = 5e-4, generation: Int? = nil,
                selection: String? = nil, labelOptions: LabelReadOptions = .init(), checkpoint: String, blasThreads: Int = 1) {
        self.pipeline = pipeline; self.recipe = recipe; self.weightDecay = weightDecay; self.generation = generation
        self.selection = selection; self.labelOptions = labelOptions; self.checkpoint = checkpoint; self.blasThreads = blasThreads
    }
}

/// One epoch's report.
public struct EpochReport: Codable, Sendable {
    public var epoch: Int
    public var loss: Double
    public var trainAccuracy: Double
    /// On the validation split (nil: not due this epoch, or the store has none).
    public var validationAccuracy: Double?
    /// On the test split: after the last epoch only.
    public var testAccuracy: Double?
    public var imagesPerSecond: Double
    public var seconds: Double
}

/// Trains a model on a store: the labeled split, plus a generation's selection when
/// given, through the pipeline's noised train view. Writes a checkpoint after every
/// epoch (model, optimiser, stream state), and resumes from it if it exists and
/// matches, so an interrupted run finishes where it would have.
public final class TrainJob {
    public let store: Store
    public let config: TrainJobConfig
    /// A shard set to train on instead (every shard, read as one source); `store` is its first shard.
    public let set: (manifest: ShardManifest, stores: [Store])?
    public var onEpoch: (EpochReport) -> Void = { _ in }
    public var onProgress: (_ step: Int, _ total: Int, _ loss: Double) -> Void = { _, _, _ in }

    public init(store: Store, config: TrainJobConfig) {
        self.store = store
        self.config = config
        set = nil
    }

    public init(set manifest: ShardManifest, stores: [Store], config: TrainJobConfig) {
        store = stores[0]
        self.config = config
        set = (manifest, stores)
    }

    public func run(resume: Bool = true) throws -> (trainer: Trainer, reports: [EpochReport]) {
        setBLASThreads(config.blasThreads)
        let classes = try store.classes().count
        let size = config.pipeline.view.size
        let r = config.recipe
        let arch = Architecture(kind: r.kind, width: r.width, depth: r.depth, height: size, imageWidth: size,
                                channels: config.pipeline.channels, classes: classes, dropout: r.dropout,
                                finalSurvival: r.finalSurvival, batchNorm: r.batchNorm)
        // A checkpoint to resume from fixes the stream state; the one loader built from
        // it also tells the epoch length, which fixes the schedule the checkpoint must match.
        let saved = resume && FileManager.default.fileExists(atPath: config.checkpoint)
            ? try Checkpoint.load(path: config.checkpoint) : nil
        // The trainer's contract fixes the layout, whatever the caller's pipeline said.
        var pipeline = config.pipeline
        pipeline.layout = .trainer
        let loader: BatchLoader
        if let set {
            loader = try BatchLoader(set: set.manifest, stores: set.stores, node: Array(set.stores.indices), config: pipeline,
                                     generation: config.generation, selection: config.selection, labelOptions: config.labelOptions,
                                     state: saved?.header.stream)
        } else {
            let pseudo = try config.generation.map {
                try StoreSoftLabels(store: store, generation: $0, selection: config.selection, options: config.labelOptions)
            }
            loader = try BatchLoader(store: store, config: pipeline, pseudoLabels: pseudo, state: saved?.header.stream)
        }
        let perEpoch = loader.batchesPerEpoch
        let total = perEpoch * r.epochs
        let sgd = SGDConfig(learningRate: r.learningRate, weightDecay: config.weightDecay,
                            warmupSteps: min(total / 10, 3 * perEpoch), totalSteps: total, emaDecay: r.emaDecay)
        let trainer: Trainer
        if let (h, model, opt) = saved {
            guard h.architecture == arch, h.optimizer == sgd, h.seed == config.pipeline.seed else {
                throw TrainerError(.checkpoint, "\(config.checkpoint) exists but was made with other settings (architecture, optimiser or seed); remove it or write the checkpoint elsewhere")
            }
            trainer = Trainer(model: model, optimizer: opt, seed: h.seed)
        } else if let start = config.initialWeights {
            let (h, model, _) = try Checkpoint.load(path: start)
            guard h.architecture == arch else {
                throw TrainerError(.checkpoint, "\(start): cannot start from its weights: it holds a \(h.architecture.kind) w\(h.architecture.width) d\(h.architecture.depth) model, this job trains a \(arch.kind) w\(arch.width) d\(arch.depth) one")
            }
            trainer = Trainer(model: model, optimizer: SGD(parameters: model.parameters, config: sgd), seed: config.pipeline.seed)
        } else {
            trainer = try Trainer(architecture: arch, optimizer: sgd, seed: config.pipeline.seed)
        }
        var reports: [EpochReport] = []
        var step = trainer.optimizer.step
        while step < total {
            let epoch = step / perEpoch
            let start = Date()
            var lossSum = 0.0, correct = 0, seen = 0
            for _ in (step % perEpoch)..<perEpoch {
                let b = try loader.next()
                let r = try trainer.step(b)
                lossSum += Double(r.loss) * Double(b.count)
                correct += r.correct
                seen += b.count
                loader.recycle(b)
                step += 1
                onProgress(step, total, lossSum / Double(max(1, seen)))
            }
            let seconds = Date().timeIntervalSince(start)
            let last = step >= total
            let due = last || (config.evaluateEvery > 0 && (epoch + 1) % config.evaluateEvery == 0)
            let stores = set?.stores ?? [store]
            func score(_ split: Split) throws -> Evaluation? {
                try evaluate(stores: stores, trainer: trainer, size: size, channels: config.pipeline.channels,
                             threads: config.pipeline.threads, split: split)
            }
            let validation = due ? try score(.validation) : nil
            let test = last ? try score(.test) : nil
            try Checkpoint.save(path: config.checkpoint, model: trainer.model, optimizer: trainer.optimizer,
                                seed: config.pipeline.seed, stream: loader.state,
                                notes: ["epochs_done": String(epoch + 1), "test_accuracy": test.map { String($0.accuracy) } ?? "",
                                        "validation_accuracy": validation.map { String($0.accuracy) } ?? "",
                                        "generation": config.generation.map(String.init) ?? ""])
            let report = EpochReport(epoch: epoch + 1, loss: lossSum / Double(max(1, seen)),
                                     trainAccuracy: Double(correct) / Double(max(1, seen)), validationAccuracy: validation?.accuracy,
                                     testAccuracy: test?.accuracy, imagesPerSecond: Double(seen) / max(seconds, 1e-9), seconds: seconds)
            reports.append(report)
            onEpoch(report)
        }
        return (trainer, reports)
    }
}

extension OutputLayout {
    /// What the CPU trainer consumes (`Model.inputLayout`): the pipeline renders it directly.
    public static let trainer = OutputLayout.float32NHWC(.centred)
}

/// Accuracy on a held-out split of the store through the clean view (nil: the split is empty).
public func evaluate(store: Store, trainer: Trainer, size: Int, channels: Int, threads: Int, split: Split = .test) throws -> Evaluation? {
    try evaluate(stores: [store], trainer: trainer, size: size, channels: channels, threads: threads, split: split)
}

/// Accuracy on a held-out split of a store, or of every shard of a set together, in id order.
public func evaluate(stores: [Store], trainer: Trainer, size: Int, channels: Int, threads: Int, split: Split = .test) throws -> Evaluation? {
    guard let store = stores.first else { return nil }
    let view = View.teacher(TeacherView(size: size, cropFraction: 1))
    let loader: SequenceLoader
    if stores.count == 1 {
        loader = try SequenceLoader(store: store, split: split, view: view, channels: channels, layout: .trainer, batchSize: 256, threads: threads)
    } else {
        let items = try stores.flatMap { try $0.index(of: split) }.sorted { $0.id < $1.id }.map { (id: $0.id, classIndex: $0.classIndex.map { Int($0) }) }
        loader = try SequenceLoader(items: items, source: try ShardSetSampleSource(stores: stores), classCount: try store.classes().count,
                                    view: view, channels: channels, layout: .trainer, batchSize: 256, threads: threads)
    }
    guard loader.count > 0 else { return nil }
    var eval = Evaluation(classes: try store.classes().count)
    while let b = try loader.next() {
        eval.add(probabilities: try trainer.predict(b), labels: (0..<b.count).map { b.argmaxTarget($0) })
        loader.recycle(b)
    }
    return eval
}

/// Labels a split with a trained model through the clean teacher view and creates
/// the next generation (the same import as `noisy labels import`).
/// A teacher's predictions (probabilities, float32 [n, C] row-major) for the given
/// samples through the clean teacher view, in the order given. `batchInvariant`: each
/// sample's prediction does not depend on the others in its batch (label jobs, whose
/// parts batch the split differently; slower).
public func predict(store: Store, trainer: Trainer, ids: [UInt64], channels: Int, threads: Int, batchInvariant: Bool = false,
                    progress: (Int, Int) -> Void = { _, _ in }) throws -> [Float] {
    try predict(stores: [store], trainer: trainer, ids: ids, channels: channels, threads: threads, batchInvariant: batchInvariant,
                progress: progress)
}

/// The same over a store or the shards of a set (each id read from the shard that holds it).
public func predict(stores: [Store], trainer: Trainer, ids: [UInt64], channels: Int, threads: Int, batchInvariant: Bool = false,
                    progress: (Int, Int) -> Void = { _, _ in }) throws -> [Float] {
    guard let store = stores.first else { return [] }
    let a = trainer.model.architecture
    let source: any SampleSource = stores.count == 1 ? StoreSampleSource(store: store) : try ShardSetSampleSource(stores: stores)
    let loader = try SequenceLoader(items: ids.map { (id: $0, classIndex: nil) }, source: source,
                                    classCount: try store.classes().count, view: .teacher(TeacherView(size: a.height, cropFraction: 1)),
                                    channels: channels, layout: .trainer, batchSize: 512, threads: threads)
    var rows = [Float]()
    rows.reserveCapacity(ids.count * a.classes)
    var done = 0
    while let b = try loader.next() {
        rows += try trainer.predict(b, batchInvariant: batchInvariant)
        done += b.count
        loader.recycle(b)
        progress(done, ids.count)
    }
    return rows
}

public func labelSplit(store: Store, trainer: Trainer, split: Split = .unlabeled, teacher: TeacherInfo, parent: ParentChoice,
                       precision: LabelPrecision = .f16, channels: Int, threads: Int, batchInvariant: Bool = false,
                       progress: (Int, Int) -> Void = { _, _ in }) throws -> LabelImportSummary {
    let ids = try store.index(of: split).map(\.id)
    guard !ids.isEmpty else { throw TrainerError(.io, "\(store.path): the \(split.rawValue) split is empty") }
    let rows = try predict(store: store, trainer: trainer, ids: ids, channels: channels, threads: threads,
                           batchInvariant: batchInvariant, progress: progress)
    return try store.importLabels(LabelImportRequest(
        input: .rows(ids: ids, rows: rows, classCount: trainer.model.architecture.classes,
                     origin: PredictionOrigin(kind: "label", logits: false, matchedBy: "split")),
        teacher: teacher, parent: parent, precision: precision))
}
