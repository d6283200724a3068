import Dispatch
import Foundation
import ImageCodec
import LMDB
import Parallelism
import Digest
import Pixels

/// What to ingest and how.
public struct IngestOptions: Sendable {
    public var labeled: [String] = []
    public var unlabeled: [String] = []
    public var test: [String] = []
    /// Held-out labeled folders (one subfolder per class) for choosing settings.
    public var validation: [String] = []
    /// Re-encode images whose long side exceeds this as JPEG (nil: store originals).
    public var maxSide: Int?
    public var quality: Int = 90
    /// Rewrite JPEGs losslessly with restart markers that tile their MCU rows, so that
    /// a train view's crop decodes only the entropy-coded data it covers
    /// (`Codec.addingRestartMarkers`). The pixels are unchanged; the bytes are not.
    public var restartMarkers = false
    public var maxPixels: UInt64 = DecodeOptions.defaultMaxPixels
    /// Files per write transaction (and per parallel decode round).
    public var batchSize: Int = 256

    public init() {}
}

/// Why a file was not added: the report's machine-readable category (its raw value
/// is what `--report` and `--json` write).
public enum RefusalCategory: String, Codable, Sendable, CaseIterable {
    case empty, corrupt, unreadable, duplicate, leakage
    case notAnImage = "not_an_image"
    case unsupportedFormat = "unsupported_format"
    case tooLarge = "too_large"
    case symlinkOutside = "symlink_outside"
    case symlinkedFolder = "symlinked_folder"
    case brokenSymlink = "broken_symlink"
    case notInClassFolder = "not_in_class_folder"
    case notARegularFile = "not_a_regular_file"
    /// Not a refusal: the file was added, and the decoder warned of something that
    /// does not touch its pixels (JPEG junk between markers). Status `accepted`.
    case benignWarning = "benign_warning"
}

/// One file that was not added (or was added with a note), as written to `--report`.
public struct IngestReportEntry: Codable, Sendable, Equatable {
    public enum Status: String, Codable, Sendable { case skipped, duplicate, accepted }
    public var path: String
    public var split: Split
    public var status: Status
    public var reason: String
    /// Short machine-readable cause, e.g. `corrupt`, `leakage`.
    public var category: RefusalCategory
}

/// The end-of-ingest summary (schemas/ingest-summary.schema.json).
public struct IngestSummary: Codable, Sendable {
    public var added = 0
    public var addedBySplit: [String: Int] = [:]
    /// Files whose exact bytes were already stored under the same split and source
    /// by an earlier run: what makes re-running an interrupted ingest finish the job.
    public var alreadyStored = 0
    public var duplicates = 0
    public var leakage = 0
    public var skipped = 0
    public var skippedByReason: [String: Int] = [:]
    /// Files added although the decoder warned, of things outside the pixels (each
    /// is in the report with status `accepted` and the warning).
    public var acceptedWithWarnings = 0
    /// JPEGs stored rewritten with restart markers (`--restart-markers`).
    public var restartMarkersAdded = 0
    public var newClasses: [String] = []
    public var bytesRead = 0
    public var bytesStored = 0
    public var elapsedSeconds = 0.0
    public var imagesPerSecond = 0.0
    public var megabytesPerSecond = 0.0

    enum CodingKeys: String, CodingKey {
        case added, addedBySplit = "added_by_split", alreadyStored = "already_stored", duplicates, leakage, skipped
        case skippedByReason = "skipped_by_reason", acceptedWithWarnings = "accepted_with_warnings"
        case restartMarkersAdded = "restart_markers_added", newClasses = "new_classes", bytesRead = "bytes_read"
        case bytesStored = "bytes_stored", elapsedSeconds = "elapsed_seconds", imagesPerSecond = "images_per_second"
        case megabytesPerSecond = "megabytes_per_second"
    }
}

/// Progress of a long ingest, reported after every committed batch.
public struct IngestProgress: Sendable {
    public var done: Int
    public var total: Int
    public var bytesRead: Int
    public var elapsed: Double
}

