import ArgumentParser
import Augment
import DatasetStore
import Foundation
import Pipeline
import SelfTraining
import ImageCodec
import Trainer
import Digest

/// Model and optimiser options shared by train and run.
struct ModelOptions: ParsableArguments {
    @Option(help: "mlp or cnn (residual CNN: stem, two stages of residual blocks, dense).")
    var model: ModelChoice = .cnn
    @Option(help: "Width multiplier (1: 16 and 32 channels, 128 dense units; MLP 256 units).") var width: Double = 1
    @Option(help: "Residual blocks per stage (CNN) or hidden layers (MLP).") var depth: Int = 1
    @Option(help: "Epochs: passes over the pseudo-labeled selection (or the labeled split without one).") var epochs: Int = 10
    @Option(help: "Dropout before the classifier.") var dropout: Double = 0.2
    @Option(help: "Stochastic depth: survival probability of the last residual block.") var stochasticDepth: Double = 0.8
    @Option(help: "Peak learning rate (after warm-up; cosine decay).") var lr: Double = 0.05
    @Option(help: "Weight decay.") var weightDecay: Double = 5e-4
    @Option(help: "EMA decay of the weights used to evaluate and label (0: off).") var ema: Double = 0
    @Flag(help: "Batch normalisation after every convolution (CNN) or hidden layer (MLP).") var batchNorm = false
    @Option(help: "OpenBLAS threads (keep decode threads' cores free).") var blasThreads: Int = 1

    func validate() throws {
        guard width > 0, depth >= 0, epochs >= 1 else { throw ValidationError("--width > 0, --depth >= 0, --epochs >= 1") }
        guard (0..<1).contains(dropout), stochasticDepth > 0, stochasticDepth <= 1 else {
            throw ValidationError("--dropout in [0, 1), --stochastic-depth in (0, 1]")
        }
    }
}

struct Train: ParsableCommand, TrainsModels {
    static let configuration = CommandConfiguration(
        abstract: "Train a model on the labeled split, plus a generation's pseudo labels if given.",
        discussion: """
        Prints per-epoch loss, train and validation accuracy and images/s, and writes
        the checkpoint (schemas/checkpoint.md) after every epoch. The test split is
        scored once, after the last epoch, for the report: choose settings on
        validation (ingest it with --validation). Run again with the same options to
        resume an interrupted run exactly where it stopped.

        Examples:
          noisy train --store fmnist.noisy --size 28 --crop pad --pad 2 --model cnn \\
              --epochs 30 --out teacher.ckpt
          noisy train --store fmnist.noisy --generation 1 --ratio 3 --size 28 \\
              --crop pad --pad 3 --cutout 10 --model cnn --width 2 --dropout 0.5 \\
              --stochastic-depth 0.8 --epochs 10 --out student.ckpt
          noisy train --store fmnist.noisy --size 28 --crop pad --pad 2 --model cnn \\
              --depth 1 --batch-norm --epochs 30 --out bn.ckpt
        """
    )
    @OptionGroup var storeOption: StoreOption
    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var pipeline: PipelineOptions
    @Option(help: ArgumentHelp("Checkpoint to write (and resume from).", valueName: "file")) var out: String
    @Flag(help: "Start over even if --out exists.") var restart = false
    @Option(help: "Validation accuracy every N epochs (0: only after the last; test: only after the last).") var evalEvery: Int = 1
    @Flag(help: "Print the epoch reports as JSON lines (schemas/epoch-report.schema.json).") var json = false

    func run() throws {
        try runReportingErrors {
            let source = try PipelineSource(path: storeOption.store)
            let store = source.store
            let config = try pipeline.config(store: store)
            let m = modelOptions
            let recipe = ModelRecipe(kind: m.model.rawValue, width: m.width, depth: m.depth, dropout: m.dropout,
                                     finalSurvival: m.stochasticDepth, epochs: m.epochs, learningRate: m.lr, emaDecay: m.ema,
                                     batchNorm: m.batchNorm)
            var jobConfig = TrainJobConfig(
                pipeline: config, recipe: recipe, weightDecay: m.weightDecay,
                generation: try pipeline.generation.map { try store.resolveGeneration($0).generation },
                selection: pipeline.selection,
                labelOptions: LabelReadOptions(temperature: pipeline.temperature, hard: pipeline.hard, smoothing: pipeline.hardSmoothing),
                checkpoint: out, blasThreads: m.blasThreads)
            jobConfig.evaluateEvery = evalEvery
            let job = source.set.map { TrainJob(set: $0.manifest, stores: $0.stores, config: jobConfig) }
                ?? TrainJob(store: store, config: jobConfig)
            let bar = ProgressLine("train", unit: "steps", quiet: json)
            let start = Date()
            job.onProgress = { step, total, _ in bar.update(done: step, total: total, elapsed: Date().timeIntervalSince(start)) }
            job.onEpoch = { r in
                if json {
                    // One compact line per epoch (schemas/epoch-report.schema.json).
                    let e = JSONEncoder()
                    e.keyEncodingStrategy = .convertToSnakeCase
                    e.outputFormatting = [.sortedKeys]
                    if let d = try? e.encode(r) { print(String(decoding: d, as: UTF8.self)) }
                    return
                }
                print(String(format: "epoch %3d  loss %.4f  train %.2f%%  validation %@%@  %.0f images/s  %.1f s", r.epoch, r.loss,
                             100 * r.trainAccuracy, r.validationAccuracy.map { String(format: "%.2f%%", 100 * $0) } ?? "-",
                             r.testAccuracy.map { String(format: "  test %.2f%%", 100 * $0) } ?? "", r.imagesPerSecond, r.seconds))
            }
            _ = try job.run(resume: !restart)
            if !json { print("wrote \(out)") }
        }
    }
}

