import Digest
import Foundation
import LMDB

/// `manifest.json` of a shard set (schemas/shard-manifest.schema.json): which stores make
/// the set, what each holds, and a checksum over all of it.
public struct ShardManifest: Codable, Sendable, Equatable {
    public struct Shard: Codable, Sendable, Equatable {
        public var index: Int
        /// Relative to the manifest's folder.
        public var path: String
        /// The shard store's creation time (copies keep it): a store put in a shard's place is refused.
        public var createdAt: String
        public var samples: Int
        public var splits: [String: Int]
        /// SHA-256 of the shard's sample ids (u64 little-endian, id order).
        public var idsSha256: String
    }
    public struct Generation: Codable, Sendable, Equatable {
        public var generation: Int
        public var samples: Int
        /// Each shard's labels digest, in shard order (the generation record's `labels_sha256` there).
        public var labelsSha256: [String]
        /// Each shard's labelled samples, in shard order.
        public var labels: [Int]
        /// Per selection, each shard's entries (copies counted), in shard order.
        public var selectionEntries: [String: [Int]]
    }

    public var format = "noisy-shard-set"
    public var formatVersion = 1
    public var created: String
    /// The store the set was cut from: its path then and its creation time.
    public var sourcePath: String
    public var sourceCreatedAt: String
    /// How samples were dealt: each split's samples sorted by content SHA-256, then
    /// to shards 0, 1, ..., N-1, 0, 1, ... in turn.
    public var assignment = "content-sha256-round-robin"
    public var classes: [String]
    public var samples: Int
    public var shards: [Shard]
    public var generations: [Generation]
    /// SHA-256 (hex) of this manifest's JSON with `sha256` left out (sorted keys).
    public var sha256: String?

    static let fileName = "manifest.json"

    func checksum() throws -> String {
        var bare = self
        bare.sha256 = nil
        return SHA256.hash(Array(try GenerationJSON.encoder.encode(bare))).hexString
    }

    /// Reads and checks a manifest (a file, or a folder holding `manifest.json`).
    public static func read(_ path: String) throws -> (manifest: ShardManifest, folder: String) {
        let folder = folder(of: path)
        let file = folder == path ? path + "/" + fileName : path
        guard let data = FileManager.default.contents(atPath: file) else { throw StoreError(.notFound, "\(file): no shard manifest there") }
        let m: ShardManifest
        do { m = try GenerationJSON.decoder.decode(ShardManifest.self, from: data) } catch {
            throw StoreError(.corrupt, "\(file): not a shard manifest: \(error)")
        }
        guard m.format == "noisy-shard-set", m.formatVersion == 1 else {
            throw StoreError(.incompatible, "\(file): a \(m.format) manifest of version \(m.formatVersion) (this noisy reads noisy-shard-set 1)")
        }
        guard let stated = m.sha256, stated == (try m.checksum()) else {
            throw StoreError(.corrupt, "\(file): the manifest does not match its checksum (edited or damaged); re-create it with noisy shard")
        }
        return (m, folder)
    }

    /// Opens every shard, checking that each is there and is the store the manifest names.
    /// A missing or substituted shard is named, and nothing is opened.
    public func openShards(folder: String, readOnly: Bool = true) throws -> [Store] {
        let missing = shards.filter { !FileManager.default.fileExists(atPath: folder + "/" + $0.path + "/data.mdb") }
        if let first = missing.first {
            throw StoreError(.notFound, "shard \(first.index) of \(shards.count) (\(folder)/\(first.path)) is missing"
                             + (missing.count > 1 ? ", and \(missing.count - 1) more" : "") + "; the set is not whole")
        }
        return try shards.map { s in
            let store = try Store(path: folder + "/" + s.path, readOnly: readOnly)
            guard try store.createdAt() == s.createdAt else {
                throw StoreError(.conflict, "\(folder)/\(s.path): not shard \(s.index) of this set (created \(try store.createdAt()), the manifest says \(s.createdAt))")
            }
            return store
        }
    }
}

