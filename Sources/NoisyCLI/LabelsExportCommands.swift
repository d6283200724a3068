import ArgumentParser
import Augment
import DatasetStore
import Foundation
import ImageCodec
import Pixels

struct LabelsExport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a generation (or a selection) as a snapshot folder: npy, jsonl or safetensors.",
        discussion: """
        Without --selection the 'default' selection is exported if there is one, else
        every sample once. npy writes ids.npy (int64), probs.npy (float32 [N, C], or
        float16 with --keep-precision), multiplicity.npy (int32, copies per sample) and
        sources.txt; jsonl writes labels.jsonl; safetensors labels.safetensors (ids,
        probs, multiplicity). manifest.json (written last) holds the generation's
        metadata, the files and their SHA-256. Memory stays constant whatever N is.

        Examples:
          noisy labels export --store data.noisy --generation 2 --format npy \\
              --out snap-2/
          noisy labels export --store data.noisy --generation latest \\
              --selection balanced --format jsonl --out snap/
          # a shard set: one snapshot, id order
          noisy labels export --store shards/ --generation 2 --format npy --out snap-2/
        """
    )
    @OptionGroup var storeOption: StoreOption
    @Option(help: ArgumentHelp("Generation number or tag.", valueName: "K")) var generation: String
    @Option(help: "Selection name.") var selection: String?
    @Option(help: "npy, jsonl or safetensors.") var format: LabelExportFormat = .npy
    @Option(help: ArgumentHelp("Output folder (new or empty).", valueName: "dir")) var out: String
    @Flag(help: "float16 probabilities (npy, safetensors).") var keepPrecision = false
    @Flag(help: "Write into a non-empty folder.") var force = false
    @Flag(help: "Print the manifest as JSON (schemas/labels-export-manifest.schema.json).") var json = false

    func run() throws {
        try runReportingErrors {
            let m: LabelExportManifest
            if ShardManifest.isSet(storeOption.store) {
                let (set, folder) = try ShardManifest.read(storeOption.store)
                let stores = try set.openShards(folder: folder)
                let k = try set.resolveGeneration(generation, stores: stores)
                m = try ShardManifest.exportLabels(inSet: storeOption.store, stores: stores, LabelExportRequest(
                    generation: k, selection: selection, format: format, out: out, keepPrecision: keepPrecision, force: force))
            } else {
                let store = try Store(path: storeOption.store, readOnly: true)
                let g = try store.resolveGeneration(generation)
                m = try store.exportLabels(LabelExportRequest(generation: g.generation, selection: selection, format: format, out: out,
                                                              keepPrecision: keepPrecision, force: force))
            }
            if json { try Terminal.printJSON(m, snakeCase: true); return }
            print("wrote \(out): generation \(m.generation.generation)" + (m.selection.map { ", selection '\($0)'" } ?? ", all samples")
                  + ", \(m.samples) samples, \(m.entries) entries, " + m.files.map { "\($0.name) (\($0.bytes) bytes)" }.joined(separator: ", "))
        }
    }
}

