import ArgumentParser
import Augment
import Batches
import DatasetStore
import Foundation
import ImageCodec
import KeyedRandom
import Pipeline
import Pixels

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure the pipeline and the decoder on a store, and the corruptions on image files.",
        subcommands: [BenchPipeline.self, BenchDecode.self, BenchLabels.self, BenchCorruptions.self]
    )
}

/// Peak resident memory of this process so far, in bytes.
func peakRSS() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return usage.ru_maxrss * 1024
}

/// Resident memory of this process now, in bytes (Linux /proc/self/statm).
func currentRSS() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    guard !s.isEmpty else { return 0 }
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

struct PipelineBenchResult: Codable {
    var imagesPerSecond: Double
    var runs: [Double]
    var batches: Int
    var batchSize: Int
    var threads: Int
    var size: Int
    var view: String
    var layout: String
    var randaugment: String?
    var peakRssBytes: Int
    var rssAfterEpochBytes: [Int]?
    var replaced: Int

    enum CodingKeys: String, CodingKey {
        case imagesPerSecond = "images_per_second", runs, batches, batchSize = "batch_size", threads, size, view, layout
        case randaugment, peakRssBytes = "peak_rss_bytes", rssAfterEpochBytes = "rss_after_epoch_bytes", replaced
    }
}

struct BenchPipeline: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pipeline",
        abstract: "Images/s of the batch pipeline (median of --repeat runs) and peak memory.",
        discussion: """
        Examples:
          noisy bench pipeline --store data.noisy --size 224 --threads 1 --batches 20
          noisy bench pipeline --store data.noisy --threads 2 --randaugment 2,9 --json
          # memory after each epoch
          noisy bench pipeline --store data.noisy --epochs 10
        """
    )
    @OptionGroup var storeOption: StoreOption
    @Option(help: "Batches per run (after warm-up batches that bring every reused batch buffer into use).") var batches: Int = 20
    @Option(help: "Runs; the median is reported.") var `repeat`: Int = 3
    @Option(help: "Instead of --batches: run this many epochs once and report memory after each.") var epochs: Int?
    @Flag(help: "Print one JSON object (schemas/bench-pipeline.schema.json).") var json = false
    @OptionGroup var pipeline: PipelineOptions

    func run() throws {
        try runReportingErrors {
            let source = try PipelineSource(path: storeOption.store)
            let config = try pipeline.config(store: source.store)
            var rates: [Double] = []
            var rssAfterEpoch: [Int]?
            var total = 0
            var replaced = 0
            if let epochs {
                let loader = try source.loader(config: config, options: pipeline, log: { Terminal.warn($0) })
                rssAfterEpoch = []
                let start = Date()
                for e in 0..<epochs {
                    for _ in 0..<loader.batchesPerEpoch { loader.recycle(try loader.next()); total += 1 }
                    rssAfterEpoch!.append(currentRSS())
                    if !json {
                        FileHandle.standardError.write(Data("epoch \(e + 1): RSS \(currentRSS() / 1_000_000) MB, peak \(peakRSS() / 1_000_000) MB\n".utf8))
                    }
                }
                rates.append(Double(total * config.batchSize) / Date().timeIntervalSince(start))
                replaced = loader.replacedCount
            } else {
                for r in 0..<max(1, self.repeat) {
                    let loader = try source.loader(config: config, options: pipeline, log: { Terminal.warn($0) })
                    // Warm-up: as many batches as can be in flight at once (ready, being
                    // rendered, being consumed), so that the timed batches reuse buffers
                    // the way a long run does instead of faulting in fresh ones.
                    for _ in 0..<(max(config.prefetch, config.threads) + config.threads + 1) { loader.recycle(try loader.next()) }
                    let start = Date()
                    for _ in 0..<batches { loader.recycle(try loader.next()) }
                    let rate = Double(batches * config.batchSize) / Date().timeIntervalSince(start)
                    rates.append(rate)
                    total = batches
                    replaced = loader.replacedCount
                    if !json { FileHandle.standardError.write(Data(String(format: "run %d: %.0f images/s\n", r + 1, rate).utf8)) }
                }
            }
            let result = PipelineBenchResult(
                imagesPerSecond: median(rates), runs: rates, batches: total, batchSize: config.batchSize,
                threads: config.threads, size: config.view.size, view: pipeline.view.rawValue, layout: config.layout.name,
                randaugment: pipeline.randaugment, peakRssBytes: peakRSS(), rssAfterEpochBytes: rssAfterEpoch, replaced: replaced)
            if json { try Terminal.printJSON(result); return }
            print(String(format: "pipeline: %.0f images/s (median of %d), %d threads, %@ view %dpx, %@, peak RSS %d MB",
                         result.imagesPerSecond, rates.count, config.threads, pipeline.view.rawValue, config.view.size,
                         config.layout.name, result.peakRssBytes / 1_000_000))
        }
    }
}

