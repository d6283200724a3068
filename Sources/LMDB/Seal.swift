internal import CLMDB
import Digest

/// An order-independent fingerprint of every record in one database.
///
/// LMDB keeps no checksums: a bit flipped in a stored value after it was written
/// (a bad disk, a bad copy) reads back as valid data. A seal is the sum, lane by
/// lane modulo 2^64, of SHA-256(u32le key length ++ key ++ value) over all records,
/// plus their count. A sum can be kept up to date one put or delete at a time (add
/// the new record, subtract the old one) in the transaction that makes the change,
/// so `verify` can recompute it by one scan and compare: any changed, added or
/// lost record shows. It guards against accidents, not against an adversary.
///
/// Seals live in the database `seals` (key: the database name, value: four u64le
/// lanes then a u64le count, 40 bytes); schemas/store-layout.md says the same.
public struct Seal: Equatable, Sendable, CustomStringConvertible {
    public var lanes: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    public var count: Int64 = 0

    public init() {}

    public static func == (a: Seal, b: Seal) -> Bool {
        a.lanes == b.lanes && a.count == b.count
    }

    public var description: String {
        "\(count) records, " + [lanes.0, lanes.1, lanes.2, lanes.3].map { String($0, radix: 16) }.joined(separator: ":")
    }

    /// One record's digest: SHA-256(u32le key length ++ key ++ value). A seal sums
    /// these; a database with record digests also stores each one.
    public static func recordDigest(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> [UInt8] {
        var stream = SHA256Stream()
        withUnsafeBytes(of: UInt32(truncatingIfNeeded: key.count).littleEndian) { stream.update($0) }
        stream.update(key)
        stream.update(value)
        return stream.finish()
    }

    /// Where a record's digest is kept in `seals`: the database name, a zero byte, the key.
    public static func recordDigestKey(database: String, key: UnsafeRawBufferPointer) -> [UInt8] {
        Array(database.utf8) + [0] + Array(key)
    }

    /// The contribution of one record.
    static func lanes(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> (UInt64, UInt64, UInt64, UInt64) {
        let d = recordDigest(key: key, value: value)
        return d.withUnsafeBytes { b in
            (b.loadUnaligned(fromByteOffset: 0, as: UInt64.self), b.loadUnaligned(fromByteOffset: 8, as: UInt64.self),
             b.loadUnaligned(fromByteOffset: 16, as: UInt64.self), b.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
        }
    }

    /// Adds one record (what a writer or a checker does per record).
    public mutating func add(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        let l = Self.lanes(key: key, value: value)
        lanes = (lanes.0 &+ l.0, lanes.1 &+ l.1, lanes.2 &+ l.2, lanes.3 &+ l.3)
        count &+= 1
    }

    mutating func subtract(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        let l = Self.lanes(key: key, value: value)
        lanes = (lanes.0 &- l.0, lanes.1 &- l.1, lanes.2 &- l.2, lanes.3 &- l.3)
        count &-= 1
    }

    mutating func add(_ other: Seal) {
        lanes = (lanes.0 &+ other.lanes.0, lanes.1 &+ other.lanes.1, lanes.2 &+ other.lanes.2, lanes.3 &+ other.lanes.3)
        count &+= other.count
    }

    static let encodedSize = 40

    public var encoded: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(Self.encodedSize)
        for v in [lanes.0, lanes.1, lanes.2, lanes.3, UInt64(bitPattern: count)] {
            withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
        }
        return out
    }

    /// Nil when `bytes` is not 40 bytes long (a damaged or foreign value).
    public init?(encoded bytes: UnsafeRawBufferPointer) {
        guard bytes.count == Self.encodedSize else { return nil }
        func at(_ i: Int) -> UInt64 { UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)) }
        lanes = (at(0), at(1), at(2), at(3))
        count = Int64(bitPattern: at(4))
    }
}

/// What `ReadTransaction.checkSeal` found.
public enum SealCheck: Equatable, Sendable {
    case holds
    /// The stored seal and the one recomputed from the records differ.
    case broken(stored: Seal, computed: Seal)
    /// The stored seal is not 40 bytes long.
    case unreadable
    /// No seal stored (the database is not sealed, or the store predates seals).
    case absent
}