extension Store {
    /// The shard each sample goes to: each split's samples sorted by content SHA-256,
    /// dealt in turn, so every shard's share of every split differs by at most one and
    /// depends only on the content.
    func shardAssignment(count: Int) throws -> [UInt64: Int] {
        var bySplit: [Split: [([UInt8], UInt64)]] = [:]
        try read { txn in
            try txn.scan(db.samples) { k, v in
                guard let r = SampleRecord(id: Layout.readU64BE(k), bytes: v) else {
                    throw StoreError(.corrupt, "\(path): sample \(Layout.readU64BE(k)): unreadable record; run noisy verify --store \(path)")
                }
                bySplit[r.split, default: []].append((r.contentHash, r.id))
                return true
            }
        }
        var out: [UInt64: Int] = [:]
        for (_, list) in bySplit {
            let sorted = list.sorted { $0.0.lexicographicallyPrecedes($1.0) || ($0.0 == $1.0 && $0.1 < $1.1) }
            for (i, s) in sorted.enumerated() { out[s.1] = i % count }
        }
        return out
    }

    /// Writes one sample with its index entries (hash, source, split), under its own id.
    func putSample(_ txn: WriteTransaction, _ record: SampleRecord, recordBytes: [UInt8], image: [UInt8]) throws {
        let key = Layout.idKey(record.id)
        try txn.put(db.samples, key: key, value: recordBytes)
        try txn.put(db.images, key: key, value: image)
        try txn.put(db.hashes, key: record.contentHash, value: key)
        try txn.put(db.sources, key: Array(record.source.utf8), value: key)
        try txn.put(db.splitIndex, key: Layout.splitKey(record.split, record.id),
                     value: withUnsafeBytes(of: (record.classIndex ?? SampleRecord.noClass).littleEndian) { Array($0) })
    }

