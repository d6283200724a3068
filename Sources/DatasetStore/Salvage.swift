import Digest
import Foundation
import ImageCodec
import LMDB

/// A sample `salvage` could not keep, with what is known of it.
public struct LostSample: Codable, Sendable, Equatable {
    public var id: UInt64
    /// Its path at ingest, when the sample record or the source index still says.
    public var source: String?
    public var reason: String
}

/// A generation or selection and whether `salvage` kept it.
public struct SalvagedItem: Codable, Sendable, Equatable {
    public var generation: Int
    public var selection: String?
    public var saved: Bool
    public var reason: String?
}

/// What `noisy salvage` saved and lost (schemas/salvage.schema.json).
public struct SalvageReport: Codable, Sendable {
    public var source: String
    public var out: String
    /// Page-level damage the walk found (empty: the file's structure was whole).
    public var structureProblems: [String]
    public var samplesSaved: Int
    public var samplesLost: Int
    public var lostSamples: [LostSample]
    public var classesSaved: Int
    /// Class slots whose name was lost: kept as "lost-class-<index>" so that class
    /// indices, and with them every saved label, keep their meaning.
    public var classesLost: [Int]
    public var generations: [SalvagedItem]
    public var selections: [SalvagedItem]
    public var tagsSaved: [String]
    /// The new store passed `verify`.
    public var verified: Bool

    enum CodingKeys: String, CodingKey {
        case source, out, verified, generations, selections
        case structureProblems = "structure_problems", samplesSaved = "samples_saved", samplesLost = "samples_lost"
        case lostSamples = "lost_samples", classesSaved = "classes_saved", classesLost = "classes_lost", tagsSaved = "tags_saved"
    }
}

extension Store {
    /// Builds a new store at `out` from everything in the store at `damaged` that can
    /// still be trusted, the way SQLite's `.recover` does, and never trusts the
    /// damaged file: it is read by `PageWalk` (every page validated), never by LMDB.
    ///
    /// - A sample is kept when its image bytes match the hash in its record and its
    ///   record is vouched for: by the samples database's seal when that holds, else
    ///   by every independent copy of its fields (the content-hash, source and split
    ///   indexes, and the decoded image's size).
    /// - A generation is kept when its record matches its own digest and its labels
    ///   match the digest the record states; a selection likewise. Classes and tags
    ///   are kept record by record, by their digests.
    /// Indexes are rebuilt from the kept records, not copied.
    public static func salvage(from damaged: String, to out: String, progress: ((Int, Int) -> Void)? = nil) throws -> SalvageReport {
        try checkFolder(damaged, create: false)
        if FileManager.default.fileExists(atPath: out + "/data.mdb") {
            throw StoreError(.invalidArgument, "\(out): already holds a store; salvage writes a new one")
        }
        let plan = try PageWalk.withWalk(dataFile: damaged + "/data.mdb") { walk in
            try SalvagePlan(walk: walk, progress: progress)
        }
        let store = try Store.openOrCreate(path: out)
        try store.write(plan)
        var report = plan.report(source: damaged, out: out)
        report.verified = (try? Store.verify(at: out))?.ok ?? false
        return report
    }

    /// Writes a plan's records into this (new, empty) store, a few thousand per transaction.
    private func write(_ plan: SalvagePlan) throws {
        try write { txn in
            for (index, name) in plan.classes { try txn.put(db.classes, key: Layout.u32Key(UInt32(index)), value: Array(name.utf8)) }
        }
        var i = 0
        while i < plan.samples.count {
            let end = min(plan.samples.count, i + 2000)
            try write { txn in
                for s in plan.samples[i..<end] {
                    let key = Layout.idKey(s.record.id)
                    try txn.put(db.samples, key: key, value: s.recordBytes)
                    try txn.put(db.images, key: key, value: s.image)
                    try txn.put(db.hashes, key: s.record.contentHash, value: key)
                    try txn.put(db.sources, key: Array(s.record.source.utf8), value: key)
                    try txn.put(db.splitIndex, key: Layout.splitKey(s.record.split, s.record.id),
                                 value: withUnsafeBytes(of: (s.record.classIndex ?? SampleRecord.noClass).littleEndian) { Array($0) })
                }
            }
            i = end
        }
        for g in plan.generations {
            var j = 0
            repeat {
                let end = min(g.labels.count, j + 20_000)
                try write { txn in
                    for l in g.labels[j..<end] { try txn.put(db.labels, key: l.key, value: l.value) }
                }
                j = end
            } while j < g.labels.count
        }
        try write { txn in
            for g in plan.generations {
                try txn.put(db.generations, key: GenerationKeys.generation(g.number), value: g.record)
                for s in g.selections {
                    try txn.put(db.selections, key: GenerationKeys.selection(g.number, s.name), value: s.record)
                    for e in s.entries { try txn.put(db.selections, key: e.key, value: e.value) }
                    try txn.put(db.meta, key: GenerationKeys.selectionDigest(g.number, s.name), value: Array(SHA256.hash(s.record).hexString.utf8))
                }
            }
            if let top = plan.generationCounter {
                try txn.put(db.meta, key: Array(GenerationKeys.counter.utf8), value: Array(String(top).utf8))
            }
            for (tag, k) in plan.tags { try txn.put(db.tags, key: Array(tag.utf8), value: Layout.u32Key(UInt32(k))) }
        }
    }
}

