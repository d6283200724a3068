import ArgumentParser
import DatasetStore
import Foundation
import ImageCodec
import Digest

struct Labels: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pseudo-label generations: import, filter/balance, inspect, tag, diff, export.",
        discussion: """
        A generation is the label set one teacher made for the unlabeled data: soft
        distributions per sample, the teacher and where the predictions came from, and
        named selections (filter + balance results). Once written it never changes.

        Examples:
          noisy labels import --store data.noisy --predictions p.npy --ids ids.npy \\
              --teacher "cnn w1, epoch 30"
          noisy labels filter --store data.noisy --generation 1 --threshold 0.3 \\
              --per-class 3000
          noisy labels list --store data.noisy
          noisy labels diff --store data.noisy 1 2
          noisy labels export --store data.noisy --generation latest --format npy \\
              --out snap/
          noisy labels import --store data.noisy --job gen2 --part 3 --parts 8 \\
              --predictions p3.npy --ids ids3.npy --teacher t
          noisy labels jobs --store data.noisy
        """,
        subcommands: [LabelsImport.self, LabelsFilter.self, LabelsList.self, LabelsShow.self, LabelsTag.self,
                      LabelsDelete.self, LabelsDiff.self, LabelsExport.self, LabelsSamples.self,
                      LabelsJobs.self, LabelsCommit.self, LabelsAbandon.self]
    )
}

/// The teacher fields shared by `labels import` and `label`.
struct TeacherOptions: ParsableArguments {
    @Option(help: "Free text describing the teacher (required).") var teacher: String
    @Option(help: "Model name, for the record.") var model: String?
    @Option(help: ArgumentHelp("The teacher's checkpoint file: its path and SHA-256 are recorded.", valueName: "file"))
    var checkpoint: String?
    @Option(help: ArgumentHelp("Parent generation (number or tag), or 'none'. Default: the newest generation.", valueName: "K"))
    var parent: String?

    func teacherInfo() throws -> TeacherInfo {
        var sha: String?
        if let checkpoint {
            guard let data = try? Data(contentsOf: URL(fileURLWithPath: checkpoint), options: .alwaysMapped) else {
                throw ValidationError("\(checkpoint): cannot read the checkpoint")
            }
            sha = data.withUnsafeBytes { SHA256.hash($0) }.hexString
        }
        return TeacherInfo(description: teacher, model: model, checkpoint: checkpoint, checkpointSha256: sha)
    }

    func parentChoice(store: Store) throws -> ParentChoice {
        guard let parent else { return .latest }
        if parent == "none" { return .none }
        return .generation(try store.resolveGeneration(parent).generation)
    }
}

