import Augment
import Batches
import DatasetStore
import Foundation
import ImageCodec
import Pipeline
import Trainer
import Digest

/// The whole Noisy Student loop's settings.
public struct LoopConfig: Sendable {
    public var iterations: Int
    public var teacher: ModelRecipe
    public var student: ModelRecipe
    /// The teacher's view (mild noise) and the student's (heavy noise); ratio, batch size, seed.
    public var teacherPipeline: PipelineConfig
    public var studentPipeline: PipelineConfig
    public var threshold: Double
    public var perClass: Int?
    public var workdir: String
    public var blasThreads: Int
    /// Epochs of the student of iteration k (1-based) at index k-1; the last value
    /// holds for later iterations. Empty: `student.epochs` every time.
    public var studentEpochsByIteration: [Int] = []
    /// How the student reads the pseudo labels (soft at T = 1 by default, as the paper).
    public var labelOptions = LabelReadOptions()
    /// SGD weight decay of the teacher and the students (TrainJobConfig's default).
    public var weightDecay = 5e-4
    /// Students after the first start from their teacher's weights (the previous
    /// student, the same architecture) instead of from scratch, then train their epochs
    /// on the new labels with a fresh warm-up and cosine schedule. The first student
    /// always starts from scratch: it is larger than the first teacher.
    public var warmStart = false

    /// The student of iteration k (1-based).
    public func studentRecipe(iteration k: Int) -> ModelRecipe {
        var recipe = student
        if let last = studentEpochsByIteration.last {
            recipe.epochs = k <= studentEpochsByIteration.count ? studentEpochsByIteration[k - 1] : last
        }
        return recipe
    }

    public init(iterations: Int, teacher: ModelRecipe, student: ModelRecipe, teacherPipeline: PipelineConfig,
                studentPipeline: PipelineConfig, threshold: Double = 0.3, perClass: Int? = nil, workdir: String, blasThreads: Int = 1) {
        self.iterations = iterations; self.teacher = teacher; self.student = student; self.teacherPipeline = teacherPipeline
        self.studentPipeline = studentPipeline; self.threshold = threshold; self.perClass = perClass; self.workdir = workdir
        self.blasThreads = blasThreads
    }
}

/// One iteration of the loop. schemas/run-report.schema.json
public struct IterationReport: Codable, Sendable {
    public var iteration: Int
    public var teacherCheckpoint: String
    /// Test accuracy (scored once per model, for the report).
    public var teacherAccuracy: Double
    /// Validation accuracy after the model's last epoch (nil: the store has no validation split).
    public var teacherValidationAccuracy: Double?
    public var generation: Int
    public var selection: String
    /// Entries per class in the selection (copies counted).
    public var keptPerClass: [Int]
    /// Share of samples whose top class changed since the previous generation (nil for the first).
    public var flipRate: Double?
    public var studentCheckpoint: String
    public var studentAccuracy: Double
    public var studentValidationAccuracy: Double?
    public var seconds: Double
}

public struct RunReport: Codable, Sendable {
    public var format: String
    public var store: String
    public var iterations: [IterationReport]
    /// The first teacher's test accuracy and the last student's.
    public var firstTeacherAccuracy: Double?
    public var finalStudentAccuracy: Double?
    /// The same on the validation split (nil: the store has none).
    public var firstTeacherValidationAccuracy: Double?
    public var finalStudentValidationAccuracy: Double?
    /// `noisy demo`: the first teacher's and the final student's robustness (baseline: the first teacher).
    public var robustness: RobustnessSummary?
}

/// The demo's robustness lines: clean accuracy, mCE and mFR per model.
public struct RobustnessSummary: Codable, Sendable {
    public struct Model: Codable, Sendable {
        public var checkpoint: String
        public var cleanAccuracy: Double
        public var mCE: Double
        public var relativeMCE: Double
        public var mFR: Double
        enum CodingKeys: String, CodingKey {
            case checkpoint, cleanAccuracy = "clean_accuracy", mCE = "mce", relativeMCE = "relative_mce", mFR = "mfr"
        }
    }
    /// Test samples the corrupted sets were drawn from (a seeded subset of the test split).
    public var samples: Int
    public var corruptions: [String]
    public var perturbations: [String]
    public var models: [Model]

    public init(_ r: RobustnessReport) {
        samples = r.samples
        corruptions = r.corruptions
        perturbations = r.perturbations
        models = r.models.map { Model(checkpoint: $0.checkpoint, cleanAccuracy: $0.cleanAccuracy, mCE: $0.mCE, relativeMCE: $0.relativeMCE, mFR: $0.mFR) }
    }
}

