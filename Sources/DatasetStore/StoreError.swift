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
    /// The request field the error is about, when a caller's choice caused it: a
    /// front end names its own spelling of it (the CLI, its flag).
    public let field: RequestField?

    public init(_ kind: Kind, _ message: String, field: RequestField? = nil) {
        self.kind = kind
        self.message = message
        lmdbError = nil
        self.field = field
    }

    public var description: String { message }
}

/// The fields of the store's requests that a caller chooses. Errors say which one
/// they are about, in the store's words; front ends map them to their own names.
public enum RequestField: String, Sendable, CaseIterable {
    case threshold, perClass, selectionName, precision, sampleIDs, logits, overwrite
}

extension StoreError: LMDBFailureCarrying {
    /// Wraps LMDB's error in words a user can act on. This is the one place an
    /// `LMDBError` becomes a `StoreError`: `Store.read` and `Store.write` route every
    /// transaction's failures through it.
    public init(_ error: LMDBError) {
        kind = error.isOutOfSpace ? .outOfSpace : (error.indicatesDamage ? .corrupt : .io)
        message = error.isOutOfSpace ? error.description
            : error.indicatesDamage ? "\(error.path): \(error.operation): \(error.message): the store looks damaged; noisy verify --store \(error.path) tells more"
            : "\(error.path): \(error.operation): \(error.message)"
        lmdbError = error
        field = nil
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
