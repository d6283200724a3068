internal import CLMDB
#if canImport(Glibc)
import Glibc
#endif

/// An LMDB failure: the return code, LMDB's own text, and what we were doing.
public struct LMDBError: Error, Sendable, Equatable, CustomStringConvertible {
    public let code: Int32
    public let operation: String
    public let path: String

    public var message: String {
        if let t = truncation {
            return "the data file is \(t.size) bytes but its pages in use reach \(t.needed) bytes: it looks like an incomplete copy"
        }
        return String(cString: mdb_strerror(code))
    }
    public var description: String {
        if isOutOfSpace {
            let why = spaceShortage.map { "\(message): \($0)" } ?? message
            return "\(path): out of space (\(why)) in \(operation): the transaction was not written; free space and run again"
        }
        return "\(path): \(operation): \(message)"
    }

    /// Set when the failure was a write that ran out of room, which LMDB reports as
    /// EIO when the write was short: the free space or file-size limit found then.
    public var spaceShortage: String?

    /// Set when the data file is shorter than the pages its meta page says are in
    /// use (a half-copied store): what it has and what it needs, in bytes.
    public var truncation: (size: Int, needed: Int)?

    public static func == (a: LMDBError, b: LMDBError) -> Bool {
        a.code == b.code && a.operation == b.operation && a.path == b.path && a.spaceShortage == b.spaceShortage
            && a.truncation?.size == b.truncation?.size && a.truncation?.needed == b.truncation?.needed
    }

    public init(code: Int32, operation: String, path: String, spaceShortage: String? = nil) {
        self.code = code; self.operation = operation; self.path = path; self.spaceShortage = spaceShortage
    }

    public var isMapFull: Bool { code == MDB_MAP_FULL }
    public var isNotFound: Bool { code == MDB_NOTFOUND }
    /// LMDB noticed a damaged file itself (a page of the wrong kind, a page past
    /// the end, a bad meta page, a version mismatch).
    public var indicatesDamage: Bool {
        code == MDB_CORRUPTED || code == MDB_PAGE_NOTFOUND || code == MDB_INVALID || code == MDB_VERSION_MISMATCH
            || code == MDB_BAD_VALSIZE || code == MDB_CURSOR_FULL || truncation != nil
    }
    /// ENOSPC / EDQUOT / EFBIG: the disk (or a file-size limit) ran out.
    public var isOutOfSpace: Bool { code == ENOSPC || code == EDQUOT || code == EFBIG || spaceShortage != nil }
}

/// An error type that transaction bodies throw: it can carry an LMDB failure, so
/// that `Environment.read`/`write` can throw the caller's own type (typed throws)
/// and still see an LMDB failure inside it (a full map is retried).
public protocol LMDBFailureCarrying: Error {
    init(_ lmdb: LMDBError)
    /// The LMDB failure this error carries, if it is one.
    var lmdbError: LMDBError? { get }
}

extension LMDBError: LMDBFailureCarrying {
    public init(_ lmdb: LMDBError) { self = lmdb }
    public var lmdbError: LMDBError? { self }
}

/// Turns an LMDB return code into a throw: 0 is success, anything else an
/// `LMDBError` naming the operation and the environment's path.
@inline(__always)
func check(_ rc: Int32, _ operation: @autoclosure () -> String, path: String) throws(LMDBError) {
    if rc != 0 { throw LMDBError(code: rc, operation: operation(), path: path) }
}

/// Anything that can lend its bytes for the length of a call: keys and values.
/// (Foundation's `ContiguousBytes` without importing Foundation.)
public protocol ByteView {
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
}
extension ByteView {
    /// `withUnsafeBytes` for a body that throws only `LMDBError`, keeping the type
    /// (the protocol requirement is `rethrows`, which erases it).
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws(LMDBError) -> R) throws(LMDBError) -> R {
        let result = withUnsafeBytes { p in Result { () throws(LMDBError) -> R in try body(p) } }
        return try result.get()
    }
}
extension Array: ByteView where Element == UInt8 {}
extension ArraySlice: ByteView where Element == UInt8 {}
extension UnsafeRawBufferPointer: ByteView {
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R { try body(self) }
}

/// Why a failed write ran out of room, if it did: the file-size limit (`ulimit -f`)
/// reached by the data file, or under 1 MiB free on its filesystem. nil otherwise.
func spaceShortage(dataFile: String) -> String? {
    var st = stat()
    let size = stat(dataFile, &st) == 0 ? UInt64(st.st_size) : 0
    var limit = rlimit()
    if getrlimit(Int32(RLIMIT_FSIZE.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max, size + 65536 >= UInt64(limit.rlim_cur) {
        return "the file-size limit (ulimit -f) of \(limit.rlim_cur) bytes is reached"
    }
    var fs = statvfs()
    let folder = String(dataFile[..<(dataFile.lastIndex(of: "/") ?? dataFile.endIndex)])
    if statvfs(folder.isEmpty ? "." : folder, &fs) == 0 {
        let free = UInt64(fs.f_bavail) * UInt64(fs.f_frsize)
        if free < 1 << 20 { return "\(free) bytes free on the disk" }
    }
    return nil
}
