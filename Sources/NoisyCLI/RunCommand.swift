import ArgumentParser
import Augment
import DatasetStore
import Foundation
import Pipeline
import SelfTraining
import Trainer
import Pixels

/// The loop's options, shared by `noisy run` and `noisy demo`.
struct LoopOptions: ParsableArguments {
    @Option(help: "Teacher -> student iterations.") var iterations: Int = 3
    @Option(help: "Image side (28 for Fashion-MNIST).") var size: Int = 28
    @Option(help: "Teacher width multiplier (the first teacher).") var teacherWidth: Double = 1
    @Option(help: "Student width multiplier, at least the teacher's (default: 2; 1 with demo --long).") var studentWidth: Double?
    @Option(help: "Residual blocks per stage (0: two plain conv layers, the fast demo setting; stochastic depth needs >= 1).")
    var depth: Int = 0
    @Option(help: "Residual blocks per stage of the students (default: --depth); a deeper student gets stochastic depth.")
    var studentDepth: Int?
    @Option(help: "Epochs of the first teacher (over the labeled split). 240 with RandAugment 2,5 was chosen on validation over 3 seeds (BENCHMARKS.md).")
    var teacherEpochs: Int = 240
    @Option(help: ArgumentHelp("Epochs of each student (passes over the pseudo-labeled selection); a list gives iteration 1, 2, ... (the last repeats). Default: 7 (14 with demo --long), each chosen on validation over 3 seeds (BENCHMARKS.md).",
                               valueName: "E[,E...]")) var studentEpochs: String?
    @Option(help: "Confidence threshold of the pseudo labels.") var threshold: Double = 0.3
    @Option(help: "Entries per class after balancing (0: no balancing: every entry over the threshold, which beat 3,000 per class on validation over 3 seeds, BENCHMARKS.md).")
    var keepPerClass: Int = 0
    @Option(help: "Pseudo-labeled samples per labeled one in each student batch (1: half of each batch is labeled).")
    var ratio: Double = 1
    @Option(help: "Batch size.") var batchSize: Int = 64
    @Option(help: "Teacher noise: pad-and-crop padding.") var teacherPad: Int = 2
    @Option(help: ArgumentHelp("Teacher noise: RandAugment N,M (timm preset) for the first teacher, or none.",
                               valueName: "N,M")) var teacherRandaugment: String = "2,5"
    @Option(help: "Student noise: pad-and-crop padding.") var studentPad: Int = 3
    @Option(help: "Student noise: Cutout side (0: off).") var cutout: Int = 10
    @Option(help: ArgumentHelp("Student noise: RandAugment N,M (timm preset, relative geometry), or none. 2,5 was chosen on validation over 3 seeds (BENCHMARKS.md).",
                               valueName: "N,M")) var randaugment: String = "2,5"
    @Option(help: "Student dropout.") var dropout: Double = 0.5
    @Option(help: "Student peak learning rate (after warm-up; cosine decay).") var studentLr: Double = 0.05
    @Option(help: "Weight decay (teacher and students).") var weightDecay: Double = 5e-4
    @Option(help: "Pseudo-label temperature: p^(1/T), renormalised (1: the teacher's distribution).") var labelTemperature: Double = 1
    @Flag(help: "Hard pseudo labels (one-hot of the top class, smoothing 0.1) instead of soft ones.") var hardLabels = false
    @Option(help: "Student stochastic depth (final survival).") var stochasticDepth: Double = 0.8
    @Option(help: "EMA decay of the weights that evaluate and label (0: off).") var ema: Double = 0
    @Flag(help: "Students after the first start from their teacher's weights (the previous student) instead of from scratch.")
    var warmStart = false
    @Option(help: "Batch normalisation after every convolution: in no model, the students only, or every model (default: none; students with demo --long).")
    var batchNorm: BatchNormChoice?
    @Option(help: "Seed.") var seed: UInt64 = 0
    @Option(help: "Decode threads.") var threads: Int = 2
    @Option(help: "OpenBLAS threads.") var blasThreads: Int = 1

