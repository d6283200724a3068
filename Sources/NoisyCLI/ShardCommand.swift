import ArgumentParser
import DatasetStore
import Foundation

struct Shard: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Split a store into N shard stores and a checksummed manifest, for datasets that outgrow one disk.",
        discussion: """
        Each split's samples are sorted by content SHA-256 and dealt to the shards in
        turn: every shard's share of every split differs by at most one, and depends
        only on the content. Samples keep their ids; classes, generations (each shard
        holds its samples' labels), selections and tags carry over. OUT/manifest.json
        (schemas/shard-manifest.schema.json) lists the shards, their samples and
        digests, under a checksum; it is written last. `noisy verify --store OUT`
        checks the whole set.

        Examples:
          noisy shard --store data.noisy --shards 8 --out data-8/
          noisy verify --store data-8/
        """
    )
    @OptionGroup var storeOption: StoreOption
    @Option(help: ArgumentHelp("How many shards.", valueName: "N")) var shards: Int
    @Option(help: ArgumentHelp("A new or empty folder for the shard stores and manifest.json.", valueName: "dir")) var out: String
    @Flag(help: "Print the manifest as JSON (schemas/shard-manifest.schema.json).") var json = false
    @Flag(help: "No progress display.") var quiet = false

    func run() throws {
        try runReportingErrors {
            let store = try Store(path: storeOption.store, readOnly: true)
            let start = Date()
            let bar = ProgressLine("shard", unit: "samples", quiet: quiet || json)
            let m = try store.shard(into: out, count: shards) { stage, done, total in
                if stage == "samples" { bar.update(done: done, total: total, elapsed: Date().timeIntervalSince(start)) }
            }
            if json { try Terminal.printJSON(m, snakeCase: true); return }
            let sizes = m.shards.map(\.samples)
            print("\(out): \(m.samples) samples in \(m.shards.count) shards (\(sizes.min() ?? 0)-\(sizes.max() ?? 0) each), "
                  + "\(m.generations.count) generation(s), " + String(format: "%.1f s", Date().timeIntervalSince(start)))
            print("manifest: \(out)/manifest.json (sha256 \(m.sha256?.prefix(12) ?? ""))")
        }
    }
}