/// Pending changes to the seals of one write transaction.
struct SealLedger {
    /// Per sealed database: the change so far, and whether the database was emptied first.
    var deltas: [MDB_dbi: (delta: Seal, cleared: Bool)] = [:]
    var sealed: [MDB_dbi: String] = [:]
    var digested: Set<MDB_dbi> = []
    var seals: Database?
    /// Record digests to write (nil: delete) at commit, in order.
    var recordDigests: [(key: [UInt8], digest: [UInt8]?)] = []
    /// Databases emptied in this transaction whose record digests must all go.
    var clearedDigests: [String] = []

    func isSealed(_ db: Database) -> Bool { sealed[db.dbi] != nil }

    mutating func add(_ db: Database, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        deltas[db.dbi, default: (Seal(), false)].delta.add(key: key, value: value)
        if digested.contains(db.dbi) {
            recordDigests.append((Seal.recordDigestKey(database: db.name, key: key), Seal.recordDigest(key: key, value: value)))
        }
    }

    /// A record of a database with record digests was deleted.
    mutating func removeDigest(_ db: Database, key: UnsafeRawBufferPointer) {
        if digested.contains(db.dbi) { recordDigests.append((Seal.recordDigestKey(database: db.name, key: key), nil)) }
    }

    mutating func subtract(_ db: Database, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        deltas[db.dbi, default: (Seal(), false)].delta.subtract(key: key, value: value)
    }

    mutating func subtract(_ db: Database, _ seal: Seal) {
        var negated = Seal()
        negated.lanes = (0 &- seal.lanes.0, 0 &- seal.lanes.1, 0 &- seal.lanes.2, 0 &- seal.lanes.3)
        negated.count = 0 &- seal.count
        deltas[db.dbi, default: (Seal(), false)].delta.add(negated)
    }

    mutating func clear(_ db: Database) {
        deltas[db.dbi] = (Seal(), true)
        if digested.contains(db.dbi) {
            recordDigests.removeAll { $0.key.starts(with: Array(db.name.utf8) + [0]) }
            clearedDigests.append(db.name)
        }
    }
}

extension ReadTransaction {
    /// The seal stored for `db`, nil when absent, `.none`-wrapped nil when unreadable.
    func storedSeal(_ db: Database, in seals: Database) throws(LMDBError) -> Seal?? {
        guard let bytes = try get(seals, key: Array(db.name.utf8)) else { return nil }
        return .some(bytes.withUnsafeBytes { Seal(encoded: $0) })
    }

    /// The seal of `db`'s records as they are now (one scan).
    public func computeSeal(_ db: Database) throws -> Seal {
        var seal = Seal()
        try scan(db) { k, v in
            seal.add(key: k, value: v)
            return true
        }
        return seal
    }

    /// Recomputes `db`'s seal and compares it with the stored one.
    public func checkSeal(_ db: Database, in seals: Database) throws -> SealCheck {
        guard let stored = try storedSeal(db, in: seals) else { return .absent }
        guard let stored else { return .unreadable }
        let computed = try computeSeal(db)
        return stored == computed ? .holds : .broken(stored: stored, computed: computed)
    }
}

extension ReadTransaction {
    /// The keys of `db` whose stored record digest is missing or differs, then the
    /// keys of digests left without their record; empty when all hold.
    public func recordDigestProblems(_ db: Database, in seals: Database) throws -> [[UInt8]] {
        var bad: [[UInt8]] = []
        try scan(db) { k, v in
            let stored = try get(seals, key: Seal.recordDigestKey(database: db.name, key: k))
            if stored != Seal.recordDigest(key: k, value: v) { bad.append(Array(k)) }
            return true
        }
        let prefix = Array(db.name.utf8) + [0]
        var orphans: [[UInt8]] = []
        try scan(seals, prefix: prefix) { k, _ in
            let recordKey = Array(k.dropFirst(prefix.count))
            if try !contains(db, key: recordKey) { orphans.append(recordKey) }
            return true
        }
        bad += orphans
        return bad
    }
}