    /// What `noisy demo --long` changes, where the options leave it open: the deeper
    /// student (16 and 32 channels, one residual block per stage with stochastic
    /// depth) with batch normalisation, trained 14 epochs instead of 7, for the default
    /// 3 iterations. Each was chosen on validation over 3 seeds: at 7 epochs the deeper
    /// students stopped gaining after the second iteration, at 14 every iteration up to
    /// the third gains on every seed, batch normalisation gains at the second and third
    /// iterations on every seed, and the three fit inside an hour on 2 cores
    /// (BENCHMARKS.md, "The long demo").
    mutating func applyLongPreset() {
        studentWidth = studentWidth ?? 1
        studentDepth = studentDepth ?? 1
        studentEpochs = studentEpochs ?? "14"
        batchNorm = batchNorm ?? .students
    }

    func config(store: Store, workdir: String) throws -> LoopConfig {
        let studentWidth = self.studentWidth ?? 2
        guard iterations >= 1 else { throw ValidationError("--iterations must be at least 1") }
        guard labelTemperature > 0, studentLr > 0, weightDecay >= 0 else {
            throw ValidationError("--label-temperature and --student-lr must be above 0, --weight-decay at least 0")
        }
        guard (studentDepth ?? depth) >= depth, depth >= 0 else {
            throw ValidationError("--student-depth must be at least --depth (the student is at least the teacher's size)")
        }
        guard studentWidth >= teacherWidth else { throw ValidationError("the student must be at least as wide as the teacher") }
        let studentEpochs = self.studentEpochs ?? "7"
        let epochs = studentEpochs.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !epochs.isEmpty, epochs.allSatisfy({ ($0 ?? 0) >= 1 }) else {
            throw ValidationError("--student-epochs wants positive integers, e.g. 16 or 12,12,24 (got '\(studentEpochs)')")
        }
        let channels = try store.dominantChannels()
        let ra = try RandAugment(option: randaugment, preset: .timm)
        let teacherRA = try RandAugment(option: teacherRandaugment, name: "--teacher-randaugment", preset: .timm)
        let teacherView = View.train(TrainView(size: size, crop: .padCrop(padding: teacherPad), flip: true, randAugment: teacherRA))
        let studentView = View.train(TrainView(size: size, crop: .padCrop(padding: studentPad), flip: true, randAugment: ra, cutout: cutout))
        let batchNorm = self.batchNorm ?? .none
        var config = LoopConfig(
            iterations: iterations,
            teacher: ModelRecipe(kind: "cnn", width: teacherWidth, depth: depth, dropout: 0.3, finalSurvival: 1, epochs: teacherEpochs,
                                 emaDecay: ema, batchNorm: batchNorm == .all),
            student: ModelRecipe(kind: "cnn", width: studentWidth, depth: studentDepth ?? depth, dropout: dropout, finalSurvival: stochasticDepth,
                                 epochs: epochs.last.flatMap { $0 } ?? 16, learningRate: studentLr, emaDecay: ema,
                                 batchNorm: batchNorm != .none),
            teacherPipeline: PipelineConfig(view: teacherView, channels: channels, batchSize: batchSize, seed: seed, threads: threads),
            studentPipeline: PipelineConfig(view: studentView, channels: channels, batchSize: batchSize, ratio: ratio, seed: seed, threads: threads),
            threshold: threshold, perClass: keepPerClass > 0 ? keepPerClass : nil, workdir: workdir, blasThreads: blasThreads)
        config.studentEpochsByIteration = epochs.compactMap { $0 }
        config.labelOptions = LabelReadOptions(temperature: labelTemperature, hard: hardLabels)
        config.weightDecay = weightDecay
        config.warmStart = warmStart
        return config
    }

