import ArgumentParser
import DatasetStore
import Foundation
import ImageCodec

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Counts per split and class, bytes, formats and image sizes.",
        discussion: """
        Examples:
          noisy info --store data.noisy
          noisy info --store data.noisy --json | jq .splits
          # a shard set (noisy shard): its manifest, checked
          noisy info --store data-8/
        """
    )
    @OptionGroup var storeOption: StoreOption
    @Flag(help: "Print one JSON object (schemas/info.schema.json; for a shard set, its manifest: shard-manifest.schema.json).") var json = false

    func run() throws {
        try runReportingErrors {
            if ShardManifest.isSet(storeOption.store) { return try setInfo() }
            let store = try Store(path: storeOption.store, readOnly: true)
            let info = try store.info()
            if json { try Terminal.printJSON(info); return }
            print("store \(info.store): \(info.samples) samples, \(info.generations) label generation(s)")
            print("splits: " + Split.allCases.map { "\($0.rawValue) \(info.splits[$0.rawValue] ?? 0)" }.joined(separator: ", "))
            print(String(format: "bytes: %.1f MB stored (%.1f MB original), %d re-encoded", Double(info.bytesStored) / 1e6,
                         Double(info.bytesOriginal) / 1e6, info.reencoded))
            print("formats: " + info.formats.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
                  + "; channels: " + info.channels.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
            if let r = info.sizeRange {
                print("sizes: width \(r.minWidth)-\(r.maxWidth), height \(r.minHeight)-\(r.maxHeight)")
            }
            if !info.classes.isEmpty {
                print("classes (\(info.classes.count)):")
                let w = max(5, info.classes.map(\.name.count).max() ?? 5)
                print("  " + "idx".padding(toLength: 5, withPad: " ", startingAt: 0) + "name".padding(toLength: w + 2, withPad: " ", startingAt: 0) + "labeled     validation  test")
                for c in info.classes {
                    print("  " + String(c.index).padding(toLength: 5, withPad: " ", startingAt: 0)
                          + c.name.padding(toLength: w + 2, withPad: " ", startingAt: 0)
                          + String(c.labeled).padding(toLength: 12, withPad: " ", startingAt: 0)
                          + String(c.validation).padding(toLength: 12, withPad: " ", startingAt: 0) + String(c.test))
                }
            }
        }
    }
}

struct Show: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode a stored sample and write it as PNG.",
        discussion: """
        Examples:
          noisy show --store data.noisy --id 0 --out sample0.png
          noisy show --store data.noisy --id 42 --out - > s.png
          # a shard set: the shard that holds it
          noisy show --store shards/ --id 42 --out s.png
        """
    )
    @OptionGroup var storeOption: StoreOption
    @Option(help: "Sample id.") var id: UInt64
    @Option(help: ArgumentHelp("PNG file to write ('-' for stdout).", valueName: "file.png")) var out: String

    func run() throws {
        try runReportingErrors {
            // A set's samples keep their ids: the shard that holds this one shows it.
            let candidates: [Store]
            if ShardManifest.isSet(storeOption.store) {
                let (m, folder) = try ShardManifest.read(storeOption.store)
                candidates = try m.openShards(folder: folder)
            } else {
                candidates = [try Store(path: storeOption.store, readOnly: true)]
            }
            guard let (store, record) = try candidates.lazy.compactMap({ s in try s.sample(id).map { (s, $0) } }).first else {
                throw StoreError(.notFound, "\(storeOption.store): no sample with id \(id)")
            }
            let png = try Codec.encodePNG(store.decode(id))
            if out == "-" {
                FileHandle.standardOutput.write(Data(png))
            } else {
                guard FileManager.default.createFile(atPath: out, contents: Data(png)) else {
                    throw StoreError(.io, "\(out): cannot write")
                }
                let label = try record.classIndex.map { try store.classes()[Int($0)] } ?? "-"
                FileHandle.standardError.write(Data("wrote \(out): sample \(id), \(record.split.rawValue), class \(label), \(record.source), \(record.width)x\(record.height)\n".utf8))
            }
        }
    }
}