    /// Splits this store into `count` shard stores in `out` (new or empty) and writes
    /// `out/manifest.json`. Samples keep their ids; classes, generations (each shard
    /// holds its samples' labels, under a digest of its own), selections (their entries
    /// on that shard) and tags carry over. The manifest is written last: a set without
    /// one is unfinished, and `noisy shard` into an empty folder starts over.
    public func shard(into out: String, count: Int, progress: (String, Int, Int) -> Void = { _, _, _ in }) throws -> ShardManifest {
        guard (1...4096).contains(count) else { throw StoreError(.invalidArgument, "--shards must be 1 to 4,096 (got \(count))") }
        let fm = FileManager.default
        if let contents = try? fm.contentsOfDirectory(atPath: out), !contents.isEmpty {
            throw StoreError(.invalidArgument, "\(out): not empty; shard writes a new set into a new or empty folder")
        }
        do { try fm.createDirectory(atPath: out, withIntermediateDirectories: true) } catch {
            throw StoreError(.io, "\(out): cannot create: \(error.localizedDescription)")
        }
        let names = (0..<count).map { String(format: "shard-%05d-of-%05d.noisy", $0, count) }
        let shards = try names.map { try Store.openOrCreate(path: out + "/" + $0) }
        let classNames = try classes()
        for s in shards {
            try s.write { txn in
                for (i, name) in classNames.enumerated() { try txn.put(s.db.classes, key: Layout.u32Key(UInt32(i)), value: Array(name.utf8)) }
            }
        }

        // Samples: one pass over this store, a transaction per 2,000 samples per shard.
        let assignment = try shardAssignment(count: count)
        let total = assignment.count
        var pending = [[(SampleRecord, [UInt8], [UInt8])]](repeating: [], count: count)
        var ids = [[UInt64]](repeating: [], count: count)
        var splits = [[String: Int]](repeating: [:], count: count)
        func flush(_ k: Int) throws {
            guard !pending[k].isEmpty else { return }
            let batch = pending[k]
            try shards[k].write { txn in for (r, bytes, image) in batch { try shards[k].putSample(txn, r, recordBytes: bytes, image: image) } }
            pending[k].removeAll(keepingCapacity: true)
        }
        var from: [UInt8]? = nil
        while true {
            // A fresh read transaction per 10,000 samples keeps old pages reusable.
            var last: UInt64?
            try read { txn in
                var n = 0
                try txn.scan(db.samples, from: from) { k, v in
                    let id = Layout.readU64BE(k)
                    if let f = from, Array(k) == f { return true }
                    guard let r = SampleRecord(id: id, bytes: v), let shard = assignment[id] else {
                        throw StoreError(.corrupt, "\(path): sample \(id): unreadable record; run noisy verify --store \(path)")
                    }
                    guard let image = try txn.withValue(db.images, key: k, { $0.map { Array($0) } }) else {
                        throw StoreError(.corrupt, "\(path): sample \(id): image bytes missing; run noisy verify --store \(path)")
                    }
                    pending[shard].append((r, Array(v), image))
                    ids[shard].append(id)
                    splits[shard][r.split.rawValue, default: 0] += 1
                    if pending[shard].count >= 2000 { try flush(shard) }
                    last = id
                    n += 1
                    return n < 10_000
                }
            }
            guard let l = last else { break }
            from = Layout.idKey(l)
            progress("samples", ids.reduce(0) { $0 + $1.count }, total)
        }
        for k in 0..<count { try flush(k) }

        // Generations, oldest first: each shard's labels, then its record (and digest).
        var generationEntries: [ShardManifest.Generation] = []
        for g in try generations() {
            var labels = [[([UInt8], [UInt8])]](repeating: [], count: count)
            func flushLabels(_ k: Int) throws {
                guard !labels[k].isEmpty else { return }
                let batch = labels[k]
                try shards[k].write { txn in for (key, value) in batch { try txn.put(shards[k].db.labels, key: key, value: value) } }
                labels[k].removeAll(keepingCapacity: true)
            }
            var perShard = [Int](repeating: 0, count: count)
            // Each shard's record describes its own labels (counts, confidence, bytes), as an
            // import over the set writes them; a set's figures are their sums.
            var classCounts = [[Int]](repeating: [Int](repeating: 0, count: g.classCount), count: count)
            var classConfidence = [[Double]](repeating: [Double](repeating: 0, count: g.classCount), count: count)
            try forEachStoredLabel(g.generation) { id, key, value in
                guard let k = assignment[id] else { return }
                let (top, p) = value.withUnsafeBytes { LabelEncoding.top($0) }
                if top >= 0 && top < g.classCount { classCounts[k][top] += 1; classConfidence[k][top] += Double(p) }
                labels[k].append((key, value))
                perShard[k] += 1
                if labels[k].count >= 20_000 { try flushLabels(k) }
            }
            var digests: [String] = []
            for k in 0..<count {
                try flushLabels(k)
                var record = g
                record.samples = perShard[k]
                record.bytesStored = g.samples > 0 ? g.bytesStored / g.samples * perShard[k] : 0
                record.meanConfidence = perShard[k] > 0 ? classConfidence[k].reduce(0, +) / Double(perShard[k]) : 0
                record.perClass = g.perClass.map { c in
                    var c = c
                    let i = c.classIndex
                    c.count = classCounts[k].indices.contains(i) ? classCounts[k][i] : 0
                    c.meanConfidence = c.count > 0 ? classConfidence[k][i] / Double(c.count) : 0
                    return c
                }
                try shards[k].commitGeneration(record, tagLatest: false)
                digests.append(try shards[k].generation(g.generation)?.labelsSha256 ?? "")
            }
            // Selections: each shard keeps the entries of its samples.
            var selectionEntries: [String: [Int]] = [:]
            for sel in try selections(of: g.generation) {
                var entries = [[(id: UInt64, copies: Int)]](repeating: [], count: count)
                try forEachSelectionEntry(g.generation, sel.name) { id, copies in
                    if let k = assignment[id] { entries[k].append((id, copies)) }
                }
                for k in 0..<count {
                    var r = sel
                    r.samples = entries[k].count
                    r.entries = entries[k].reduce(0) { $0 + $1.copies }
                    _ = try shards[k].write { txn in try shards[k].putSelection(txn, r, entries: entries[k]) }
                }
                selectionEntries[sel.name] = entries.map { $0.reduce(0) { $0 + $1.copies } }
            }
            generationEntries.append(.init(generation: g.generation, samples: g.samples, labelsSha256: digests, labels: perShard,
                                           selectionEntries: selectionEntries))
            progress("generation \(g.generation)", g.generation, g.generation)
        }
        let tagList = try tags()
        for s in shards {
            try s.write { txn in for (tag, k) in tagList { try txn.put(s.db.tags, key: Array(tag.utf8), value: Layout.u32Key(UInt32(k))) } }
        }

        var manifest = ShardManifest(
            created: GenerationJSON.now(), sourcePath: path, sourceCreatedAt: try createdAt(), classes: classNames, samples: total,
            shards: try (0..<count).map { k in
                let idBytes = ids[k].flatMap { withUnsafeBytes(of: $0.littleEndian) { Array($0) } }
                return .init(index: k, path: names[k], createdAt: try shards[k].createdAt(), samples: ids[k].count, splits: splits[k],
                             idsSha256: SHA256.hash(idBytes).hexString)
            },
            generations: generationEntries)
        manifest.sha256 = try manifest.checksum()
        try manifest.write(to: out)
        return manifest
    }

