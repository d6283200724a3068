import Foundation
import ImageCodec
import LMDB
import Digest

/// Keys of the generation databases (schemas/store-layout.md).
enum GenerationKeys {
    static func generation(_ k: Int) -> [UInt8] { Layout.u32Key(UInt32(k)) }
    static func label(_ k: Int, _ id: UInt64) -> [UInt8] { Layout.u32Key(UInt32(k)) + Layout.idKey(id) }
    static func labelPrefix(_ k: Int) -> [UInt8] { Layout.u32Key(UInt32(k)) }
    static func selection(_ k: Int, _ name: String) -> [UInt8] { Layout.u32Key(UInt32(k)) + [0] + Array(name.utf8) }
    static func selectionPrefix(_ k: Int) -> [UInt8] { Layout.u32Key(UInt32(k)) + [0] }
    static func entryPrefix(_ k: Int, _ name: String) -> [UInt8] { Layout.u32Key(UInt32(k)) + [1] + Array(name.utf8) + [0] }
    static func entry(_ k: Int, _ name: String, _ id: UInt64) -> [UInt8] { entryPrefix(k, name) + Layout.idKey(id) }
    /// In `meta`: the SHA-256 (hex) of a selection's JSON record.
    static func selectionDigest(_ k: Int, _ name: String) -> [UInt8] { Array("selection/\(k)/".utf8) + Array(name.utf8) }
    static func selectionDigestPrefix(_ k: Int) -> [UInt8] { Array("selection/\(k)/".utf8) }
    static let counter = "generation_counter"
    static let writer = "labels_writer"
}

/// What is writing generations right now: a second writer is refused, a dead one's
/// leftovers are removed.
struct LabelsWriter: Codable {
    var pid: Int32
    var generation: Int
    var command: String
    var started: String
}

extension Store {
    // MARK: Reading

    /// Every committed generation, in order.
    public func generations() throws -> [GenerationRecord] {
        try read { txn in
            var out: [GenerationRecord] = []
            try txn.scan(db.generations) { _, v in
                out.append(try GenerationJSON.decoder.decode(GenerationRecord.self, from: Data(v)))
                return true
            }
            return out
        }
    }

    public func generation(_ k: Int) throws -> GenerationRecord? {
        try read { txn in try generation(k, txn) }
    }

    func generation(_ k: Int, _ txn: ReadTransaction) throws -> GenerationRecord? {
        guard k > 0, k <= Int(UInt32.max) else { return nil }
        return try txn.withValue(db.generations, key: GenerationKeys.generation(k)) { v in
            try v.map { try GenerationJSON.decoder.decode(GenerationRecord.self, from: Data($0)) }
        }
    }

    /// Tags and the generations they point at.
    public func tags() throws -> [String: Int] {
        try read { txn in
            var out: [String: Int] = [:]
            try txn.scan(db.tags) { k, v in
                out[String(decoding: k, as: UTF8.self)] = Int(Layout.readU32BE(v))
                return true
            }
            return out
        }
    }

    /// A generation number from a number or a tag; an error names what exists.
    public func resolveGeneration(_ reference: String) throws -> GenerationRecord {
        let k: Int
        if let n = Int(reference) {
            k = n
        } else if let t = try tags()[reference] {
            k = t
        } else {
            let names = try tags().keys.sorted()
            throw StoreError(.notFound, "\(path): no generation or tag '\(reference)'" + (names.isEmpty ? "" : " (tags: \(names.joined(separator: ", ")))"))
        }
        guard let g = try generation(k) else {
            let have = try generations().map { String($0.generation) }
            throw StoreError(.notFound, "\(path): no generation \(k)" + (have.isEmpty ? " (the store has none yet)" : " (generations: \(have.joined(separator: ", ")))"))
        }
        return g
    }

    /// The selections recorded in generation `k`.
    public func selections(of k: Int) throws -> [SelectionRecord] {
        try read { txn in
            var out: [SelectionRecord] = []
            try txn.scan(db.selections, prefix: GenerationKeys.selectionPrefix(k)) { _, v in
                out.append(try GenerationJSON.decoder.decode(SelectionRecord.self, from: Data(v)))
                return true
            }
            return out
        }
    }

    public func selection(_ k: Int, _ name: String) throws -> SelectionRecord? {
        try read { txn in
            try txn.withValue(db.selections, key: GenerationKeys.selection(k, name)) { v in
                try v.map { try GenerationJSON.decoder.decode(SelectionRecord.self, from: Data($0)) }
            }
        }
    }