struct Evaluate: ParsableCommand, TrainsModels {
    static let configuration = CommandConfiguration(
        abstract: "Accuracy, per-class accuracy and confusion matrix of a checkpoint on a held-out split.",
        discussion: """
        Examples:
          noisy evaluate --store fmnist.noisy --checkpoint student.ckpt
          noisy evaluate --store fmnist.noisy --checkpoint student.ckpt \\
              --split validation --json
        """
    )
    @OptionGroup var storeOption: StoreOption
    @Option(help: ArgumentHelp("Checkpoint file.", valueName: "file")) var checkpoint: String
    @Option(help: "Held-out split to score: test or validation.") var split: Split = .test
    @Option(help: "Decode threads.") var threads: Int = 2
    @Flag(help: "Print JSON (schemas/evaluation.schema.json).") var json = false

    func validate() throws {
        guard split.isHeldOut else { throw ValidationError("--split must be test or validation (a held-out split), not \(split.rawValue)") }
    }

    func run() throws {
        try runReportingErrors {
            let source = try PipelineSource(path: storeOption.store)
            let store = source.store
            let (h, model, opt) = try Checkpoint.load(path: checkpoint)
            let trainer = Trainer(model: model, optimizer: opt, seed: h.seed)
            guard let e = try evaluate(stores: source.set?.stores ?? [store], trainer: trainer, size: h.architecture.height,
                                       channels: h.architecture.channels, threads: threads, split: split) else {
                throw ValidationError("\(storeOption.store): no \(split.rawValue) split (ingest one with --\(split.rawValue))")
            }
            if json { try Terminal.printJSON(e, snakeCase: true); return }
            let classes = try store.classes()
            print(String(format: "%@ accuracy %.2f%% over %d samples", split.rawValue, 100 * e.accuracy, e.samples))
            let w = max(5, classes.map(\.count).max() ?? 5)
            for (i, name) in classes.enumerated() {
                print("  " + name.padding(toLength: w + 2, withPad: " ", startingAt: 0) + String(format: "%6.2f%%  ", 100 * e.perClassAccuracy[i])
                      + e.confusion[i].map { String($0).padding(toLength: 6, withPad: " ", startingAt: 0) }.joined())
            }
        }
    }
}

struct LabelCommand: ParsableCommand, TrainsModels {
    static let configuration = CommandConfiguration(
        commandName: "label",
        abstract: "Run a teacher checkpoint over the unlabeled split and create the next generation.",
        discussion: """
        The clean teacher view (no augmentation, no dropout, no stochastic depth; EMA
        weights if the checkpoint keeps them), every unlabeled sample once. The result
        equals exporting the predictions to NPY and running noisy labels import.

        Predictions are computed row by row, so that a sample's does not depend on the
        batch it is in: any split into parts gives the same bytes.

        With --job NAME --part i --parts W, this process labels only part i of the
        split (positions i, i+W, ... in id order) and submits it to the job; the
        generation appears when the last part is in (see noisy labels import --help).

        Examples:
          noisy label --store fmnist.noisy --checkpoint teacher.ckpt \\
              --teacher "cnn w1, 30 epochs"
          noisy label --store fmnist.noisy --checkpoint teacher.ckpt --teacher t \\
              --job gen2 --part 0 --parts 4
        """
    )
    @OptionGroup var job: JobPartOptions
    @OptionGroup var storeOption: StoreOption
    @Option(help: ArgumentHelp("Teacher checkpoint.", valueName: "file")) var checkpoint: String
    @Option(help: "Free text describing the teacher.") var teacher: String
    @Option(help: ArgumentHelp("Parent generation (number or tag), or 'none'. Default: the newest.", valueName: "K")) var parent: String?
    @Option(help: ArgumentHelp("f16, f32 or topk:K.", valueName: "precision")) var precision: LabelPrecision = .f16
    @Option(help: "Decode threads.") var threads: Int = 2
    @Flag(help: "Print the import summary as JSON.") var json = false

