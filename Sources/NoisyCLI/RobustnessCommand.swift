import ArgumentParser
import Augment
import DatasetStore
import Foundation
import ImageCodec
import Pixels
import SelfTraining
import Trainer

struct Robustness: ParsableCommand, TrainsModels {
    static let configuration = CommandConfiguration(
        abstract: "Corruption errors (ImageNet-C's CE, mCE) and flip rates (ImageNet-P's mFR) of checkpoints on the test split.",
        discussion: """
        Each checkpoint is scored on the test split, clean and under every corruption
        and severity (computed on the fly from the clean teacher view at the model's
        size; nothing is written to the store), and along perturbation sequences.

        Figures: clean accuracy; the error per corruption (mean over severities); CE_c
        = sum_s E(s,c) / sum_s E_baseline(s,c) and mCE, its mean over the common
        ImageNet-C corruptions evaluated; relative mCE, the same over the degradation
        from clean, sum_s (E(s,c) - E_clean); the flip probability per perturbation
        (translate: frame t shifted t pixels; brightness: +0.02 t; gaussian_noise:
        fresh noise of 0.02 each frame, compared with the clean frame), its ratio to
        the baseline's (FR) and their mean (mFR). The baseline is the first checkpoint
        unless --baseline names another of them.

        \(Terminal.wrapped("Corruptions: " + Corruption.available.map(\.rawValue).joined(separator: ", ") + "."))
        \(Corruption.allCases.compactMap { c in c.unavailable.map { Terminal.wrapped("\(c.rawValue): \($0).") } }.joined(separator: "\n"))

        Examples:
          noisy robustness --store fmnist.noisy --checkpoint teacher.ckpt \\
              --checkpoint student.ckpt
          noisy robustness --store fmnist.noisy --checkpoint t.ckpt \\
              --checkpoint s.ckpt --limit 1000 --json --plot robustness.png
          noisy robustness --store data.noisy --checkpoint s.ckpt \\
              --corruptions gaussian_noise,fog --severities 1-3
        """
    )
    @OptionGroup var storeOption: StoreOption
    @Option(name: .customLong("checkpoint"), help: ArgumentHelp("A checkpoint to score (repeat for several).", valueName: "file"))
    var checkpoints: [String] = []
    @Option(help: ArgumentHelp("The checkpoint errors are normalised by (one of --checkpoint; default the first).", valueName: "file"))
    var baseline: String?
    @Option(help: ArgumentHelp("all, common, held-out, or a comma-separated list.", valueName: "LIST")) var corruptions: String = "all"
    @Option(help: ArgumentHelp("Severities: a range or list, e.g. 1-5 or 1,3,5.", valueName: "S")) var severities: String = "1-5"
    @Option(help: ArgumentHelp("Perturbation sequences: all, none, or a list of translate, brightness, gaussian_noise.", valueName: "LIST"))
    var perturbations: String = "all"
    @Option(help: "Frames per perturbation sequence.") var frames: Int = 6
    @Option(help: ArgumentHelp("Score a seeded subset of this many test samples.", valueName: "N")) var limit: Int?
    @Option(help: "Seed of the corruptions' randomness and of the subset.") var seed: UInt64 = 0
    @Option(help: "Threads.") var threads: Int = 2
    @Flag(help: "Print the report as JSON (schemas/robustness.schema.json).") var json = false
    @Option(help: ArgumentHelp("Draw error against severity per corruption, one line per checkpoint.", valueName: "out.png"))
    var plot: String?

