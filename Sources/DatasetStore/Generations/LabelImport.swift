import Foundation
import ImageCodec
import LMDB
import Digest

/// Which generation a new one descends from.
public enum ParentChoice: Sendable, Equatable {
    /// The newest committed generation, if any (the usual chain).
    case latest
    case none
    case generation(Int)
}

/// Predictions to turn into a generation.
public enum PredictionInput: Sendable {
    /// A float32 [N, C] .npy, rows matched by an int64 ids .npy or a list of source paths.
    case npy(predictions: String, ids: String?, sources: String?)
    /// One JSON object per line: {"id": n | "source": "path", "probs": [...] | "logits": [...]}.
    case jsonl(String)
    /// Rows already in memory, with their sample ids (`noisy label`, label sessions).
    case rows(ids: [UInt64], rows: [Float], classCount: Int, origin: PredictionOrigin)
    /// The staged parts of a label job, in part order (`Store.commitLabelJob`).
    case parts(files: [(rows: String, ids: String)], origin: PredictionOrigin)
}

public struct LabelImportRequest: Sendable {
    public var input: PredictionInput
    /// Rows are unnormalised scores: softmax them.
    public var logits: Bool
    public var teacher: TeacherInfo
    public var parent: ParentChoice
    public var precision: LabelPrecision
    /// The generation's number (a shard set's import gives every shard the same); nil: the next.
    var number: Int?
    public init(input: PredictionInput, logits: Bool = false, teacher: TeacherInfo, parent: ParentChoice = .latest,
                precision: LabelPrecision = .f16) {
        self.input = input; self.logits = logits; self.teacher = teacher; self.parent = parent; self.precision = precision
    }
}

/// What `noisy labels import` reports. schemas/labels-import.schema.json
public struct LabelImportSummary: Codable, Sendable {
    public var generation: Int
    public var parent: Int?
    public var samples: Int
    public var classCount: Int
    public var precision: String
    public var bytesStored: Int
    public var bytesPerSample: Double
    public var meanConfidence: Double
    public var elapsedSeconds: Double
    public var samplesPerSecond: Double
    /// Of `elapsedSeconds`, the time spent computing the labels' digest at commit.
    public var digestSeconds: Double
}

/// Rows of predictions, however they arrived.
protocol PredictionRows {
    var count: Int { get }
    var classCount: Int { get }
    func row(_ i: Int) -> UnsafeBufferPointer<Float>
    /// Done with rows [from, to) for now (memory-mapped rows leave the resident set).
    func release(_ from: Int, _ to: Int)
}

struct NPYRows: PredictionRows {
    let file: NPYFile
    var count: Int { file.shape[0] }
    var classCount: Int { file.shape[1] }
    func row(_ i: Int) -> UnsafeBufferPointer<Float> { file.floatRow(i) }
    func release(_ from: Int, _ to: Int) { file.release(rows: from, to) }
}

final class MemoryRows: PredictionRows {
    let values: [Float]
    let classCount: Int
    init(values: [Float], classCount: Int) { self.values = values; self.classCount = classCount }
    var count: Int { classCount == 0 ? 0 : values.count / classCount }
    func row(_ i: Int) -> UnsafeBufferPointer<Float> {
        values.withUnsafeBufferPointer { UnsafeBufferPointer(rebasing: $0[(i * classCount)..<((i + 1) * classCount)]) }
    }
    func release(_ from: Int, _ to: Int) {}
}