    /// Visits a selection's entries (id, copies) in id order.
    public func forEachSelectionEntry(_ k: Int, _ name: String, _ body: (UInt64, Int) throws -> Void) throws {
        let prefix = GenerationKeys.entryPrefix(k, name)
        try read { txn in
            try txn.scan(db.selections, prefix: prefix) { key, v in
                guard v.count == 4 else { throw StoreError(.corrupt, "\(path): selection '\(name)' has an entry of \(v.count) bytes: the store looks damaged; noisy verify --store \(path) tells more") }
                try body(Layout.readU64BE(key, at: prefix.count), Int(v.loadUnaligned(as: UInt32.self).littleEndian))
                return true
            }
        }
    }

    /// Visits generation `k`'s stored labels in id order, in one snapshot, `batch`
    /// at a time (a fresh read transaction per batch keeps old pages reusable).
    public func forEachLabel(_ k: Int, from start: UInt64 = 0, _ body: (UInt64, UnsafeRawBufferPointer) throws -> Void) throws {
        let prefix = GenerationKeys.labelPrefix(k)
        try read { txn in
            try txn.scan(db.labels, from: GenerationKeys.label(k, start)) { key, v in
                guard key.count == 12, key.prefix(4).elementsEqual(prefix) else { return false }
                try body(Layout.readU64BE(key, at: 4), v)
                return true
            }
        }
    }

    /// Calls `body` with sample `id`'s stored label in generation `k` (nil: not labelled).
    public func withLabel<T>(_ k: Int, _ id: UInt64, _ body: (UnsafeRawBufferPointer?) throws -> T) throws -> T {
        try read { txn in try txn.withValue(db.labels, key: GenerationKeys.label(k, id), body) }
    }

    /// SHA-256 of the class list, newline-joined: what a generation was made against.
    public func classesHash() throws -> String {
        SHA256.hash(Array(try classes().joined(separator: "\n").utf8)).hexString
    }

    // MARK: Tags and deletion

    /// Points `tag` at generation `k` (moving it if it exists).
    public func setTag(_ tag: String, generation k: Int) throws {
        guard !tag.isEmpty, Int(tag) == nil, !tag.contains(where: { $0.isWhitespace || $0 == "/" }) else {
            throw StoreError(.invalidArgument, "tag '\(tag)' must be a non-numeric name without spaces or slashes")
        }
        try write { txn in
            guard try generation(k, txn) != nil else { throw StoreError(.notFound, "\(path): no generation \(k)") }
            try txn.put(db.tags, key: Array(tag.utf8), value: Layout.u32Key(UInt32(k)))
        }
    }

    /// Removes a tag; false when there was none.
    @discardableResult
    public func removeTag(_ tag: String) throws -> Bool {
        try write { txn in try txn.delete(db.tags, key: Array(tag.utf8)) }
    }

    /// Deletes generation `k`: its metadata and tags first (one transaction: from
    /// then on it is gone for every reader), then its labels and selections in
    /// batches. Other generations are untouched, even those naming `k` as parent.
    public func deleteGeneration(_ k: Int) throws {
        try write { txn in
            guard try generation(k, txn) != nil else { throw StoreError(.notFound, "\(path): no generation \(k)") }
            try txn.delete(db.generations, key: GenerationKeys.generation(k))
            var dead: [[UInt8]] = []
            try txn.scan(db.tags) { key, v in
                if Int(Layout.readU32BE(v)) == k { dead.append(Array(key)) }
                return true
            }
            for t in dead { try txn.delete(db.tags, key: t) }
        }
        try removeRange(db.labels, prefix: GenerationKeys.labelPrefix(k))
        try removeRange(db.selections, prefix: GenerationKeys.labelPrefix(k))
        try removeRange(db.meta, prefix: GenerationKeys.selectionDigestPrefix(k))
    }

    /// Deletes every key with `prefix`, 20,000 per transaction.
    func removeRange(_ database: Database, prefix: [UInt8]) throws {
        while true {
            let removed = try write { txn -> Int in
                var keys: [[UInt8]] = []
                try txn.scan(database, prefix: prefix) { key, _ in
                    keys.append(Array(key))
                    return keys.count < 20_000
                }
                for key in keys { try txn.delete(database, key: key) }
                return keys.count
            }
            if removed == 0 { return }
        }
    }

