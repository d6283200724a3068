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
    private func lookup(_ db: Database, key: some ByteView) throws(LMDBError) -> UnsafeRawBufferPointer? {
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
    /// Stores `value` under `key`. `noOverwrite` makes an existing key an error
    /// (MDB_KEYEXIST); `append` is the bulk-load fast path for keys given in order.
    public func put(_ db: Database, key: some ByteView, value: some ByteView,
                    noOverwrite: Bool = false, append: Bool = false) throws(LMDBError) {
        var flags: UInt32 = 0
        if noOverwrite { flags |= UInt32(MDB_NOOVERWRITE) }
        if append { flags |= UInt32(MDB_APPEND) }
        let rc = key.withUnsafeBytes { k in
            value.withUnsafeBytes { v -> Int32 in
                var kv = MDB_val(mv_size: k.count, mv_data: UnsafeMutableRawPointer(mutating: k.baseAddress))
                var vv = MDB_val(mv_size: v.count, mv_data: UnsafeMutableRawPointer(mutating: v.baseAddress))
                return mdb_put(txn, db.dbi, &kv, &vv, flags)
            }
        }
        try check(rc, "put into \(db.name)", path: path)
    }

    /// Deletes `key` (every duplicate of it, or just `value` when given). Returns
    /// false when there was nothing to delete.
    @discardableResult
    public func delete(_ db: Database, key: some ByteView, value: [UInt8]? = nil) throws(LMDBError) -> Bool {
        let rc = key.withUnsafeBytes { k -> Int32 in
            var kv = MDB_val(mv_size: k.count, mv_data: UnsafeMutableRawPointer(mutating: k.baseAddress))
            if let value {
                return value.withUnsafeBytes { v in
                    var vv = MDB_val(mv_size: v.count, mv_data: UnsafeMutableRawPointer(mutating: v.baseAddress))
                    return mdb_del(txn, db.dbi, &kv, &vv)
                }
            }
            return mdb_del(txn, db.dbi, &kv, nil)
        }
        if rc == MDB_NOTFOUND { return false }
        try check(rc, "delete from \(db.name)", path: path)
        return true
    }

    /// Empties a database (keeps it).
    public func clear(_ db: Database) throws(LMDBError) {
        try check(mdb_drop(txn, db.dbi, 0), "clear \(db.name)", path: path)
    }
}