extension Store {
    /// Creates the next generation from predictions. Everything is checked before
    /// anything is written; a refused input writes nothing. The labels are written
    /// in batches and become visible in the final transaction that writes the
    /// metadata, so a crash at any point leaves either the whole generation or none
    /// (leftovers are removed by the next labels command).
    public func importLabels(_ request: LabelImportRequest,
                             progress: (_ done: Int, _ total: Int) -> Void = { _, _ in }) throws -> LabelImportSummary {
        let start = Date()
        let classNames = try classes()
        let c = classNames.count
        guard c >= 2 else { throw StoreError(.invalidArgument, "\(path): the store has \(c) classes; labels need at least 2 (ingest a labeled folder first)") }
        if case .topK(let k) = request.precision, k >= c {
            throw StoreError(.invalidArgument, "precision topk:\(k) keeps all \(c) classes; f16 or f32 store them exactly", field: .precision)
        }
        if case .topK = request.precision, c > 65_536 {
            throw StoreError(.invalidArgument, "topk precision supports at most 65,536 classes (the store has \(c))")
        }

        // 1. Read and check the input: shape, ids, values. Nothing is written yet.
        let (rows, ids, origin) = try loadPredictions(request, classCount: c)
        guard rows.classCount == c else {
            throw StoreError(.invalidArgument, "\(origin.path ?? "predictions"): \(rows.classCount) classes per row, the store has \(c)")
        }
        guard rows.count == ids.count else {
            throw StoreError(.invalidArgument, "\(origin.path ?? "predictions"): \(rows.count) rows but \(ids.count) ids")
        }
        guard rows.count > 0 else { throw StoreError(.invalidArgument, "\(origin.path ?? "predictions"): no rows") }
        try checkRows(rows, ids: ids, logits: request.logits, origin: origin)
        let order = try sortedCheckingDuplicates(ids, origin: origin)
        try checkIdsExist(ids, order: order, origin: origin)

        // 2. Resolve the parent.
        let parent: Int?
        switch request.parent {
        case .none: parent = nil
        case .latest: parent = try generations().last?.generation
        case .generation(let p):
            guard try generation(p) != nil else { throw StoreError(.notFound, "\(path): parent generation \(p) does not exist") }
            parent = p
        }

        // 3. Write labels in batches under the new number, then commit the metadata.
        let k = try beginGenerationWrite(command: "labels import", number: request.number)
        do {
            var counts = [Int](repeating: 0, count: c)
            var confidence = [Double](repeating: 0, count: c)
            var probs = [Float](repeating: 0, count: c)
            var value: [UInt8] = []
            let batch = 4096
            var done = 0
            while done < order.count {
                let end = min(order.count, done + batch)
                // Tops of this batch, kept apart so that a retried transaction does not count twice.
                var tops: [(Int, Float)] = []
                try write { txn in
                    tops.removeAll(keepingCapacity: true)
                    for j in done..<end {
                        let row = order[j]
                        Self.distribution(rows.row(row), logits: request.logits, into: &probs)
                        probs.withUnsafeBufferPointer { LabelEncoding.encode($0, precision: request.precision, into: &value) }
                        tops.append(value.withUnsafeBytes { LabelEncoding.top($0) })
                        try txn.put(db.labels, key: GenerationKeys.label(k, ids[row]), value: value, append: true)
                    }
                }
                // Rows are written in id order, which may be any row order: release by rows seen.
                if done % (16 * batch) == 0 { rows.release(0, rows.count) }
                for (top, p) in tops {
                    counts[top] += 1
                    confidence[top] += Double(p)
                }
                done = end
                progress(done, order.count)
            }
            let n = order.count
            let record = GenerationRecord(
                formatVersion: 1, generation: k, parent: parent, created: GenerationJSON.now(), teacher: request.teacher,
                predictions: origin, classCount: c, classesSha256: try classesHash(), samples: n,
                precision: request.precision.description,
                topkResidual: { if case .topK = request.precision { return "spread" } else { return nil } }(),
                bytesStored: n * request.precision.valueSize(classCount: c),
                meanConfidence: confidence.reduce(0, +) / Double(n),
                perClass: (0..<c).map { ClassLabelStats(classIndex: $0, name: classNames[$0], count: counts[$0],
                                                        meanConfidence: counts[$0] > 0 ? confidence[$0] / Double(counts[$0]) : 0) })
            let digestSeconds = try commitGeneration(record)
            let elapsed = Date().timeIntervalSince(start)
            return LabelImportSummary(generation: k, parent: parent, samples: n, classCount: c, precision: record.precision,
                                      bytesStored: record.bytesStored,
                                      bytesPerSample: Double(record.bytesStored) / Double(n), meanConfidence: record.meanConfidence,
                                      elapsedSeconds: elapsed, samplesPerSecond: Double(n) / max(elapsed, 1e-9),
                                      digestSeconds: digestSeconds)
        } catch {
            abandonGenerationWrite()
            throw error
        }
    }

