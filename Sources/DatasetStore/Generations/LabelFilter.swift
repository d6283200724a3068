import Digest
import Foundation
import KeyedRandom
import LMDB

public struct LabelFilterRequest: Sendable {
    public var generation: Int
    public var name: String
    /// Keep samples whose top probability is at least this (paper: 0.3).
    public var threshold: Double
    /// Balance: every class ends with exactly this many entries.
    public var perClass: Int?
    /// Orders equally confident samples (a keyed hash of (seed, id)).
    public var seed: UInt64
    public init(generation: Int, name: String = "default", threshold: Double, perClass: Int? = nil, seed: UInt64 = 0) {
        self.generation = generation; self.name = name; self.threshold = threshold; self.perClass = perClass; self.seed = seed
    }
}

extension Store {
    /// Records a selection inside a generation: the samples whose top probability
    /// reaches the threshold, and with `perClass` N, exactly N entries per class:
    /// classes with more keep their N most confident; classes with n < N keep all,
    /// each floor(N/n) or ceil(N/n) times, the extra copies going to the most
    /// confident. Written in one transaction; a selection never changes afterwards.
    public func filterLabels(_ r: LabelFilterRequest) throws -> SelectionRecord {
        try Self.checkFilter(r)
        guard let g = try generation(r.generation) else { throw StoreError(.notFound, "\(path): no generation \(r.generation)") }
        if try selection(r.generation, r.name) != nil {
            throw StoreError(.conflict, "\(path): generation \(r.generation) already has a selection '\(r.name)'; selections never change: choose another name", field: .selectionName)
        }
        var tally = SelectionTally(classCount: g.classCount)
        try tallyLabels(r, into: &tally)
        let (record, entries) = tally.select(r)
        return try write { txn in
            guard try generation(r.generation, txn) != nil else { throw StoreError(.notFound, "\(path): generation \(r.generation) was deleted") }
            return try putSelection(txn, record, entries: entries)
        }
    }

    static func checkFilter(_ r: LabelFilterRequest) throws {
        guard !r.name.isEmpty, r.name.utf8.count <= 200, !r.name.utf8.contains(0) else {
            throw StoreError(.invalidArgument, "selection name must be 1-200 bytes without NUL")
        }
        guard r.threshold >= 0, r.threshold <= 1 else { throw StoreError(.invalidArgument, "threshold \(r.threshold) is not a probability (it must be in [0, 1])", field: .threshold) }
        if let n = r.perClass, n < 1 { throw StoreError(.invalidArgument, "a class cap of \(n) keeps nothing (it must be at least 1)", field: .perClass) }
    }

    /// Adds this store's labels of the generation to `tally` (only their 8-byte headers are read).
    func tallyLabels(_ r: LabelFilterRequest, into tally: inout SelectionTally) throws {
        try requireIntact(generation: r.generation)
        try removeOrphanLabels()
        let c = tally.classCount
        try forEachLabel(r.generation) { id, v in
            let (top, p) = LabelEncoding.top(v)
            guard top >= 0, top < c, p.isFinite else { throw StoreError(.corrupt, "\(path): generation \(r.generation), sample \(id): class \(top) of \(c)") }
            tally.add(id: id, top: top, confidence: p, threshold: r.threshold)
        }
    }

    /// Writes a selection's entries and its record in one transaction, with the digest
    /// of what was stored; returns the record as published. A second selection of the
    /// same name fails here and rolls all of it back.
    func putSelection(_ txn: WriteTransaction, _ record: SelectionRecord, entries: [(id: UInt64, copies: Int)]) throws -> SelectionRecord {
        let prefix = GenerationKeys.entryPrefix(record.generation, record.name)
        for e in entries {
            try txn.put(db.selections, key: prefix + Layout.idKey(e.id), value: withUnsafeBytes(of: UInt32(e.copies).littleEndian) { Array($0) })
        }
        var published = record
        published.entriesSha256 = try entriesDigest(record.generation, record.name, txn)
        let json = Array(try GenerationJSON.encoder.encode(published))
        try txn.put(db.selections, key: GenerationKeys.selection(record.generation, record.name), value: json, noOverwrite: true)
        // The record's own digest, in `meta` (whose records each carry a digest):
        // lets salvage keep this selection byte for byte when a neighbour is damaged.
        try txn.put(db.meta, key: GenerationKeys.selectionDigest(record.generation, record.name), value: Array(SHA256.hash(json).hexString.utf8))
        return published
    }
}

/// What a filter counts over a generation's labels (of one store, or of every shard of
/// a set): per class, a confidence histogram, the labelled samples and those kept.
struct SelectionTally {
    let classCount: Int
    var hist: [[Int]]
    var before: [Int]
    var kept: [[(id: UInt64, confidence: Float)]]

    init(classCount c: Int) {
        classCount = c
        hist = [[Int]](repeating: [Int](repeating: 0, count: 101), count: c)
        before = [Int](repeating: 0, count: c)
        kept = [[(id: UInt64, confidence: Float)]](repeating: [], count: c)
    }

    mutating func add(id: UInt64, top: Int, confidence p: Float, threshold: Double) {
        hist[top][min(100, max(0, Int(Double(p) * 100)))] += 1
        before[top] += 1
        if Double(p) >= threshold { kept[top].append((id, p)) }
    }

    /// The selection: per class the most confident at or above the threshold, balanced
    /// to `perClass` (copies for classes with fewer); entries in id order.
    func select(_ r: LabelFilterRequest) -> (SelectionRecord, [(id: UInt64, copies: Int)]) {
        func tieKey(_ id: UInt64) -> UInt64 { legacySelectionTieKey(seed: r.seed, id: id) }
        var entries: [(id: UInt64, copies: Int)] = []
        var after = [Int](repeating: 0, count: classCount)
        var empty: [Int] = []
        for cls in 0..<classCount {
            var list = kept[cls]
            list.sort { a, b in
                a.confidence != b.confidence ? a.confidence > b.confidence : (tieKey(a.id), a.id) < (tieKey(b.id), b.id)
            }
            if list.isEmpty { empty.append(cls); continue }
            guard let n = r.perClass else {
                for e in list { entries.append((e.id, 1)) }
                after[cls] = list.count
                continue
            }
            if list.count >= n {
                for e in list.prefix(n) { entries.append((e.id, 1)) }
            } else {
                let base = n / list.count, extra = n % list.count
                for (j, e) in list.enumerated() { entries.append((e.id, base + (j < extra ? 1 : 0))) }
            }
            after[cls] = n
        }
        entries.sort { $0.id < $1.id }
        let record = SelectionRecord(
            name: r.name, generation: r.generation, created: GenerationJSON.now(), threshold: r.threshold, perClass: r.perClass,
            seed: r.seed, samples: entries.count, entries: entries.reduce(0) { $0 + $1.copies },
            countsBefore: before, countsAboveThreshold: kept.map(\.count), countsAfter: after, emptyClasses: empty,
            confidenceHistograms: hist)
        return (record, entries)
    }
}