    func run() throws {
        try runReportingErrors {
            // Everything a user can get wrong is checked before any work starts.
            let chosen = try Self.parseCorruptions(corruptions)
            let levels = try Self.parseSeverities(severities)
            let sequences = try Self.parsePerturbations(perturbations)
            guard !checkpoints.isEmpty else { throw ValidationError("give at least one --checkpoint") }
            guard frames >= 2 else { throw ValidationError("--frames must be at least 2") }
            guard limit.map({ $0 >= 1 }) ?? true else { throw ValidationError("--limit must be at least 1") }
            for c in checkpoints where !FileManager.default.fileExists(atPath: c) { throw ValidationError("\(c): no such checkpoint") }
            let baselineIndex = try baseline.map { b in
                guard let i = checkpoints.firstIndex(of: b) else {
                    throw ValidationError("--baseline \(b) is not among the --checkpoint files (\(checkpoints.joined(separator: ", ")))")
                }
                return i
            } ?? 0
            let source = try PipelineSource(path: storeOption.store)
            let classCount = try source.store.classes().count
            var models: [RobustnessModel] = []
            for path in checkpoints {
                let (h, model, opt) = try Checkpoint.load(path: path)
                guard h.architecture.classes == classCount else {
                    throw ValidationError("\(path): a model of \(h.architecture.classes) classes; the store has \(classCount)")
                }
                if let first = models.first, h.architecture.height != first.size || h.architecture.channels != first.channels {
                    throw ValidationError("\(path): takes \(h.architecture.height) px x \(h.architecture.channels) channels, \(checkpoints[0]) \(first.size) x \(first.channels)")
                }
                models.append(RobustnessModel(path: path, trainer: Trainer(model: model, optimizer: opt, seed: h.seed),
                                              size: h.architecture.height, channels: h.architecture.channels))
            }
            let bar = ProgressLine("robustness", unit: "passes", quiet: json)
            let start = Date()
            let report = try evaluateRobustness(
                stores: source.set?.stores ?? [source.store], storePath: storeOption.store, models: models, baseline: baselineIndex,
                options: RobustnessOptions(corruptions: chosen, severities: levels, perturbations: sequences, frames: frames,
                                           limit: limit, seed: seed, threads: threads)) { done, total in
                bar.update(done: done, total: total, elapsed: Date().timeIntervalSince(start))
            }
            if let plot { try Self.drawPlot(report, to: plot) }
            if json { try Terminal.printJSON(report); return }
            Self.printTable(report)
            if let plot { print("wrote \(plot)") }
        }
    }

