import Foundation
import ImageCodec
import LMDB
import Digest

/// One inconsistency found by `verify`.
public struct VerifyProblem: Codable, Sendable, CustomStringConvertible {
    public var id: UInt64?
    public var problem: String
    /// The LMDB database and page of a damaged page, when the damage is structural.
    public var database: String?
    public var page: UInt64?
    public init(id: UInt64? = nil, problem: String, database: String? = nil, page: UInt64? = nil) {
        self.id = id; self.problem = problem; self.database = database; self.page = page
    }
    public var description: String { id.map { "sample \($0): \(problem)" } ?? problem }
}

public struct VerifyReport: Codable, Sendable {
    public var samplesChecked: Int
    public var problems: [VerifyProblem]
    public var ok: Bool { problems.isEmpty }
    enum CodingKeys: String, CodingKey { case samplesChecked = "samples_checked", problems, ok }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(samplesChecked, forKey: .samplesChecked)
        try c.encode(problems, forKey: .problems)
        try c.encode(ok, forKey: .ok)
    }
    public init(samplesChecked: Int, problems: [VerifyProblem]) {
        self.samplesChecked = samplesChecked
        self.problems = problems
    }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        samplesChecked = try c.decode(Int.self, forKey: .samplesChecked)
        problems = try c.decode([VerifyProblem].self, forKey: .problems)
    }
}

extension Store {
    /// Verifies the store at `path` without trusting it: first a walk over the data
    /// file that validates every page (`PageWalk`), and only when the structure is
    /// sound the record-level checks through LMDB (which would follow a damaged
    /// page's wild pointer). Never crashes on a damaged store; throws only when the
    /// path is not a store at all.
    public static func verify(at path: String, progress: ((Int, Int) -> Void)? = nil) throws -> VerifyReport {
        try checkFolder(path, create: false)
        let damage = try structuralProblems(dataFile: path + "/data.mdb")
        if !damage.isEmpty { return VerifyReport(samplesChecked: 0, problems: damage) }
        let store: Store
        do {
            store = try Store(path: path, readOnly: true)
        } catch let e as StoreError {
            return VerifyReport(samplesChecked: 0, problems: [VerifyProblem(problem: e.message)])
        }
        return try store.verify(progress: progress)
    }

    /// The page-level damage of a data file, in verify's words; empty when sound.
    /// A walk that overlaps a commit can see pages the writer is reusing, so damage
    /// is reported only when a second walk of the same snapshot finds it too.
    static func structuralProblems(dataFile: String) throws -> [VerifyProblem] {
        var last: (txnid: UInt64, problems: [PageProblem])?
        for _ in 0..<3 {
            let now = try PageWalk.withWalk(dataFile: dataFile) { ($0.transactionID, $0.problems) }
            if now.1.isEmpty { return [] }
            if let last, last.txnid == now.0 { break }
            last = now
        }
        return (last?.problems ?? []).map { p in
            var text = p.description + affected(p)
            if p.database.isEmpty { text = "\(dataFile): " + text }
            let id = p.lowKey != nil && p.lowKey == p.highKey && (p.database == Layout.samples || p.database == Layout.images)
                ? p.lowKey.flatMap { $0.count == 8 ? $0.withUnsafeBytes { Layout.readU64BE($0) } : nil } : nil
            return VerifyProblem(id: id, problem: text, database: p.database.isEmpty ? nil : p.database, page: p.page)
        }
    }

    /// The sample ids (or generation) a damaged page covers, from its parent's keys.
    private static func affected(_ p: PageProblem) -> String {
        func id(_ k: [UInt8]?, at offset: Int) -> UInt64? {
            guard let k, k.count >= offset + 8 else { return nil }
            return k.withUnsafeBytes { Layout.readU64BE($0, at: offset) }
        }
        func ids(_ offset: Int) -> String? {
            let lo = id(p.lowKey, at: offset), hi = id(p.highKey, at: offset)
            if let lo, p.lowKey == p.highKey { return "sample \(lo)" }
            if lo == nil && hi == nil { return nil }
            return "samples " + (lo.map(String.init) ?? "from the first") + (hi.map { " up to \($0)" } ?? " to the last")
        }
        switch p.database {
        case Layout.samples, Layout.images:
            return ids(0).map { " (\($0))" } ?? ""
        case Layout.labels:
            let g = p.lowKey.flatMap { $0.count >= 4 ? $0.withUnsafeBytes { Layout.readU32BE($0) } : nil }
            return " (labels" + (g.map { " of generation \($0)" } ?? "") + (ids(4).map { ", \($0)" } ?? "") + ")"
        default: return ""
        }
    }

