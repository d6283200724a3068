import CLMDB

/// An LMDB failure: the return code, LMDB's own text, and what we were doing.
public struct LMDBError: Error, Sendable, Equatable, CustomStringConvertible {
    public let code: Int32
    public let operation: String
    public let path: String

    public var message: String { String(cString: mdb_strerror(code)) }
    public var description: String { "\(path): \(operation): \(message)" }

    public var isMapFull: Bool { code == MDB_MAP_FULL }
    public var isNotFound: Bool { code == MDB_NOTFOUND }
    /// ENOSPC / EDQUOT / EFBIG: the disk (or a file-size limit) ran out.
    public var isOutOfSpace: Bool { code == 28 || code == 122 || code == 27 }
}

/// Thrown by a transaction body to abort; carries the caller's own error.
@inline(__always)
func check(_ rc: Int32, _ operation: @autoclosure () -> String, path: String) throws(LMDBError) {
    if rc != 0 { throw LMDBError(code: rc, operation: operation(), path: path) }
}

/// Anything that can lend its bytes for the length of a call: keys and values.
/// (Foundation's `ContiguousBytes` without importing Foundation.)
public protocol ByteView {
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
}
extension Array: ByteView where Element == UInt8 {}
extension ArraySlice: ByteView where Element == UInt8 {}
extension UnsafeRawBufferPointer: ByteView {
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R { try body(self) }
}
