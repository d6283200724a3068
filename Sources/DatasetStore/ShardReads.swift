import Foundation

/// Reading a generation over a whole shard set as if it were one store: its figures
/// (`labels show`) and its snapshot (`labels export`), which is byte for byte the one
/// the source store would write for the same labels.
extension ShardManifest {
    /// A generation number or tag over the set: "latest" is the newest the manifest
    /// lists; other tags are kept alike on every shard (`labels tag` over a set).
    public func resolveGeneration(_ reference: String, stores: [Store]) throws -> Int {
        if let k = Int(reference) { return k }
        if reference == "latest" {
            guard let k = generations.last?.generation else { throw StoreError(.notFound, "the shard set has no generation yet") }
            return k
        }
        return try stores[0].resolveGeneration(reference).generation
    }

    /// Generation `k` of the set: each shard's record describes its own labels, so the
    /// set's counts, bytes and per-class figures are their sums (confidence weighted by
    /// count); the labels digest is per shard (in the manifest), so the record has none.
    /// The selections committed on the set, summed the same way.
    public func generationDetail(_ k: Int, stores: [Store]) throws -> (record: GenerationRecord, selections: [SelectionRecord]) {
        guard let entry = generations.first(where: { $0.generation == k }) else {
            throw StoreError(.notFound, "generation \(k) is not committed on this shard set (its manifest lists "
                             + generations.map { String($0.generation) }.joined(separator: ", ") + ")")
        }
        let records = try stores.compactMap { try $0.generation(k) }
        guard var g = records.first else { throw StoreError(.corrupt, "generation \(k): no shard holds it; noisy verify tells more") }
        g.samples = records.reduce(0) { $0 + $1.samples }
        g.bytesStored = records.reduce(0) { $0 + $1.bytesStored }
        g.meanConfidence = g.samples > 0 ? records.reduce(0.0) { $0 + $1.meanConfidence * Double($1.samples) } / Double(g.samples) : 0
        g.perClass = g.perClass.map { c in
            var c = c
            let parts = records.compactMap { $0.perClass.first { $0.classIndex == c.classIndex } }
            c.count = parts.reduce(0) { $0 + $1.count }
            c.meanConfidence = c.count > 0 ? parts.reduce(0.0) { $0 + $1.meanConfidence * Double($1.count) } / Double(c.count) : 0
            return c
        }
        g.labelsSha256 = nil
        let selections = try entry.selectionEntries.keys.sorted().compactMap { name -> SelectionRecord? in
            let parts = try stores.compactMap { try $0.selection(k, name) }
            guard var r = parts.first else { return nil }
            r.samples = parts.reduce(0) { $0 + $1.samples }
            r.entries = parts.reduce(0) { $0 + $1.entries }
            r.entriesSha256 = nil
            return r
        }
        return (g, selections)
    }

