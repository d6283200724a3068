import Foundation
import Digest
import LMDB

/// Integrity digests of a generation's labels and of a selection's entries.
///
/// A flipped bit in a stored soft label reads back as a valid distribution, and a
/// student would train on it. Each generation and selection therefore records a
/// SHA-256 over its stored records, computed from what was stored, in the
/// transaction that publishes it; `verify` and every reader recompute it. The
/// digest runs over each record in key order: the LMDB key (generation u32be ++ id
/// u64be for labels; schemas/store-layout.md for selection entries), then the
/// value's length as u32le, then the value.
enum LabelDigest {
    static func over(_ txn: ReadTransaction, _ database: Database, prefix: [UInt8]) throws -> String {
        var stream = SHA256Stream()
        try txn.scan(database, prefix: prefix) { k, v in
            add(key: k, value: v, to: &stream)
            return true
        }
        return stream.finish().hexString
    }

    /// One record's contribution: key, value length (u32le), value.
    static func add(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, to stream: inout SHA256Stream) {
        stream.update(key)
        withUnsafeBytes(of: UInt32(truncatingIfNeeded: value.count).littleEndian) { stream.update($0) }
        stream.update(value)
    }
}

extension Store {
    /// The digest of generation `k`'s label records as stored now.
    func labelsDigest(_ k: Int, _ txn: ReadTransaction) throws -> String {
        try LabelDigest.over(txn, db.labels, prefix: GenerationKeys.labelPrefix(k))
    }

    /// The digest of one selection's entries as stored now.
    func entriesDigest(_ k: Int, _ name: String, _ txn: ReadTransaction) throws -> String {
        try LabelDigest.over(txn, db.selections, prefix: GenerationKeys.entryPrefix(k, name))
    }

    /// What is wrong with generation `k`'s labels and selections, one line each
    /// (empty when every digest holds; a generation written before digests has none
    /// to check).
    public func digestProblems(generation k: Int) throws -> [String] {
        try read { txn in try digestProblems(k, txn) }
    }

    func digestProblems(_ k: Int, _ txn: ReadTransaction) throws -> [String] {
        guard let g = try generation(k, txn) else { return ["generation \(k) is missing"] }
        var out: [String] = []
        if let want = g.labelsSha256, try labelsDigest(k, txn) != want {
            out.append("generation \(k): its labels do not match their digest (a stored label changed after it was written)")
        }
        var selections: [SelectionRecord] = []
        let prefix = GenerationKeys.selectionPrefix(k)
        try txn.scan(db.selections, prefix: prefix) { key, v in
            let name = String(decoding: key.dropFirst(prefix.count), as: UTF8.self)
            if let want = try txn.get(db.meta, key: GenerationKeys.selectionDigest(k, name)),
               SHA256.hash(v).hexString != String(decoding: want, as: UTF8.self) {
                out.append("generation \(k), selection '\(name)': its record does not match its digest")
            } else if let s = try? GenerationJSON.decoder.decode(SelectionRecord.self, from: Data(v)) {
                selections.append(s)
            } else {
                out.append("generation \(k): selection '\(name)' has an unreadable record")
            }
            return true
        }
        for s in selections {
            if let want = s.entriesSha256, try entriesDigest(k, s.name, txn) != want {
                out.append("generation \(k), selection '\(s.name)': its entries do not match their digest")
            }
        }
        return out
    }

    /// Refuses a generation whose labels or selections fail their digest: what a
    /// reader checks once per open, before training on or exporting the labels.
    public func requireIntact(generation k: Int) throws {
        if let first = try digestProblems(generation: k).first {
            throw StoreError(.corrupt, "\(path): \(first); the store looks damaged, noisy verify --store \(path) tells more")
        }
    }
}
