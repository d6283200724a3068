import LMDB

/// A store-level failure with the path it concerns and a one-line reason.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable { case notAStore, incompatible, missingFolder, invalidArgument, notFound, corrupt, io, conflict }
    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

extension StoreError {
    /// Wraps LMDB's error in words a user can act on.
    static func from(_ error: LMDBError, store: String) -> StoreError {
        if error.isOutOfSpace { return StoreError(.io, error.description) }
        return StoreError(.io, "\(store): \(error.operation): \(error.message)")
    }
}