struct LabelsImport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Create the next generation from a teacher's predictions (NPY or JSON Lines).",
        discussion: """
        --predictions is a float32 .npy of shape [N, C] (probabilities, or scores with
        --logits), rows matched to samples by --ids (int64 .npy, shape [N]) or
        --sources (a text file, one stored source path per line). Or --jsonl FILE with
        one object per line: {"id": 12, "probs": [...]} or {"source": "a/b.jpg",
        "logits": [...]}.

        The whole input is checked first (shape, class count, unknown or repeated ids,
        NaN/Inf, negative or unnormalised rows); a bad input writes nothing. The
        generation appears at once when complete; a killed import leaves nothing. The
        NPY is memory-mapped, so its size does not matter.

        Precision: f16 (default), f32, or topk:K (the K largest probabilities and the
        rest of the mass, which reading spreads evenly over the other classes).

        A job in parts (--job NAME --part i --parts W): many workers label one split
        with one teacher, each submitting its part (the samples at positions i, i+W,
        ... of the split in id order; `noisy labels jobs --ids-out` writes them). Each
        part is stored whole or not at all; a part submitted twice keeps the first
        copy. The generation appears, in one step, when the last part arrives (or with
        `noisy labels commit --job NAME`), and holds the same bytes as one import of
        all the predictions.

        Examples:
          noisy labels import --store data.noisy --predictions p.npy --ids ids.npy \\
              --teacher "resnet18 gen 1"
          noisy labels import --store data.noisy --predictions logits.npy \\
              --sources files.txt --logits --teacher t --precision topk:32
          noisy labels import --store data.noisy --jsonl preds.jsonl \\
              --teacher "api model" --parent none
          noisy labels import --store data.noisy --job gen2 \\
              --part $SLURM_ARRAY_TASK_ID --parts 64 --predictions p.npy \\
              --ids ids.npy --teacher "resnet50 gen 1"
        """
    )
    @OptionGroup var job: JobPartOptions
    @OptionGroup var storeOption: StoreOption
    @Option(help: ArgumentHelp("float32 [N, C] .npy.", valueName: "P.npy")) var predictions: String?
    @Option(help: ArgumentHelp("int64 [N] .npy of sample ids.", valueName: "IDS.npy")) var ids: String?
    @Option(help: ArgumentHelp("Text file of source paths, one per row.", valueName: "LIST.txt")) var sources: String?
    @Option(help: ArgumentHelp("JSON Lines predictions instead of NPY.", valueName: "FILE")) var jsonl: String?
    @Flag(help: "Rows are unnormalised scores: apply softmax.") var logits = false
    @OptionGroup var teacherOptions: TeacherOptions
    @Option(help: ArgumentHelp("f16, f32 or topk:K.", valueName: "precision")) var precision: LabelPrecision = .f16
    @Flag(help: "Print the summary as JSON (schemas/labels-import.schema.json).") var json = false
    @Flag(help: "No progress display.") var quiet = false

    func run() throws {
        try runReportingErrors {
            let p = precision
            let input: PredictionInput
            switch (predictions, jsonl) {
            case (let path?, nil): input = .npy(predictions: path, ids: ids, sources: sources)
            case (nil, let path?):
                guard ids == nil, sources == nil else { throw ValidationError("--jsonl rows carry their own id or source") }
                input = .jsonl(path)
            default: throw ValidationError("give --predictions P.npy (with --ids or --sources) or --jsonl FILE")
            }
            if ShardManifest.isSet(storeOption.store) {
                guard let path = predictions, let ids, jsonl == nil, sources == nil else {
                    throw ValidationError("over a shard set, labels import takes --predictions P.npy and --ids IDS.npy (no JSON Lines or source lists yet)")
                }
                if let name = job.job {
                    guard teacherOptions.parent == nil else { throw ValidationError("over a shard set, a generation's parent is the set's newest") }
                    let (m, folder) = try ShardManifest.read(storeOption.store)
                    let stores = try m.openShards(folder: folder, readOnly: false)
                    let request = try job.request(name: name, teacher: try teacherOptions.teacherInfo(), logits: logits, precision: p, parent: .latest)
                    let (rows, classCount, idList) = try NPYFile.readPart(predictions: path, ids: ids)
                    let r = try ShardManifest.submitLabelPart(inSet: storeOption.store, stores: stores, request, part: try job.partNumber(),
                                                              ids: idList, rows: rows, classCount: classCount, worker: job.worker,
                                                              commit: !job.noCommit)
                    try job.report(r, store: storeOption.store, json: json)
                    return
                }
                let (m, k) = try ShardManifest.importLabels(intoSet: storeOption.store, predictions: path, ids: ids, logits: logits,
                                                            teacher: try teacherOptions.teacherInfo(), precision: p)
                let g = m.generations.last
                print("generation \(k) over the set: \(g?.samples ?? 0) samples on \(m.shards.count) shards ("
                      + (g?.labels.map(String.init).joined(separator: ", ") ?? "") + "), committed in the manifest")
                return
            }
            let store = try Store(path: storeOption.store)
            if let name = job.job {
                guard let path = predictions, let ids, jsonl == nil, sources == nil else {
                    throw ValidationError("a job's part needs --predictions P.npy and --ids IDS.npy")
                }
                let request = try job.request(name: name, teacher: try teacherOptions.teacherInfo(), logits: logits,
                                              precision: p, parent: try teacherOptions.parentChoice(store: store))
                let r = try store.submitLabelPart(request, part: try job.partNumber(), predictions: path, ids: ids,
                                                  worker: job.worker, commit: !job.noCommit)
                try job.report(r, store: storeOption.store, json: json)
                return
            }
            let request = LabelImportRequest(input: input, logits: logits, teacher: try teacherOptions.teacherInfo(),
                                             parent: try teacherOptions.parentChoice(store: store), precision: p)
            let start = Date()
            let bar = ProgressLine("import", unit: "samples", quiet: quiet || json)
            let s = try store.importLabels(request) { done, total in
                bar.update(done: done, total: total, elapsed: Date().timeIntervalSince(start))
            }
            if json { try Terminal.printJSON(s, snakeCase: true); return }
            print("generation \(s.generation)" + (s.parent.map { " (parent \($0))" } ?? "") +
                  ": \(s.samples) samples x \(s.classCount) classes, \(s.precision), " +
                  String(format: "%.1f bytes/sample, mean confidence %.3f, %.1f s (%.0f samples/s)",
                         s.bytesPerSample, s.meanConfidence, s.elapsedSeconds, s.samplesPerSecond))
            print("tagged 'latest'; next: noisy labels filter --store \(storeOption.store) --generation \(s.generation) --threshold 0.3")
        }
    }
}

