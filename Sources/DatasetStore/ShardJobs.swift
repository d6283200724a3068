import Foundation

/// Label jobs over a shard set: many workers, one generation over the whole set.
///
/// Part i of W of a set is, on every shard, that shard's own part i of W (the shard's
/// samples of the split at positions i, i+W, ... in id order). Each shard stages its
/// share of a part in its own `jobs/NAME/` folder, with the store's machinery (whole or
/// absent, first copy kept). A node's server, which reads only its own shards, can
/// therefore label a part on those shards alone; the job is complete when every shard
/// holds every part. The commit is one set import of all staged parts (the manifest
/// rename, schemas/store-layout.md "Shard sets"), so a set job holds the same bytes
/// as one import of the same predictions over the set, whatever W and however the
/// parts were cut. The job's name is recorded in each shard's generation record, which
/// is how a commit that finds the set's manifest already listing it knows it is done.
extension ShardManifest {
    /// The sample ids of part `part` of `parts` of a split on the given shards (all when
    /// nil), in id order.
    public static func labelPartIDs(stores: [Store], shards: [Int]? = nil, split: Split, part: Int, parts: Int) throws -> [UInt64] {
        try (shards ?? Array(stores.indices)).flatMap { try stores[$0].labelPartIDs(split: split, part: part, parts: parts) }.sorted()
    }

    /// The generation over the set that a job made, if the manifest lists one.
    func generationOfJob(_ name: String, stores: [Store]) throws -> Int? {
        for g in generations.reversed() {
            guard let k = g.labels.firstIndex(where: { $0 > 0 }), stores.indices.contains(k) else { continue }
            if let r = try stores[k].generation(g.generation), r.predictions.kind == "job", r.predictions.job == name {
                return g.generation
            }
        }
        return nil
    }

    /// Submits part `part` of a set job from rows in memory (float32 [n, C], row i for
    /// `ids[i]`), covering the part on `shards` (all when nil: a node's server passes its
    /// own). Every shard's share is checked before any is staged. With `commit`, a
    /// submission that completes the job on every shard commits it.
    public static func submitLabelPart(inSet path: String, stores: [Store], shards: [Int]? = nil, _ request: LabelJobRequest,
                                       part: Int, ids: [UInt64], rows: [Float], classCount: Int, worker: String? = nil,
                                       commit: Bool = true) throws -> LabelPartReceipt {
        let (m, _) = try read(path)
        let covered = shards ?? Array(stores.indices)
        guard classCount == m.classes.count else {
            throw StoreError(.invalidArgument, "part \(part): \(classCount) classes per row, the set has \(m.classes.count)")
        }
        guard rows.count == ids.count * classCount else {
            throw StoreError(.invalidArgument, "part \(part): \(rows.count) values for \(ids.count) samples of \(classCount) classes")
        }
        try checkJobSettings(request, stores: stores)
        // Deal the rows to their shards, and check each shard's share before staging any.
        var shardOf: [UInt64: Int] = [:]
        for k in covered { for e in try stores[k].index(of: request.split) { shardOf[e.id] = k } }
        var perShard = [Int: [Int]]()
        for (row, id) in ids.enumerated() {
            guard let k = shardOf[id] else {
                throw StoreError(.invalidArgument, "part \(part): sample \(id) is not in the \(request.split.rawValue) split of shard(s) "
                                 + covered.map(String.init).joined(separator: ", ") + " of the set")
            }
            perShard[k, default: []].append(row)
        }
        for k in covered {
            let share = try stores[k].labelPartIDs(split: request.split, part: part, parts: request.parts)
            let given = (perShard[k] ?? []).map { ids[$0] }.sorted()
            if given != share {
                throw StoreError(.invalidArgument, "part \(part) of \(request.parts): shard \(k) holds \(share.count) samples of the part, "
                                 + "the input has \(given.count) of them"
                                 + (given.count == share.count ? " (other ids, or one repeated)" : "")
                                 + " (write the part's ids with: noisy labels jobs --store SET --job \(request.job) --part \(part) --parts \(request.parts) --ids-out ids.npy)")
            }
        }
        var stored = 0, samples = 0
        var first: LabelPartReceipt?
        for k in covered {
            let rowsHere = perShard[k] ?? []
            var values = [Float]()
            values.reserveCapacity(rowsHere.count * classCount)
            for r in rowsHere { values.append(contentsOf: rows[(r * classCount)..<((r + 1) * classCount)]) }
            let r = try stores[k].submitLabelPart(request, part: part, ids: rowsHere.map { ids[$0] }, rows: values,
                                                  classCount: classCount, worker: worker, commit: false)
            if case .stored = r.outcome { stored += 1 } else if first == nil { first = r }
            samples += r.samples
        }
        let missing = try missingParts(request.job, parts: request.parts, stores: stores)
        var receipt = LabelPartReceipt(job: request.job, part: part, parts: request.parts, samples: samples,
                                       outcome: stored > 0 ? .stored : (first?.outcome ?? .stored), missing: missing, committed: nil)
        if commit && missing.isEmpty {
            do { receipt.committed = try commitLabelJob(inSet: path, request.job, stores: stores) } catch {
                let e = StoreError.wrapping(error, store: path)
                throw StoreError(e.kind, "job \(request.job): part \(part) is stored on every shard and every part is in, but the commit "
                                 + "failed: \(e.message); commit with: noisy labels commit --store \(path) --job \(request.job)")
            }
        }
        return receipt
    }

