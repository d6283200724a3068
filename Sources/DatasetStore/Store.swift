import Foundation
import ImageCodec
import LMDB
import Pixels

/// A dataset store: one LMDB environment holding samples, classes and
/// pseudo-label generations. Thread-safe: reads run in parallel snapshots, writes
/// go through LMDB's single writer.
public final class Store: Sendable {
    public let path: String
    /// Private: every transaction goes through `read`/`write` below, where LMDB's
    /// errors become `StoreError`s.
    private let environment: Environment
    let db: Databases

    struct Databases: Sendable {
        let meta, samples, images, hashes, sources, splitIndex, classes: Database
        let generations, labels, selections, tags: Database
    }

    /// Opens an existing store. `readOnly` opens without taking write locks.
    public convenience init(path: String, readOnly: Bool = false) throws {
        try self.init(path: path, create: false, readOnly: readOnly)
    }

    /// Creates the store if it does not exist; refuses a folder that is something else.
    ///
    /// Creation is atomic: the environment, its databases and the format record are
    /// made in `<store>/.creating`, and only the finished data.mdb is renamed into
    /// place. A process killed while creating leaves no data.mdb, so the folder is
    /// still "no store yet", never a store without databases (the next run starts over).
    ///
    /// Several processes may create the same store at once (four `noisy ingest` runs
    /// started together): creators take an exclusive lock on the store folder, so one
    /// builds the store while the others wait, then find it made and open it.
    public static func openOrCreate(path: String) throws -> Store {
        if !FileManager.default.fileExists(atPath: path + "/data.mdb") {
            try checkFolder(path, create: true)
            let lock = try FolderLock(path)
            defer { lock.release() }
            if !FileManager.default.fileExists(atPath: path + "/data.mdb") {
                try create(path)
            }
        }
        return try Store(path: path, create: false, readOnly: false)
    }

    /// Builds the environment in the staging folder and moves its data file into
    /// place; the caller holds the folder's lock.
    private static func create(_ path: String) throws {
        let staging = path + "/" + stagingName
        try? FileManager.default.removeItem(atPath: staging)  // left by a killed creation
        do {
            try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
        } catch {
            throw StoreError(.io, "\(path): cannot create the store folder: \(error.localizedDescription)")
        }
        // Scoped: the staged environment is closed before its file moves.
        do { _ = try Store(path: staging, create: true, readOnly: false) }
        guard rename(staging + "/data.mdb", path + "/data.mdb") == 0 else {
            throw StoreError(.io, "\(path): cannot move the new store into place: \(String(cString: strerror(errno)))")
        }
        try? FileManager.default.removeItem(atPath: staging)
    }

