import LMDB

/// A store-level failure with the path it concerns and a one-line reason.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        case notAStore, incompatible, missingFolder, invalidArgument, notFound, corrupt, io, conflict
        /// The disk or a file-size limit ran out during a write; nothing of it was kept.
        case outOfSpace
    }
    public let kind: Kind
    public let message: String
    /// The LMDB failure behind an `.io`/`.outOfSpace` error, when there is one.
    public let lmdbError: LMDBError?

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
        lmdbError = nil
    }

    public var description: String { message }
}

extension StoreError: LMDBFailureCarrying {
    /// Wraps LMDB's error in words a user can act on. This is the one place an
    /// `LMDBError` becomes a `StoreError`: `Store.read` and `Store.write` route every
    /// transaction's failures through it.
    public init(_ error: LMDBError) {
        kind = error.isOutOfSpace ? .outOfSpace : .io
        message = error.isOutOfSpace ? error.description : "\(error.path): \(error.operation): \(error.message)"
        lmdbError = error
    }

    /// Any error a transaction body threw, as a `StoreError`.
    static func wrapping(_ error: any Error, store: String) -> StoreError {
        switch error {
        case let e as StoreError: e
        case let e as LMDBError: StoreError(e)
        default: StoreError(.corrupt, "\(store): \(error)")
        }
    }
}