    func run() throws {
        try runReportingErrors {
            let p = precision
            if ShardManifest.isSet(storeOption.store) { return try labelSet() }
            let store = try Store(path: storeOption.store)
            let (h, model, opt) = try Checkpoint.load(path: checkpoint)
            let trainer = Trainer(model: model, optimizer: opt, seed: h.seed)
            let parentChoice: ParentChoice = try parent.map { $0 == "none" ? .none : .generation(try store.resolveGeneration($0).generation) } ?? .latest
            let sha = try Data(contentsOf: URL(fileURLWithPath: checkpoint), options: .alwaysMapped).withUnsafeBytes { SHA256.hash($0) }.hexString
            let bar = ProgressLine("label", unit: "samples", quiet: json)
            let start = Date()
            let info = TeacherInfo(description: teacher, model: "\(h.architecture.kind) w\(h.architecture.width) d\(h.architecture.depth)",
                                   checkpoint: checkpoint, checkpointSha256: sha)
            if let name = job.job {
                let request = try job.request(name: name, teacher: info, logits: false, precision: p, parent: parentChoice)
                let part = try job.partNumber()
                let ids = try store.labelPartIDs(split: request.split, part: part, parts: request.parts)
                let rows = try predict(store: store, trainer: trainer, ids: ids, channels: h.architecture.channels, threads: threads,
                                       batchInvariant: true) { done, total in
                    bar.update(done: done, total: total, elapsed: Date().timeIntervalSince(start))
                }
                let r = try store.submitLabelPart(request, part: part, ids: ids, rows: rows, classCount: h.architecture.classes,
                                                  worker: job.worker, commit: !job.noCommit)
                try job.report(r, store: storeOption.store, json: json)
                return
            }
            let s = try labelSplit(store: store, trainer: trainer,
                                   teacher: TeacherInfo(description: teacher, model: "\(h.architecture.kind) w\(h.architecture.width) d\(h.architecture.depth)",
                                                        checkpoint: checkpoint, checkpointSha256: sha),
                                   parent: parentChoice, precision: p, channels: h.architecture.channels, threads: threads,
                                   batchInvariant: true) { done, total in
                bar.update(done: done, total: total, elapsed: Date().timeIntervalSince(start))
            }
            if json { try Terminal.printJSON(s, snakeCase: true); return }
            print("generation \(s.generation): \(s.samples) samples, mean confidence \(String(format: "%.3f", s.meanConfidence))")
        }
    }
}

extension LabelCommand {
    /// Over a shard set: every shard's unlabeled samples in id order, one generation over
    /// the set (committed in its manifest); with --job, part i of W on every shard.
    func labelSet() throws {
        guard parent == nil else { throw ValidationError("over a shard set, a generation's parent is the set's newest") }
        let (m, folder) = try ShardManifest.read(storeOption.store)
        let stores = try m.openShards(folder: folder, readOnly: job.job == nil)
        let (h, model, opt) = try Checkpoint.load(path: checkpoint)
        let trainer = Trainer(model: model, optimizer: opt, seed: h.seed)
        let sha = try Data(contentsOf: URL(fileURLWithPath: checkpoint), options: .alwaysMapped).withUnsafeBytes { SHA256.hash($0) }.hexString
        let info = TeacherInfo(description: teacher, model: "\(h.architecture.kind) w\(h.architecture.width) d\(h.architecture.depth)",
                               checkpoint: checkpoint, checkpointSha256: sha)
        let request = try job.job.map { try job.request(name: $0, teacher: info, logits: false, precision: precision, parent: .latest) }
        let ids = try request.map { try ShardManifest.labelPartIDs(stores: stores, split: $0.split, part: try job.partNumber(), parts: $0.parts) }
            ?? stores.flatMap { try $0.index(of: .unlabeled).map(\.id) }.sorted()
        guard !ids.isEmpty else { throw ValidationError("\(storeOption.store): the set has no unlabeled samples" + (request == nil ? "" : " in this part")) }
        let bar = ProgressLine("label", unit: "samples", quiet: json)
        let start = Date()
        let rows = try predict(stores: stores, trainer: trainer, ids: ids, channels: h.architecture.channels, threads: threads,
                               batchInvariant: true) { done, total in bar.update(done: done, total: total, elapsed: Date().timeIntervalSince(start)) }
        if let request {
            let r = try ShardManifest.submitLabelPart(inSet: storeOption.store, stores: stores, request, part: try job.partNumber(),
                                                      ids: ids, rows: rows, classCount: h.architecture.classes, worker: job.worker,
                                                      commit: !job.noCommit)
            try job.report(r, store: storeOption.store, json: json)
            return
        }
        let (next, k) = try ShardManifest.importLabels(intoSet: storeOption.store, ids: ids, rows: rows, classCount: h.architecture.classes,
                                                       teacher: info, precision: precision)
        if json { try Terminal.printJSON(next.generations.last, snakeCase: true); return }
        print("generation \(k) over the set: \(ids.count) samples on \(next.shards.count) shards, committed in the manifest")
    }
}