/// What salvage keeps, decided from the walk's trusted records (copied out of the
/// mapped file, which dies with the walk).
private struct SalvagePlan {
    struct Sample { var record: SampleRecord; var recordBytes: [UInt8]; var image: [UInt8] }
    struct KeyValue { var key: [UInt8]; var value: [UInt8] }
    struct Selection { var name: String; var record: [UInt8]; var entries: [KeyValue] }
    struct Generation { var number: Int; var record: [UInt8]; var labels: [KeyValue]; var selections: [Selection] }

    var structureProblems: [String]
    var classes: [(Int, String)] = []
    var classesLost: [Int] = []
    var samples: [Sample] = []
    var lost: [LostSample] = []
    var generations: [Generation] = []
    var generationItems: [SalvagedItem] = []
    var selectionItems: [SalvagedItem] = []
    var tags: [(String, Int)] = []
    var generationCounter: Int?

    init(walk: PageWalk, progress: ((Int, Int) -> Void)?) throws {
        structureProblems = walk.problems.map(\.description)
        func records(_ name: String) -> [(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)] { walk.records[name] ?? [] }
        // Seals and record digests, as stored (a damaged seals page just means less is vouched for).
        var sealStore: [[UInt8]: [UInt8]] = [:]
        for r in records(Environment.sealsName) { sealStore[Array(r.key)] = Array(r.value) }
        func sealHolds(_ name: String) -> Bool {
            guard let stored = sealStore[Array(name.utf8)], let seal = stored.withUnsafeBytes({ Seal(encoded: $0) }) else { return false }
            var computed = Seal()
            for r in records(name) { computed.add(key: r.key, value: r.value) }
            return computed == seal
        }
        func digestHolds(_ name: String, _ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> Bool {
            sealStore[Seal.recordDigestKey(database: name, key: key)] == Seal.recordDigest(key: key, value: value)
        }

        // Classes, record by record; a lost slot keeps its index.
        var names: [Int: String] = [:]
        var highest = -1
        for r in records(Layout.classes) where r.key.count == 4 {
            let index = Int(Layout.readU32BE(r.key))
            highest = max(highest, index)
            if digestHolds(Layout.classes, r.key, r.value) { names[index] = String(decoding: r.value, as: UTF8.self) }
        }
        // Class indices the samples use tell how many slots there were.
        for r in records(Layout.samples) where r.key.count == 8 {
            if let s = SampleRecord(id: Layout.readU64BE(r.key), bytes: r.value), let c = s.classIndex, c < 1 << 20 { highest = max(highest, Int(c)) }
        }
        if highest >= 0 {
            for i in 0...highest {
                if let n = names[i] { classes.append((i, n)) } else { classes.append((i, "lost-class-\(i)")); classesLost.append(i) }
            }
        }

        // Samples.
        // Candidates per key: a damaged pointer can put another tree's page (or a
        // stale copy) in a tree, so a key may appear twice; the copy that checks out wins.
        var images: [UInt64: [UnsafeRawBufferPointer]] = [:]
        for r in records(Layout.images) where r.key.count == 8 { images[Layout.readU64BE(r.key), default: []].append(r.value) }
        let samplesSealed = sealHolds(Layout.samples)
        let hashesSealed = sealHolds(Layout.hashes), sourcesSealed = sealHolds(Layout.sources), splitSealed = sealHolds(Layout.splitIndex)
        var byHash: [[UInt8]: [UInt64]] = [:]
        for r in records(Layout.hashes) where r.value.count == 8 { byHash[Array(r.key), default: []].append(Layout.readU64BE(r.value)) }
        var bySource: [String: [UInt64]] = [:]
        var sourceOf: [UInt64: String] = [:]
        for r in records(Layout.sources) where r.value.count == 8 {
            let id = Layout.readU64BE(r.value), name = String(decoding: r.key, as: UTF8.self)
            bySource[name, default: []].append(id)
            sourceOf[id] = name
        }
        var splitOf: [UInt64: [(Split, UInt32)]] = [:]
        for r in records(Layout.splitIndex) where r.key.count == 9 && r.value.count == 4 {
            if let split = Split(code: r.key[0]) {
                splitOf[Layout.readU64BE(r.key, at: 1), default: []].append((split, UInt32(littleEndian: r.value.loadUnaligned(as: UInt32.self))))
            }
        }
        var seen = Set<UInt64>(), kept = Set<UInt64>()
        let all = records(Layout.samples)
        for (n, r) in all.enumerated() {
            if n % 1000 == 0 { progress?(n, all.count) }
            guard r.key.count == 8 else { continue }
            let id = Layout.readU64BE(r.key)
            if kept.contains(id) { continue }  // a second copy of a sample already kept
            let again = !seen.insert(id).inserted
            func lose(_ why: String, _ source: String?) { lost.append(LostSample(id: id, source: source ?? sourceOf[id], reason: why)) }
            guard let s = SampleRecord(id: id, bytes: r.value) else { lose("its record is unreadable", nil); continue }
            guard let candidates = images[id] else { lose("its image bytes are lost", s.source); continue }
            guard let image = candidates.first(where: { $0.count == s.byteSize && SHA256.hash($0) == s.dataHash }) else {
                lose("its image bytes do not match their hash", s.source); continue
            }
            if !samplesSealed {
                // Each field against an independent copy: an index that is itself
                // damaged (its seal broken) can only contradict, not vouch by absence.
                if let c = s.classIndex, Int(c) >= classes.count { lose("its record names class \(c), which does not exist", s.source); continue }
                // An index whose seal holds is a trusted copy; a damaged one proves nothing.
                if hashesSealed && !(byHash[s.contentHash] ?? []).contains(id) { lose("its record disagrees with the content-hash index", s.source); continue }
                if sourcesSealed && !(bySource[s.source] ?? []).contains(id) { lose("its record disagrees with the source index", s.source); continue }
                if splitSealed, !(splitOf[id] ?? []).contains(where: { $0.0 == s.split && $0.1 == (s.classIndex ?? SampleRecord.noClass) }) {
                    lose("its record disagrees with the split index", s.source); continue
                }
                // Stored bytes are the original file unless re-encoded (then the hashes differ).
                if s.reencoded != (s.contentHash != s.dataHash) {
                    lose("its record's re-encoding flag disagrees with its hashes", s.source); continue
                }
                if !s.reencoded && (s.originalWidth != s.width || s.originalHeight != s.height || s.originalByteSize != s.byteSize
                                    || s.originalFormat != s.format) {
                    lose("its record's original-file fields disagree with its bytes", s.source); continue
                }
                guard let decoded = try? Codec.decode(image), decoded.width == s.width, decoded.height == s.height, decoded.channels == s.channels else {
                    lose("its record's size disagrees with its image", s.source); continue
                }
            }
            samples.append(Sample(record: s, recordBytes: Array(r.value), image: Array(image)))
            kept.insert(id)
            if again { lost.removeAll { $0.id == id } }  // an earlier, damaged copy of it
        }
        progress?(all.count, all.count)
        // Ids known only from an index or an image: their records were lost.
        var orphaned = Set<UInt64>()
        for id in images.keys where !seen.contains(id) { orphaned.insert(id) }
        for id in byHash.values.joined() where !seen.contains(id) { orphaned.insert(id) }
        for id in sourceOf.keys where !seen.contains(id) { orphaned.insert(id) }
        for id in splitOf.keys where !seen.contains(id) { orphaned.insert(id) }
        for id in orphaned.sorted() { lost.append(LostSample(id: id, source: sourceOf[id], reason: "its sample record is lost")) }
        var reported = Set<UInt64>()
        lost = lost.sorted { $0.id < $1.id }.filter { reported.insert($0.id).inserted }

        // Generations and their selections.
        var labelsByGeneration: [Int: [KeyValue]] = [:]
        for r in records(Layout.labels) where r.key.count == 12 {
            labelsByGeneration[Int(Layout.readU32BE(r.key)), default: []].append(KeyValue(key: Array(r.key), value: Array(r.value)))
        }
        var selectionRecords: [Int: [(String, [UInt8])]] = [:]
        var entries: [[UInt8]: [KeyValue]] = [:]  // entry prefix -> entries
        for r in records(Layout.selections) where r.key.count > 5 {
            let k = Int(Layout.readU32BE(r.key))
            if r.key[4] == 0 {
                selectionRecords[k, default: []].append((String(decoding: r.key.dropFirst(5), as: UTF8.self), Array(r.value)))
            } else if r.key[4] == 1, r.key.count > 13 {
                entries[Array(r.key.prefix(r.key.count - 8)), default: []].append(KeyValue(key: Array(r.key), value: Array(r.value)))
            }
        }
        var meta: [String: [UInt8]] = [:]
        for r in records(Layout.meta) where digestHolds(Layout.meta, r.key, r.value) {
            meta[String(decoding: r.key, as: UTF8.self)] = Array(r.value)
        }
        for r in records(Layout.generations) where r.key.count == 4 {
            let k = Int(Layout.readU32BE(r.key))
            func lose(_ why: String) { generationItems.append(SalvagedItem(generation: k, saved: false, reason: why)) }
            guard digestHolds(Layout.generations, r.key, r.value) else {
                lose(sealStore[Seal.recordDigestKey(database: Layout.generations, key: r.key)] == nil
                     ? "its record's digest was lost with a damaged page, so nothing vouches for it"
                     : "its record does not match its digest")
                continue
            }
            guard let g = try? GenerationJSON.decoder.decode(GenerationRecord.self, from: Data(r.value)) else { lose("its record is unreadable"); continue }
            let labels = labelsByGeneration[k] ?? []
            guard let want = g.labelsSha256 else { lose("it predates label digests, so its labels cannot be vouched for"); continue }
            guard LabelDigest.over(labels) == want else { lose("its labels do not match their digest"); continue }
            // Kept whole even when some labelled samples were lost: its digest holds,
            // and a reader names a missing sample when it meets one.
            let missing = labels.filter { k in k.key.withUnsafeBytes { !kept.contains(Layout.readU64BE($0, at: 4)) } }.count
            var gen = Generation(number: k, record: Array(r.value), labels: labels, selections: [])
            for (name, record) in selectionRecords[k] ?? [] {
                func loseSelection(_ why: String) { selectionItems.append(SalvagedItem(generation: k, selection: name, saved: false, reason: why)) }
                guard let digest = meta["selection/\(k)/\(name)"], String(decoding: digest, as: UTF8.self) == SHA256.hash(record).hexString else {
                    loseSelection("its record does not match its digest"); continue
                }
                guard let s = try? GenerationJSON.decoder.decode(SelectionRecord.self, from: Data(record)), let want = s.entriesSha256 else {
                    loseSelection("its record is unreadable or predates digests"); continue
                }
                let list = entries[GenerationKeys.entryPrefix(k, name)] ?? []
                guard LabelDigest.over(list) == want else { loseSelection("its entries do not match their digest"); continue }
                gen.selections.append(Selection(name: name, record: record, entries: list))
                selectionItems.append(SalvagedItem(generation: k, selection: name, saved: true))
            }
            generations.append(gen)
            generationItems.append(SalvagedItem(generation: k, saved: true,
                                                reason: missing == 0 ? nil : "kept, but \(missing) of its labelled samples were lost"))
        }
        let savedNumbers = Set(generations.map(\.number))
        for r in records(Layout.tags) where r.value.count == 4 && digestHolds(Layout.tags, r.key, r.value) {
            let k = Int(Layout.readU32BE(r.value))
            if savedNumbers.contains(k) { tags.append((String(decoding: r.key, as: UTF8.self), k)) }
        }
        let counter = meta[GenerationKeys.counter].flatMap { Int(String(decoding: $0, as: UTF8.self)) }
        generationCounter = [counter, generationItems.map(\.generation).max()].compactMap { $0 }.max()
    }

    func report(source: String, out: String) -> SalvageReport {
        SalvageReport(source: source, out: out, structureProblems: structureProblems,
                      samplesSaved: samples.count, samplesLost: lost.count, lostSamples: lost,
                      classesSaved: classes.count - classesLost.count, classesLost: classesLost,
                      generations: generationItems, selections: selectionItems, tagsSaved: tags.map(\.0).sorted(), verified: false)
    }
}

extension LabelDigest {
    /// The digest over records copied out of a walk (the same definition as `over(txn:)`).
    fileprivate static func over(_ records: [SalvagePlan.KeyValue]) -> String {
        var stream = SHA256Stream()
        for r in records {
            r.key.withUnsafeBytes { k in r.value.withUnsafeBytes { v in add(key: k, value: v, to: &stream) } }
        }
        return stream.finish().hexString
    }
}
