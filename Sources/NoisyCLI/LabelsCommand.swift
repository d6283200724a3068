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
        distributions per sample, the teacher and where the predictions came from,
        and named selections (filter + balance results). Once written it never changes.

        Examples:
          noisy labels import --store data.noisy --predictions p.npy --ids ids.npy --teacher "cnn w1, epoch 30"
          noisy labels filter --store data.noisy --generation 1 --threshold 0.3 --per-class 3000
          noisy labels list --store data.noisy
          noisy labels diff --store data.noisy 1 2
          noisy labels export --store data.noisy --generation latest --format npy --out snap/
        """,
        subcommands: [LabelsImport.self, LabelsFilter.self, LabelsList.self, LabelsShow.self, LabelsTag.self,
                      LabelsDelete.self, LabelsDiff.self, LabelsExport.self, LabelsSamples.self]
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
        --logits), rows matched to samples by --ids (int64 .npy, shape [N]) or --sources
        (a text file, one stored source path per line). Or --jsonl FILE with one object
        per line: {"id": 12, "probs": [...]} or {"source": "a/b.jpg", "logits": [...]}.

        The whole input is checked first (shape, class count, unknown or repeated ids,
        NaN/Inf, negative or unnormalised rows); a bad input writes nothing. The
        generation appears at once when complete; a killed import leaves nothing.
        The NPY is memory-mapped, so its size does not matter.

        Precision: f16 (default), f32, or topk:K (the K largest probabilities and the
        rest of the mass, which reading spreads evenly over the other classes).

        Examples:
          noisy labels import --store data.noisy --predictions p.npy --ids ids.npy --teacher "resnet18 gen 1"
          noisy labels import --store data.noisy --predictions logits.npy --sources files.txt --logits --teacher t --precision topk:32
          noisy labels import --store data.noisy --jsonl preds.jsonl --teacher "api model" --parent none
        """
    )
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
            let store = try Store(path: storeOption.store)
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
          noisy labels filter --store data.noisy --generation latest --threshold 0.3 --per-class 3000 --name balanced
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
            let store = try Store(path: storeOption.store)
            let g = try store.resolveGeneration(generation)
            let s = try store.filterLabels(LabelFilterRequest(generation: g.generation, name: name, threshold: threshold,
                                                              perClass: perClass, seed: seed))
            if json { try Terminal.printJSON(s, snakeCase: true); return }
            let classes = try store.classes()
            print("generation \(g.generation), selection '\(s.name)': \(s.samples) samples, \(s.entries) entries " +
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