    /// Refuses a part whose settings differ from those the job has on any shard (the
    /// shard's own count of samples aside).
    static func checkJobSettings(_ request: LabelJobRequest, stores: [Store]) throws {
        for s in stores {
            let folder = s.jobsFolder + "/" + request.job
            guard FileManager.default.fileExists(atPath: folder + "/job.json") else { continue }
            let existing = try s.readJobSpec(folder)
            let mine = try s.jobSpec(request)
            let mismatches = zip(existing.fields(), mine.fields()).filter { $0.0.0 != "samples" && $0.0.1 != $0.1.1 }
            if !mismatches.isEmpty {
                let what = mismatches.map { "\($0.0.0) \($0.1.1) (the job has \($0.0.1))" }.joined(separator: ", ")
                throw StoreError(.conflict, "job \(request.job) exists on the set with other settings: this part has \(what)")
            }
            return
        }
    }

    /// Parts that some shard does not hold yet.
    static func missingParts(_ job: String, parts: Int, stores: [Store]) throws -> [Int] {
        var missing = Set<Int>()
        for s in stores { missing.formUnion(s.missingParts(s.jobsFolder + "/" + job, parts: parts)) }
        return missing.sorted()
    }

    /// Makes a set job's generation from every shard's parts, in one set import.
    /// Idempotent: a job the manifest already lists returns its generation, makes nothing,
    /// and clears the staged parts.
    @discardableResult
    public static func commitLabelJob(inSet path: String, _ name: String, stores given: [Store]? = nil) throws -> LabelJobCommit {
        try Store.checkJobName(name)
        let (m, folder) = try read(path)
        let stores = try given ?? m.openShards(folder: folder, readOnly: false)
        func clear() { for s in stores where FileManager.default.fileExists(atPath: s.jobsFolder + "/" + name) {
            try? s.removeJobFolder(s.jobsFolder + "/" + name)
        } }
        if let k = try m.generationOfJob(name, stores: stores) { clear(); return LabelJobCommit(generation: k, summary: nil, created: false) }
        let present = stores.map { FileManager.default.fileExists(atPath: $0.jobsFolder + "/" + name + "/job.json") }
        guard present.contains(true) else { throw StoreError(.notFound, "\(path): no label job named \(name) (noisy labels jobs lists them)") }
        if let k = present.firstIndex(of: false) { throw StoreError(.invalidArgument, "job \(name): shard \(k) has no part yet") }
        let specs = try stores.map { try $0.readJobSpec($0.jobsFolder + "/" + name) }
        let spec = specs[0]
        for (k, other) in specs.enumerated() {
            let differ = zip(spec.fields(), other.fields()).filter { $0.0.0 != "samples" && $0.0.1 != $0.1.1 }
            if let d = differ.first {
                throw StoreError(.conflict, "job \(name): shard \(k)'s parts were made with \(d.0.0) \(d.1.1), shard 0's with \(d.0.1)")
            }
        }
        let missing = try missingParts(name, parts: spec.parts, stores: stores)
        guard missing.isEmpty else {
            throw StoreError(.invalidArgument, "job \(name): \(missing.count) of \(spec.parts) parts missing on some shard: "
                             + missing.prefix(20).map(String.init).joined(separator: ", ") + (missing.count > 20 ? ", ..." : ""))
        }
        var files: [NPYFile] = []
        var ids: [UInt64] = []
        for s in stores {
            for i in 0..<spec.parts {
                let part = "\(s.jobsFolder)/\(name)/\(Store.partName(i))"
                let idFile = try NPYFile(path: part + "/ids.npy")
                guard idFile.shape != [0] else { continue }
                files.append(try NPYFile(path: part + "/rows.npy"))
                ids += try idFile.ids()
            }
        }
        let origin = PredictionOrigin(kind: "job", logits: spec.logits, matchedBy: "id", job: name, parts: spec.parts)
        let (_, k, created) = try importLabels(intoSet: path, stores: stores, rows: try PartRows(files), ids: ids, origin: origin,
                                               logits: spec.logits, teacher: spec.teacher,
                                               precision: LabelPrecision(spec.precision) ?? .f16, job: name)
        clear()
        return LabelJobCommit(generation: k, summary: nil, created: created)
    }