    /// Writes a generation of the set (or one of its selections) as one snapshot, in id
    /// order across shards (a merge of each shard's id-ordered labels, a chunk at a time,
    /// so memory stays bounded by the shard count, not the sample count).
    public static func exportLabels(inSet path: String, stores given: [Store]? = nil, _ r: LabelExportRequest) throws -> LabelExportManifest {
        let (m, folder) = try read(path)
        let stores = try given ?? m.openShards(folder: folder)
        let (record, selections) = try m.generationDetail(r.generation, stores: stores)
        let selection = r.selection ?? (selections.contains { $0.name == "default" } ? "default" : nil)
        var selRecord: SelectionRecord?
        if let selection {
            selRecord = selections.first { $0.name == selection }
            guard selRecord != nil else {
                throw StoreError(.notFound, "\(path): generation \(r.generation) has no selection '\(selection)' on the set")
            }
        }
        guard let holder = stores.first(where: { (try? $0.generation(r.generation)) != nil }) else {
            throw StoreError(.corrupt, "generation \(r.generation): no shard holds it")
        }
        let precision = try GenerationReader(store: holder, generation: r.generation).precision
        final class Current { var shard = 0 }  // the shard of the sample being visited, for its source path
        let current = Current()
        let input = LabelExportInput(
            record: record, precision: precision, selection: selection, selectionRecord: selRecord, classes: m.classes,
            storePath: path,
            visit: { body in
                var chunks = try stores.map { try $0.exportChunk(r.generation, selection: selection, from: 0) }
                var at = [Int](repeating: 0, count: stores.count)
                // A min-heap of (next id, shard).
                var heap: [(UInt64, Int)] = []
                func push(_ e: (UInt64, Int)) {
                    heap.append(e)
                    var i = heap.count - 1
                    while i > 0, heap[(i - 1) / 2].0 > heap[i].0 { heap.swapAt(i, (i - 1) / 2); i = (i - 1) / 2 }
                }
                func pop() -> (UInt64, Int)? {
                    guard let top = heap.first else { return nil }
                    let last = heap.removeLast()
                    if !heap.isEmpty {
                        heap[0] = last
                        var i = 0
                        while true {
                            let l = 2 * i + 1, rr = l + 1
                            var s = i
                            if l < heap.count, heap[l].0 < heap[s].0 { s = l }
                            if rr < heap.count, heap[rr].0 < heap[s].0 { s = rr }
                            if s == i { break }
                            heap.swapAt(i, s); i = s
                        }
                    }
                    return top
                }
                for (k, c) in chunks.enumerated() { if let f = c.first { push((f.id, k)) } }
                while let (_, k) = pop() {
                    let e = chunks[k][at[k]]
                    current.shard = k
                    try e.value.withUnsafeBytes { try body(e.id, e.copies, $0) }
                    at[k] += 1
                    if at[k] == chunks[k].count {
                        chunks[k] = e.id == UInt64.max ? [] : try stores[k].exportChunk(r.generation, selection: selection, from: e.id + 1)
                        at[k] = 0
                    }
                    if at[k] < chunks[k].count { push((chunks[k][at[k]].id, k)) }
                }
            },
            source: { id in try stores[current.shard].sample(id)?.source ?? "" })
        return try Store.writeLabelExport(r, input)
    }
}

extension Store {
    /// Up to `limit` labels of generation `k` (or of its selection's entries, with their
    /// copies) from id `start` on, in id order, read in one transaction.
    func exportChunk(_ k: Int, selection: String?, from start: UInt64,
                     limit: Int = 4096) throws -> [(id: UInt64, copies: Int, value: [UInt8])] {
        var out: [(id: UInt64, copies: Int, value: [UInt8])] = []
        try read { txn in
            if let selection {
                let prefix = GenerationKeys.entryPrefix(k, selection)
                try txn.scan(db.selections, from: GenerationKeys.entry(k, selection, start)) { key, v in
                    guard key.count == prefix.count + 8, key.prefix(prefix.count).elementsEqual(prefix) else { return false }
                    guard v.count == 4 else { throw StoreError(.corrupt, "\(path): selection '\(selection)' has an entry of \(v.count) bytes; noisy verify --store \(path) tells more") }
                    let id = Layout.readU64BE(key, at: prefix.count)
                    let value = try txn.withValue(db.labels, key: GenerationKeys.label(k, id)) { $0.map { Array($0) } }
                    guard let value else { throw StoreError(.corrupt, "\(path): selected sample \(id) has no label") }
                    out.append((id, Int(v.loadUnaligned(as: UInt32.self).littleEndian), value))
                    return out.count < limit
                }
            } else {
                let prefix = GenerationKeys.labelPrefix(k)
                try txn.scan(db.labels, from: GenerationKeys.label(k, start)) { key, v in
                    guard key.count == 12, key.prefix(4).elementsEqual(prefix) else { return false }
                    out.append((Layout.readU64BE(key, at: 4), 1, Array(v)))
                    return out.count < limit
                }
            }
        }
        return out
    }
}

extension ShardManifest {
    /// A compacted copy of a set: each shard compacted into `out` under its own relative
    /// path (a copy keeps the store's creation time, so the manifest still names it), then
    /// the manifest, last, so a folder without one is an unfinished copy. Staged label
    /// job parts are not copied. Returns the shards written.
    public static func compact(set m: ShardManifest, stores: [Store], to out: String) throws -> Int {
        if FileManager.default.fileExists(atPath: out + "/" + fileName) {
            throw StoreError(.conflict, "\(out): holds a shard set already; compact into a new folder")
        }
        for (s, store) in zip(m.shards, stores) { try store.compact(to: out + "/" + s.path) }
        try m.write(to: out)
        return m.shards.count
    }
}
