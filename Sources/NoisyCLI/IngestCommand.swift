import ArgumentParser
import DatasetStore
import Foundation

struct Ingest: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Add image folders (JPEG, PNG, WebP) to a store, validating every file.",
        discussion: """
        --labeled, --validation and --test folders hold one subfolder per class
        (DIR/<class>/**/*.jpg|png|webp); validation and test are held out (an image in
        one of them and in any other split is reported as leakage); --unlabeled is any
        tree of images. Each is optional and may be repeated; running the same ingest
        again adds exactly what is missing (it resumes after an interruption). Files
        that cannot be added are skipped with a reason; identical bytes are stored
        once.

        Examples:
          noisy ingest --store data.noisy --labeled train/ --unlabeled extra/ \\
              --validation val/ --test test/
          noisy ingest --store data.noisy --unlabeled more/ --max-side 512 --quality 90
          noisy ingest --store data.noisy --unlabeled photos/ --restart-markers
          noisy ingest --store data.noisy --labeled train/ --report skipped.jsonl \\
              --strict
        """
    )

    @OptionGroup var storeOption: StoreOption
    @Option(help: ArgumentHelp("Folder with one subfolder per class.", valueName: "dir")) var labeled: [String] = []
    @Option(help: ArgumentHelp("Any tree of images without labels.", valueName: "dir")) var unlabeled: [String] = []
    @Option(help: ArgumentHelp("Held-out folder with one subfolder per class, scored once per model for the report.", valueName: "dir"))
    var test: [String] = []
    @Option(help: ArgumentHelp("Held-out folder with one subfolder per class, for choosing settings (per-epoch accuracy).", valueName: "dir"))
    var validation: [String] = []
    @Option(help: ArgumentHelp("Re-encode images whose long side exceeds N pixels as JPEG, resized to N.", valueName: "N"))
    var maxSide: Int?
    @Option(help: "JPEG quality for --max-side re-encoding (1-100).") var quality: Int = 90
    @Flag(help: ArgumentHelp("Rewrite JPEGs losslessly (same pixels, metadata kept) with restart markers, so that training crops decode only the data they cover.",
                             discussion: "Progressive JPEGs become baseline. Files already carrying row-aligned restart markers, and files under 128 pixels on both sides, are stored as they are."))
    var restartMarkers = false
    @Option(help: "Refuse images whose header claims more megapixels than this.") var maxPixels: Double = 100
    @Option(help: ArgumentHelp("Write one JSON line per file not added.", valueName: "file.jsonl")) var report: String?
    @Flag(help: "Exit non-zero if any file was skipped or held-out (validation or test) images leak into other splits.") var strict = false
    @Flag(help: "Print the summary as JSON.") var json = false
    @Flag(help: "No progress display.") var quiet = false

    func validate() throws {
        if labeled.isEmpty && unlabeled.isEmpty && test.isEmpty && validation.isEmpty {
            throw ValidationError("give at least one of --labeled, --unlabeled, --validation, --test")
        }
        if let m = maxSide, m < 8 { throw ValidationError("--max-side must be at least 8") }
        if !(1...100).contains(quality) { throw ValidationError("--quality must be between 1 and 100") }
        if maxPixels <= 0 { throw ValidationError("--max-pixels must be positive") }
    }

    func run() throws {
        try runReportingErrors {
            // Check every folder before the store is created or touched.
            for dir in labeled + unlabeled + test + validation {
                var isDir: ObjCBool = false
                guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
                    throw StoreError(.missingFolder, "\(dir): no such folder")
                }
            }
            var options = IngestOptions()
            options.labeled = labeled
            options.unlabeled = unlabeled
            options.test = test
            options.validation = validation
            options.maxSide = maxSide
            options.quality = quality
            options.restartMarkers = restartMarkers
            options.maxPixels = UInt64(maxPixels * 1_000_000)
            let store = try Store.openOrCreate(path: storeOption.store)
            let summary = try IngestRunner.run(store: store, options: options, reportPath: report, quiet: quiet || json)
            if json {
                try Terminal.printJSON(summary)
            } else {
                IngestRunner.printSummary(summary)
            }
            if strict && (summary.skipped > 0 || summary.leakage > 0) {
                Terminal.error("--strict: \(summary.skipped) file(s) skipped, \(summary.leakage) leaked; the good files were stored")
                throw ExitCode(3)
            }
        }
    }
}

/// Shared by `ingest` and `demo`.
enum IngestRunner {
    static func run(store: Store, options: IngestOptions, reportPath: String?, quiet: Bool) throws -> IngestSummary {
        var reportHandle: FileHandle?
        if let reportPath {
            guard FileManager.default.createFile(atPath: reportPath, contents: nil),
                  let h = FileHandle(forWritingAtPath: reportPath) else {
                throw StoreError(.io, "\(reportPath): cannot write the report")
            }
            reportHandle = h
        }
        defer { try? reportHandle?.close() }
        let ingester = Ingester(store: store, options: options)
        let progress = ProgressLine("ingest", quiet: quiet)
        ingester.onProgress = { p in progress.update(done: p.done, total: p.total, elapsed: p.elapsed) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        ingester.onRefused = { entry in
            if entry.category == .leakage { Terminal.warn("\(entry.path): \(entry.reason)") }
            if let h = reportHandle, let line = try? encoder.encode(entry) {
                h.write(line + Data("\n".utf8))
            }
        }
        return try ingester.run()
    }

    static func printSummary(_ s: IngestSummary) {
        var lines = ["added \(s.added) (" + Split.allCases.map { "\($0.rawValue) \(s.addedBySplit[$0.rawValue] ?? 0)" }.joined(separator: ", ") + ")"]
        if s.alreadyStored > 0 { lines.append("already stored \(s.alreadyStored)") }
        lines.append("duplicates \(s.duplicates)" + (s.leakage > 0 ? " (LEAKAGE: \(s.leakage) held-out image(s) also in another split)" : ""))
        lines.append("skipped \(s.skipped)" + (s.skippedByReason.isEmpty ? "" : " (" + s.skippedByReason.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + ")"))
        if s.acceptedWithWarnings > 0 {
            lines.append("accepted with warnings \(s.acceptedWithWarnings) (junk between JPEG markers, outside the pixels; listed in --report)")
        }
        if s.restartMarkersAdded > 0 {
            lines.append("restart markers added to \(s.restartMarkersAdded) JPEG(s) (lossless: same pixels)")
        }
        if !s.newClasses.isEmpty { lines.append("new classes \(s.newClasses.count): \(s.newClasses.joined(separator: ", "))") }
        lines.append(String(format: "read %.1f MB, stored %.1f MB in %.1f s: %.0f images/s, %.1f MB/s",
                            Double(s.bytesRead) / 1e6, Double(s.bytesStored) / 1e6, s.elapsedSeconds, s.imagesPerSecond, s.megabytesPerSecond))
        print(lines.joined(separator: "\n"))
    }
}