/// Teacher on labeled data -> label the unlabeled split -> filter and balance ->
/// student from scratch on labeled + pseudo-labeled with noise -> the student is
/// the next teacher. Each finished step is recorded in <workdir>/run-state.json;
/// run again and it continues after the last finished step (training itself
/// resumes from its per-epoch checkpoint).
public final class NoisyStudentLoop {
    /// The store, or a set's first shard (classes, channels).
    public let store: Store
    /// A shard set to run over instead: its manifest's path and every shard, opened for
    /// writing. Each generation and selection is then one object over the set.
    public let set: (path: String, stores: [Store])?
    public let config: LoopConfig
    public var log: (String) -> Void = { _ in }
    public var onEpoch: (String, EpochReport) -> Void = { _, _ in }

    public init(store: Store, config: LoopConfig) {
        self.store = store
        self.set = nil
        self.config = config
    }

    public init(set path: String, stores: [Store], config: LoopConfig) {
        self.store = stores[0]
        self.set = (path, stores)
        self.config = config
    }

    struct State: Codable {
        var teacherCheckpoint: String?
        var teacherAccuracy: Double?
        var teacherValidationAccuracy: Double?
        var iterations: [IterationReport] = []
        /// Within the current iteration.
        var generation: Int?
        var selection: String?
    }

    var statePath: String { config.workdir + "/run-state.json" }

    func load() -> State {
        guard let d = FileManager.default.contents(atPath: statePath),
              let s = try? JSONDecoder().decode(State.self, from: d) else { return State() }
        return s
    }

    func save(_ s: State) throws {
        let tmp = statePath + ".partial"
        guard FileManager.default.createFile(atPath: tmp, contents: try JSONEncoder().encode(s)), rename(tmp, statePath) == 0 else {
            throw TrainerError(.io, "\(statePath): cannot write the run state")
        }
    }

