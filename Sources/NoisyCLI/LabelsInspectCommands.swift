import ArgumentParser
import DatasetStore
import Foundation

/// One line of `noisy labels list --json`. schemas/labels-list.schema.json
struct GenerationSummary: Codable {
    var generation: Int
    var parent: Int?
    var created: String
    var teacher: String
    var samples: Int
    var precision: String
    var meanConfidence: Double
    var tags: [String]
    var selections: [String]
}

struct LabelsList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List generations with their parent, teacher, size, tags and selections.",
        discussion: """
        Examples:
          noisy labels list --store data.noisy
          noisy labels list --store data.noisy --json
          # a shard set: the generations its manifest lists
          noisy labels list --store data-8/
        """
    )
    @OptionGroup var storeOption: StoreOption
    @Flag(help: "Print a JSON array (schemas/labels-list.schema.json).") var json = false

    func run() throws {
        try runReportingErrors {
            let rows = ShardManifest.isSet(storeOption.store) ? try setRows() : try storeRows()
            if json { try Terminal.printJSON(rows, snakeCase: true); return }
            if rows.isEmpty { print("no generations yet (noisy labels import, or noisy label)"); return }
            print("gen  parent  samples    precision  conf   created               tags / selections / teacher")
            for r in rows {
                let line = String(r.generation).padding(toLength: 5, withPad: " ", startingAt: 0)
                    + (r.parent.map(String.init) ?? "-").padding(toLength: 8, withPad: " ", startingAt: 0)
                    + String(r.samples).padding(toLength: 11, withPad: " ", startingAt: 0)
                    + r.precision.padding(toLength: 11, withPad: " ", startingAt: 0)
                    + String(format: "%.3f  ", r.meanConfidence)
                    + r.created.padding(toLength: 22, withPad: " ", startingAt: 0)
                print(line + "[\(r.tags.joined(separator: ","))] [\(r.selections.joined(separator: ","))] \(r.teacher)")
            }
        }
    }
}

extension LabelsList {
    func storeRows() throws -> [GenerationSummary] {
        let store = try Store(path: storeOption.store, readOnly: true)
        let tags = try store.tags()
        return try store.generations().map { g in
            GenerationSummary(generation: g.generation, parent: g.parent, created: g.created, teacher: g.teacher.description,
                              samples: g.samples, precision: g.precision, meanConfidence: g.meanConfidence,
                              tags: tags.filter { $0.value == g.generation }.map(\.key).sorted(),
                              selections: try store.selections(of: g.generation).map(\.name))
        }
    }

    /// A shard set's generations: those its manifest lists, with the set's sample counts,
    /// the mean confidence over every shard, and the selections committed on the set.
    func setRows() throws -> [GenerationSummary] {
        let (m, folder) = try ShardManifest.read(storeOption.store)
        let stores = try m.openShards(folder: folder)
        let tags = try stores[0].tags()
        return try m.generations.compactMap { g in
            var records: [(GenerationRecord, Int)] = []
            for (k, s) in stores.enumerated() {
                if let r = try s.generation(g.generation) { records.append((r, g.labels.indices.contains(k) ? g.labels[k] : 0)) }
            }
            guard let first = records.first?.0 else { return nil }
            let weight = records.reduce(0) { $0 + $1.1 }
            let confidence = weight > 0 ? records.reduce(0.0) { $0 + $1.0.meanConfidence * Double($1.1) } / Double(weight) : first.meanConfidence
            return GenerationSummary(generation: g.generation, parent: first.parent, created: first.created, teacher: first.teacher.description,
                                     samples: g.samples, precision: first.precision, meanConfidence: confidence,
                                     tags: tags.filter { $0.value == g.generation }.map(\.key).sorted(),
                                     selections: g.selectionEntries.keys.sorted())
        }
    }
}

/// `noisy labels show --json`. schemas/labels-show.schema.json
struct GenerationDetail: Codable {
    var generation: GenerationRecord
    var tags: [String]
    var selections: [SelectionRecord]
}