struct LabelsFilter: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "filter",
        abstract: "Record a selection: drop low-confidence labels, optionally balance classes.",
        discussion: """
        Keeps samples whose top probability is at least --threshold (the paper: 0.3).
        With --per-class N every class ends with exactly N entries: larger classes keep
        their N most confident; smaller ones keep all, each floor(N/n) or ceil(N/n)
        times, the extra copies going to the most confident. The selection records
        per-class counts before and after and a 101-bin confidence histogram per class.
        A selection never changes: filtering again under the same --name is an error.

        Examples:
          noisy labels filter --store data.noisy --generation 1 --threshold 0.3
          noisy labels filter --store data.noisy --generation latest --threshold 0.3 \\
              --per-class 3000 --name balanced
        """
    )
    @OptionGroup var storeOption: StoreOption
    @Option(help: ArgumentHelp("Generation number or tag.", valueName: "K")) var generation: String
    @Option(help: "Minimum top probability.") var threshold: Double = 0.3
    @Option(help: "Entries per class after balancing.") var perClass: Int?
    @Option(help: "Selection name.") var name: String = "default"
    @Option(help: "Seed that orders equally confident samples.") var seed: UInt64 = 0
    @Flag(help: "Print the selection as JSON (schemas/selection.schema.json).") var json = false

    func run() throws {
        try runReportingErrors {
            let s: SelectionRecord
            let classes: [String]
            if ShardManifest.isSet(storeOption.store) {
                // Over a shard set: one selection over every shard's labels, committed in the manifest.
                guard let k = Int(generation) else { throw ValidationError("over a shard set, --generation takes a number") }
                let (m, record) = try ShardManifest.filterLabels(inSet: storeOption.store, LabelFilterRequest(
                    generation: k, name: name, threshold: threshold, perClass: perClass, seed: seed))
                s = record
                classes = m.classes
            } else {
                let store = try Store(path: storeOption.store)
                let g = try store.resolveGeneration(generation)
                s = try store.filterLabels(LabelFilterRequest(generation: g.generation, name: name, threshold: threshold,
                                                              perClass: perClass, seed: seed))
                classes = try store.classes()
            }
            if json { try Terminal.printJSON(s, snakeCase: true); return }
            print("generation \(s.generation), selection '\(s.name)': \(s.samples) samples, \(s.entries) entries " +
                  "(threshold \(s.threshold)" + (s.perClass.map { ", \($0) per class" } ?? "") + ")")
            printCountsTable(classes: classes, columns: [("labelled", s.countsBefore), ("above", s.countsAboveThreshold), ("after", s.countsAfter)])
            if !s.emptyClasses.isEmpty {
                Terminal.warn("no sample reaches the threshold in class(es) \(s.emptyClasses.map { classes[$0] }.joined(separator: ", ")): balancing cannot fill them")
            }
        }
    }
}

/// A per-class table with one column per count list.
func printCountsTable(classes: [String], columns: [(String, [Int])]) {
    let w = max(5, classes.map(\.count).max() ?? 5)
    print("  " + "class".padding(toLength: w + 2, withPad: " ", startingAt: 0)
          + columns.map { $0.0.padding(toLength: 10, withPad: " ", startingAt: 0) }.joined())
    for (i, name) in classes.enumerated() {
        print("  " + name.padding(toLength: w + 2, withPad: " ", startingAt: 0)
              + columns.map { String($0.1.indices.contains(i) ? $0.1[i] : 0).padding(toLength: 10, withPad: " ", startingAt: 0) }.joined())
    }
}