    /// Visits generation `k`'s label records (id, key, value) in id order, in batches of
    /// read transactions.
    func forEachStoredLabel(_ k: Int, _ body: (UInt64, [UInt8], [UInt8]) throws -> Void) throws {
        var from = GenerationKeys.labelPrefix(k)
        let prefix = GenerationKeys.labelPrefix(k)
        var first = true
        while true {
            var last: [UInt8]?
            try read { txn in
                var n = 0
                try txn.scan(db.labels, from: from) { key, value in
                    guard key.count == 12, Array(key.prefix(4)) == prefix else { return false }
                    if !first, Array(key) == from { return true }
                    try body(Layout.readU64BE(key, at: 4), Array(key), Array(value))
                    last = Array(key)
                    n += 1
                    return n < 20_000
                }
            }
            guard let l = last else { return }
            from = l
            first = false
        }
    }
}

extension ShardManifest {
    /// Items of each epoch a node serving `perNode` shards takes from the labeled split
    /// (or from a generation: its selection's entries, or every labelled sample once):
    /// what the `perNode` smallest shards hold, the same number on every node that
    /// serves as many shards.
    public func epochLength(perNode: Int, generation: Int? = nil, selection: String? = nil) -> Int {
        let counts: [Int]
        if let generation {
            let g = generations.first { $0.generation == generation }
            counts = selection.map { g?.selectionEntries[$0] ?? [] } ?? g?.labels ?? []
        } else {
            counts = shards.map { $0.splits[Split.labeled.rawValue] ?? 0 }
        }
        return counts.sorted().prefix(perNode).reduce(0, +)
    }

    /// The folder of a set named by its manifest file or by the folder itself.
    static func folder(of path: String) -> String {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
            ? path : (path as NSString).deletingLastPathComponent
    }

    /// Which shard holds each sample (samples keep their ids across a set).
    public static func shardMap(_ stores: [Store]) throws -> [UInt64: Int] {
        var map: [UInt64: Int] = [:]
        for (k, s) in stores.enumerated() {
            for split in Split.allCases { for e in try s.index(of: split) { map[e.id] = k } }
        }
        return map
    }

