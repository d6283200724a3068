internal import CLMDB

/// A read-only snapshot, valid only inside `Environment.read` (or, as the read
/// half of a `WriteTransaction`, inside `write`). Not Sendable: an LMDB
/// transaction belongs to the closure that opened it.
public class ReadTransaction {
    let txn: OpaquePointer
    let path: String

    required init(txn: OpaquePointer, path: String) {
        self.txn = txn
        self.path = path
    }

    /// The value under `key`, borrowed from the map, or nil when absent.
    func lookup(_ db: Database, key: some ByteView) throws(LMDBError) -> UnsafeRawBufferPointer? {
        var v = MDB_val()
        let rc = key.withUnsafeBytes { k -> Int32 in
            var kv = MDB_val(mv_size: k.count, mv_data: UnsafeMutableRawPointer(mutating: k.baseAddress))
            return mdb_get(txn, db.dbi, &kv, &v)
        }
        if rc == MDB_NOTFOUND { return nil }
        try check(rc, "get from \(db.name)", path: path)
        return UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size)
    }

    /// Calls `body` with the value stored under `key`, borrowed from the map (nil
    /// when absent). The buffer dies with the transaction: copy what you keep.
    public func withValue<T>(_ db: Database, key: some ByteView, _ body: (UnsafeRawBufferPointer?) throws -> T) throws -> T {
        try body(try lookup(db, key: key))
    }

    /// A copy of the value under `key`, or nil.
    public func get(_ db: Database, key: some ByteView) throws(LMDBError) -> [UInt8]? {
        try lookup(db, key: key).map { Array($0.bindMemory(to: UInt8.self)) }
    }

    public func contains(_ db: Database, key: some ByteView) throws(LMDBError) -> Bool {
        try lookup(db, key: key) != nil
    }

    /// Number of entries (duplicates counted).
    public func count(_ db: Database) throws(LMDBError) -> Int {
        var st = MDB_stat()
        try check(mdb_stat(txn, db.dbi, &st), "stat \(db.name)", path: path)
        return st.ms_entries
    }

    /// Visits entries in key order, from the first key >= `from` (or the start),
    /// while `body` returns true. Key and value are borrowed for the call only.
    public func scan(_ db: Database, from start: [UInt8]? = nil,
                     _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool) throws {
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(txn, db.dbi, &cursor), "open cursor on \(db.name)", path: path)
        defer { mdb_cursor_close(cursor) }
        var k = MDB_val(), v = MDB_val()
        var rc: Int32
        if let start {
            rc = start.withUnsafeBytes { s -> Int32 in
                k = MDB_val(mv_size: s.count, mv_data: UnsafeMutableRawPointer(mutating: s.baseAddress))
                return mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE)
            }
        } else {
            rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST)
        }
        while rc == 0 {
            let keep = try body(UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size),
                                UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
            if !keep { return }
            rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)
        }
        if rc != MDB_NOTFOUND { try check(rc, "scan \(db.name)", path: path) }
    }

    /// Visits every entry whose key starts with `prefix`.
    public func scan(_ db: Database, prefix: [UInt8],
                     _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool) throws {
        try scan(db, from: prefix) { k, v in
            guard k.count >= prefix.count, k.prefix(prefix.count).elementsEqual(prefix) else { return false }
            return try body(k, v)
        }
    }

    /// Whether a duplicate-keys database holds exactly this (key, value) pair.
    func pairExists(_ db: Database, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) throws(LMDBError) -> Bool {
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(txn, db.dbi, &cursor), "open cursor on \(db.name)", path: path)
        defer { mdb_cursor_close(cursor) }
        var kv = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var vv = MDB_val(mv_size: value.count, mv_data: UnsafeMutableRawPointer(mutating: value.baseAddress))
        let rc = mdb_cursor_get(cursor, &kv, &vv, db.duplicateKeys ? MDB_GET_BOTH : MDB_SET_KEY)
        if rc == MDB_NOTFOUND { return false }
        try check(rc, "look up in \(db.name)", path: path)
        return db.duplicateKeys || UnsafeRawBufferPointer(start: vv.mv_data, count: vv.mv_size).elementsEqual(value)
    }

    /// Visits every value stored under `key` in a duplicate-keys database.
    func forEachDuplicate(_ db: Database, key: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> Void) throws(LMDBError) {
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(txn, db.dbi, &cursor), "open cursor on \(db.name)", path: path)
        defer { mdb_cursor_close(cursor) }
        var kv = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var vv = MDB_val()
        var rc = mdb_cursor_get(cursor, &kv, &vv, MDB_SET_KEY)
        while rc == 0 {
            body(UnsafeRawBufferPointer(start: vv.mv_data, count: vv.mv_size))
            rc = mdb_cursor_get(cursor, &kv, &vv, MDB_NEXT_DUP)
        }
        if rc != MDB_NOTFOUND { try check(rc, "read duplicates in \(db.name)", path: path) }
    }

    /// Visits the keys with `prefix`, throwing only LMDB's errors.
    func scanLMDB(_ db: Database, prefix: [UInt8], _ body: (UnsafeRawBufferPointer) -> Void) throws(LMDBError) {
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(txn, db.dbi, &cursor), "open cursor on \(db.name)", path: path)
        defer { mdb_cursor_close(cursor) }
        var k = MDB_val(), v = MDB_val()
        var rc = prefix.withUnsafeBytes { s -> Int32 in
            k = MDB_val(mv_size: s.count, mv_data: UnsafeMutableRawPointer(mutating: s.baseAddress))
            return mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE)
        }
        while rc == 0 {
            let key = UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size)
            guard key.starts(with: prefix) else { return }
            body(key)
            rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)
        }
        if rc != MDB_NOTFOUND { try check(rc, "scan \(db.name)", path: path) }
    }

    /// The last key in the database (a copy), or nil when empty.
    public func lastKey(_ db: Database) throws(LMDBError) -> [UInt8]? {
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(txn, db.dbi, &cursor), "open cursor on \(db.name)", path: path)
        defer { mdb_cursor_close(cursor) }
        var k = MDB_val(), v = MDB_val()
        let rc = mdb_cursor_get(cursor, &k, &v, MDB_LAST)
        if rc == MDB_NOTFOUND { return nil }
        try check(rc, "last key of \(db.name)", path: path)
        return Array(UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size))
    }
}