/// Ingests folders of JPEG and PNG images: validates every file with a full decode
/// in parallel, dedupes by content hash, and commits in large transactions, so an
/// interrupted ingest leaves only whole samples and a re-run adds exactly what is missing.
public final class Ingester {
    let store: Store
    let options: IngestOptions
    public var onProgress: ((IngestProgress) -> Void)?
    /// Called for every file not added, as it happens (for `--report`).
    public var onRefused: ((IngestReportEntry) -> Void)?

    public init(store: Store, options: IngestOptions) {
        self.store = store
        self.options = options
    }

    enum Loaded {
        case refused(RefusalCategory, String)  // category, reason
        case bytes([UInt8], [UInt8])  // file bytes, sha256
    }

    private struct Prepared {
        var record: SampleRecord
        var data: [UInt8]
        /// Why the file was accepted despite a warning, for the report.
        var note: String?
        /// Stored rewritten with restart markers.
        var restarted = false
    }

    private enum Checked {
        case refused(RefusalCategory, String)
        case prepared(Prepared)
    }

    public func run() throws -> IngestSummary {
        let start = DispatchTime.now().uptimeNanoseconds
        let roots = [(options.labeled, Split.labeled), (options.unlabeled, .unlabeled), (options.test, .test),
                     (options.validation, .validation)]
            .flatMap { dirs, split in dirs.map { ($0, split) } }
        // Every folder is checked before anything is written; a first pass counts
        // the files for progress, and the second streams them in batches.
        var classNames: Set<String> = []
        var total = 0
        for (dir, split) in roots {
            total += try FolderScanner.count(dir, split: split)
            if split != .unlabeled { classNames.formUnion(FolderScanner.classFolders(dir)) }
        }
        var summary = IngestSummary()
        let before = try store.classes()
        let classList = try store.registerClasses(classNames)
        summary.newClasses = Array(classList.dropFirst(before.count))
        let classIndex = Dictionary(uniqueKeysWithValues: classList.enumerated().map { ($1, UInt32($0)) })

        var done = 0
        var batch: [ScannedFile] = []
        batch.reserveCapacity(options.batchSize)
        func flush() throws {
            guard !batch.isEmpty else { return }
            try ingestBatch(batch, classIndex: classIndex, summary: &summary)
            done += batch.count
            batch.removeAll(keepingCapacity: true)
            let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            onProgress?(IngestProgress(done: done, total: max(total, done), bytesRead: summary.bytesRead, elapsed: elapsed))
        }
        for (dir, split) in roots {
            try FolderScanner.walk(dir, split: split) { file in
                batch.append(file)
                if batch.count >= options.batchSize { try flush() }
            }
        }
        try flush()
        summary.elapsedSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        if summary.elapsedSeconds > 0 {
            summary.imagesPerSecond = Double(summary.added) / summary.elapsedSeconds
            summary.megabytesPerSecond = Double(summary.bytesRead) / 1e6 / summary.elapsedSeconds
        }
        return summary
    }

    private func refuse(_ file: ScannedFile, _ status: IngestReportEntry.Status, _ category: RefusalCategory, _ reason: String,
                        _ summary: inout IngestSummary) {
        if status == .skipped {
            summary.skipped += 1
            summary.skippedByReason[category.rawValue, default: 0] += 1
        } else {
            summary.duplicates += 1
            if category == .leakage { summary.leakage += 1 }
        }
        onRefused?(IngestReportEntry(path: file.path, split: file.split, status: status, reason: reason, category: category))
    }

    /// A file whose bytes are already kept (stored, or about to be in this batch).
    private func duplicate(_ file: ScannedFile, of original: (what: String, split: Split, source: String),
                           _ summary: inout IngestSummary) {
        if original.split == file.split && original.source == file.source {
            summary.alreadyStored += 1
        } else if original.split != file.split && (original.split.isHeldOut || file.split.isHeldOut) {
            refuse(file, .duplicate, .leakage,
                   "LEAKAGE: \(file.split.rawValue) image identical to \(original.what); kept the first", &summary)
        } else {
            refuse(file, .duplicate, .duplicate, "same content as \(original.what); kept the first", &summary)
        }
    }

