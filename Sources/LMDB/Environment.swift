internal import CLMDB
import Glibc
import Synchronization

/// A named database inside an environment, with the flags it was created with.
public struct DatabaseSpec: Sendable, Hashable {
    public var name: String
    /// Several sorted values per key (MDB_DUPSORT).
    public var duplicateKeys: Bool
    /// Keep a `Seal` of the records, updated by every write (see `Seal`). Off for
    /// databases whose values carry their own checksum elsewhere.
    public var sealed: Bool
    /// Also keep each record's own digest (see `Seal.recordDigest`), so that a
    /// damaged record can be told from its intact neighbours: for small databases
    /// of metadata, where one lost record must not cost the others.
    public var recordDigests: Bool
    public init(_ name: String, duplicateKeys: Bool = false, sealed: Bool = true, recordDigests: Bool = false) {
        self.name = name
        self.duplicateKeys = duplicateKeys
        self.sealed = sealed
        self.recordDigests = recordDigests && sealed && !duplicateKeys
    }
}

/// An opened named database. A plain handle: valid for the life of its environment.
public struct Database: Sendable, Hashable {
    let dbi: MDB_dbi
    public let name: String
    public let duplicateKeys: Bool
}

/// One LMDB environment (a directory with data.mdb and lock.mdb).
///
/// Access goes through closures, as GRDB's `read { }` / `write { }`: a transaction
/// lives exactly as long as its closure, and values it lends die with it.
///
/// **Not reentrant.** Do not call `write` from inside a `write` body on the same
/// thread: LMDB has one writer, and the inner call would wait for the outer one
/// forever. That misuse is caught by a precondition. A `read` inside a `write`
/// body is allowed but sees the last committed state, not the open transaction's
/// writes: pass the `WriteTransaction` down instead.
///
/// `@unchecked Sendable`: MDB_env is safe to share between threads once opened;
/// with MDB_NOTLS read transactions are not tied to threads; LMDB serialises write
/// transactions itself; `mapLock` orders map growth (which needs no live
/// transaction in this process) against every transaction we start; and
/// `databases` is written only during `init`.
public final class Environment: @unchecked Sendable {
    public let path: String
    public let readOnly: Bool
    let env: OpaquePointer
    private var databases: [String: Database] = [:]
    /// Where seals are kept (nil when no database is sealed), and which are.
    public private(set) var seals: Database?
    private var sealedNames: [MDB_dbi: String] = [:]
    private var digestedNames: Set<MDB_dbi> = []
    /// The name of the database that holds seals.
    public static let sealsName = "seals"
    private let mapLock = ReadWriteLock()
    /// The thread inside `write`, for the reentrancy precondition.
    private let writer = Mutex<pthread_t?>(nil)

    /// Opens (and with `create`, creates) the environment and its named databases.
    /// Stale reader slots left by killed processes are cleared on open.
    public init(path: String, databases specs: [DatabaseSpec], readOnly: Bool = false, create: Bool = false,
                initialMapSize: Int = 1 << 30) throws(LMDBError) {
        self.path = path
        self.readOnly = readOnly
        var envp: OpaquePointer?
        try check(mdb_env_create(&envp), "create environment", path: path)
        guard let envp else { throw LMDBError(code: ENOMEM, operation: "create environment", path: path) }
        env = envp
        do throws(LMDBError) {
            try check(mdb_env_set_maxdbs(env, MDB_dbi(max(specs.count, 1) + 4)), "set maxdbs", path: path)
            try check(mdb_env_set_maxreaders(env, 1024), "set maxreaders", path: path)
            // A damaged page can break one of liblmdb's internal assertions; it would
            // print its own line and abort. Abort without the line: a process that
            // handles SIGABRT (the CLI) then says in its own words what happened.
            mdb_env_set_assert(env) { _, _ in abort() }
            // A map twice the file, at least initialMapSize: growth doubles it on demand.
            var st = stat()
            let fileSize = stat(path + "/data.mdb", &st) == 0 ? Int(st.st_size) : 0
            try check(mdb_env_set_mapsize(env, max(initialMapSize, fileSize * 2)), "set map size", path: path)
            var flags = UInt32(MDB_NOTLS)
            if readOnly { flags |= UInt32(MDB_RDONLY) }
            if create && !readOnly { mkdir(path, 0o755) }
            // A data file cut short would make LMDB touch pages past its end (SIGBUS).
            if case .truncated(let size, let needed) = DataFileCheck.check(dataFile: path + "/data.mdb") {
                var e = LMDBError(code: MDB_CORRUPTED, operation: "open", path: path)
                e.truncation = (size, needed)
                throw e
            }
            try check(mdb_env_open(env, path, flags, 0o644), "open", path: path)
            var dead: Int32 = 0
            mdb_reader_check(env, &dead)
            try openDatabases(specs, create: create && !readOnly)
        } catch {
            // Every stored property is set by now, so Swift runs deinit, which calls
            // mdb_env_close (required even after a failed mdb_env_open). Closing
            // here as well would free the environment twice.
            throw error
        }
    }