struct BenchDecode: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode",
        abstract: "Full-size decode rate of the labeled samples on one thread: the libjpeg-turbo baseline.",
        discussion: """
        Examples:
          noisy bench decode --store data.noisy --json
          # a shard set: the labeled split over every shard
          noisy bench decode --store shards/
        """
    )
    @OptionGroup var storeOption: StoreOption
    @Option(help: "Runs; the median is reported.") var `repeat`: Int = 3
    @Option(help: "At most this many samples per run.") var limit: Int = 2000
    @Flag(help: "Print one JSON object.") var json = false

    struct Result: Codable {
        var imagesPerSecond: Double
        var megapixelsPerSecond: Double
        var runs: [Double]
        var samples: Int
        enum CodingKeys: String, CodingKey {
            case imagesPerSecond = "images_per_second", megapixelsPerSecond = "megapixels_per_second", runs, samples
        }
    }

    func run() throws {
        try runReportingErrors {
            let stores = try openStoreOrSet(storeOption.store)
            // The labeled samples in id order, each read from the shard that holds it.
            let located = try stores.flatMap { s in try s.index(of: .labeled).map { (id: $0.id, store: s) } }.sorted { $0.id < $1.id }
            let blobs = try located.prefix(limit).map { try $0.store.imageBytes($0.id) }
            var pixels: [UInt8] = []
            guard !blobs.isEmpty else { throw ValidationError("\(storeOption.store): the labeled split is empty: nothing to decode") }
            var rates: [Double] = [], mp: [Double] = []
            for _ in 0..<max(1, self.repeat) {
                var px = 0
                let start = Date()
                for b in blobs {
                    let h = try b.withUnsafeBytes { raw in
                        try Swift.Result { () throws(CodecError) in try Codec.decode(raw, options: DecodeOptions(), into: &pixels) }.get()
                    }
                    px += h.outputWidth * h.outputHeight
                }
                let t = Date().timeIntervalSince(start)
                rates.append(Double(blobs.count) / t)
                mp.append(Double(px) / t / 1e6)
            }
            let r = Result(imagesPerSecond: median(rates), megapixelsPerSecond: median(mp), runs: rates, samples: blobs.count)
            if json { try Terminal.printJSON(r); return }
            print(String(format: "full decode: %.0f images/s, %.0f Mpix/s (median of %d, %d samples, one thread)",
                         r.imagesPerSecond, r.megapixelsPerSecond, rates.count, r.samples))
        }
    }
}

struct BenchLabels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "labels",
        abstract: "Random lookups of one sample's full distribution in a generation (read transaction, decode).",
        discussion: """
        Examples:
          noisy bench labels --store data.noisy --generation latest --lookups 100000 \\
              --json
          # a shard set: each lookup on its sample's shard
          noisy bench labels --store shards/ --generation 2
        """
    )
    @OptionGroup var storeOption: StoreOption
    @Option(help: ArgumentHelp("Generation number or tag.", valueName: "K")) var generation: String
    @Option(help: "Lookups per run.") var lookups: Int = 100_000
    @Option(help: "Seed of the random sample choice.") var seed: UInt64 = 0
    @Option(help: "Runs; the median is reported.") var `repeat`: Int = 3
    @Flag(help: "Print one JSON object.") var json = false

    struct Result: Codable {
        var lookupsPerSecond: Double
        var runs: [Double]
        var samples: Int
        var precision: String
        /// Median seconds to check the generation's digests: what every reader pays once per open.
        var digestCheckSeconds: Double
        enum CodingKeys: String, CodingKey {
            case lookupsPerSecond = "lookups_per_second", runs, samples, precision, digestCheckSeconds = "digest_check_seconds"
        }
    }

    func run() throws {
        try runReportingErrors {
            let stores = try openStoreOrSet(storeOption.store)
            let g: GenerationRecord
            if ShardManifest.isSet(storeOption.store) {
                let m = try ShardManifest.read(storeOption.store).manifest
                g = try m.generationDetail(try m.resolveGeneration(generation, stores: stores), stores: stores).record
            } else {
                g = try stores[0].resolveGeneration(generation)
            }
            // Over a set, each shard's reader answers for its own samples.
            let holders = try stores.filter { try $0.generation(g.generation) != nil }
            let readers = try holders.map { try GenerationReader(store: $0, generation: g.generation) }
            var ids: [(reader: Int, id: UInt64)] = []
            ids.reserveCapacity(g.samples)
            for (k, s) in holders.enumerated() { try s.forEachLabel(g.generation) { id, _ in ids.append((k, id)) } }
            guard !ids.isEmpty else { throw ValidationError("generation \(g.generation) holds no labels") }
            var rng = SplitMix64(seed: seed)
            var out = [Float](repeating: 0, count: g.classCount)
            var rates: [Double] = []
            var sink: Float = 0
            for _ in 0..<max(1, self.repeat) {
                let picks = (0..<lookups).map { _ in ids[Int(rng.next(upperBound: UInt64(ids.count)))] }
                let start = Date()
                for pick in picks {
                    try out.withUnsafeMutableBufferPointer { try readers[pick.reader].distribution(of: pick.id, into: $0) }
                    sink += out[0]
                }
                rates.append(Double(lookups) / Date().timeIntervalSince(start))
            }
            var checks: [Double] = []
            for _ in 0..<max(1, self.repeat) {
                let start = Date()
                for s in holders { try s.requireIntact(generation: g.generation) }
                checks.append(Date().timeIntervalSince(start))
            }
            let r = Result(lookupsPerSecond: median(rates), runs: rates, samples: ids.count, precision: g.precision,
                           digestCheckSeconds: median(checks))
            if json { try Terminal.printJSON(r); return }
            print(String(format: "%.0f random lookups/s (median of %d; %d samples, %@, checksum %.1f); digest check per open %.3f s",
                         r.lookupsPerSecond, rates.count, ids.count, g.precision, sink, r.digestCheckSeconds))
        }
    }
}

