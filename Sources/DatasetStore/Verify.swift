import Foundation
import ImageCodec
import LMDB
import Digest

/// One inconsistency found by `verify`.
public struct VerifyProblem: Codable, Sendable, CustomStringConvertible {
    public var id: UInt64?
    public var problem: String
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
    /// Re-hashes and decodes every sample and checks every index both ways, in one
    /// snapshot (so a concurrent ingest cannot make it see a torn state).
    public func verify(progress: ((Int, Int) -> Void)? = nil) throws -> VerifyReport {
        try read { txn in
            var problems: [VerifyProblem] = []
            func bad(_ id: UInt64?, _ s: String) { problems.append(VerifyProblem(id: id, problem: s)) }
            let classCount = try classes(txn).count
            let total = try txn.count(db.samples)
            var seenIDs = Set<UInt64>()
            var checked = 0
            try txn.scan(db.samples) { k, v in
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
                let cls = try txn.withValue(db.splitIndex, key: Layout.splitKey(r.split, id)) { $0.map { $0.loadUnaligned(as: UInt32.self).littleEndian } }
                if cls != (r.classIndex ?? SampleRecord.noClass) { bad(id, "split index entry missing or wrong") }
                return true
            }
            // Reverse direction: no index entry may point at a missing sample.
            try txn.scan(db.images) { k, _ in
                let id = Layout.readU64BE(k)
                if !seenIDs.contains(id) { bad(id, "image bytes without a sample record") }
                return true
            }
            try txn.scan(db.hashes) { _, v in
                let id = Layout.readU64BE(v)
                if !seenIDs.contains(id) { bad(id, "content-hash index points at a missing sample") }
                return true
            }
            try txn.scan(db.splitIndex) { k, _ in
                let id = Layout.readU64BE(k, at: 1)
                if !seenIDs.contains(id) { bad(id, "split index points at a missing sample") }
                return true
            }
            try txn.scan(db.sources) { _, v in
                let id = Layout.readU64BE(v)
                if !seenIDs.contains(id) { bad(id, "source index points at a missing sample") }
                return true
            }
            progress?(checked, total)
            return VerifyReport(samplesChecked: checked, problems: problems)
        }
    }
}