struct LabelsShow: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "A generation's metadata, per-class statistics and selections.",
        discussion: """
        Examples:
          noisy labels show --store data.noisy --generation 2
          noisy labels show --store data.noisy --generation latest --json
          # a shard set: the set's figures
          noisy labels show --store data-8/ --generation 2
        """
    )
    @OptionGroup var storeOption: StoreOption
    @Option(help: ArgumentHelp("Generation number or tag.", valueName: "K")) var generation: String
    @Flag(help: "Print JSON (schemas/labels-show.schema.json).") var json = false

    func run() throws {
        try runReportingErrors {
            let (g, tags, selections) = ShardManifest.isSet(storeOption.store) ? try setDetail() : try storeDetail()
            if json { try Terminal.printJSON(GenerationDetail(generation: g, tags: tags, selections: selections), snakeCase: true); return }
            print("generation \(g.generation)" + (g.parent.map { ", parent \($0)" } ?? ", no parent") + ", created \(g.created)"
                  + (tags.isEmpty ? "" : ", tags: \(tags.joined(separator: ", "))"))
            print("teacher: \(g.teacher.description)" + (g.teacher.model.map { " (model \($0))" } ?? ""))
            if let c = g.teacher.checkpoint { print("checkpoint: \(c) sha256 \(g.teacher.checkpointSha256 ?? "-")") }
            print("predictions: \(g.predictions.kind)" + (g.predictions.path.map { " \($0)" } ?? "")
                  + ", matched by \(g.predictions.matchedBy)" + (g.predictions.logits ? ", logits" : "")
                  + (g.predictions.sha256.map { ", sha256 \($0.prefix(16))..." } ?? ""))
            print("\(g.samples) samples x \(g.classCount) classes, \(g.precision), \(g.bytesStored) bytes stored, mean confidence "
                  + String(format: "%.3f", g.meanConfidence))
            let w = max(5, g.perClass.map(\.name.count).max() ?? 5)
            print("  " + "class".padding(toLength: w + 2, withPad: " ", startingAt: 0) + "top-1     mean conf")
            for c in g.perClass {
                print("  " + c.name.padding(toLength: w + 2, withPad: " ", startingAt: 0)
                      + String(c.count).padding(toLength: 10, withPad: " ", startingAt: 0) + String(format: "%.3f", c.meanConfidence))
            }
            for s in selections {
                print("selection '\(s.name)': threshold \(s.threshold)" + (s.perClass.map { ", \($0) per class" } ?? "")
                      + ", \(s.samples) samples, \(s.entries) entries, created \(s.created)")
            }
        }
    }
}

extension LabelsShow {
    func storeDetail() throws -> (GenerationRecord, [String], [SelectionRecord]) {
        let store = try Store(path: storeOption.store, readOnly: true)
        let g = try store.resolveGeneration(generation)
        return (g, try store.tags().filter { $0.value == g.generation }.map(\.key).sorted(), try store.selections(of: g.generation))
    }

    /// A generation of a shard set: the set's figures (ShardManifest.generationDetail).
    func setDetail() throws -> (GenerationRecord, [String], [SelectionRecord]) {
        let (m, folder) = try ShardManifest.read(storeOption.store)
        let stores = try m.openShards(folder: folder)
        let k = try m.resolveGeneration(generation, stores: stores)
        let (g, selections) = try m.generationDetail(k, stores: stores)
        return (g, try stores[0].tags().filter { $0.value == k }.map(\.key).sorted(), selections)
    }
}

struct LabelsTag: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tag",
        abstract: "Point a tag at a generation (tags move; generations do not change).",
        discussion: """
        'latest' moves to each new generation by itself.

        Examples:
          noisy labels tag --store data.noisy best 2
          noisy labels tag --store data.noisy --remove best
        """
    )
    @OptionGroup var storeOption: StoreOption
    @Argument(help: "Tag name.") var tag: String
    @Argument(help: "Generation number or tag.") var generation: String?
    @Flag(help: "Remove the tag.") var remove = false

    func run() throws {
        try runReportingErrors {
            if ShardManifest.isSet(storeOption.store) {
                // Over a shard set: the tag on every shard.
                guard remove || generation != nil else { throw ValidationError("give the generation to tag (or --remove)") }
                let k = try generation.map { g -> Int in
                    guard let k = Int(g) else { throw ValidationError("over a shard set, give the generation's number") }
                    return k
                }
                guard try ShardManifest.setTag(inSet: storeOption.store, tag, generation: remove ? nil : k) else {
                    throw ValidationError("no tag '\(tag)'")
                }
                print(remove ? "removed tag '\(tag)' on every shard" : "tag '\(tag)' -> generation \(k ?? 0) on every shard")
                return
            }
            let store = try Store(path: storeOption.store)
            if remove {
                guard try store.removeTag(tag) else { throw ValidationError("no tag '\(tag)'") }
                print("removed tag '\(tag)'")
                return
            }
            guard let generation else { throw ValidationError("give the generation to tag (or --remove)") }
            let g = try store.resolveGeneration(generation)
            try store.setTag(tag, generation: g.generation)
            print("tag '\(tag)' -> generation \(g.generation)")
        }
    }
}