    /// Runs the loop with progress lines and the per-iteration table; writes the report.
    static func runLoop(store: Store, set: (path: String, stores: [Store])? = nil, config: LoopConfig, reportPath: String?) throws -> RunReport {
        let loop = set.map { NoisyStudentLoop(set: $0.path, stores: $0.stores, config: config) } ?? NoisyStudentLoop(store: store, config: config)
        loop.log = { Terminal.info($0) }
        loop.onEpoch = { name, r in
            Terminal.info(String(format: "%@ epoch %d: loss %.4f, train %.1f%%, %.0f images/s%@%@", name, r.epoch, r.loss,
                                 100 * r.trainAccuracy, r.imagesPerSecond,
                                 r.validationAccuracy.map { String(format: ", validation %.2f%%", 100 * $0) } ?? "",
                                 r.testAccuracy.map { String(format: ", test %.2f%%", 100 * $0) } ?? ""))
        }
        let report = try loop.run()
        let classes = try store.classes()
        // Validation first: it is what settings are chosen on; test is the report's number.
        func pct(_ v: Double?) -> String { v.map { String(format: "%6.2f%%", 100 * $0) } ?? "     - " }
        print("iter  validation (teacher -> student)  test (teacher -> student)  generation  flipped   kept per class (\(classes.joined(separator: ", ")))")
        for r in report.iterations {
            print(String(format: "%-5d %@ -> %@               %@ -> %@         %-10d  %@   %@", r.iteration,
                         pct(r.teacherValidationAccuracy), pct(r.studentValidationAccuracy), pct(r.teacherAccuracy), pct(r.studentAccuracy),
                         r.generation, r.flipRate.map { String(format: "%5.2f%%", 100 * $0) } ?? "    - ",
                         r.keptPerClass.map(String.init).joined(separator: " ")))
        }
        if let reportPath {
            let e = JSONEncoder()
            e.keyEncodingStrategy = .convertToSnakeCase
            e.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            guard FileManager.default.createFile(atPath: reportPath, contents: try e.encode(report)) else {
                throw ValidationError("\(reportPath): cannot write")
            }
            print("wrote \(reportPath)")
        }
        return report
    }
}

struct Run: ParsableCommand, TrainsModels {
    static let configuration = CommandConfiguration(
        abstract: "The whole Noisy Student loop: teacher, label, filter/balance, larger noised student, repeat.",
        discussion: """
        Iteration k: the teacher (the first one trained on the labeled split, later the
        previous student) labels the unlabeled split through the clean view; the
        generation is filtered (--threshold) and, with --keep-per-class N, balanced to
        N per class (off by default: every entry over the threshold is kept); a student
        at least as wide, from scratch (or, with --warm-start, after the first from
        its teacher's weights), learns from labeled + pseudo-labeled batches
        (--ratio) under noise (pad-and-crop, flips, RandAugment 2,5 by default, Cutout,
        dropout, stochastic depth). Each generation names its teacher's checkpoint.
        Interrupted, it resumes after the last finished step (--workdir holds the
        state).

        Examples:
          noisy run --store fmnist.noisy --iterations 3 --report run.json
          noisy run --store fmnist.noisy --student-width 2 --student-epochs 5 \\
              --randaugment 2,9 --workdir runs/a
          # a shard set: generations over the set
          noisy run --store fmnist-4/ --iterations 2 --workdir runs/sharded
          # normalised, deeper students
          noisy run --store fmnist.noisy --batch-norm students --student-depth 1 \\
              --workdir runs/bn
          # students after the first start from their teacher's weights
          noisy run --store fmnist.noisy --student-depth 1 --warm-start \\
              --workdir runs/w
        """
    )
    @OptionGroup var storeOption: StoreOption
    @OptionGroup var loop: LoopOptions
    @Option(help: ArgumentHelp("Checkpoints and the resume state.", valueName: "dir")) var workdir: String?
    @Option(help: ArgumentHelp("Write the report (schemas/run-report.schema.json).", valueName: "FILE.json")) var report: String?

    func run() throws {
        try runReportingErrors {
            let dir = workdir ?? ((storeOption.store.hasSuffix("/") ? String(storeOption.store.dropLast()) : storeOption.store) + "-run")
            if ShardManifest.isSet(storeOption.store) {
                // Every shard, opened for writing: each generation and selection is one object over the set.
                let (m, folder) = try ShardManifest.read(storeOption.store)
                let stores = try m.openShards(folder: folder, readOnly: false)
                _ = try LoopOptions.runLoop(store: stores[0], set: (storeOption.store, stores),
                                            config: try loop.config(store: stores[0], workdir: dir), reportPath: report)
                return
            }
            let store = try Store(path: storeOption.store)
            _ = try LoopOptions.runLoop(store: store, config: try loop.config(store: store, workdir: dir), reportPath: report)
        }
    }
}