/// `--job NAME --part i --parts W`: one worker's share of a label job.
struct JobPartOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Label job name: submit this part of a job made in parts (see --part, --parts).", valueName: "NAME"))
    var job: String?
    @Option(help: ArgumentHelp("This worker's part, 0 to W-1.", valueName: "i")) var part: Int?
    @Option(help: ArgumentHelp("How many parts the job has.", valueName: "W")) var parts: Int?
    @Option(help: "The split the job labels.") var split: Split = .unlabeled
    @Option(help: ArgumentHelp("Who this worker is, for `labels jobs` (e.g. a Slurm task id).", valueName: "TEXT")) var worker: String?
    @Flag(help: "Stage the part only; commit later with `noisy labels commit`.") var noCommit = false

    func partNumber() throws -> Int {
        guard let part else { throw ValidationError("--job needs --part i and --parts W") }
        return part
    }

    func request(name: String, teacher: TeacherInfo, logits: Bool, precision: LabelPrecision,
                 parent: ParentChoice) throws -> LabelJobRequest {
        guard let parts, part != nil else { throw ValidationError("--job needs --part i and --parts W") }
        return LabelJobRequest(job: name, split: split, parts: parts, teacher: teacher, logits: logits, precision: precision, parent: parent)
    }

    /// One line (or the receipt as JSON, schemas/label-part.schema.json).
    func report(_ r: LabelPartReceipt, store: String, json: Bool) throws {
        if json {
            try Terminal.printJSON(LabelPartJSON(r), snakeCase: true)
            return
        }
        switch r.outcome {
        case .stored: print("job \(r.job): part \(r.part) of \(r.parts) stored (\(r.samples) samples)")
        case .alreadySubmitted(let by, let at):
            print("job \(r.job): part \(r.part) of \(r.parts) was already submitted by \(by) at \(at); kept the first, dropped this one")
        }
        if let c = r.committed {
            print("job \(r.job): all \(r.parts) parts in; " + (c.summary.map {
                "committed generation \($0.generation): \($0.samples) samples, mean confidence " + String(format: "%.3f", $0.meanConfidence)
            } ?? (c.created ? "committed generation \(c.generation) over the shard set (in its manifest)"
                            : "generation \(c.generation) was committed by another worker")))
        } else if r.missing.isEmpty {
            print("job \(r.job): all parts in; commit with: noisy labels commit --store \(store) --job \(r.job)")
        } else {
            print("job \(r.job): \(r.missing.count) part(s) missing: " + r.missing.prefix(20).map(String.init).joined(separator: ", ")
                  + (r.missing.count > 20 ? ", ..." : ""))
        }
    }
}

/// The receipt of a part as `--json` prints it.
struct LabelPartJSON: Encodable {
    var job: String, part: Int, parts: Int, samples: Int
    var outcome: String
    var firstBy: String?, firstAt: String?
    var missing: [Int]
    var committedGeneration: Int?

    init(_ r: LabelPartReceipt) {
        job = r.job; part = r.part; parts = r.parts; samples = r.samples; missing = r.missing
        committedGeneration = r.committed?.generation
        switch r.outcome {
        case .stored: outcome = "stored"
        case .alreadySubmitted(let by, let at): outcome = "already_submitted"; firstBy = by; firstAt = at
        }
    }
}

