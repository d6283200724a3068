import DatasetStore
import Foundation

/// Encoded image bytes by sample id. The pipeline reads through this, so tests
/// can feed it from memory and the trainer never sees LMDB.
public protocol ImageSource: Sendable {
    /// Calls `body(i, bytes)` for each id in order; bytes are borrowed for the call
    /// and nil when the id is missing.
    func withImages(_ ids: [UInt64], _ body: (Int, UnsafeRawBufferPointer?) throws -> Void) throws
}

/// Reads a batch's images inside one LMDB read transaction.
public struct StoreImageSource: ImageSource {
    public let store: Store
    public init(store: Store) { self.store = store }
    public func withImages(_ ids: [UInt64], _ body: (Int, UnsafeRawBufferPointer?) throws -> Void) throws {
        try store.withImageBytes(ids, body)
    }
}

/// Images held in memory (tests, benchmarks).
public struct InMemoryImageSource: ImageSource {
    public let images: [UInt64: [UInt8]]
    public init(images: [UInt64: [UInt8]]) { self.images = images }
    public func withImages(_ ids: [UInt64], _ body: (Int, UnsafeRawBufferPointer?) throws -> Void) throws {
        for (i, id) in ids.enumerated() {
            if let bytes = images[id] { try bytes.withUnsafeBytes { try body(i, $0) } } else { try body(i, nil) }
        }
    }
}

/// Soft labels for the pseudo-labeled source: what a pseudo-label generation's
/// selection provides (the generations module implements it over the store).
public protocol SoftLabelProvider: Sendable {
    var classCount: Int { get }
    /// The epoch's items: each selected id, repeated by its multiplicity.
    func entries() throws -> [UInt64]
    /// Writes sample `id`'s distribution (sums to 1) into `out` (classCount floats).
    func distribution(of id: UInt64, into out: UnsafeMutableBufferPointer<Float>) throws
}

/// Soft labels held in memory, for tests and for callers that computed them.
public struct InMemorySoftLabels: SoftLabelProvider {
    public let classCount: Int
    public let labels: [UInt64: [Float]]
    public let multiplicity: [UInt64: Int]
    public init(classCount: Int, labels: [UInt64: [Float]], multiplicity: [UInt64: Int] = [:]) {
        self.classCount = classCount; self.labels = labels; self.multiplicity = multiplicity
    }
    public func entries() throws -> [UInt64] {
        labels.keys.sorted().flatMap { id in repeatElement(id, count: multiplicity[id] ?? 1) }
    }
    public func distribution(of id: UInt64, into out: UnsafeMutableBufferPointer<Float>) throws {
        guard let p = labels[id] else { throw PipelineError("no soft label for sample \(id)") }
        for c in 0..<classCount { out[c] = p[c] }
    }
}

/// A labeled sample: its id and class index.
public struct LabeledItem: Sendable, Equatable {
    public var id: UInt64
    public var classIndex: Int
    public init(id: UInt64, classIndex: Int) { self.id = id; self.classIndex = classIndex }
}

public struct PipelineError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}
