import Digest
import Foundation

/// What `noisy salvage` over a shard set saved and lost (schemas/salvage-set.schema.json).
public struct SetSalvageReport: Codable, Sendable {
    public var source: String
    public var out: String
    /// Each shard's own salvage report, in shard order.
    public var shards: [SalvageReport]
    public var samplesSaved: Int
    public var samplesLost: Int
    /// The set's generations and selections: kept only when every shard that held a part
    /// of one kept it whole (a generation over a set is one object).
    public var generations: [SalvagedItem]
    public var selections: [SalvagedItem]
    /// The new set passed `verify`.
    public var verified: Bool

    enum CodingKeys: String, CodingKey {
        case source, out, shards, generations, selections, verified
        case samplesSaved = "samples_saved", samplesLost = "samples_lost"
    }
}

extension ShardManifest {
    /// Salvages every shard of a set (as `Store.salvage`, each into `out` under its own
    /// relative path), then writes a new manifest for what was saved: each shard's new
    /// creation time, counts and ids; the generations every holding shard kept whole
    /// (a generation lost on one shard is deleted from the others, so that the set
    /// stays all-or-nothing); the selections likewise. The manifest is written last.
    /// The damaged set is only read. A manifest that fails its checksum, or a missing
    /// shard, is refused by name: salvage the shards one at a time then.
    public static func salvage(set path: String, to out: String, progress: ((Int, Int) -> Void)? = nil) throws -> SetSalvageReport {
        let (m, folder) = try read(path)
        if let gone = m.shards.first(where: { !FileManager.default.fileExists(atPath: folder + "/" + $0.path + "/data.mdb") }) {
            throw StoreError(.notFound, "shard \(gone.index) of \(m.shards.count) (\(folder)/\(gone.path)) is missing: salvage the other shards one at a time")
        }
        if FileManager.default.fileExists(atPath: out + "/" + fileName) {
            throw StoreError(.invalidArgument, "\(out): already holds a shard set; salvage writes a new one")
        }
        var reports: [SalvageReport] = []
        for s in m.shards {
            reports.append(try Store.salvage(from: folder + "/" + s.path, to: out + "/" + s.path, progress: progress))
        }
        var genItems: [SalvagedItem] = [], selItems: [SalvagedItem] = []
        try rebuildManifest(m, out: out, genItems: &genItems, selItems: &selItems)
        // The shards are closed again here (one LMDB handle per file and process): verify opens its own.
        let verified = (try? verifySet(at: out).problems.isEmpty) ?? false
        return SetSalvageReport(source: path, out: out, shards: reports, samplesSaved: reports.reduce(0) { $0 + $1.samplesSaved },
                                samplesLost: reports.reduce(0) { $0 + $1.samplesLost }, generations: genItems, selections: selItems,
                                verified: verified)
    }

    /// The salvaged set's manifest: the generations and selections every holding shard
    /// kept whole, and each shard's new counts.
    private static func rebuildManifest(_ m: ShardManifest, out: String, genItems: inout [SalvagedItem],
                                        selItems: inout [SalvagedItem]) throws {
        let stores = try m.shards.map { try Store(path: out + "/" + $0.path) }
        var generations: [Generation] = []
        for g in m.generations {
            var lostOn: [Int] = []
            for (k, s) in stores.enumerated() where g.labels.indices.contains(k) && g.labels[k] > 0 {
                if try s.generation(g.generation)?.labelsSha256 != g.labelsSha256[k] { lostOn.append(k) }
            }
            guard lostOn.isEmpty else {
                for s in stores where try s.generation(g.generation) != nil { try s.deleteGeneration(g.generation) }
                genItems.append(SalvagedItem(generation: g.generation, saved: false,
                                             reason: "lost on shard " + lostOn.map(String.init).joined(separator: ", ") + "; removed from the others"))
                for name in g.selectionEntries.keys.sorted() {
                    selItems.append(SalvagedItem(generation: g.generation, selection: name, saved: false, reason: "its generation was lost"))
                }
                continue
            }
            var kept = g
            for (name, entries) in g.selectionEntries.sorted(by: { $0.key < $1.key }) {
                var lostHere: [Int] = []
                for (k, s) in stores.enumerated() where entries.indices.contains(k) && entries[k] > 0 {
                    if try s.selection(g.generation, name) == nil { lostHere.append(k) }
                }
                if lostHere.isEmpty {
                    selItems.append(SalvagedItem(generation: g.generation, selection: name, saved: true))
                } else {
                    kept.selectionEntries[name] = nil
                    selItems.append(SalvagedItem(generation: g.generation, selection: name, saved: false,
                                                 reason: "lost on shard " + lostHere.map(String.init).joined(separator: ", ")))
                }
            }
            generations.append(kept)
            genItems.append(SalvagedItem(generation: g.generation, saved: true))
        }
        var next = m
        next.created = GenerationJSON.now()
        next.classes = try stores[0].classes()
        next.generations = generations
        next.shards = try zip(m.shards, stores).map { s, store in
            var ids: [UInt64] = [], splits: [String: Int] = [:]
            for split in Split.allCases {
                let here = try store.index(of: split).map(\.id)
                ids += here
                if !here.isEmpty { splits[split.rawValue] = here.count }
            }
            ids.sort()
            let idBytes = ids.flatMap { withUnsafeBytes(of: $0.littleEndian) { Array($0) } }
            return Shard(index: s.index, path: s.path, createdAt: try store.createdAt(), samples: ids.count, splits: splits,
                         idsSha256: SHA256.hash(idBytes).hexString)
        }
        next.samples = next.shards.reduce(0) { $0 + $1.samples }
        next.sha256 = try next.checksum()
        try next.write(to: out)
    }
}