struct LabelsJobs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobs",
        abstract: "List open label jobs (parts done, by whom, when; parts missing), or write a part's ids.",
        discussion: """
        Examples:
          noisy labels jobs --store data.noisy
          noisy labels jobs --store data.noisy --json
          noisy labels jobs --store data.noisy --job gen2 --part 3 --parts 8 \\
              --ids-out ids3.npy
        """
    )
    @OptionGroup var storeOption: StoreOption
    @Option(help: ArgumentHelp("Only this job (with --ids-out: the job whose part to write).", valueName: "NAME")) var job: String?
    @Option(help: ArgumentHelp("With --ids-out: the part.", valueName: "i")) var part: Int?
    @Option(help: ArgumentHelp("With --ids-out: the number of parts.", valueName: "W")) var parts: Int?
    @Option(help: "With --ids-out: the split.") var split: Split = .unlabeled
    @Option(help: ArgumentHelp("Write part i of W's sample ids (int64 .npy, id order) for a worker that reads the store itself.",
                               valueName: "IDS.npy")) var idsOut: String?
    @Flag(help: "Print the jobs as JSON (schemas/label-jobs.schema.json).") var json = false

    func run() throws {
        try runReportingErrors {
            let set = try ShardManifest.isSet(storeOption.store) ? ShardManifest.read(storeOption.store) : nil
            let stores = try set.map { try $0.manifest.openShards(folder: $0.folder) } ?? [Store(path: storeOption.store, readOnly: true)]
            if let idsOut {
                guard let part, let parts else { throw ValidationError("--ids-out needs --part i and --parts W") }
                let ids = try ShardManifest.labelPartIDs(stores: stores, split: split, part: part, parts: parts)
                var w = try NPYWriter(path: idsOut, dtype: "<i8", shape: [ids.count])
                try w.write(ids.map { Int64(bitPattern: $0).littleEndian })
                _ = try w.finish()
                print("\(idsOut): \(ids.count) ids of part \(part) of \(parts) of the \(split.rawValue) split")
                return
            }
            let jobs = try (set != nil ? ShardManifest.labelJobs(inSet: storeOption.store, stores: stores) : stores[0].labelJobs())
                .filter { job == nil || $0.spec.job == job }
            if json { try Terminal.printJSON(jobs, snakeCase: true); return }
            if jobs.isEmpty { print(job.map { "no open label job named \($0)" } ?? "no open label jobs"); return }
            for j in jobs {
                print("job \(j.spec.job): \(j.spec.split) split, \(j.spec.samples) samples in \(j.spec.parts) parts, teacher '\(j.spec.teacher.description)', "
                      + "\(j.done.count) done, \(j.missing.count) missing" + (j.committedGeneration.map { ", committed as generation \($0)" } ?? ""))
                for p in j.done { print("  part \(p.part): \(p.samples) samples, by \(p.by) at \(p.at)") }
                if !j.missing.isEmpty {
                    print("  missing: " + j.missing.prefix(40).map(String.init).joined(separator: ", ") + (j.missing.count > 40 ? ", ..." : ""))
                }
            }
        }
    }
}

struct LabelsCommit: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "commit",
        abstract: "Make a label job's generation from its parts, once all are in (idempotent).",
        discussion: """
        The parts become one generation in one step, with the same bytes as one import
        of all the predictions. A job already committed is reported, not made twice.

        Examples:
          noisy labels commit --store data.noisy --job gen2
        """
    )
    @OptionGroup var storeOption: StoreOption
    @Option(help: ArgumentHelp("The job.", valueName: "NAME")) var job: String
    @Flag(help: "Print the import summary as JSON (schemas/labels-import.schema.json; over a shard set, the manifest's entry).")
    var json = false

    func run() throws {
        try runReportingErrors {
            let c = try ShardManifest.isSet(storeOption.store) ? ShardManifest.commitLabelJob(inSet: storeOption.store, job)
                : Store(path: storeOption.store).commitLabelJob(job)
            guard c.created else {
                print("job \(job): already committed as generation \(c.generation); nothing to do")
                return
            }
            guard let s = c.summary else {
                if json {  // the set's entry for it (schemas/shard-manifest.schema.json, generations)
                    try Terminal.printJSON(try ShardManifest.read(storeOption.store).manifest.generations.first { $0.generation == c.generation },
                                           snakeCase: true)
                    return
                }
                print("job \(job): committed generation \(c.generation) over the shard set (in its manifest)")
                return
            }
            if json { try Terminal.printJSON(s, snakeCase: true); return }
            print("job \(job): committed generation \(s.generation): \(s.samples) samples, mean confidence "
                  + String(format: "%.3f", s.meanConfidence))
        }
    }
}

struct LabelsAbandon: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "abandon",
        abstract: "Remove a label job's staged parts, and nothing else.",
        discussion: """
        Examples:
          noisy labels abandon --store data.noisy --job gen2
          noisy labels abandon --store shards/ --job gen2
        """
    )
    @OptionGroup var storeOption: StoreOption
    @Option(help: ArgumentHelp("The job.", valueName: "NAME")) var job: String

    func run() throws {
        try runReportingErrors {
            let n = try ShardManifest.isSet(storeOption.store) ? ShardManifest.abandonLabelJob(inSet: storeOption.store, job)
                : Store(path: storeOption.store).abandonLabelJob(job)
            print("job \(job): abandoned; \(n) staged part(s) removed")
        }
    }
}