    deinit {
        mdb_env_close(env)
    }

    private func openDatabases(_ specs: [DatabaseSpec], create: Bool) throws(LMDBError) {
        var txn: OpaquePointer?
        try check(mdb_txn_begin(env, nil, create ? 0 : UInt32(MDB_RDONLY), &txn), "begin", path: path)
        var opened: [String: Database] = [:]
        func open(_ name: String, duplicateKeys: Bool, mayCreate: Bool) throws(LMDBError) -> Database? {
            var flags: UInt32 = duplicateKeys ? UInt32(MDB_DUPSORT) : 0
            if create && mayCreate { flags |= UInt32(MDB_CREATE) }
            var dbi: MDB_dbi = 0
            let rc = mdb_dbi_open(txn, name, flags, &dbi)
            if rc == MDB_NOTFOUND && !mayCreate { return nil }
            if rc != 0 {
                mdb_txn_abort(txn)
                throw LMDBError(code: rc, operation: "open database '\(name)'", path: path)
            }
            return Database(dbi: dbi, name: name, duplicateKeys: duplicateKeys)
        }
        for spec in specs {
            if let db = try open(spec.name, duplicateKeys: spec.duplicateKeys, mayCreate: true) { opened[spec.name] = db }
        }
        var sealedNames: [MDB_dbi: String] = [:]
        for spec in specs where spec.sealed { if let db = opened[spec.name] { sealedNames[db.dbi] = spec.name } }
        var digested: Set<MDB_dbi> = []
        for spec in specs where spec.recordDigests { if let db = opened[spec.name] { digested.insert(db.dbi) } }
        var seals: Database?
        if !sealedNames.isEmpty {
            // A store written before seals existed has no `seals` database: a writer
            // creates it and seals what is there (one scan); a reader goes without.
            let existed = try open(Self.sealsName, duplicateKeys: false, mayCreate: false)
            if let existed {
                seals = existed
            } else if create {
                seals = try open(Self.sealsName, duplicateKeys: false, mayCreate: true)
            }
            if existed == nil, let seals, let txn {
                let t = WriteTransaction(txn: txn, path: path)
                for (dbi, name) in sealedNames {
                    guard let db = opened[name], db.dbi == dbi else { continue }
                    do {
                        let seal = try t.computeSeal(db)
                        try t.put(seals, key: Array(name.utf8), value: seal.encoded)
                        if digested.contains(dbi) {
                            try t.scan(db) { k, v in
                                try t.put(seals, key: Seal.recordDigestKey(database: name, key: k), value: Seal.recordDigest(key: k, value: v))
                                return true
                            }
                        }
                    } catch {
                        mdb_txn_abort(txn)
                        throw (error as? LMDBError) ?? LMDBError(code: MDB_CORRUPTED, operation: "seal '\(name)'", path: path)
                    }
                }
            }
        }
        try check(mdb_txn_commit(txn), "commit database list", path: path)
        databases = opened
        self.seals = seals
        self.sealedNames = sealedNames
        self.digestedNames = digested
    }

    /// The handle of a database named at open; nil for a name that was not.
    public func database(_ name: String) -> Database? { databases[name] }

    /// Runs `body` in a read-only snapshot. Values it sees are borrowed from the map
    /// and must be copied to outlive the closure. Throws the body's own error type;
    /// LMDB's failures arrive wrapped in it.
    public func read<T, E: LMDBFailureCarrying>(_ body: (ReadTransaction) throws(E) -> T) throws(E) -> T {
        try mapLock.withReadLock { () throws(E) -> T in
            let txn: ReadTransaction
            do throws(LMDBError) { txn = try begin(readOnly: true) as ReadTransaction } catch { throw E(error) }
            defer { mdb_txn_abort(txn.txn) }
            return try body(txn)
        }
    }

    /// As `read`, for a body that throws any error: it comes out as thrown.
    public func read<T>(_ body: (ReadTransaction) throws -> T) throws -> T {
        do {
            return try read { (txn) throws(BodyError) -> T in
                do { return try body(txn) } catch { throw BodyError(error) }
            }
        } catch {
            throw error.underlying
        }
    }