    /// Re-hashes and decodes every sample, checks every index both ways, every
    /// database's seal and every generation's digests, in one snapshot (so a
    /// concurrent ingest cannot make it see a torn state). Trusts the pages: call
    /// `Store.verify(at:)` on a store that may be damaged.
    public func verify(progress: ((Int, Int) -> Void)? = nil) throws -> VerifyReport {
        try read { txn in
            var problems: [VerifyProblem] = []
            func bad(_ id: UInt64?, _ s: String) { problems.append(VerifyProblem(id: id, problem: s)) }
            let classCount = try classes(txn).count
            let total = try txn.count(db.samples)
            var seenIDs = Set<UInt64>()
            var checked = 0
            try txn.scan(db.samples) { k, v in
                guard k.count == 8 else { bad(nil, "samples: a key of \(k.count) bytes (ids are 8)"); return true }
                let id = Layout.readU64BE(k)
                seenIDs.insert(id)
                checked += 1
                if checked % 1000 == 0 { progress?(checked, total) }
                guard let r = SampleRecord(id: id, bytes: v) else { bad(id, "unreadable metadata record"); return true }
                if let c = r.classIndex, Int(c) >= classCount { bad(id, "class index \(c) is not a registered class") }
                if (r.split == .unlabeled) != (r.classIndex == nil) { bad(id, "\(r.split.rawValue) sample with wrong class presence") }
                try txn.withValue(db.images, key: Layout.idKey(id)) { data in
                    guard let data else { bad(id, "image bytes missing"); return }
                    if data.count != r.byteSize { bad(id, "stored \(data.count) bytes, record says \(r.byteSize)") }
                    if SHA256.hash(data) != r.dataHash { bad(id, "image bytes do not match their hash") }
                    do {
                        let img = try Codec.decode(data)
                        if img.width != r.width || img.height != r.height || img.channels != r.channels {
                            bad(id, "decodes to \(img.width)x\(img.height)x\(img.channels), record says \(r.width)x\(r.height)x\(r.channels)")
                        }
                    } catch {
                        bad(id, "does not decode: \(error)")
                    }
                }
                if try txn.withValue(db.hashes, key: r.contentHash, { $0.map { Layout.readU64BE($0) } }) != id {
                    bad(id, "content-hash index does not point at this sample")
                }
                if try !ids(forSource: r.source, txn).contains(id) { bad(id, "source index lacks this sample") }
                let cls = try txn.withValue(db.splitIndex, key: Layout.splitKey(r.split, id)) { $0.map { $0.count == 4 ? $0.loadUnaligned(as: UInt32.self).littleEndian : SampleRecord.noClass - 1 } }
                if cls != (r.classIndex ?? SampleRecord.noClass) { bad(id, "split index entry missing or wrong") }
                return true
            }
            // Reverse direction: no index entry may point at a missing sample.
            try txn.scan(db.images) { k, _ in
                guard k.count == 8 else { bad(nil, "images: a key of \(k.count) bytes (ids are 8)"); return true }
                let id = Layout.readU64BE(k)
                if !seenIDs.contains(id) { bad(id, "image bytes without a sample record") }
                return true
            }
            try txn.scan(db.hashes) { _, v in
                guard v.count == 8 else { bad(nil, "content-hash index: a value of \(v.count) bytes"); return true }
                let id = Layout.readU64BE(v)
                if !seenIDs.contains(id) { bad(id, "content-hash index points at a missing sample") }
                return true
            }
            try txn.scan(db.splitIndex) { k, _ in
                guard k.count == 9 else { bad(nil, "split index: a key of \(k.count) bytes"); return true }
                let id = Layout.readU64BE(k, at: 1)
                if !seenIDs.contains(id) { bad(id, "split index points at a missing sample") }
                return true
            }
            try txn.scan(db.sources) { _, v in
                guard v.count == 8 else { bad(nil, "source index: a value of \(v.count) bytes"); return true }
                let id = Layout.readU64BE(v)
                if !seenIDs.contains(id) { bad(id, "source index points at a missing sample") }
                return true
            }
            // Records nothing else cross-checks (class names, metadata, tags, and
            // every field of a sample record) are covered by their database's seal.
            for (name, check) in try sealChecks(txn) {
                switch check {
                case .holds: break
                // Every database is sealed when the store is created: a missing seal is a damaged one.
                case .absent: bad(nil, "database \(name): its seal is missing")
                case .unreadable: bad(nil, "database \(name): its seal is unreadable")
                case .broken(let stored, let computed):
                    bad(nil, "database \(name): its records do not match their seal (\(computed.count) records, sealed with \(stored.count)): a record changed after it was written")
                }
            }
            for (name, keys) in try recordDigestChecks(txn) {
                for k in keys.prefix(20) {
                    let printable = k.allSatisfy { $0 >= 32 && $0 < 127 } ? "'\(String(decoding: k, as: UTF8.self))'" : k.hexString
                    bad(nil, "database \(name): record \(printable) does not match its digest")
                }
            }
            var generationNumbers: [Int] = []
            try txn.scan(db.generations) { k, v in
                guard k.count == 4 else { bad(nil, "generations: a key of \(k.count) bytes"); return true }
                let g = Int(Layout.readU32BE(k))
                if (try? GenerationJSON.decoder.decode(GenerationRecord.self, from: Data(v))) == nil {
                    bad(nil, "generation \(g): its record is unreadable")
                } else {
                    generationNumbers.append(g)
                }
                return true
            }
            for g in generationNumbers {
                for p in try digestProblems(g, txn) { bad(nil, p) }
            }
            progress?(checked, total)
            return VerifyReport(samplesChecked: checked, problems: problems)
        }
    }
}