    static func parseCorruptions(_ text: String) throws -> [Corruption] {
        let list: [Corruption]
        switch text {
        case "all": list = Corruption.available
        case "common": list = Corruption.common.filter { $0.unavailable == nil }
        case "held-out": list = Corruption.heldOut.filter { $0.unavailable == nil }
        default:
            list = try text.split(separator: ",").map { name in
                let n = name.trimmingCharacters(in: .whitespaces)
                guard let c = Corruption(rawValue: n) else {
                    throw ValidationError("unknown corruption '\(n)'; known: \(Corruption.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                if let why = c.unavailable { throw ValidationError("\(n): \(why)") }
                return c
            }
        }
        guard !list.isEmpty else { throw ValidationError("--corruptions \(text): no corruption to run") }
        return list
    }

    static func parseSeverities(_ text: String) throws -> [Int] {
        var out: [Int] = []
        for part in text.split(separator: ",") {
            let ends = part.split(separator: "-").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard (1...2).contains(ends.count), let lo = ends.first ?? nil, let hi = ends.last ?? nil, lo <= hi else {
                throw ValidationError("--severities \(text): use a range or list such as 1-5 or 1,3,5")
            }
            out += Array(lo...hi)
        }
        guard !out.isEmpty, out.allSatisfy({ (1...5).contains($0) }) else { throw ValidationError("--severities \(text): severities are 1 to 5") }
        return Array(Set(out)).sorted()
    }

    static func parsePerturbations(_ text: String) throws -> [Perturbation] {
        if text == "all" { return Perturbation.allCases }
        if text == "none" { return [] }
        return try text.split(separator: ",").map { name in
            guard let p = Perturbation(rawValue: String(name)) else {
                throw ValidationError("unknown perturbation '\(name)'; known: \(Perturbation.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return p
        }
    }

    static func printTable(_ r: RobustnessReport) {
        let names = r.models.map { ($0.checkpoint as NSString).lastPathComponent }
        let w = max(24, r.corruptions.map(\.count).max() ?? 0)
        func row(_ label: String, _ cells: [String]) {
            print(label.padding(toLength: w + 2, withPad: " ", startingAt: 0) + cells.map { $0.padding(toLength: 16, withPad: " ", startingAt: 0) }.joined())
        }
        print("\(r.samples) of \(r.testSamples) test samples; severities \(r.severities.map(String.init).joined(separator: ",")); baseline \(r.baseline)")
        row("", names)
        row("clean accuracy", r.models.map { String(format: "%.2f%%", 100 * $0.cleanAccuracy) })
        for c in r.corruptions {
            row(c, r.models.map { m in
                String(format: "%.1f%%", 100 * (m.meanErrors[c] ?? 0)) + (m.corruptionErrors[c].map { String(format: " (CE %.0f)", 100 * $0) } ?? "")
            })
        }
        row("mCE", r.models.map { String(format: "%.1f%%", 100 * $0.mCE) })
        row("relative mCE", r.models.map { String(format: "%.1f%%", 100 * $0.relativeMCE) })
        for p in r.perturbations {
            row("flips: \(p)", r.models.map { m in
                String(format: "%.2f%%", 100 * (m.flipProbabilities[p] ?? 0)) + (m.flipRates[p].map { String(format: " (FR %.0f)", 100 * $0) } ?? "")
            })
        }
        if !r.perturbations.isEmpty { row("mFR", r.models.map { String(format: "%.1f%%", 100 * $0.mFR) }) }
        print("error per corruption: mean over severities; CE, mCE, FR, mFR: % of the baseline's")
    }

    /// One panel per corruption: error (0-100%) against severity, a line per checkpoint;
    /// a legend of colours and file names at the top.
    static func drawPlot(_ r: RobustnessReport, to path: String) throws {
        let colours: [[UInt8]] = [[31, 119, 180], [214, 39, 40], [44, 160, 44], [255, 127, 14], [148, 103, 189], [140, 86, 75]]
        let pw = 150, ph = 110, margin = 28, cols = 4
        let rows = (r.corruptions.count + cols - 1) / cols
        let legend = 8 + r.models.count * (BitmapFont.height + 4)
        var img = Image(width: cols * (pw + margin) + margin, height: legend + rows * (ph + margin + BitmapFont.height) + margin, channels: 3, fill: 255)
        let sheet = ContactSheet(columns: 1)
        func line(_ x0: Int, _ y0: Int, _ x1: Int, _ y1: Int, _ c: [UInt8], thick: Bool = false) {
            let steps = max(abs(x1 - x0), abs(y1 - y0), 1)
            for i in 0...steps {
                let x = x0 + (x1 - x0) * i / steps, y = y0 + (y1 - y0) * i / steps
                for (dx, dy) in thick ? [(0, 0), (1, 0), (0, 1)] : [(0, 0)] where x + dx < img.width && y + dy < img.height && x + dx >= 0 && y + dy >= 0 {
                    for k in 0..<3 { img[x + dx, y + dy, k] = c[k] }
                }
            }
        }
        for (k, m) in r.models.enumerated() {
            let y = 6 + k * (BitmapFont.height + 4)
            line(margin, y + 5, margin + 20, y + 5, colours[k % colours.count], thick: true)
            sheet.drawText(((m.checkpoint as NSString).lastPathComponent) + String(format: "  clean %.1f%%, mCE %.0f%%", 100 * m.cleanAccuracy, 100 * m.mCE)
                           + (k == 0 ? "   (each panel: error % against severity)" : ""),
                           into: &img, x: margin + 26, y: y, maxWidth: img.width - margin - 30)
        }
        for (i, c) in r.corruptions.enumerated() {
            let ox = margin + (i % cols) * (pw + margin), oy = legend + BitmapFont.height + 4 + (i / cols) * (ph + margin + BitmapFont.height)
            sheet.drawText(c, into: &img, x: ox, y: oy - BitmapFont.height - 2, maxWidth: pw)
            let grey: [UInt8] = [200, 200, 200]
            line(ox, oy, ox, oy + ph, [0, 0, 0]); line(ox, oy + ph, ox + pw, oy + ph, [0, 0, 0])
            for g in [25, 50, 75, 100] { line(ox + 1, oy + ph - ph * g / 100, ox + pw, oy + ph - ph * g / 100, grey) }
            for (g, label) in [(0, "0"), (50, "50"), (100, "100")] {
                sheet.drawText(label, into: &img, x: ox - 2 - BitmapFont.width * label.count, y: oy + ph - ph * g / 100 - BitmapFont.height / 2, maxWidth: 24)
            }
            let n = r.severities.count
            func px(_ j: Int) -> Int { ox + (n > 1 ? 6 + (pw - 12) * j / (n - 1) : pw / 2) }
            for (k, m) in r.models.enumerated() {
                guard let e = m.errors[c] else { continue }
                let pts = e.enumerated().map { (px($0.offset), oy + ph - Int((Double(ph) * min(1, max(0, $0.element))).rounded())) }
                for j in 1..<max(1, pts.count) { line(pts[j - 1].0, pts[j - 1].1, pts[j].0, pts[j].1, colours[k % colours.count], thick: true) }
            }
            for (j, s) in r.severities.enumerated() { sheet.drawText("\(s)", into: &img, x: px(j) - 2, y: oy + ph + 2, maxWidth: 8) }
        }
        do {
            guard FileManager.default.createFile(atPath: path, contents: Data(try Codec.encodePNG(img))) else {
                throw ValidationError("\(path): cannot write")
            }
        } catch let e as CodecError { throw ValidationError("\(path): \(e)") }
    }
}