extension Info {
    /// A shard set: the manifest (checked), every shard opened, counts per shard.
    func setInfo() throws {
        let (m, folder) = try ShardManifest.read(storeOption.store)
        _ = try m.openShards(folder: folder)
        if json { try Terminal.printJSON(m, snakeCase: true); return }
        print("shard set \(storeOption.store): \(m.samples) samples in \(m.shards.count) shards, \(m.classes.count) classes, "
              + "\(m.generations.count) generation(s); cut from \(m.sourcePath) (created \(m.sourceCreatedAt))")
        for s in m.shards {
            print("  shard \(s.index): \(s.path), \(s.samples) samples ("
                  + Split.allCases.map { "\($0.rawValue) \(s.splits[$0.rawValue] ?? 0)" }.joined(separator: ", ") + ")")
        }
    }
}

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a store without trusting it: every page, sample, index, seal and label digest; exit 0 only when all is consistent.",
        discussion: """
        First walks data.mdb itself and validates every page before LMDB may follow it
        (damage is reported by database, page and the sample ids it covers); only a
        sound file is then read through LMDB: every sample re-hashed and decoded, every
        index checked both ways, every database's seal and every generation's and
        selection's digest. Never crashes, whatever the store's state; when it finds
        damage, noisy salvage saves what can be saved.

        Examples:
          noisy verify --store data.noisy
          noisy verify --store data.noisy --json
          # a shard set: every shard, and the manifest
          noisy verify --store data-8/
        """
    )
    @OptionGroup var storeOption: StoreOption
    @Flag(help: "Print the report as JSON (schemas/verify.schema.json).") var json = false

    func run() throws {
        try runReportingErrors {
            let start = Date()
            let progress = ProgressLine("verify", unit: "samples", quiet: json)
            let update = { (done: Int, total: Int) in progress.update(done: done, total: total, elapsed: Date().timeIntervalSince(start)) }
            let report = ShardManifest.isSet(storeOption.store)
                ? try ShardManifest.verifySet(at: storeOption.store, progress: update)
                : try Store.verify(at: storeOption.store, progress: update)
            if json {
                try Terminal.printJSON(report)
            } else {
                for p in report.problems { print("problem: \(p)") }
                print(report.ok ? "ok: \(report.samplesChecked) samples verified" : "FAILED: \(report.problems.count) problem(s) in \(report.samplesChecked) samples")
            }
            if !report.ok { throw ExitCode.failure }
        }
    }
}

struct Salvage: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Build a new store from everything a damaged store still holds intact.",
        discussion: """
        Reads the damaged store page by page, validating each page and never through
        LMDB (which would follow a damaged page's pointers), and keeps:
          every sample whose image bytes match their hash and whose record is vouched
          for (by its database's seal, else by the indexes that copy its fields);
          every generation and selection whose digests hold; classes and tags whose
          record digests hold.
        Indexes are rebuilt. The report (schemas/salvage.schema.json) lists what was
        lost by id and source; it is printed and written to <out>/salvage-report.json.
        Exit status 0 when the new store was written and passes verify.

        Examples:
          noisy salvage --store damaged.noisy --out saved.noisy
          noisy salvage --store damaged.noisy --out saved.noisy --json
          # a shard set: every shard, then a new manifest
          noisy salvage --store shards/ --out saved-shards/
        """
    )
    @OptionGroup var storeOption: StoreOption
    @Option(help: ArgumentHelp("New folder for the saved store.", valueName: "dir")) var out: String
    @Option(help: ArgumentHelp("Where to write the JSON report (default: <out>/salvage-report.json).", valueName: "file"))
    var report: String?
    @Flag(help: "Print the report as JSON instead of a summary.") var json = false

    func run() throws {
        try runReportingErrors {
            if ShardManifest.isSet(storeOption.store) { return try salvageSet() }
            let start = Date()
            let progress = ProgressLine("salvage", unit: "samples", quiet: json)
            let r = try Store.salvage(from: storeOption.store, to: out) { done, total in
                progress.update(done: done, total: total, elapsed: Date().timeIntervalSince(start))
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            let reportPath = report ?? out + "/salvage-report.json"
            do {
                try encoder.encode(r).write(to: URL(fileURLWithPath: reportPath))
            } catch {
                throw ValidationError("\(reportPath): cannot write the report: \(error.localizedDescription)")
            }
            if json {
                try Terminal.printJSON(r)
            } else {
                for p in r.structureProblems.prefix(10) { print("damage: \(p)") }
                if r.structureProblems.count > 10 { print("damage: ... \(r.structureProblems.count - 10) more (see the report)") }
                print("samples: \(r.samplesSaved) saved, \(r.samplesLost) lost")
                for s in r.lostSamples.prefix(10) { print("  lost sample \(s.id)\(s.source.map { " (\($0))" } ?? ""): \(s.reason)") }
                if r.lostSamples.count > 10 { print("  ... \(r.lostSamples.count - 10) more (see the report)") }
                if !r.classesLost.isEmpty { print("classes: names of \(r.classesLost.map(String.init).joined(separator: ", ")) lost (kept as lost-class-N)") }
                for g in r.generations { print("generation \(g.generation): \(g.saved ? "saved" : "lost")\(g.reason.map { ", \($0)" } ?? "")") }
                for s in r.selections { print("selection \(s.generation)/\(s.selection ?? ""): \(s.saved ? "saved" : "lost")\(s.reason.map { ", \($0)" } ?? "")") }
                print("wrote \(out) (\(r.verified ? "passes verify" : "FAILS verify")); report: \(reportPath)")
            }
            if !r.verified { throw ExitCode.failure }
        }
    }
}