    /// Refuses a file or a foreign folder; with `create`, makes the folder if missing.
    static func checkFolder(_ path: String, create: Bool) throws {
        var isDir: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDir)
        let hasData = FileManager.default.fileExists(atPath: path + "/data.mdb")
        if exists && !isDir.boolValue {
            throw StoreError(.notAStore, "\(path): not a store (it is a file; a store is a folder)")
        }
        if exists && !hasData {
            let contents = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { $0 != stagingName }
            // Another process may finish creating the store between the check above and
            // this listing (it renames data.mdb into place, then opens it, which makes
            // lock.mdb): what the listing shows is then a store. Look again.
            if FileManager.default.fileExists(atPath: path + "/data.mdb") { return }
            if contents.contains(ShardManifest.fileName) {
                throw StoreError(.notAStore, "\(path): a shard set (noisy shard), not a store; ingest and shard work on the "
                                 + "store the set was cut from; every other command reads a set")
            }
            if !contents.isEmpty || !create {
                throw StoreError(.notAStore, "\(path): not a store (no data.mdb inside)")
            }
        }
        if !exists && !create {
            throw StoreError(.notAStore, "\(path): no such store")
        }
        if !exists {
            do {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            } catch {
                throw StoreError(.io, "\(path): cannot create the store folder: \(error.localizedDescription)")
            }
        }
    }

    /// The folder inside a store where a new environment is built (see openOrCreate).
    static let stagingName = ".creating"

    private init(path: String, create: Bool, readOnly: Bool) throws {
        self.path = path
        try Self.checkFolder(path, create: create)
        let env: Environment
        do {
            env = try Environment(path: path, databases: Layout.all, readOnly: readOnly, create: create)
        } catch let e {
            if let t = e.truncation {
                throw StoreError(.corrupt, "\(path)/data.mdb: \(t.size) bytes, but its pages in use need \(t.needed): "
                                 + "the copy looks incomplete (an interrupted cp, rsync or download); copy it again, or noisy salvage --store \(path) --out NEW saves what it holds")
            }
            if e.indicatesDamage {
                throw StoreError(.corrupt, "\(path): not a readable store (\(e.message)): it looks damaged; noisy verify --store \(path) tells more")
            }
            throw StoreError(.notAStore, "\(path): not a readable store (\(e.message))")
        }
        func named(_ n: String) throws -> Database {
            guard let d = env.database(n) else { throw StoreError(.notAStore, "\(path): database '\(n)' is missing") }
            return d
        }
        environment = env
        db = Databases(meta: try named(Layout.meta), samples: try named(Layout.samples), images: try named(Layout.images),
                       hashes: try named(Layout.hashes), sources: try named(Layout.sources),
                       splitIndex: try named(Layout.splitIndex), classes: try named(Layout.classes),
                       generations: try named(Layout.generations), labels: try named(Layout.labels),
                       selections: try named(Layout.selections), tags: try named(Layout.tags))
        try checkFormat(create: create && !readOnly)
    }

    // MARK: Transactions

    /// Runs `body` in a read snapshot. Whatever it throws arrives as a `StoreError`
    /// (LMDB's failures translated here, in one place).
    func read<T>(_ body: (ReadTransaction) throws -> T) throws(StoreError) -> T {
        try environment.read { (txn) throws(StoreError) -> T in
            do { return try body(txn) } catch { throw StoreError.wrapping(error, store: path) }
        }
    }

    /// Runs `body` in the write transaction (see `Environment.write`: a full map is
    /// grown and the body re-run; not reentrant).
    func write<T>(_ body: (WriteTransaction) throws -> T) throws(StoreError) -> T {
        try environment.write { (txn) throws(StoreError) -> T in
            do { return try body(txn) } catch { throw StoreError.wrapping(error, store: path) }
        }
    }

    /// Each sealed database's seal, recomputed in `txn` and compared with the stored
    /// one (empty when the store predates seals).
    func sealChecks(_ txn: ReadTransaction) throws -> [(database: String, check: SealCheck)] {
        guard let seals = environment.seals else { return [] }
        return try Layout.all.filter(\.sealed).compactMap { spec in
            guard let d = environment.database(spec.name) else { return nil }
            return (spec.name, try txn.checkSeal(d, in: seals))
        }
    }

    /// Per database with record digests, the keys whose digest fails (empty lists
    /// when all hold, or when the store predates digests).
    func recordDigestChecks(_ txn: ReadTransaction) throws -> [(database: String, keys: [[UInt8]])] {
        guard let seals = environment.seals else { return [] }
        return try Layout.all.filter(\.recordDigests).compactMap { spec in
            guard let d = environment.database(spec.name) else { return nil }
            return (spec.name, try txn.recordDigestProblems(d, in: seals))
        }
    }

    /// Clears reader slots left by killed processes; returns how many.
    @discardableResult
    public func clearStaleReaders() -> Int { environment.clearStaleReaders() }

    /// When the store was created (its `format` record): copies of a store keep it, so
    /// it tells the store apart from others wherever the copy lives.
    public func createdAt() throws -> String {
        let bytes = try read { try $0.get(db.meta, key: Array("format".utf8)) }
        guard let bytes, let info = try? JSONDecoder().decode(FormatRecord.self, from: Data(bytes)) else {
            throw StoreError(.corrupt, "\(path): the store's format record is unreadable")
        }
        return info.createdAt
    }

    /// The `format` meta record says what wrote this store; a new store gets one.
    private func checkFormat(create: Bool) throws {
        let key = Array("format".utf8)
        let existing = try read { try $0.get(db.meta, key: key) }
        if let existing {
            guard let info = try? JSONDecoder().decode(FormatRecord.self, from: Data(existing)),
                  info.format == Layout.formatName else {
                throw StoreError(.notAStore, "\(path): not a noisy store (its format record is unreadable)")
            }
            guard info.version <= Layout.formatVersion else {
                throw StoreError(.incompatible, "\(path): store format version \(info.version) is newer than this noisy (\(Layout.formatVersion)); upgrade noisy")
            }
            return
        }
        guard create else { throw StoreError(.notAStore, "\(path): not a noisy store (no format record)") }
        // Milliseconds: the creation time also tells stores apart (stream states name it).
        let clock = ISO8601DateFormatter()
        clock.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let record = FormatRecord(format: Layout.formatName, version: Layout.formatVersion,
                                  createdAt: clock.string(from: Date()))
        let bytes = try JSONEncoder.sorted.encode(record)
        try write { txn in
            if try !txn.contains(db.meta, key: key) { try txn.put(db.meta, key: key, value: Array(bytes)) }
        }
    }

    struct FormatRecord: Codable {
        var format: String
        var version: Int
        var createdAt: String
        enum CodingKeys: String, CodingKey { case format, version, createdAt = "created_at" }
    }

    // MARK: Classes

    /// Class names by index, in the order they were registered.
    public func classes() throws -> [String] {
        try read { txn in try classes(txn) }
    }

    func classes(_ txn: ReadTransaction) throws -> [String] {
        var names: [String] = []
        try txn.scan(db.classes) { _, v in
            names.append(String(decoding: v, as: UTF8.self))
            return true
        }
        return names
    }

    /// Appends the names not yet known, sorted; existing indices never change.
    /// Returns the full list.
    @discardableResult
    public func registerClasses(_ names: some Sequence<String>) throws -> [String] {
        try write { txn in
            var known = try classes(txn)
            let fresh = Set(names).subtracting(known).sorted()
            for name in fresh {
                try txn.put(db.classes, key: Layout.u32Key(UInt32(known.count)), value: Array(name.utf8))
                known.append(name)
            }
            return known
        }
    }

    // MARK: Samples

    /// The metadata of sample `id`, or nil.
    public func sample(_ id: UInt64) throws -> SampleRecord? {
        try read { txn in try sample(id, txn) }
    }

    func sample(_ id: UInt64, _ txn: ReadTransaction) throws -> SampleRecord? {
        try txn.withValue(db.samples, key: Layout.idKey(id)) { v in
            guard let v else { return nil }
            guard let r = SampleRecord(id: id, bytes: v) else {
                throw StoreError(.corrupt, "\(path): sample \(id) has an unreadable record")
            }
            return r
        }
    }

    /// Calls `body` with sample `id`'s stored bytes, borrowed from the map.
    public func withImageBytes<T>(_ id: UInt64, _ body: (UnsafeRawBufferPointer) throws -> T) throws -> T {
        try read { txn in
            try txn.withValue(db.images, key: Layout.idKey(id)) { v in
                guard let v else { throw StoreError(.notFound, "\(path): no sample with id \(id)") }
                return try body(v)
            }
        }
    }

    /// Calls `body(i, image, label)` for each sample inside one read transaction: the
    /// batch pipeline's read path. `label` is the sample's stored record in
    /// generation `labelGeneration` when `wantsLabel` (else nil); `image` is nil for
    /// a missing sample. Both are borrowed from the map for the call.
    public func withSamples(_ samples: [(id: UInt64, wantsLabel: Bool)], labelGeneration: Int?,
                            _ body: (Int, UnsafeRawBufferPointer?, UnsafeRawBufferPointer?) throws -> Void) throws {
        try read { txn in
            for (i, s) in samples.enumerated() {
                try txn.withValue(db.images, key: Layout.idKey(s.id)) { image in
                    guard s.wantsLabel, let k = labelGeneration else { return try body(i, image, nil) }
                    try txn.withValue(db.labels, key: GenerationKeys.label(k, s.id)) { label in try body(i, image, label) }
                }
            }
        }
    }

    /// A copy of sample `id`'s stored bytes.
    public func imageBytes(_ id: UInt64) throws -> [UInt8] {
        try withImageBytes(id) { Array($0.bindMemory(to: UInt8.self)) }
    }

    /// Visits every sample record in id order.
    public func forEachSample(_ body: (SampleRecord) throws -> Void) throws {
        try read { txn in
            try txn.scan(db.samples) { k, v in
                let id = Layout.readU64BE(k)
                guard let r = SampleRecord(id: id, bytes: v) else {
                    throw StoreError(.corrupt, "\(path): sample \(id) has an unreadable record")
                }
                try body(r)
                return true
            }
        }
    }

    /// Ids (and class indices) of one split, in id order: what the pipeline samples from.
    public func index(of split: Split) throws -> [(id: UInt64, classIndex: UInt32?)] {
        try read { txn in
            var out: [(UInt64, UInt32?)] = []
            try txn.scan(db.splitIndex, prefix: [split.code]) { k, v in
                let id = Layout.readU64BE(k, at: 1)
                guard v.count == 4 else { throw StoreError(.corrupt, "\(path): a split index entry of \(v.count) bytes: the store looks damaged; noisy verify --store \(path) tells more") }
                let c = v.loadUnaligned(as: UInt32.self).littleEndian
                out.append((id, c == SampleRecord.noClass ? nil : c))
                return true
            }
            return out
        }
    }

    /// Ids of samples whose source path equals `source` (any split).
    public func ids(forSource source: String) throws -> [UInt64] {
        try read { txn in try ids(forSource: source, txn) }
    }

    func ids(forSource source: String, _ txn: ReadTransaction) throws -> [UInt64] {
        var out: [UInt64] = []
        let key = Array(source.utf8)
        try txn.scan(db.sources, from: key) { k, v in
            guard k.elementsEqual(key) else { return false }
            out.append(Layout.readU64BE(v))
            return true
        }
        return out
    }

    /// The id stored under a content hash, if any.
    func id(forContentHash hash: [UInt8], _ txn: ReadTransaction) throws -> UInt64? {
        try txn.withValue(db.hashes, key: hash) { v in v.map { Layout.readU64BE($0) } }
    }

    /// Number of samples.
    public func count() throws -> Int {
        try read { try $0.count(db.samples) }
    }

    /// Decodes sample `id`.
    public func decode(_ id: UInt64, options: DecodeOptions = .init()) throws -> Image {
        try withImageBytes(id) { bytes in
            do { return try Codec.decode(bytes, options: options) } catch {
                throw StoreError(.corrupt, "\(path): sample \(id) does not decode: \(error)")
            }
        }
    }

    /// Writes a compacted copy to `destination` (a new or empty folder), like `mdb_copy -c`.
    public func compact(to destination: String) throws {
        let fm = FileManager.default
        if fm.fileExists(atPath: destination) {
            let contents = (try? fm.contentsOfDirectory(atPath: destination)) ?? []
            guard contents.isEmpty else { throw StoreError(.conflict, "\(destination): exists and is not empty") }
        } else {
            try fm.createDirectory(atPath: destination, withIntermediateDirectories: true)
        }
        do { try environment.copy(to: destination, compact: true) } catch { throw StoreError(error) }
    }
}

extension JSONEncoder {
    /// Sorted keys: the same value always gives the same bytes.
    static var sorted: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }
}

/// An exclusive `flock` on a folder, held while a store is created in it. The lock
/// goes with the process: one killed while holding it releases it.
struct FolderLock {
    private let fd: Int32

    init(_ path: String) throws {
        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw StoreError(.io, "\(path): cannot open the folder: \(String(cString: strerror(errno)))") }
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else {
                let reason = String(cString: strerror(errno))
                close(fd)
                throw StoreError(.io, "\(path): cannot lock the folder: \(reason)")
            }
        }
    }

    func release() {
        flock(fd, LOCK_UN)
        close(fd)
    }
}