struct LabelsSamples: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "samples",
        abstract: "Per class: a contact sheet of the most and least confident samples, and a confidence histogram.",
        discussion: """
        Writes DIR/<class>-confident.png (the --count most confident, then the --count
        least confident samples whose top class it is, each captioned with its
        confidence) and DIR/<class>-histogram.png (top confidence in 101 bins).

        Examples:
          noisy labels samples --store data.noisy --generation 1 --out check/
          noisy labels samples --store shards/ --generation latest --out check/
        """
    )
    @OptionGroup var storeOption: StoreOption
    @Option(help: ArgumentHelp("Generation number or tag.", valueName: "K")) var generation: String
    @Option(help: ArgumentHelp("Output folder.", valueName: "dir")) var out: String
    @Option(help: "Samples per end (most / least confident).") var count: Int = 8
    @Option(help: "Tile side in pixels.") var size: Int = 96

    func run() throws {
        try runReportingErrors {
            guard count >= 1 && count <= 256 else { throw ValidationError("--count must be 1-256") }
            // One store, or every shard of a set (each sample is drawn from its own shard).
            let stores: [Store]
            let g: GenerationRecord
            let classes: [String]
            if ShardManifest.isSet(storeOption.store) {
                let (m, folder) = try ShardManifest.read(storeOption.store)
                stores = try m.openShards(folder: folder)
                g = try m.generationDetail(try m.resolveGeneration(generation, stores: stores), stores: stores).record
                classes = m.classes
            } else {
                stores = [try Store(path: storeOption.store, readOnly: true)]
                g = try stores[0].resolveGeneration(generation)
                classes = try stores[0].classes()
            }
            var perClass = [[(id: UInt64, p: Float, shard: Int)]](repeating: [], count: g.classCount)
            var hist = [[Int]](repeating: [Int](repeating: 0, count: 101), count: g.classCount)
            for (k, store) in stores.enumerated() where try store.generation(g.generation) != nil {
                try store.requireIntact(generation: g.generation)
                try store.forEachLabel(g.generation) { id, v in
                    let (t, p) = LabelEncoding.top(v)
                    guard t >= 0, t < g.classCount, p.isFinite else { return }
                    perClass[t].append((id, p, k))
                    hist[t][min(100, max(0, Int(Double(p) * 100)))] += 1
                }
            }
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            let channels = try stores[0].dominantChannels(of: .unlabeled)
            let renderer = ViewRenderer(channels: channels, layout: .uint8NHWC)
            let view = View.teacher(TeacherView(size: size, cropFraction: 1))
            for cls in 0..<g.classCount {
                let sorted = perClass[cls].sorted { $0.p != $1.p ? $0.p > $1.p : $0.id < $1.id }
                let picks = Array(sorted.prefix(count)) + (sorted.count > count ? Array(sorted.suffix(min(count, sorted.count - count))) : [])
                let tiles = try picks.map { pick -> (image: Image, caption: String) in
                    let img = try stores[pick.shard].withImageBytes(pick.id) { bytes in
                        try renderer.renderImage(bytes, view: view, key: SampleKey(seed: 0, epoch: 0, sample: pick.id))
                    }
                    return (img, String(format: "%.2f #%llu", pick.p, pick.id))
                }
                let safe = classes[cls].map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" }
                let base = "\(out)/\(cls)-\(String(safe))"
                if !tiles.isEmpty {
                    let sheet = ContactSheet(columns: count, minimumTile: size).render(tiles)
                    try write(Codec.encodePNG(sheet), to: base + "-confident.png")
                }
                try write(Codec.encodePNG(histogramImage(hist[cls], title: "\(classes[cls]): \(sorted.count) samples")),
                          to: base + "-histogram.png")
            }
            print("wrote \(out): \(g.classCount) classes, generation \(g.generation) (\(g.samples) samples)")
        }
    }

    func write(_ png: [UInt8], to path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: Data(png)) else { throw ValidationError("\(path): cannot write") }
    }

    /// Bars of 101 bins (3 pixels each) under a title; the tallest bin fills the height.
    func histogramImage(_ bins: [Int], title: String) -> Image {
        let barW = 3, h = 100, top = BitmapFont.height + 6, w = bins.count * barW + 8
        var img = Image(width: w, height: h + top + 4, channels: 3, fill: 255)
        let peak = max(1, bins.max() ?? 1)
        for (i, v) in bins.enumerated() {
            let bar = v * h / peak
            for y in 0..<bar {
                for x in 0..<barW - 1 {
                    for c in 0..<3 { img[4 + i * barW + x, top + h - 1 - y, c] = c == 2 ? 160 : 40 }
                }
            }
        }
        ContactSheet(columns: 1).drawText(title, into: &img, x: 4, y: 2, maxWidth: w - 8)
        return img
    }
}