/// One store, or every shard of a set (checked against its manifest), read-only.
func openStoreOrSet(_ path: String) throws -> [Store] {
    guard ShardManifest.isSet(path) else { return [try Store(path: path, readOnly: true)] }
    let (m, folder) = try ShardManifest.read(path)
    return try m.openShards(folder: folder)
}

struct BenchCorruptions: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "corruptions",
        abstract: "Images per second of each ImageNet-C corruption on one thread, on the image files of a folder.",
        discussion: """
        Every PNG and JPEG in the folder is decoded once; each corruption then runs
        over all of them --repeat times (keyed seeds 0, 1, ...); the median rate is
        reported. tools/bench/corruptions.sh runs it beside the imagecorruptions
        package.

        Examples:
          noisy bench corruptions --images photos-224/ --severity 3 --json
        """
    )
    @Option(help: ArgumentHelp("Folder of PNG or JPEG files.", valueName: "dir")) var images: String
    @Option(help: "Severity, 1-5.") var severity: Int = 3
    @Option(help: "Runs; the median is reported.") var `repeat`: Int = 3
    @Option(help: ArgumentHelp("Only these corruptions (comma-separated).", valueName: "LIST")) var corruptions: String = "all"
    @Flag(help: "Print one JSON object (schemas/bench-corruptions.schema.json).") var json = false

    struct Result: Codable {
        var images: Int
        var width: Int
        var height: Int
        var severity: Int
        /// The corruptions measured, in ImageNet-C's order.
        var corruptions: [String]
        var imagesPerSecond: [String: Double]
        enum CodingKeys: String, CodingKey { case images, width, height, severity, corruptions, imagesPerSecond = "images_per_second" }
    }

    func run() throws {
        try runReportingErrors {
            guard (1...5).contains(severity) else { throw ValidationError("--severity \(severity): use 1 to 5") }
            let chosen = try Robustness.parseCorruptions(corruptions)
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: images)) ?? []).filter {
                [".png", ".jpg", ".jpeg"].contains(where: $0.lowercased().hasSuffix)
            }.sorted()
            guard !names.isEmpty else { throw ValidationError("\(images): no PNG or JPEG files") }
            let decoded = try names.map { name -> Image in
                guard let data = FileManager.default.contents(atPath: images + "/" + name) else { throw ValidationError("\(images)/\(name): cannot read") }
                do { return try Codec.decode([UInt8](data)) } catch { throw ValidationError("\(images)/\(name): \(error)") }
            }
            var rates: [String: Double] = [:]
            for c in chosen {
                var runs: [Double] = []
                for r in 0..<max(1, self.repeat) {
                    let start = Date()
                    for (i, img) in decoded.enumerated() {
                        _ = try Corruptions.apply(c, severity: severity, to: img, seed: UInt64(r), sample: UInt64(i))
                    }
                    runs.append(Double(decoded.count) / Date().timeIntervalSince(start))
                }
                rates[c.rawValue] = median(runs)
                if !json { print(String(format: "%@: %.1f images/s", c.rawValue, rates[c.rawValue] ?? 0)) }
            }
            let result = Result(images: decoded.count, width: decoded[0].width, height: decoded[0].height, severity: severity,
                                corruptions: chosen.map(\.rawValue), imagesPerSecond: rates)
            if json { try Terminal.printJSON(result) }
        }
    }
}
