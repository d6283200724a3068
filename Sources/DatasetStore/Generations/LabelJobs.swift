import Digest
import Foundation

/// What a label job is: one teacher over one split, cut into `parts` parts. Part i of
/// W is the samples at positions i, i+W, i+2W, ... of the split in id order. Every
/// part must be made with the same settings; the first part submitted fixes them.
public struct LabelJobRequest: Sendable {
    public var job: String
    public var split: Split
    public var parts: Int
    public var teacher: TeacherInfo
    public var logits: Bool
    public var precision: LabelPrecision
    public var parent: ParentChoice

    public init(job: String, split: Split = .unlabeled, parts: Int, teacher: TeacherInfo, logits: Bool = false,
                precision: LabelPrecision = .f16, parent: ParentChoice = .latest) {
        self.job = job; self.split = split; self.parts = parts; self.teacher = teacher; self.logits = logits
        self.precision = precision; self.parent = parent
    }
}

/// `jobs/NAME/job.json`: the settings every part of a job shares. schemas/label-jobs.schema.json
public struct LabelJobSpec: Codable, Sendable, Equatable {
    public var job: String
    public var split: String
    public var parts: Int
    /// Samples in the split when the job began, and SHA-256 of their ids (u64 little-endian,
    /// in id order): a part made over another sample set is refused.
    public var samples: Int
    public var samplesSha256: String
    public var classesSha256: String
    public var teacher: TeacherInfo
    public var logits: Bool
    public var precision: String
    /// "latest", "none" or a generation number, resolved at commit.
    public var parent: String
    public var created: String

    /// The settings in which two submissions of one job may not differ, with their values.
    func fields() -> [(String, String)] {
        [("split", split), ("parts", "\(parts)"), ("samples", "\(samples) (ids \(samplesSha256.prefix(12)))"),
         ("classes", String(classesSha256.prefix(12))), ("teacher", teacher.description), ("model", teacher.model ?? "-"),
         ("checkpoint SHA-256", teacher.checkpointSha256.map { String($0.prefix(12)) } ?? "-"),
         ("logits", "\(logits)"), ("precision", precision), ("parent", parent)]
    }
}

/// One staged part: `jobs/NAME/part-IIIII/part.json` beside `rows.npy` and `ids.npy`.
public struct LabelPartRecord: Codable, Sendable, Equatable {
    public var part: Int
    public var parts: Int
    public var samples: Int
    /// Who submitted it: host, process id and the worker's own words (`--worker`).
    public var by: String
    public var at: String
    public var rowsSha256: String
}

/// What submitting a part did.
public struct LabelPartReceipt: Sendable {
    public enum Outcome: Sendable, Equatable {
        case stored
        /// The part was there already; the first copy is kept, this one dropped.
        case alreadySubmitted(by: String, at: String)
    }
    public var job: String
    public var part: Int
    public var parts: Int
    public var samples: Int
    public var outcome: Outcome
    /// Parts still missing after this one.
    public var missing: [Int]
    /// Set when this submission completed the job and it is committed (by this call or another).
    public var committed: LabelJobCommit?
}

/// What committing a job did: the generation, and the import's summary when this
/// call made it (nil: it was made before).
public struct LabelJobCommit: Sendable {
    public var generation: Int
    /// The store's import summary when this call made it (nil: made before, or over a shard set).
    public var summary: LabelImportSummary?
    /// True when this call made the generation.
    public var created: Bool

    public init(generation: Int, summary: LabelImportSummary?, created: Bool? = nil) {
        self.generation = generation; self.summary = summary; self.created = created ?? (summary != nil)
    }
}

/// A job as `noisy labels jobs` lists it. schemas/label-jobs.schema.json
public struct LabelJobStatus: Codable, Sendable {
    public var spec: LabelJobSpec
    public var done: [LabelPartRecord]
    public var missing: [Int]
    /// Set when the generation exists and only the job's folder is left to clear.
    public var committedGeneration: Int?
}