    /// As `write`, for a body that throws any error: it comes out as thrown (a full
    /// map is still grown and the body re-run).
    public func write<T>(_ body: (WriteTransaction) throws -> T) throws -> T {
        do {
            return try write { (txn) throws(BodyError) -> T in
                do { return try body(txn) } catch { throw BodyError(error) }
            }
        } catch {
            throw error.underlying
        }
    }

    /// Runs `body` in the write transaction and commits; a throw rolls back.
    ///
    /// When the map is full the transaction is rolled back, the map doubled and the
    /// body run again, so a user never sees MDB_MAP_FULL: the body must not keep
    /// side effects outside the transaction. Not reentrant (see the type's comment).
    public func write<T, E: LMDBFailureCarrying>(_ body: (WriteTransaction) throws(E) -> T) throws(E) -> T {
        let me = pthread_self()
        writer.withLock { current in
            precondition(current.map { pthread_equal($0, me) == 0 } ?? true,
                         "Environment.write is not reentrant: a write body called write on \(path)")
        }
        while true {
            do {
                return try writeOnce(body)
            } catch let error where error.lmdbError?.isMapFull == true {
                do throws(LMDBError) { try growMap() } catch { throw E(error) }
            }
        }
    }

    private func writeOnce<T, E: LMDBFailureCarrying>(_ body: (WriteTransaction) throws(E) -> T) throws(E) -> T {
        try mapLock.withReadLock { () throws(E) -> T in
            let txn: WriteTransaction
            do throws(LMDBError) { txn = try begin(readOnly: false) as WriteTransaction } catch { throw E(error) }
            writer.withLock { $0 = pthread_self() }
            defer { writer.withLock { $0 = nil } }
            txn.ledger.sealed = sealedNames
            txn.ledger.digested = digestedNames
            txn.ledger.seals = seals
            let result: T
            do throws(E) {
                result = try body(txn)
                do throws(LMDBError) { try txn.flushSeals() } catch { throw E(error) }
            } catch {
                mdb_txn_abort(txn.txn)
                throw error
            }
            // mdb_txn_commit frees the transaction even when it fails.
            let rc = mdb_txn_commit(txn.txn)
            if rc != 0 {
                let shortage = rc == EIO || rc == ENOSPC || rc == EFBIG ? spaceShortage(dataFile: path + "/data.mdb") : nil
                throw E(LMDBError(code: rc, operation: "commit", path: path, spaceShortage: shortage))
            }
            return result
        }
    }

    private func begin<Txn: ReadTransaction>(readOnly: Bool) throws(LMDBError) -> Txn {
        var txn: OpaquePointer?
        var rc = mdb_txn_begin(env, nil, readOnly ? UInt32(MDB_RDONLY) : 0, &txn)
        if rc == MDB_MAP_RESIZED {
            // Another process grew the map: adopt its size and retry once.
            try check(mdb_env_set_mapsize(env, 0), "adopt the grown map", path: path)
            rc = mdb_txn_begin(env, nil, readOnly ? UInt32(MDB_RDONLY) : 0, &txn)
        }
        try check(rc, readOnly ? "begin read" : "begin write", path: path)
        guard let txn else { throw LMDBError(code: ENOMEM, operation: "begin", path: path) }
        return Txn(txn: txn, path: path)
    }

    /// Current map size in bytes.
    public var mapSize: Int {
        var info = MDB_envinfo()
        mdb_env_info(env, &info)
        return info.me_mapsize
    }

    private func growMap() throws(LMDBError) {
        try mapLock.withWriteLock { () throws(LMDBError) in
            try check(mdb_env_set_mapsize(env, mapSize * 2), "grow map", path: path)
        }
    }

    /// Writes a copy of the environment to `directory` (which must exist and be
    /// empty); `compact` omits free pages, like `mdb_copy -c`.
    public func copy(to directory: String, compact: Bool) throws(LMDBError) {
        try check(mdb_env_copy2(env, directory, compact ? UInt32(MDB_CP_COMPACT) : 0), "copy to \(directory)", path: path)
    }

    /// Clears reader slots left by dead processes; returns how many were cleared.
    @discardableResult
    public func clearStaleReaders() -> Int {
        var dead: Int32 = 0
        mdb_reader_check(env, &dead)
        return Int(dead)
    }

    /// Flushes to disk (meaningful only if opened with relaxed sync; cheap otherwise).
    public func sync() throws(LMDBError) {
        try check(mdb_env_sync(env, 1), "sync", path: path)
    }
}

/// Carries an untyped body's error through the typed transaction methods.
private struct BodyError: LMDBFailureCarrying {
    let underlying: any Error
    init(_ lmdb: LMDBError) { underlying = lmdb }
    init(_ error: any Error) { underlying = error }
    var lmdbError: LMDBError? { underlying as? LMDBError }
}