    /// Softmax for logits (max-subtracted, in double), or a plain copy.
    static func distribution(_ row: UnsafeBufferPointer<Float>, logits: Bool, into out: inout [Float]) {
        if !logits {
            for i in 0..<row.count { out[i] = row[i] }
            return
        }
        var m = row[0]
        for v in row where v > m { m = v }
        var sum = 0.0
        for i in 0..<row.count {
            let e = Foundation.exp(Double(row[i] - m))
            out[i] = Float(e)
            sum += e
        }
        for i in 0..<row.count { out[i] = Float(Double(out[i]) / sum) }
    }

    private func loadPredictions(_ r: LabelImportRequest, classCount c: Int) throws -> (any PredictionRows, [UInt64], PredictionOrigin) {
        switch r.input {
        case .npy(let predictions, let idsPath, let sourcesPath):
            let file = try NPYFile(path: predictions)
            guard file.dtype == "<f4" else {
                throw StoreError(.invalidArgument, "\(predictions): predictions must be float32 (the dtype is \(file.dtype)); use arr.astype(np.float32)")
            }
            guard file.shape.count == 2 else {
                throw StoreError(.invalidArgument, "\(predictions): predictions must be 2-D [N, C], the shape is \(file.shape)")
            }
            let hash = SHA256.hash(file.data).hexString
            file.releaseAll()
            let ids: [UInt64]
            let matched: String
            switch (idsPath, sourcesPath) {
            case (let p?, nil):
                ids = try NPYFile(path: p).ids()
                matched = "id"
            case (nil, let p?):
                ids = try idsForSourceList(p)
                matched = "source"
            case (nil, nil):
                throw StoreError(.invalidArgument, "the rows need sample ids or a source list to say which sample each row is", field: .sampleIDs)
            default:
                throw StoreError(.invalidArgument, "sample ids and a source list were both given; one says which sample each row is", field: .sampleIDs)
            }
            return (NPYRows(file: file), ids,
                    PredictionOrigin(kind: "npy", path: predictions, sha256: hash, logits: r.logits, matchedBy: matched,
                                     idsPath: idsPath ?? sourcesPath))
        case .jsonl(let p):
            return try loadJSONL(p, classCount: c, logits: r.logits)
        case .rows(let ids, let values, let cc, let origin):
            return (MemoryRows(values: values, classCount: cc), ids, origin)
        case .parts(let files, let origin):
            let rows = try PartRows(files.map { try NPYFile(path: $0.rows) })
            let ids = try files.flatMap { try NPYFile(path: $0.ids).ids() }
            return (rows, ids, origin)
        }
    }

    private func idsForSourceList(_ listPath: String) throws -> [UInt64] {
        guard let text = try? String(contentsOfFile: listPath, encoding: .utf8) else {
            throw StoreError(.io, "\(listPath): cannot read the source list")
        }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let sources = lines.last == "" ? Array(lines.dropLast()) : lines
        return try read { txn in
            try sources.enumerated().map { (i, s) -> UInt64 in
                let found = try ids(forSource: s, txn)
                guard let first = found.first else {
                    throw StoreError(.notFound, "\(listPath): line \(i + 1): no sample has source '\(s)'")
                }
                guard found.count == 1 else {
                    throw StoreError(.invalidArgument, "\(listPath): line \(i + 1): source '\(s)' matches samples \(found.map(String.init).joined(separator: ", ")); match the rows by sample id instead", field: .sampleIDs)
                }
                return first
            }
        }
    }

    private func loadJSONL(_ p: String, classCount c: Int, logits: Bool) throws -> (any PredictionRows, [UInt64], PredictionOrigin) {
        guard let data = FileManager.default.contents(atPath: p) else { throw StoreError(.io, "\(p): cannot read") }
        let parsed = try read { txn in
            try JSONLPredictions.parse(data, path: p, classCount: c, logits: logits) { try self.ids(forSource: $0, txn) }
        }
        let hash = SHA256.hash([UInt8](data)).hexString
        return (MemoryRows(values: parsed.values, classCount: c), parsed.ids,
                PredictionOrigin(kind: "jsonl", path: p, sha256: hash, logits: logits, matchedBy: "id"))
    }