    public func run() throws -> RunReport {
        try FileManager.default.createDirectory(atPath: config.workdir, withIntermediateDirectories: true)
        var state = load()
        let classes = try store.classes().count
        if state.teacherCheckpoint == nil {
            let path = config.workdir + "/teacher-0.ckpt"
            log("iteration 0: teacher (\(config.teacher.kind) w\(config.teacher.width)) on the labeled split")
            let (_, reports) = try train(config.teacher, pipeline: config.teacherPipeline, generation: nil, checkpoint: path, name: "teacher-0")
            state.teacherCheckpoint = path
            state.teacherAccuracy = reports.last?.testAccuracy ?? 0
            state.teacherValidationAccuracy = reports.last?.validationAccuracy
            try save(state)
        }
        while state.iterations.count < config.iterations {
            let k = state.iterations.count + 1
            let start = Date()
            guard let teacherPath = state.teacherCheckpoint else { break }
            if state.generation == nil {
                log("iteration \(k): labelling the unlabeled split with \(teacherPath)")
                let (h, model, opt) = try Checkpoint.load(path: teacherPath)
                let teacher = Trainer(model: model, optimizer: opt, seed: h.seed)
                let sha = try Data(contentsOf: URL(fileURLWithPath: teacherPath), options: .alwaysMapped).withUnsafeBytes { SHA256.hash($0) }.hexString
                // Killed after the import committed but before the state was saved: reuse that generation.
                if let done = try committedGenerations().last(where: { $0.teacher.checkpoint == teacherPath && $0.teacher.checkpointSha256 == sha }) {
                    state.generation = done.generation
                    try save(state)
                    continue
                }
                let info = TeacherInfo(description: "noisy run iteration \(k) teacher",
                                       model: "\(h.architecture.kind) w\(h.architecture.width) d\(h.architecture.depth)",
                                       checkpoint: teacherPath, checkpointSha256: sha)
                if let set {
                    let ids = try set.stores.flatMap { try $0.index(of: .unlabeled).map(\.id) }.sorted()
                    let rows = try predict(stores: set.stores, trainer: teacher, ids: ids, channels: h.architecture.channels,
                                           threads: config.teacherPipeline.threads)
                    state.generation = try ShardManifest.importLabels(intoSet: set.path, stores: set.stores, ids: ids, rows: rows,
                                                                      classCount: classes, teacher: info, precision: .f16).generation
                } else {
                    state.generation = try labelSplit(store: store, trainer: teacher, teacher: info,
                                                      parent: state.iterations.last.map { .generation($0.generation) } ?? .none,
                                                      channels: h.architecture.channels, threads: config.teacherPipeline.threads).generation
                }
                try save(state)
            }
            guard let g = state.generation else { break }
            let name = "run"
            if state.selection == nil {
                let filter = LabelFilterRequest(generation: g, name: name, threshold: config.threshold,
                                                perClass: config.perClass, seed: config.studentPipeline.seed)
                if let set {
                    let listed = try ShardManifest.read(set.path).manifest.generations.first { $0.generation == g }?.selectionEntries[name] != nil
                    if !listed { _ = try ShardManifest.filterLabels(inSet: set.path, stores: set.stores, filter) }
                } else if try store.selection(g, name) == nil {
                    _ = try store.filterLabels(filter)
                }
                state.selection = name
                try save(state)
            }
            let studentPath = config.workdir + "/student-\(k).ckpt"
            let recipe = config.studentRecipe(iteration: k)
            let warm = config.warmStart && k > 1
            log("iteration \(k): student (\(recipe.kind) w\(recipe.width), \(recipe.epochs) epochs\(warm ? ", from the teacher's weights" : "")) on labeled + generation \(g)")
            var pipeline = config.studentPipeline
            pipeline.seed = config.studentPipeline.seed &+ UInt64(k)
            let (_, reports) = try train(recipe, pipeline: pipeline, generation: g, checkpoint: studentPath, name: "student-\(k)",
                                         initialWeights: warm ? teacherPath : nil)
            // Over a set, every shard's record of the selection carries the set's class counts.
            let sel = try (set?.stores ?? [store]).lazy.compactMap { try $0.selection(g, name) }.first
            var flip: Double?
            if let previous = state.iterations.last {
                flip = try (set.map { try ShardManifest.diffGenerations(inSet: $0.path, stores: $0.stores, previous.generation, g, maxIds: 0) }
                    ?? store.diffGenerations(previous.generation, g, selectionA: nil, selectionB: nil, maxIds: 0)).changedShare
            }
            let report = IterationReport(iteration: k, teacherCheckpoint: teacherPath, teacherAccuracy: state.teacherAccuracy ?? 0,
                                         teacherValidationAccuracy: state.teacherValidationAccuracy,
                                         generation: g, selection: name, keptPerClass: sel?.countsAfter ?? [Int](repeating: 0, count: classes),
                                         flipRate: flip, studentCheckpoint: studentPath, studentAccuracy: reports.last?.testAccuracy ?? 0,
                                         studentValidationAccuracy: reports.last?.validationAccuracy,
                                         seconds: Date().timeIntervalSince(start))
            state.iterations.append(report)
            state.teacherCheckpoint = studentPath
            state.teacherAccuracy = report.studentAccuracy
            state.teacherValidationAccuracy = report.studentValidationAccuracy
            state.generation = nil
            state.selection = nil
            try save(state)
            log(String(format: "iteration %d: teacher %.2f%% -> student %.2f%%, generation %d", k, 100 * report.teacherAccuracy,
                       100 * report.studentAccuracy, g))
        }
        return RunReport(format: "noisy-run-report", store: set?.path ?? store.path, iterations: state.iterations,
                         firstTeacherAccuracy: state.iterations.first?.teacherAccuracy,
                         finalStudentAccuracy: state.iterations.last?.studentAccuracy,
                         firstTeacherValidationAccuracy: state.iterations.first?.teacherValidationAccuracy,
                         finalStudentValidationAccuracy: state.iterations.last?.studentValidationAccuracy)
    }

    /// The generations a run may reuse: the store's, or those the set's manifest lists
    /// (a shard's record of each, which names the teacher).
    private func committedGenerations() throws -> [GenerationRecord] {
        guard let set else { return try store.generations() }
        let m = try ShardManifest.read(set.path).manifest
        return try m.generations.compactMap { g in try set.stores.lazy.compactMap { try $0.generation(g.generation) }.first }
    }

    private func train(_ r: ModelRecipe, pipeline: PipelineConfig, generation: Int?, checkpoint: String,
                       name: String, initialWeights: String? = nil) throws -> (Trainer, [EpochReport]) {
        var jobConfig = TrainJobConfig(pipeline: pipeline, recipe: r, weightDecay: config.weightDecay, generation: generation,
                                       selection: generation == nil ? nil : "run", labelOptions: config.labelOptions,
                                       checkpoint: checkpoint, blasThreads: config.blasThreads)
        // Validation every epoch (nothing when the store has none); test once, after the last.
        jobConfig.evaluateEvery = 1
        jobConfig.initialWeights = initialWeights
        let job = try set.map { TrainJob(set: try ShardManifest.read($0.path).manifest, stores: $0.stores, config: jobConfig) }
            ?? TrainJob(store: store, config: jobConfig)
        job.onEpoch = { [onEpoch] in onEpoch(name, $0) }
        return try job.run()
    }
}