    /// Every open job on the set: shard 0's settings (samples summed over shards), the
    /// parts every shard holds (samples summed; who and when from each), and the parts
    /// some shard lacks.
    public static func labelJobs(inSet path: String, stores given: [Store]? = nil) throws -> [LabelJobStatus] {
        let (m, folder) = try read(path)
        let stores = try given ?? m.openShards(folder: folder)
        let names = Set(try stores.flatMap { s in try s.labelJobs().map(\.spec.job) }).sorted()
        return try names.map { name in
            let perShard = try stores.compactMap { s in try s.labelJobs().first { $0.spec.job == name } }
            var spec = perShard[0].spec
            spec.samples = perShard.map(\.spec.samples).reduce(0, +)
            spec.samplesSha256 = ""
            let missing = try missingParts(name, parts: spec.parts, stores: stores)
            let done = (0..<spec.parts).filter { !missing.contains($0) }.map { i -> LabelPartRecord in
                let records = perShard.flatMap { $0.done.filter { $0.part == i } }
                return LabelPartRecord(part: i, parts: spec.parts, samples: records.map(\.samples).reduce(0, +),
                                       by: Array(Set(records.map(\.by))).sorted().joined(separator: "; "),
                                       at: records.map(\.at).max() ?? "", rowsSha256: "")
            }
            return LabelJobStatus(spec: spec, done: done, missing: missing, committedGeneration: try m.generationOfJob(name, stores: stores))
        }
    }

    /// Removes a set job's staged parts on every shard, and nothing else. Returns the
    /// shard parts removed.
    @discardableResult
    public static func abandonLabelJob(inSet path: String, _ name: String) throws -> Int {
        try Store.checkJobName(name)
        let (m, folder) = try read(path)
        let stores = try m.openShards(folder: folder)
        var removed = 0, found = false
        for s in stores where FileManager.default.fileExists(atPath: s.jobsFolder + "/" + name) {
            found = true
            removed += try s.abandonLabelJob(name)
        }
        guard found else { throw StoreError(.notFound, "\(path): no label job named \(name) (noisy labels jobs lists them)") }
        return removed
    }
}