    /// Earlier batches are committed before this one's dedupe snapshot, so only
    /// duplicates inside the batch need tracking here: memory stays flat however
    /// large the folder.
    private func ingestBatch(_ batch: [ScannedFile], classIndex: [String: UInt32],
                             summary: inout IngestSummary) throws {
        // 1. Read and hash in parallel.
        let loaded = ConcurrentSlots<Loaded?>(count: batch.count, initial: nil)
        loaded.forEachWorker { i in
            loaded[i] = Self.load(batch[i])
        }
        // 2. Dedupe against the store and this run, in one snapshot.
        var fresh: [(Int, [UInt8], [UInt8])] = []  // index, bytes, hash
        var inBatch: [[UInt8]: ScannedFile] = [:]
        // Copies of a file earlier in this batch wait for its verdict: a copy of a
        // refused file gets the same refusal, not "duplicate, kept the first".
        var copies: [(file: ScannedFile, hash: [UInt8])] = []
        try store.read { txn in
            for (i, file) in batch.enumerated() {
                guard let item = loaded[i] else { continue }
                switch item {
                case .refused(let category, let reason):
                    refuse(file, .skipped, category, reason, &summary)
                case .bytes(let bytes, let hash):
                    summary.bytesRead += bytes.count
                    if inBatch[hash] != nil {
                        copies.append((file, hash))
                        continue
                    }
                    if let id = try store.id(forContentHash: hash, txn), let r = try store.sample(id, txn) {
                        duplicate(file, of: ("\(r.split.rawValue) sample \(id) (\(r.source))", r.split, r.source), &summary)
                        continue
                    }
                    inBatch[hash] = file
                    fresh.append((i, bytes, hash))
                }
            }
        }
        // 3. Validate (full decode) and optionally downsize, in parallel.
        let checked = ConcurrentSlots<Checked?>(count: fresh.count, initial: nil)
        let options = self.options
        let freshItems = fresh
        checked.forEachWorker { j in
            let (i, bytes, hash) = freshItems[j]
            checked[j] = Self.check(batch[i], bytes: bytes, hash: hash, classIndex: classIndex, options: options)
        }
        var prepared: [Prepared] = []
        var preparedFiles: [ScannedFile] = []
        var refusedByHash: [[UInt8]: (category: RefusalCategory, reason: String)] = [:]
        for (j, item) in fresh.enumerated() {
            switch checked[j] {
            case .refused(let category, let reason)?:
                refuse(batch[item.0], .skipped, category, reason, &summary)
                refusedByHash[item.2] = (category, reason)
            case .prepared(let p)?:
                prepared.append(p)
                preparedFiles.append(batch[item.0])
            case nil:
                break
            }
        }
        for (file, hash) in copies {
            guard let prior = inBatch[hash] else { continue }
            if let verdict = refusedByHash[hash] {
                refuse(file, .skipped, verdict.category, "\(verdict.reason) (the same bytes as \(prior.path))", &summary)
            } else {
                duplicate(file, of: ("\(prior.split.rawValue) file \(prior.path)", prior.split, prior.source), &summary)
            }
        }
        guard !prepared.isEmpty else { return }
        // 4. One write transaction for the batch: whole samples or none.
        try store.write { txn in
            var next = try txn.lastKey(store.db.samples).map { $0.withUnsafeBytes { Layout.readU64BE($0) } + 1 } ?? 0
            for p in prepared {
                var r = p.record
                r.id = next
                let key = Layout.idKey(next)
                try txn.put(store.db.samples, key: key, value: r.encoded(), append: true)
                try txn.put(store.db.images, key: key, value: p.data, append: true)
                try txn.put(store.db.hashes, key: r.contentHash, value: key, noOverwrite: true)
                try txn.put(store.db.sources, key: Array(r.source.utf8), value: key)
                var cls = (r.classIndex ?? SampleRecord.noClass).littleEndian
                try txn.put(store.db.splitIndex, key: Layout.splitKey(r.split, next),
                            value: withUnsafeBytes(of: &cls) { Array($0) })
                next += 1
            }
        }
        for (p, file) in zip(prepared, preparedFiles) where p.note != nil {
            summary.acceptedWithWarnings += 1
            onRefused?(IngestReportEntry(path: file.path, split: file.split, status: .accepted, reason: p.note ?? "", category: .benignWarning))
        }
        for p in prepared {
            summary.added += 1
            summary.addedBySplit[p.record.split.rawValue, default: 0] += 1
            summary.bytesStored += p.data.count
            if p.restarted { summary.restartMarkersAdded += 1 }
        }
    }