/// Label jobs: a generation made by many workers, each submitting one part.
///
/// Parts are staged beside the LMDB file, in `STORE/jobs/NAME/` (schemas/store-layout.md),
/// because they come from many processes and machines at once and must not contend for
/// LMDB's single writer while the teacher runs. Each part is written into a private
/// temporary folder and renamed into place: it is there in full or not at all, and of
/// two workers submitting the same part at once exactly one rename succeeds. The
/// generation is made by one ordinary import of all the parts (`PredictionInput.parts`),
/// so it holds exactly the bytes one import of the same predictions would, whatever
/// the number of parts, and becomes visible in that import's one commit. The job's name
/// is recorded in the generation, which is how a commit interrupted after it knows
/// that it is done.
extension Store {
    var jobsFolder: String { path + "/jobs" }

    static func checkJobName(_ name: String) throws {
        let ok = !name.isEmpty && name.utf8.count <= 100 && !name.hasPrefix(".")
            && name.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) || "._-".unicodeScalars.contains($0) }
        guard ok else {
            throw StoreError(.invalidArgument, "job name '\(name)': use 1-100 letters, digits, '.', '_' or '-', not starting with '.'")
        }
    }

    /// The ids of part `part` of `parts` of a split: positions part, part + parts, ... in id order.
    public func labelPartIDs(split: Split, part: Int, parts: Int) throws -> [UInt64] {
        guard parts >= 1 else { throw StoreError(.invalidArgument, "--parts must be at least 1 (got \(parts))") }
        guard (0..<parts).contains(part) else { throw StoreError(.invalidArgument, "part \(part) is not in 0..<\(parts)") }
        let all = try index(of: split).map(\.id)
        return stride(from: part, to: all.count, by: parts).map { all[$0] }
    }

    /// The settings a request makes, with the store's classes and the split's samples.
    func jobSpec(_ r: LabelJobRequest) throws -> LabelJobSpec {
        try Self.checkJobName(r.job)
        guard r.parts >= 1 else { throw StoreError(.invalidArgument, "--parts must be at least 1 (got \(r.parts))") }
        let ids = try index(of: r.split).map(\.id)
        guard !ids.isEmpty else { throw StoreError(.invalidArgument, "\(path): the \(r.split.rawValue) split is empty") }
        let idBytes = ids.withUnsafeBufferPointer { b in b.flatMap { withUnsafeBytes(of: $0.littleEndian) { Array($0) } } }
        let parent: String = switch r.parent { case .latest: "latest"; case .none: "none"; case .generation(let k): "\(k)" }
        return LabelJobSpec(job: r.job, split: r.split.rawValue, parts: r.parts, samples: ids.count,
                            samplesSha256: SHA256.hash(idBytes).hexString, classesSha256: try classesHash(), teacher: r.teacher,
                            logits: r.logits, precision: r.precision.description, parent: parent, created: GenerationJSON.now())
    }

    /// The generation a job was committed as, if any (its name is in the record).
    func generationOfJob(_ name: String) throws -> Int? {
        try generations().first { $0.predictions.kind == "job" && $0.predictions.job == name }?.generation
    }

    /// Creates the job's folder and settings, or checks a submission against them.
    private func ensureJob(_ spec: LabelJobSpec) throws -> String {
        if let k = try generationOfJob(spec.job) {
            throw StoreError(.conflict, "job \(spec.job) was committed as generation \(k); a job name is used once (pick another)")
        }
        let folder = jobsFolder + "/" + spec.job
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw StoreError(.io, "\(folder): cannot create the job folder: \(error.localizedDescription)")
        }
        let file = folder + "/job.json"
        if !FileManager.default.fileExists(atPath: file) {
            // Written aside and linked into place: link fails if another worker was first.
            let temp = folder + "/.job.\(getpid()).\(UInt64.random(in: 0...UInt64.max))"
            var w = try TextWriter(path: temp)
            try w.write(Array(try GenerationJSON.encoder.encode(spec)))
            _ = try w.finish()
            let linked = link(temp, file) == 0
            let e = errno
            unlink(temp)
            if !linked && e != EEXIST {
                throw StoreError(.io, "\(file): cannot write the job's settings: \(String(cString: strerror(e)))")
            }
        }
        let existing = try readJobSpec(folder)
        let mismatches = zip(existing.fields(), spec.fields()).filter { $0.0.1 != $0.1.1 }
        if !mismatches.isEmpty {
            let what = mismatches.map { "\($0.0.0) \($0.1.1) (the job has \($0.0.1))" }.joined(separator: ", ")
            throw StoreError(.conflict, "job \(spec.job) exists with other settings: this part has \(what)")
        }
        return folder
    }

    func readJobSpec(_ folder: String) throws -> LabelJobSpec {
        let file = folder + "/job.json"
        guard let data = FileManager.default.contents(atPath: file) else { throw StoreError(.notFound, "\(file): no such job") }
        do { return try GenerationJSON.decoder.decode(LabelJobSpec.self, from: data) } catch {
            throw StoreError(.corrupt, "\(file): not a job's settings: \(error)")
        }
    }

    static func partName(_ i: Int) -> String { String(format: "part-%05d", i) }

    /// The parts present in a job folder, with their records.
    func stagedParts(_ folder: String, parts: Int) -> [LabelPartRecord] {
        (0..<parts).compactMap { i in
            FileManager.default.contents(atPath: "\(folder)/\(Self.partName(i))/part.json")
                .flatMap { try? GenerationJSON.decoder.decode(LabelPartRecord.self, from: $0) }
        }
    }

    /// Submits part `part` of a job from a predictions .npy (float32 [n, C]) and an ids
    /// .npy (int64 [n]) holding exactly the part's samples, in any order.
    public func submitLabelPart(_ request: LabelJobRequest, part: Int, predictions: String, ids idsPath: String,
                                worker: String? = nil, commit: Bool = true) throws -> LabelPartReceipt {
        let spec = try jobSpec(request)
        let rowsFile = try NPYFile(path: predictions)
        guard rowsFile.dtype == "<f4" else {
            throw StoreError(.invalidArgument, "\(predictions): predictions must be float32 (the dtype is \(rowsFile.dtype)); use arr.astype(np.float32)")
        }
        guard rowsFile.shape.count == 2 else {
            throw StoreError(.invalidArgument, "\(predictions): predictions must be 2-D [N, C], the shape is \(rowsFile.shape)")
        }
        let ids = try NPYFile(path: idsPath).ids()
        return try submit(spec, request: request, part: part, rows: NPYRows(file: rowsFile), ids: ids, origin: predictions,
                          worker: worker, commit: commit) { out in
            var w = try NPYWriter(path: out, dtype: "<f4", shape: rowsFile.shape)
            let data = rowsFile.data
            var at = 0
            while at < data.count {
                let end = min(data.count, at + (8 << 20))
                try w.write(Array(UnsafeRawBufferPointer(rebasing: data[at..<end])))
                at = end
            }
            return try w.finish().sha256
        }
    }

    /// Submits a part from rows in memory (`noisy label --job`, label sessions).
    public func submitLabelPart(_ request: LabelJobRequest, part: Int, ids: [UInt64], rows: [Float], classCount: Int,
                                worker: String? = nil, commit: Bool = true) throws -> LabelPartReceipt {
        let spec = try jobSpec(request)
        guard classCount > 0, rows.count == ids.count * classCount else {
            throw StoreError(.invalidArgument, "part \(part): \(rows.count) values for \(ids.count) samples of \(classCount) classes")
        }
        let memory = MemoryRows(values: rows, classCount: classCount)
        return try submit(spec, request: request, part: part, rows: memory, ids: ids, origin: "part \(part)",
                          worker: worker, commit: commit) { out in
            var w = try NPYWriter(path: out, dtype: "<f4", shape: [ids.count, classCount])
            try w.write(rows.withUnsafeBytes { Array($0) })
            return try w.finish().sha256
        }
    }

    private func submit(_ spec: LabelJobSpec, request: LabelJobRequest, part: Int, rows: any PredictionRows, ids: [UInt64],
                        origin: String, worker: String?, commit: Bool,
                        writeRows: (String) throws -> String) throws -> LabelPartReceipt {
        guard (0..<spec.parts).contains(part) else { throw StoreError(.invalidArgument, "part \(part) is not in 0..<\(spec.parts)") }
        let folder = jobsFolder + "/" + spec.job
        let final = folder + "/" + Self.partName(part)
        func already() throws -> LabelPartReceipt {
            let first = FileManager.default.contents(atPath: final + "/part.json")
                .flatMap { try? GenerationJSON.decoder.decode(LabelPartRecord.self, from: $0) }
            return LabelPartReceipt(job: spec.job, part: part, parts: spec.parts, samples: first?.samples ?? 0,
                                    outcome: .alreadySubmitted(by: first?.by ?? "?", at: first?.at ?? "?"),
                                    missing: missingParts(folder, parts: spec.parts), committed: nil)
        }
        // An existing job's settings first: a part made for another W or teacher is told so.
        var settled = false
        if FileManager.default.fileExists(atPath: folder + "/job.json") { _ = try ensureJob(spec); settled = true }
        if FileManager.default.fileExists(atPath: final) { return try already() }

        // Check everything before writing: shape, classes, the part's exact share, values.
        let c = try classes().count
        guard rows.classCount == c else {
            throw StoreError(.invalidArgument, "\(origin): \(rows.classCount) classes per row, the store has \(c)")
        }
        guard rows.count == ids.count else { throw StoreError(.invalidArgument, "\(origin): \(rows.count) rows but \(ids.count) ids") }
        let share = try labelPartIDs(split: request.split, part: part, parts: spec.parts)
        let given = ids.sorted()
        for j in 1..<max(1, given.count) where given[j] == given[j - 1] {
            throw StoreError(.invalidArgument, "\(origin): sample \(given[j]) appears twice")
        }
        if given != share {
            let mine = Set(share)
            if let stray = ids.first(where: { !mine.contains($0) }) {
                throw StoreError(.invalidArgument, "\(origin): sample \(stray) is not in part \(part) of \(spec.parts) of the \(spec.split) split "
                                 + "(write the part's ids with: noisy labels jobs --job \(spec.job) --part \(part) --parts \(spec.parts) --ids-out ids.npy)")
            }
            let have = Set(ids)
            let lacking = share.filter { !have.contains($0) }
            throw StoreError(.invalidArgument, "\(origin): part \(part) of \(spec.parts) has \(share.count) samples; "
                             + "\(lacking.count) are missing, first \(lacking.prefix(5).map(String.init).joined(separator: ", "))")
        }
        try checkRows(rows, ids: ids, logits: spec.logits,
                      origin: PredictionOrigin(kind: "job", path: origin, logits: spec.logits, matchedBy: "id"))

        // The input holds; now the job (created by the first valid part, or checked).
        if !settled { _ = try ensureJob(spec) }
        // Stage privately, then rename into place: the part is whole or absent.
        let temp = folder + "/.\(Self.partName(part)).\(getpid()).\(UInt64.random(in: 0...UInt64.max))"
        do {
            try FileManager.default.createDirectory(atPath: temp, withIntermediateDirectories: false)
        } catch {
            throw StoreError(.io, "\(temp): cannot create: \(error.localizedDescription)")
        }
        defer { try? FileManager.default.removeItem(atPath: temp) }
        let sha = try writeRows(temp + "/rows.npy")
        var idw = try NPYWriter(path: temp + "/ids.npy", dtype: "<i8", shape: [ids.count])
        try idw.write(ids.map { Int64(bitPattern: $0).littleEndian })
        _ = try idw.finish()
        var host = [UInt8](repeating: 0, count: 256)
        host.withUnsafeMutableBufferPointer { b in b.baseAddress.map { _ = gethostname($0, b.count - 1) } }
        let hostname = String(decoding: host.prefix { $0 != 0 }, as: UTF8.self)
        let by = "\(hostname) pid \(getpid())" + (worker.map { " (\($0))" } ?? "")
        let record = LabelPartRecord(part: part, parts: spec.parts, samples: ids.count, by: by, at: GenerationJSON.now(), rowsSha256: sha)
        var w = try TextWriter(path: temp + "/part.json")
        try w.write(Array(try GenerationJSON.encoder.encode(record)))
        _ = try w.finish()
        if rename(temp, final) != 0 {
            let e = errno
            if e == EEXIST || e == ENOTEMPTY { return try already() }
            throw StoreError(.io, "\(final): cannot put the part in place: \(String(cString: strerror(e)))")
        }
        syncFolder(folder)
        let missing = missingParts(folder, parts: spec.parts)
        var receipt = LabelPartReceipt(job: spec.job, part: part, parts: spec.parts, samples: ids.count, outcome: .stored,
                                       missing: missing, committed: nil)
        if commit && missing.isEmpty {
            do { receipt.committed = try commitLabelJob(spec.job) } catch {
                let e = StoreError.wrapping(error, store: path)
                throw StoreError(e.kind, "job \(spec.job): part \(part) is stored and every part is in, but the commit failed: "
                                 + "\(e.message); commit with: noisy labels commit --job \(spec.job)")
            }
        }
        return receipt
    }

    func missingParts(_ folder: String, parts: Int) -> [Int] {
        (0..<parts).filter { !FileManager.default.fileExists(atPath: "\(folder)/\(Self.partName($0))/part.json") }
    }

    /// fsync on a folder, so that a rename in it survives a crash.
    private func syncFolder(_ folder: String) {
        let fd = open(folder, O_RDONLY | O_DIRECTORY)
        if fd >= 0 { fsync(fd); close(fd) }
    }

    /// Makes the job's generation from its parts, in one import. Idempotent: a job
    /// already committed (even by a commit killed before it cleared the folder) returns
    /// its generation with no summary and creates nothing. Commits of one job are
    /// serialised by a lock on its folder.
    @discardableResult
    public func commitLabelJob(_ name: String, progress: (Int, Int) -> Void = { _, _ in }) throws -> LabelJobCommit {
        try Self.checkJobName(name)
        let folder = jobsFolder + "/" + name
        if let k = try generationOfJob(name) {
            if FileManager.default.fileExists(atPath: folder) { try? removeJobFolder(folder) }
            return LabelJobCommit(generation: k, summary: nil)
        }
        guard FileManager.default.fileExists(atPath: folder + "/job.json") else {
            throw StoreError(.notFound, "\(path): no label job named \(name) (noisy labels jobs lists them)")
        }
        let lock = try FolderLock(folder)
        defer { lock.release() }
        // Another committer may have finished while we waited for the lock.
        if let k = try generationOfJob(name) { return LabelJobCommit(generation: k, summary: nil) }
        let spec = try readJobSpec(folder)
        let missing = missingParts(folder, parts: spec.parts)
        guard missing.isEmpty else {
            throw StoreError(.invalidArgument, "job \(name): \(missing.count) of \(spec.parts) parts missing: "
                             + missing.prefix(20).map(String.init).joined(separator: ", ") + (missing.count > 20 ? ", ..." : ""))
        }
        guard spec.classesSha256 == (try classesHash()) else {
            throw StoreError(.conflict, "job \(name): the store's classes changed since the job began")
        }
        let parent: ParentChoice = switch spec.parent {
        case "latest": .latest
        case "none": .none
        default: Int(spec.parent).map { .generation($0) } ?? .latest
        }
        let files = (0..<spec.parts).map { i in
            (rows: "\(folder)/\(Self.partName(i))/rows.npy", ids: "\(folder)/\(Self.partName(i))/ids.npy")
        }
        let summary = try importLabels(LabelImportRequest(
            input: .parts(files: files, origin: PredictionOrigin(kind: "job", logits: spec.logits, matchedBy: "id",
                                                                 job: name, parts: spec.parts)),
            logits: spec.logits, teacher: spec.teacher, parent: parent,
            precision: LabelPrecision(spec.precision) ?? .f16), progress: progress)
        try? removeJobFolder(folder)
        return LabelJobCommit(generation: summary.generation, summary: summary)
    }

    /// Removes a job's staged parts and settings, and nothing else. Returns the parts removed.
    @discardableResult
    public func abandonLabelJob(_ name: String) throws -> Int {
        try Self.checkJobName(name)
        let folder = jobsFolder + "/" + name
        guard FileManager.default.fileExists(atPath: folder) else {
            throw StoreError(.notFound, "\(path): no label job named \(name) (noisy labels jobs lists them)")
        }
        let parts = (try? readJobSpec(folder)).map { stagedParts(folder, parts: $0.parts).count } ?? 0
        try removeJobFolder(folder)
        return parts
    }

    /// Renames the folder aside first, so that no reader sees a half-removed job.
    func removeJobFolder(_ folder: String) throws {
        let aside = jobsFolder + "/.removed.\(getpid()).\(UInt64.random(in: 0...UInt64.max))"
        guard rename(folder, aside) == 0 else {
            throw StoreError(.io, "\(folder): cannot remove: \(String(cString: strerror(errno)))")
        }
        try? FileManager.default.removeItem(atPath: aside)
    }

    /// Every open job: its settings, the parts done (by whom, when) and those missing.
    public func labelJobs() throws -> [LabelJobStatus] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: jobsFolder)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
        return try names.compactMap { name in
            let folder = jobsFolder + "/" + name
            guard let spec = try? readJobSpec(folder) else { return nil }
            return LabelJobStatus(spec: spec, done: stagedParts(folder, parts: spec.parts),
                                  missing: missingParts(folder, parts: spec.parts), committedGeneration: try generationOfJob(name))
        }
    }
}