struct LabelsDelete: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete",
        abstract: "Delete a generation, its selections and its tags. Other generations are untouched.",
        discussion: """
        Examples:
          noisy labels delete --store data.noisy --generation 3
        """
    )
    @OptionGroup var storeOption: StoreOption
    @Option(help: ArgumentHelp("Generation number or tag.", valueName: "K")) var generation: String

    func run() throws {
        try runReportingErrors {
            if ShardManifest.isSet(storeOption.store) {
                guard let k = Int(generation) else { throw ValidationError("over a shard set, give the generation's number") }
                _ = try ShardManifest.deleteGeneration(inSet: storeOption.store, k)
                print("deleted generation \(k) from the set (the manifest first, then every shard)")
                return
            }
            let store = try Store(path: storeOption.store)
            let g = try store.resolveGeneration(generation)
            try store.deleteGeneration(g.generation)
            print("deleted generation \(g.generation) (\(g.samples) samples)")
        }
    }
}

struct LabelsDiff: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Compare two generations: flipped labels, change matrix, confidence, selections.",
        discussion: """
        Over the samples labelled in both: the share whose top class changed, the
        from-class x to-class matrix and mean confidence in each; per-class entries of
        each generation's selection ('default' unless named) and the samples that
        entered or left it.

        Examples:
          noisy labels diff --store data.noisy 1 2
          noisy labels diff --store data.noisy 1 latest --selection-b balanced --json
        """
    )
    @OptionGroup var storeOption: StoreOption
    @Argument(help: "First generation (number or tag).") var a: String
    @Argument(help: "Second generation (number or tag).") var b: String
    @Option(help: "Selection of the first generation.") var selectionA: String?
    @Option(help: "Selection of the second generation.") var selectionB: String?
    @Option(help: "Ids listed per direction (entered / left).") var maxIds: Int = 100
    @Flag(help: "Print JSON (schemas/labels-diff.schema.json).") var json = false

    func run() throws {
        try runReportingErrors {
            let d: LabelDiff
            let classes: [String]
            if ShardManifest.isSet(storeOption.store) {
                guard let ka = Int(a), let kb = Int(b) else { throw ValidationError("over a shard set, give the generations' numbers") }
                d = try ShardManifest.diffGenerations(inSet: storeOption.store, ka, kb, selectionA: selectionA, selectionB: selectionB,
                                                      maxIds: maxIds)
                classes = try ShardManifest.read(storeOption.store).manifest.classes
            } else {
                let store = try Store(path: storeOption.store, readOnly: true)
                let ga = try store.resolveGeneration(a), gb = try store.resolveGeneration(b)
                d = try store.diffGenerations(ga.generation, gb.generation, selectionA: selectionA, selectionB: selectionB, maxIds: maxIds)
                classes = try store.classes()
            }
            if json { try Terminal.printJSON(d, snakeCase: true); return }
            print("generation \(d.a) -> \(d.b): \(d.common) samples in both (\(d.onlyA) only in \(d.a), \(d.onlyB) only in \(d.b))")
            print(String(format: "top class changed for %d (%.2f%%); mean confidence %.3f -> %.3f",
                         d.changed, 100 * d.changedShare, d.meanConfidenceA, d.meanConfidenceB))
            print("change matrix (rows: class in \(d.a), columns: class in \(d.b)):")
            let w = max(5, classes.map(\.count).max() ?? 5)
            print("  " + String(repeating: " ", count: w + 2) + (0..<classes.count).map { String($0).padding(toLength: 7, withPad: " ", startingAt: 0) }.joined())
            for (i, row) in d.changeMatrix.enumerated() {
                print("  " + "\(i) \(classes[i])".padding(toLength: w + 2, withPad: " ", startingAt: 0)
                      + row.map { String($0).padding(toLength: 7, withPad: " ", startingAt: 0) }.joined())
            }
            if let ca = d.selectionCountsA, let cb = d.selectionCountsB {
                print("selections '\(d.selectionA ?? "-")' -> '\(d.selectionB ?? "-")': \(d.entered) samples entered, \(d.left) left")
                printCountsTable(classes: classes, columns: [("gen \(d.a)", ca), ("gen \(d.b)", cb)])
            }
        }
    }
}