    /// True when `path` names a shard set (a manifest file, or a folder holding one).
    public static func isSet(_ path: String) -> Bool {
        path.hasSuffix(".json") || FileManager.default.fileExists(atPath: path + "/" + fileName)
    }

    /// Verifies every shard (as `Store.verify`) and the set: each shard is the store the
    /// manifest names, holds the ids it lists, and every generation's labels digest
    /// there is the manifest's. A missing shard or a manifest that fails its checksum
    /// is an error before anything is read.
    public static func verifySet(at path: String, progress: ((Int, Int) -> Void)? = nil) throws -> VerifyReport {
        let (m, folder) = try read(path)
        let stores = try m.openShards(folder: folder)
        var problems: [VerifyProblem] = []
        var checked = 0
        for (s, store) in zip(m.shards, stores) {
            let name = "shard \(s.index) (\(s.path))"
            let r = try Store.verify(at: store.path, progress: progress)
            checked += r.samplesChecked
            problems += r.problems.map { VerifyProblem(id: $0.id, problem: "\(name): \($0.problem)", database: $0.database, page: $0.page) }
            let ids = try Split.allCases.flatMap { try store.index(of: $0).map(\.id) }.sorted()
            let digest = SHA256.hash(ids.flatMap { withUnsafeBytes(of: $0.littleEndian) { Array($0) } }).hexString
            if digest != s.idsSha256 || ids.count != s.samples {
                problems.append(VerifyProblem(problem: "\(name): holds \(ids.count) samples, not the \(s.samples) the manifest lists"
                                              + (ids.count == s.samples ? " (other ids)" : "")))
            }
            for g in m.generations {
                let here = try store.generation(g.generation)?.labelsSha256
                let want = g.labelsSha256.indices.contains(s.index) ? g.labelsSha256[s.index] : ""
                if here != want && !(here == nil && want.isEmpty) {
                    problems.append(VerifyProblem(problem: "\(name): generation \(g.generation) " + (here == nil ? "is missing" : "does not match the manifest's digest")))
                }
            }
        }
        return VerifyReport(samplesChecked: checked, problems: problems)
    }
}

/// A generation over a shard set: one object, visible on every shard or on none.
///
/// Protocol (schemas/store-layout.md, "Shard sets"): the predictions are checked once;
/// each shard then imports its samples' rows under one number k, above every shard's
/// last; last, a new manifest listing k (with each shard's labels digest) is renamed
/// over the old one. That rename is the commit: readers of a set see only the
/// generations their manifest lists. A run killed before it leaves k on some shards
/// and not in the manifest: the next import over the set deletes such generations
/// first, and `verify` names them.
extension ShardManifest {
    /// Generations present on a shard that the manifest does not list (an interrupted
    /// set import), per shard index.
    public func uncommitted(_ stores: [Store]) throws -> [(shard: Int, generation: Int)] {
        let listed = Set(generations.map(\.generation))
        return try stores.enumerated().flatMap { k, s in try s.generations().map(\.generation).filter { !listed.contains($0) }.map { (k, $0) } }
    }

    public static func importLabels(intoSet path: String, predictions: String, ids idsPath: String, logits: Bool,
                                    teacher: TeacherInfo, precision: LabelPrecision) throws -> (manifest: ShardManifest, generation: Int) {
        let file = try NPYFile(path: predictions)
        guard file.dtype == "<f4", file.shape.count == 2 else {
            throw StoreError(.invalidArgument, "\(predictions): predictions must be float32 [N, C] (the dtype is \(file.dtype), the shape \(file.shape))")
        }
        let ids = try NPYFile(path: idsPath).ids()
        let r = try importLabels(intoSet: path, rows: NPYRows(file: file), ids: ids,
                                origin: PredictionOrigin(kind: "npy", path: predictions, sha256: SHA256.hash(file.data).hexString,
                                                         logits: logits, matchedBy: "id", idsPath: idsPath),
                                logits: logits, teacher: teacher, precision: precision)
        return (r.manifest, r.generation)
    }