extension Salvage {
    /// A shard set: every shard salvaged, then a manifest for what survived whole.
    func salvageSet() throws {
        let start = Date()
        let progress = ProgressLine("salvage", unit: "samples", quiet: json)
        let r = try ShardManifest.salvage(set: storeOption.store, to: out) { done, total in
            progress.update(done: done, total: total, elapsed: Date().timeIntervalSince(start))
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        let reportPath = report ?? out + "/salvage-report.json"
        do {
            try encoder.encode(r).write(to: URL(fileURLWithPath: reportPath))
        } catch {
            throw ValidationError("\(reportPath): cannot write the report: \(error.localizedDescription)")
        }
        if json {
            try Terminal.printJSON(r)
        } else {
            for (k, s) in r.shards.enumerated() where s.samplesLost > 0 || !s.structureProblems.isEmpty {
                print("shard \(k): \(s.samplesSaved) samples saved, \(s.samplesLost) lost" + (s.structureProblems.first.map { "; damage: \($0)" } ?? ""))
            }
            print("samples: \(r.samplesSaved) saved, \(r.samplesLost) lost")
            for g in r.generations { print("generation \(g.generation): \(g.saved ? "saved" : "lost")\(g.reason.map { ", \($0)" } ?? "")") }
            for s in r.selections { print("selection \(s.generation)/\(s.selection ?? ""): \(s.saved ? "saved" : "lost")\(s.reason.map { ", \($0)" } ?? "")") }
            print("wrote \(out) (\(r.verified ? "passes verify" : "FAILS verify")); report: \(reportPath)")
        }
        if !r.verified { throw ExitCode.failure }
    }
}

struct Compact: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a compacted copy of a store (free pages dropped, like mdb_copy -c).",
        discussion: """
        Examples:
          noisy compact --store data.noisy --out data-compact.noisy
          # a shard set: every shard, then the manifest
          noisy compact --store shards/ --out shards-compact/
        """
    )
    @OptionGroup var storeOption: StoreOption
    @Option(help: ArgumentHelp("New (or empty) folder for the copy.", valueName: "dir")) var out: String

    func run() throws {
        try runReportingErrors {
            if ShardManifest.isSet(storeOption.store) {
                let (m, folder) = try ShardManifest.read(storeOption.store)
                let n = try ShardManifest.compact(set: m, stores: try m.openShards(folder: folder), to: out)
                print("wrote \(out): \(n) shards and the manifest")
                return
            }
            let store = try Store(path: storeOption.store, readOnly: true)
            try store.compact(to: out)
            print("wrote \(out)")
        }
    }
}