    static func load(_ file: ScannedFile) -> Loaded {
        if let refusal = file.refusal { return .refused(refusal.category, refusal.reason) }
        switch readFile(file.path) {
        case .failure(let e): return .refused(.unreadable, e.message)
        case .success(let bytes):
            if bytes.isEmpty { return .refused(.empty, "empty file (0 bytes)") }
            return .bytes(bytes, SHA256.hash(bytes))
        }
    }

    private static func check(_ file: ScannedFile, bytes: [UInt8], hash: [UInt8], classIndex: [String: UInt32],
                              options: IngestOptions) -> Checked {
        let header: ImageHeader
        let image: Image
        do {
            let decodeOptions = DecodeOptions(maxPixels: options.maxPixels)
            (header, image) = try Codec.decodeWithHeader(bytes, options: decodeOptions)
        } catch {
            let category: RefusalCategory
            switch error.code {
            case .tooLarge: category = .tooLarge
            case .unsupported: category = .unsupportedFormat
            case .notAnImage: category = .notAnImage
            default: category = .corrupt
            }
            let reason = category == .tooLarge ? error.message + " (the pixel limit)" : error.message
            return .refused(category, reason)
        }
        var data = bytes
        var format = header.format
        var width = image.width, height = image.height
        var reencoded = false
        if let maxSide = options.maxSide, max(width, height) > maxSide {
            let scale = Double(maxSide) / Double(max(width, height))
            let w = max(1, Int((Double(width) * scale).rounded())), h = max(1, Int((Double(height) * scale).rounded()))
            do {
                let small = try Resampler().resize(image, width: w, height: h, filter: .lanczos)
                data = try Codec.encodeJPEG(small, quality: options.quality)
            } catch {
                return .refused(.corrupt, "cannot re-encode to the maximum side: \(error)")
            }
            format = .jpeg
            width = w; height = h
            reencoded = true
        }
        var restarted = false
        if options.restartMarkers && format == .jpeg {
            do {
                if let rewritten = try Codec.addingRestartMarkers(data) {
                    data = rewritten
                    reencoded = true
                    restarted = true
                }
            } catch {
                return .refused(.corrupt, "cannot add restart markers: \(error.message)")
            }
        }
        var cls: UInt32? = nil
        if file.split != .unlabeled {
            guard let name = file.className, let c = classIndex[name] else {
                return .refused(.notInClassFolder, "not inside a class folder")
            }
            cls = c
        }
        let record = SampleRecord(
            id: 0, split: file.split, format: format, channels: image.channels, classIndex: cls,
            width: width, height: height, originalWidth: image.width, originalHeight: image.height,
            originalFormat: header.format, reencoded: reencoded, byteSize: data.count, originalByteSize: bytes.count,
            contentHash: hash, dataHash: reencoded ? SHA256.hash(data) : hash, source: file.source)
        let note = header.benignWarnings > 0
            ? "accepted: JPEG header: \(header.benignWarnings) run(s) of extraneous bytes between markers, outside the image data (libjpeg warns \"Corrupt JPEG data\"; Pillow decodes it too)"
            : nil
        return .prepared(Prepared(record: record, data: data, note: note, restarted: restarted))
    }
}

/// Reads a whole file with plain POSIX calls (no Foundation Data round trip).
func readFile(_ path: String) -> Result<[UInt8], FileReadError> {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return .failure(FileReadError("cannot open: \(String(cString: strerror(errno)))")) }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { return .failure(FileReadError("cannot stat: \(String(cString: strerror(errno)))")) }
    let size = Int(st.st_size)
    var out = [UInt8](repeating: 0, count: size)
    var got = 0
    while got < size {
        let n = out.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, size - got) }
        if n < 0 {
            if errno == EINTR { continue }
            return .failure(FileReadError("cannot read: \(String(cString: strerror(errno)))"))
        }
        if n == 0 { break }
        got += n
    }
    if got < size { out.removeLast(size - got) }
    return .success(out)
}

struct FileReadError: Error { let message: String; init(_ m: String) { message = m } }