    /// Predictions made in process (`noisy label --store SET`, serve label sessions): float32
    /// [n, C] row-major. `stores`: the set's shards when the caller holds them open already
    /// (LMDB allows one environment handle per file and process).
    public static func importLabels(intoSet path: String, stores: [Store]? = nil, ids: [UInt64], rows values: [Float], classCount: Int,
                                    logits: Bool = false, teacher: TeacherInfo,
                                    precision: LabelPrecision) throws -> (manifest: ShardManifest, generation: Int) {
        let r = try importLabels(intoSet: path, stores: stores, rows: MemoryRows(values: values, classCount: classCount), ids: ids,
                                 origin: PredictionOrigin(kind: "label", logits: logits, matchedBy: "split"), logits: logits,
                                 teacher: teacher, precision: precision)
        return (r.manifest, r.generation)
    }

    /// `job`: the label job these rows come from; when the set already lists that job's
    /// generation (a commit that raced this one, or one killed after its manifest was
    /// written), nothing is imported and that generation is returned.
    static func importLabels(intoSet path: String, stores given: [Store]? = nil, rows: any PredictionRows, ids: [UInt64],
                             origin: PredictionOrigin, logits: Bool,
                             teacher: TeacherInfo, precision: LabelPrecision,
                             job: String? = nil) throws -> (manifest: ShardManifest, generation: Int, created: Bool) {
        // One writer of the set at a time: the manifest is read, extended and replaced under a lock.
        let lock = try FolderLock(folder(of: path))
        defer { lock.release() }
        let (m, folder) = try read(path)
        let stores = try given ?? m.openShards(folder: folder, readOnly: false)
        if let job, let k = try m.generationOfJob(job, stores: stores) { return (m, k, false) }
        for (k, g) in try m.uncommitted(stores) { try stores[k].deleteGeneration(g) }
        // Check the whole input once, as one import would.
        let c = m.classes.count
        let name = origin.path ?? "predictions"
        guard rows.classCount == c else { throw StoreError(.invalidArgument, "\(name): \(rows.classCount) classes per row, the set has \(c)") }
        guard rows.count == ids.count, !ids.isEmpty else { throw StoreError(.invalidArgument, "\(name): \(rows.count) rows but \(ids.count) ids") }
        try stores[0].checkRows(rows, ids: ids, logits: logits, origin: origin)
        let shardOf = try shardMap(stores)
        var perShard = [[Int]](repeating: [], count: stores.count)
        for (row, id) in ids.enumerated() {
            guard let k = shardOf[id] else { throw StoreError(.notFound, "\(origin.idsPath ?? name): sample \(id) is in no shard of the set") }
            perShard[k].append(row)
        }
        let number = try stores.map { try $0.lastGenerationNumber() }.max().map { $0 + 1 } ?? 1
        var digests: [String] = []
        for (k, s) in stores.enumerated() {
            var values = [Float]()
            values.reserveCapacity(perShard[k].count * c)
            for r in perShard[k] { values.append(contentsOf: rows.row(r)) }
            var request = LabelImportRequest(input: .rows(ids: perShard[k].map { ids[$0] }, rows: values, classCount: c, origin: origin),
                                             logits: logits, teacher: teacher, parent: .latest, precision: precision)
            request.number = number
            if perShard[k].isEmpty { digests.append(""); continue }
            _ = try s.importLabels(request)
            digests.append(try s.generation(number)?.labelsSha256 ?? "")
        }
        // The commit: the manifest that lists the generation replaces the old one.
        var next = m
        next.generations.append(.init(generation: number, samples: ids.count, labelsSha256: digests, labels: perShard.map(\.count),
                                      selectionEntries: [:]))
        next.sha256 = try next.checksum()
        try next.write(to: folder)
        return (next, number, true)
    }