/// The rows of several part files, one after another.
struct PartRows: PredictionRows {
    let files: [NPYFile]
    /// starts[i]: the first row of file i.
    let starts: [Int]
    let count: Int
    let classCount: Int

    init(_ files: [NPYFile]) throws {
        guard let first = files.first else { throw StoreError(.invalidArgument, "a job without parts") }
        for f in files {
            guard f.dtype == "<f4", f.shape.count == 2, f.shape[1] == first.shape[1] else {
                throw StoreError(.corrupt, "\(f.path): a staged part that is not float32 [n, \(first.shape[1])]")
            }
        }
        self.files = files
        var s: [Int] = [], n = 0
        for f in files { s.append(n); n += f.shape[0] }
        starts = s; count = n; classCount = first.shape[1]
    }

    private func locate(_ i: Int) -> (Int, Int) {
        var lo = 0, hi = starts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if starts[mid] <= i { lo = mid } else { hi = mid - 1 }
        }
        return (lo, i - starts[lo])
    }

    func row(_ i: Int) -> UnsafeBufferPointer<Float> {
        let (f, r) = locate(i)
        return files[f].floatRow(r)
    }

    func release(_ from: Int, _ to: Int) {
        for (k, f) in files.enumerated() {
            let lo = max(from - starts[k], 0), hi = min(to - starts[k], f.shape[0])
            if hi > lo { f.release(rows: lo, hi) }
        }
    }
}