    func checkRows(_ rows: any PredictionRows, ids: [UInt64], logits: Bool, origin: PredictionOrigin) throws {
        let name = origin.path ?? "predictions"
        for i in 0..<rows.count {
            if i % 16_384 == 0 && i > 0 { rows.release(i - 16_384, i) }
            let r = rows.row(i)
            var sum = 0.0
            for (j, v) in r.enumerated() {
                guard v.isFinite else {
                    throw StoreError(.invalidArgument, "\(name): row \(i) (sample \(ids[i])), class \(j): \(v) is not a finite number")
                }
                if !logits && v < 0 {
                    throw StoreError(.invalidArgument, "\(name): row \(i) (sample \(ids[i])), class \(j): negative probability \(v) (scores must be imported as logits)", field: .logits)
                }
                sum += Double(v)
            }
            if !logits && abs(sum - 1) > 1e-3 {
                throw StoreError(.invalidArgument, "\(name): row \(i) (sample \(ids[i])) sums to \(String(format: "%.4f", sum)), not 1 (unnormalised scores must be imported as logits)", field: .logits)
            }
        }
    }

    /// Row order sorted by id; a repeated id is an error naming both rows.
    private func sortedCheckingDuplicates(_ ids: [UInt64], origin: PredictionOrigin) throws -> [Int] {
        let order = ids.indices.sorted { ids[$0] < ids[$1] }
        for j in 1..<max(1, order.count) where ids[order[j]] == ids[order[j - 1]] {
            throw StoreError(.invalidArgument, "\(origin.idsPath ?? origin.path ?? "predictions"): sample \(ids[order[j]]) appears twice (rows \(min(order[j], order[j - 1])) and \(max(order[j], order[j - 1])))")
        }
        return order
    }

    private func checkIdsExist(_ ids: [UInt64], order: [Int], origin: PredictionOrigin) throws {
        try read { txn in
            var missing: [UInt64] = []
            for j in order {
                let present = try txn.withValue(db.samples, key: Layout.idKey(ids[j])) { $0 != nil }
                if !present { missing.append(ids[j]) }
            }
            if !missing.isEmpty {
                throw StoreError(.notFound, "\(origin.idsPath ?? origin.path ?? "predictions"): \(missing.count) unknown sample id(s), first \(missing.prefix(5).map(String.init).joined(separator: ", "))")
            }
        }
    }
}

/// JSON Lines predictions: one object per line with "id" (or "source") and
/// "probs" (or "logits" when importing logits). Pure parsing, so that it can be fuzzed.
public enum JSONLPredictions {
    /// Returns the ids and the row-major values; `idsForSource` resolves "source" keys.
    public static func parse(_ data: Data, path p: String, classCount c: Int, logits: Bool,
                             idsForSource: (String) throws -> [UInt64]) throws -> (ids: [UInt64], values: [Float]) {
        var ids: [UInt64] = []
        var values: [Float] = []
        var lineNumber = 0
        for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            if line.allSatisfy({ $0 == 32 || $0 == 13 || $0 == 9 }) { continue }
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
                throw StoreError(.invalidArgument, "\(p): line \(lineNumber): not a JSON object")
            }
            if let id = obj["id"] as? Int, id >= 0 {
                ids.append(UInt64(id))
            } else if let s = obj["source"] as? String {
                let found = try idsForSource(s)
                guard found.count == 1 else {
                    throw StoreError(found.isEmpty ? .notFound : .invalidArgument,
                                     "\(p): line \(lineNumber): source '\(s)' matches \(found.count) samples")
                }
                ids.append(found[0])
            } else {
                throw StoreError(.invalidArgument, "\(p): line \(lineNumber): needs \"id\" (a non-negative integer) or \"source\"")
            }
            let key = logits ? "logits" : "probs"
            guard let row = obj[key] as? [Any] else {
                throw StoreError(.invalidArgument, "\(p): line \(lineNumber): needs \"\(key)\" (an array of \(c) numbers)" + (logits ? "" : "; scores must be imported as logits"), field: logits ? nil : .logits)
            }
            guard row.count == c else {
                throw StoreError(.invalidArgument, "\(p): line \(lineNumber): \(row.count) values, the store has \(c) classes")
            }
            for v in row {
                guard let n = v as? NSNumber, !(v is Bool) else {
                    throw StoreError(.invalidArgument, "\(p): line \(lineNumber): \"\(key)\" holds a value that is not a number")
                }
                values.append(n.floatValue)
            }
        }
        return (ids, values)
    }
}