    /// Writes this manifest into `folder`: aside, synced, then renamed over the old one.
    func write(to folder: String) throws {
        var w = try TextWriter(path: folder + "/.manifest.json.partial")
        try w.write(Array(try GenerationJSON.encoder.encode(self)))
        _ = try w.finish()
        guard rename(folder + "/.manifest.json.partial", folder + "/" + Self.fileName) == 0 else {
            throw StoreError(.io, "\(folder)/\(Self.fileName): cannot write: \(String(cString: strerror(errno)))")
        }
        let fd = open(folder, O_RDONLY | O_DIRECTORY)
        if fd >= 0 { fsync(fd); close(fd) }
    }
}

extension ShardManifest {
    /// A selection over a set, as one object: the filter runs over every shard's labels
    /// together (so balancing sees the whole set), each shard stores the entries of its
    /// samples, and the new manifest listing the selection is the commit, as for a
    /// generation. A run killed before the rename is finished by running it again: a
    /// shard that already holds the same selection (same threshold, cap and seed) is
    /// left as it is.
    /// `stores`: the set's shards when the caller holds them open already (one LMDB
    /// handle per file and process).
    public static func filterLabels(inSet path: String, stores given: [Store]? = nil,
                                    _ r: LabelFilterRequest) throws -> (manifest: ShardManifest, selection: SelectionRecord) {
        try Store.checkFilter(r)
        let lock = try FolderLock(folder(of: path))
        defer { lock.release() }
        let (m, folder) = try read(path)
        guard let gi = m.generations.firstIndex(where: { $0.generation == r.generation }) else {
            throw StoreError(.notFound, "\(path): generation \(r.generation) is not committed on this shard set")
        }
        if m.generations[gi].selectionEntries[r.name] != nil {
            throw StoreError(.conflict, "\(path): generation \(r.generation) already has a selection '\(r.name)' on this set; selections never change: choose another name", field: .selectionName)
        }
        let stores = try given ?? m.openShards(folder: folder, readOnly: false)
        var tally = SelectionTally(classCount: m.classes.count)
        for s in stores where try s.generation(r.generation) != nil { try s.tallyLabels(r, into: &tally) }
        let (record, entries) = tally.select(r)
        let shardOf = try shardMap(stores)
        var perShard = [[(id: UInt64, copies: Int)]](repeating: [], count: stores.count)
        for e in entries { if let k = shardOf[e.id] { perShard[k].append(e) } }
        for (k, s) in stores.enumerated() where try s.generation(r.generation) != nil {
            if let existing = try s.selection(r.generation, r.name) {
                guard existing.threshold == r.threshold, existing.perClass == r.perClass, existing.seed == r.seed,
                      existing.samples == perShard[k].count else {
                    throw StoreError(.conflict, "\(s.path): holds another selection '\(r.name)' of generation \(r.generation)")
                }
                continue  // written by an interrupted run of this same filter
            }
            var mine = record
            mine.samples = perShard[k].count
            mine.entries = perShard[k].reduce(0) { $0 + $1.copies }
            _ = try s.write { txn in try s.putSelection(txn, mine, entries: perShard[k]) }
        }
        var next = m
        next.generations[gi].selectionEntries[r.name] = perShard.map { $0.reduce(0) { $0 + $1.copies } }
        next.sha256 = try next.checksum()
        try next.write(to: folder)
        return (next, record)
    }
}

extension ShardManifest {
    /// Deletes a generation from a set: the manifest without it is the commit (set readers
    /// stop seeing it at once), then every shard deletes its part; a shard left holding it
    /// by a killed run is cleared by the next import over the set.
    public static func deleteGeneration(inSet path: String, _ k: Int) throws -> ShardManifest {
        let lock = try FolderLock(folder(of: path))
        defer { lock.release() }
        let (m, folder) = try read(path)
        guard m.generations.contains(where: { $0.generation == k }) else {
            throw StoreError(.notFound, "\(path): generation \(k) is not committed on this shard set")
        }
        var next = m
        next.generations.removeAll { $0.generation == k }
        next.sha256 = try next.checksum()
        try next.write(to: folder)
        for s in try m.openShards(folder: folder, readOnly: false) where try s.generation(k) != nil { try s.deleteGeneration(k) }
        return next
    }