    // MARK: Writing

    /// Takes the labels writer slot for a new generation: refuses while another live
    /// process holds it, clears what a dead one left, and returns the next number.
    func beginGenerationWrite(command: String, number: Int? = nil) throws -> Int {
        let k = try write { txn -> Int in
            if let held = try txn.withValue(db.meta, key: Array(GenerationKeys.writer.utf8), { v in
                try v.map { try JSONDecoder().decode(LabelsWriter.self, from: Data($0)) }
            }), held.pid != getpid(), kill(held.pid, 0) == 0 {
                throw StoreError(.conflict, "\(path): another process (pid \(held.pid), \(held.command)) is writing generation \(held.generation) since \(held.started)")
            }
            let last = try lastGenerationNumber(txn)
            // A shard set's import gives every shard the same number, above all of theirs.
            if let number, number <= last {
                throw StoreError(.conflict, "\(path): generation number \(number) is taken (the last is \(last))")
            }
            let k = number ?? last + 1
            let w = LabelsWriter(pid: getpid(), generation: k, command: command, started: GenerationJSON.now())
            try txn.put(db.meta, key: Array(GenerationKeys.writer.utf8), value: Array(try JSONEncoder().encode(w)))
            return k
        }
        try removeOrphanLabels()
        return k
    }

    /// Releases the writer slot without committing (after a refused import).
    func abandonGenerationWrite() {
        _ = try? write { txn in try txn.delete(db.meta, key: Array(GenerationKeys.writer.utf8)) }
        _ = try? removeOrphanLabels()
    }

    /// The highest generation number ever committed (numbers are never reused).
    func lastGenerationNumber() throws -> Int { try read { try lastGenerationNumber($0) } }

    func lastGenerationNumber(_ txn: ReadTransaction) throws -> Int {
        let counter = try txn.withValue(db.meta, key: Array(GenerationKeys.counter.utf8)) { v in
            v.flatMap { Int(String(decoding: $0, as: UTF8.self)) } ?? 0
        }
        let top = try txn.lastKey(db.generations).map { key in key.withUnsafeBytes { Int(Layout.readU32BE($0)) } } ?? 0
        return max(counter, top)
    }

    /// Commits generation metadata: the moment the generation becomes visible.
    /// Returns the seconds spent on the labels' digest.
    @discardableResult
    func commitGeneration(_ record: GenerationRecord, tagLatest: Bool = true) throws -> Double {
        try write { txn in
            var record = record
            let start = DispatchTime.now().uptimeNanoseconds
            record.labelsSha256 = try labelsDigest(record.generation, txn)
            let digestSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            try txn.put(db.generations, key: GenerationKeys.generation(record.generation),
                        value: Array(try GenerationJSON.encoder.encode(record)), noOverwrite: true)
            try txn.put(db.meta, key: Array(GenerationKeys.counter.utf8), value: Array(String(record.generation).utf8))
            if tagLatest { try txn.put(db.tags, key: Array("latest".utf8), value: Layout.u32Key(UInt32(record.generation))) }
            try txn.delete(db.meta, key: Array(GenerationKeys.writer.utf8))
            return digestSeconds
        }
    }

    /// Labels and selection entries of generations that were never committed (a
    /// killed import) or were deleted half way: nobody can see them; remove them.
    public func removeOrphanLabels() throws {
        for database in [db.labels, db.selections] {
            var k = 1
            while true {
                let next = try read { txn -> Int? in
                    var found: Int?
                    try txn.scan(database, from: GenerationKeys.labelPrefix(k)) { key, _ in
                        found = Int(Layout.readU32BE(key))
                        return false
                    }
                    return found
                }
                guard let g = next else { break }
                let committed = try generation(g) != nil
                let writing = try read { txn in
                    try txn.withValue(db.meta, key: Array(GenerationKeys.writer.utf8)) { v in
                        v.flatMap { try? JSONDecoder().decode(LabelsWriter.self, from: Data($0)) }
                    }
                }
                // A generation another live process is writing right now is not an orphan.
                let busy = writing.map { $0.generation == g && $0.pid != getpid() && kill($0.pid, 0) == 0 } ?? false
                if !committed && !busy { try removeRange(database, prefix: GenerationKeys.labelPrefix(g)) }
                k = g + 1
            }
        }
    }
}