/// The write transaction, valid only inside `Environment.write`: everything a
/// snapshot reads (it sees its own writes), plus puts and deletes. Committed when
/// the body returns, rolled back when it throws.
public final class WriteTransaction: ReadTransaction {
    /// Pending seal changes, written by `Environment` just before commit.
    var ledger = SealLedger()

    /// Stores `value` under `key`. `noOverwrite` makes an existing key an error
    /// (MDB_KEYEXIST); `append` is the bulk-load fast path for keys given in order.
    /// A sealed database's seal follows the change (see `Seal`).
    public func put(_ db: Database, key: some ByteView, value: some ByteView,
                    noOverwrite: Bool = false, append: Bool = false) throws(LMDBError) {
        var flags: UInt32 = 0
        if noOverwrite { flags |= UInt32(MDB_NOOVERWRITE) }
        if append { flags |= UInt32(MDB_APPEND) }
        let sealed = ledger.isSealed(db)
        let rc = try key.withBytes { (k) throws(LMDBError) -> Int32 in
            try value.withBytes { (v) throws(LMDBError) -> Int32 in
                // What the put replaces, hashed before LMDB may reuse its page.
                var replaced: Seal?
                if sealed {
                    if db.duplicateKeys {
                        // LMDB keeps one copy of a pair: putting it again changes nothing.
                        if !noOverwrite, try pairExists(db, key: k, value: v) { return 0 }
                    } else if !append, let old = try lookup(db, key: k) {
                        var s = Seal()
                        s.add(key: k, value: old)
                        replaced = s
                    }
                }
                var kv = MDB_val(mv_size: k.count, mv_data: UnsafeMutableRawPointer(mutating: k.baseAddress))
                var vv = MDB_val(mv_size: v.count, mv_data: UnsafeMutableRawPointer(mutating: v.baseAddress))
                let rc = mdb_put(txn, db.dbi, &kv, &vv, flags)
                if rc == 0 && sealed {
                    if let replaced { ledger.subtract(db, replaced) }
                    ledger.add(db, key: k, value: v)
                }
                return rc
            }
        }
        try check(rc, "put into \(db.name)", path: path)
    }