    /// Points `tag` at generation `k` on every shard (nil: removes it). Tags are pointers,
    /// not data: a run that stops half way is completed by running it again.
    public static func setTag(inSet path: String, _ tag: String, generation k: Int?) throws -> Bool {
        let lock = try FolderLock(folder(of: path))
        defer { lock.release() }
        let (m, folder) = try read(path)
        if let k, !m.generations.contains(where: { $0.generation == k }) {
            throw StoreError(.notFound, "\(path): generation \(k) is not committed on this shard set")
        }
        var changed = false
        for s in try m.openShards(folder: folder, readOnly: false) {
            if let k { try s.setTag(tag, generation: k); changed = true } else { changed = try s.removeTag(tag) || changed }
        }
        return changed
    }
}

extension ShardManifest {
    /// `labels diff` over a set: each shard compares its own samples (a sample's labels
    /// live on one shard), and the set's figures are the sums; confidences are weighted
    /// by each shard's common samples, and the first ids are the set's smallest.
    public static func diffGenerations(inSet path: String, stores given: [Store]? = nil, _ a: Int, _ b: Int, selectionA: String? = nil,
                                       selectionB: String? = nil, maxIds: Int = 100) throws -> LabelDiff {
        let (m, folder) = try read(path)
        for k in [a, b] where !m.generations.contains(where: { $0.generation == k }) {
            throw StoreError(.notFound, "\(path): generation \(k) is not committed on this shard set")
        }
        let stores = try given ?? m.openShards(folder: folder)
        let c = m.classes.count
        var total = LabelDiff(a: a, b: b, common: 0, onlyA: 0, onlyB: 0, changed: 0, changedShare: 0,
                              changeMatrix: [[Int]](repeating: [Int](repeating: 0, count: c), count: c),
                              meanConfidenceA: 0, meanConfidenceB: 0, selectionA: nil, selectionB: nil, selectionCountsA: nil,
                              selectionCountsB: nil, entered: 0, left: 0, enteredIds: [], leftIds: [])
        var sumA = 0.0, sumB = 0.0
        for s in stores {
            let ra = try s.generation(a), rb = try s.generation(b)
            guard ra != nil, rb != nil else {
                total.onlyA += ra?.samples ?? 0
                total.onlyB += rb?.samples ?? 0
                continue
            }
            let d = try s.diffGenerations(a, b, selectionA: selectionA, selectionB: selectionB, maxIds: maxIds)
            total.common += d.common; total.onlyA += d.onlyA; total.onlyB += d.onlyB; total.changed += d.changed
            for i in 0..<c { for j in 0..<c { total.changeMatrix[i][j] += d.changeMatrix[i][j] } }
            sumA += d.meanConfidenceA * Double(d.common); sumB += d.meanConfidenceB * Double(d.common)
            total.selectionA = total.selectionA ?? d.selectionA; total.selectionB = total.selectionB ?? d.selectionB
            total.selectionCountsA = total.selectionCountsA ?? d.selectionCountsA
            total.selectionCountsB = total.selectionCountsB ?? d.selectionCountsB
            total.entered += d.entered; total.left += d.left
            total.enteredIds += d.enteredIds; total.leftIds += d.leftIds
        }
        total.changedShare = total.common > 0 ? Double(total.changed) / Double(total.common) : 0
        total.meanConfidenceA = total.common > 0 ? sumA / Double(total.common) : 0
        total.meanConfidenceB = total.common > 0 ? sumB / Double(total.common) : 0
        total.enteredIds = Array(total.enteredIds.sorted().prefix(maxIds))
        total.leftIds = Array(total.leftIds.sorted().prefix(maxIds))
        return total
    }
}
