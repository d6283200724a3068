import Augment
import DatasetStore
import Foundation
import ImageCodec

/// One sample a batch needs: its id, and whether its stored pseudo label is read with it.
public struct SampleRequest: Sendable, Equatable {
    public var id: UInt64
    public var wantsLabel: Bool
    public init(id: UInt64, wantsLabel: Bool) { self.id = id; self.wantsLabel = wantsLabel }
}

/// Encoded images and stored pseudo-label records by sample id: everything a batch
/// reads, in one snapshot. The pipeline reads through this, so tests can feed it
/// from memory and the trainer never sees LMDB.
public protocol SampleSource: Sendable {
    /// The labels of the pseudo-labeled source, when this source has one: what
    /// turns a stored record into a distribution, and which samples an epoch holds.
    var pseudoLabels: (any SoftLabelProvider)? { get }

    /// Calls `body(i, image, label)` for each request in order, all inside one
    /// snapshot, so an image and its label can never come from different states of
    /// the store. Both buffers are borrowed for the call; `image` is nil when the id
    /// is missing, `label` when it was not asked for or is missing.
    func withSamples(_ requests: [SampleRequest],
                     _ body: (Int, UnsafeRawBufferPointer?, UnsafeRawBufferPointer?) throws -> Void) throws
}

/// Soft labels for the pseudo-labeled source: what a pseudo-label generation's
/// selection provides (the store implements it, `StoreSoftLabels`).
public protocol SoftLabelProvider: Sendable {
    var classCount: Int { get }
    /// The epoch's items: each selected id, repeated by its multiplicity.
    func entries() throws -> [UInt64]
    /// Writes the distribution a stored record holds (sums to 1) into `out`
    /// (classCount floats). `id` is for messages.
    func decode(_ record: UnsafeRawBufferPointer, of id: UInt64, into out: UnsafeMutableBufferPointer<Float>) throws
}

/// Reads a batch's images, and the pseudo labels of its pseudo-labeled samples,
/// inside one LMDB read transaction.
public struct StoreSampleSource: SampleSource {
    public let store: Store
    public let labels: StoreSoftLabels?
    public init(store: Store, pseudoLabels: StoreSoftLabels? = nil) {
        self.store = store
        labels = pseudoLabels
    }
    public var pseudoLabels: (any SoftLabelProvider)? { labels }
    public func withSamples(_ requests: [SampleRequest],
                            _ body: (Int, UnsafeRawBufferPointer?, UnsafeRawBufferPointer?) throws -> Void) throws {
        try store.withSamples(requests.map { ($0.id, $0.wantsLabel) }, labelGeneration: labels?.reader.record.generation, body)
    }
}

/// Images (and pseudo labels as float arrays) held in memory: tests, benchmarks.
public struct InMemorySampleSource: SampleSource {
    public let images: [UInt64: [UInt8]]
    public let labels: InMemorySoftLabels?
    public init(images: [UInt64: [UInt8]], pseudoLabels: InMemorySoftLabels? = nil) {
        self.images = images
        labels = pseudoLabels
    }
    public var pseudoLabels: (any SoftLabelProvider)? { labels }
    public func withSamples(_ requests: [SampleRequest],
                            _ body: (Int, UnsafeRawBufferPointer?, UnsafeRawBufferPointer?) throws -> Void) throws {
        for (i, r) in requests.enumerated() {
            let label = r.wantsLabel ? labels?.labels[r.id] : nil
            try Self.lend(images[r.id]) { image in try Self.lend(label) { l in try body(i, image, l) } }
        }
    }
    private static func lend<T>(_ a: [T]?, _ body: (UnsafeRawBufferPointer?) throws -> Void) rethrows {
        if let a { try a.withUnsafeBytes { try body($0) } } else { try body(nil) }
    }
}

/// Soft labels held in memory, for tests and for callers that computed them. A
/// record is the distribution's float32 bytes.
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
    public func decode(_ record: UnsafeRawBufferPointer, of id: UInt64, into out: UnsafeMutableBufferPointer<Float>) throws {
        guard record.count == classCount * 4 else {
            throw PipelineError(.badLabel, "sample \(id): a label of \(record.count) bytes for \(classCount) classes")
        }
        for c in 0..<classCount { out[c] = record.loadUnaligned(fromByteOffset: c * 4, as: Float.self) }
    }
}

/// A labeled sample: its id and class index.
public struct LabeledItem: Sendable, Equatable {
    public var id: UInt64
    public var classIndex: Int
    public init(id: UInt64, classIndex: Int) { self.id = id; self.classIndex = classIndex }
}

/// Why the pipeline could not make a batch, with a one-line reason.
public struct PipelineError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The configuration cannot work (batch size, channels, ranks, an empty source).
        case invalidConfiguration
        /// A resume state that does not fit this stream.
        case badState
        /// A sample is missing from the store or does not decode (sequences fail on it;
        /// streams replace it, and fail only after 32 in a row).
        case badSample
        /// A pseudo label is missing or unreadable.
        case badLabel
        /// Reading the store failed.
        case store
    }
    public let kind: Kind
    public let description: String
    public init(_ kind: Kind, _ d: String) { self.kind = kind; description = d }
}

/// Samples seen through an ImageNet-C corruption: each image is rendered through `view`
/// (a clean teacher view), corrupted (keyed by seed and sample id), and handed on as a PNG
/// of the view's size, so that a loader rendering `identity` (the teacher view of that size
/// with no crop, which leaves such an image as it is) streams the corrupted views. What
/// `noisy serve --corruption` streams to label sessions.
public struct CorruptedSampleSource: SampleSource {
    public let base: any SampleSource
    public let corruption: Corruption
    public let severity: Int
    public let seed: UInt64
    public let view: View
    public let channels: Int

    public init(base: any SampleSource, corruption: Corruption, severity: Int, seed: UInt64, view: View, channels: Int) {
        self.base = base; self.corruption = corruption; self.severity = severity; self.seed = seed
        self.view = view; self.channels = channels
    }

    /// The view a loader renders this source's images through: the identity at `view`'s size.
    public var identity: View { .teacher(TeacherView(size: view.size, cropFraction: 1)) }

    public var pseudoLabels: (any SoftLabelProvider)? { nil }

    public func withSamples(_ requests: [SampleRequest],
                            _ body: (Int, UnsafeRawBufferPointer?, UnsafeRawBufferPointer?) throws -> Void) throws {
        let renderer = ViewRenderer(channels: channels, layout: .uint8NHWC)
        var encoded: [[UInt8]?] = []
        try base.withSamples(requests.map { SampleRequest(id: $0.id, wantsLabel: false) }) { i, bytes, _ in
            guard let bytes else { encoded.append(nil); return }
            let clean = try renderer.renderImage(bytes, view: view, key: SampleKey(seed: 0, epoch: 0, sample: 0))
            let image = try Corruptions.apply(corruption, severity: severity, to: clean, seed: seed, sample: requests[i].id)
            encoded.append(try Codec.encodePNG(image))
        }
        for (i, e) in encoded.enumerated() {
            if let e { try e.withUnsafeBytes { try body(i, $0, nil) } } else { try body(i, nil, nil) }
        }
    }
}