    /// Deletes `key` (every duplicate of it, or just `value` when given). Returns
    /// false when there was nothing to delete.
    @discardableResult
    public func delete(_ db: Database, key: some ByteView, value: [UInt8]? = nil) throws(LMDBError) -> Bool {
        let rc = try key.withBytes { (k) throws(LMDBError) -> Int32 in
            var removed = Seal()
            if ledger.isSealed(db) {
                if db.duplicateKeys, let value {
                    try value.withBytes { (v) throws(LMDBError) in
                        if try pairExists(db, key: k, value: v) { removed.add(key: k, value: v) }
                    }
                } else if db.duplicateKeys {
                    try forEachDuplicate(db, key: k) { removed.add(key: k, value: $0) }
                } else if let old = try lookup(db, key: k) {  // LMDB ignores `value` here
                    removed.add(key: k, value: old)
                }
            }
            var kv = MDB_val(mv_size: k.count, mv_data: UnsafeMutableRawPointer(mutating: k.baseAddress))
            let rc: Int32
            if let value {
                rc = value.withUnsafeBytes { v in
                    var vv = MDB_val(mv_size: v.count, mv_data: UnsafeMutableRawPointer(mutating: v.baseAddress))
                    return mdb_del(txn, db.dbi, &kv, &vv)
                }
            } else {
                rc = mdb_del(txn, db.dbi, &kv, nil)
            }
            if rc == 0 && removed.count != 0 {
                ledger.subtract(db, removed)
                ledger.removeDigest(db, key: k)
            }
            return rc
        }
        if rc == MDB_NOTFOUND { return false }
        try check(rc, "delete from \(db.name)", path: path)
        return true
    }

    /// Empties a database (keeps it).
    public func clear(_ db: Database) throws(LMDBError) {
        try check(mdb_drop(txn, db.dbi, 0), "clear \(db.name)", path: path)
        if ledger.isSealed(db) { ledger.clear(db) }
    }

    /// Writes the seals this transaction changed (called by `Environment` before commit).
    func flushSeals() throws(LMDBError) {
        guard let seals = ledger.seals else { return }
        for name in ledger.clearedDigests {
            var stale: [[UInt8]] = []
            try scanLMDB(seals, prefix: Array(name.utf8) + [0]) { k in stale.append(Array(k)) }
            for k in stale { _ = try delete(seals, key: k) }
        }
        for (key, digest) in ledger.recordDigests {
            if let digest { try put(seals, key: key, value: digest) } else { _ = try delete(seals, key: key) }
        }
        ledger.recordDigests = []
        ledger.clearedDigests = []
        for (dbi, change) in ledger.deltas {
            guard let name = ledger.sealed[dbi] else { continue }
            let key = Array(name.utf8)
            var seal = Seal()
            if !change.cleared, let stored = try get(seals, key: key) {
                // An unreadable stored seal stays unreadable: verify must still see it.
                guard let s = stored.withUnsafeBytes({ Seal(encoded: $0) }) else { continue }
                seal = s
            }
            seal.add(change.delta)
            try put(seals, key: key, value: seal.encoded)
        }
        ledger.deltas = [:]
    }
}
