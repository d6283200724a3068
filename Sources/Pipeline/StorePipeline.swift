import Augment
import Batches
import DatasetStore
import Digest

extension BatchLoader {
    /// A loader over a store's labeled split (and a pseudo-labeled source, if given).
    public convenience init(store: Store, config: PipelineConfig, pseudoLabels: StoreSoftLabels? = nil,
                            state: StreamState? = nil, storage: (any ExternalImageStorage)? = nil,
                            log: @escaping @Sendable (String) -> Void = { _ in }) throws {
        let labeled = try store.index(of: .labeled).compactMap { e in
            e.classIndex.map { LabeledItem(id: e.id, classIndex: Int($0)) }
        }
        var config = config
        config.origin = try Self.origin(store: store, config: config)
        try self.init(config: config, source: StoreSampleSource(store: store, pseudoLabels: pseudoLabels), labeled: labeled,
                      classCount: try store.classes().count, state: state, storage: storage, log: log)
    }

    /// The store (its creation time, which copies keep) and a fingerprint of the view,
    /// layout and channels: what a resume state must match.
    static func origin(store: Store, config: PipelineConfig) throws -> String {
        let view = "\(config.view)|\(config.layout.name)|\(config.channels)"
        return "store created \(try store.createdAt()), view \(SHA256.hash(Array(view.utf8)).hexString.prefix(12))"
    }
}

extension SequenceLoader {
    /// Every sample of a store's split once, in id order, through `view`; samples
    /// with a class get it as their target.
    public convenience init(store: Store, split: Split, view: View, channels: Int, layout: OutputLayout,
                            batchSize: Int, threads: Int) throws {
        let items = try store.index(of: split).map { (id: $0.id, classIndex: $0.classIndex.map { Int($0) }) }
        try self.init(items: items, source: StoreSampleSource(store: store), classCount: try store.classes().count,
                      view: view, channels: channels, layout: layout, batchSize: batchSize, threads: threads)
    }
}

extension Store {
    /// Channels most samples of `split` decode to (1 for gray stores such as
    /// Fashion-MNIST, else 3): the pipeline's default output channels.
    public func dominantChannels(of split: Split = .labeled, probe: Int = 256) throws -> Int {
        var gray = 0, colour = 0
        for e in try index(of: split).prefix(probe) {
            guard let r = try sample(e.id) else { continue }
            if r.channels == 1 { gray += 1 } else { colour += 1 }
        }
        return gray > colour ? 1 : 3
    }
}

/// A generation's selection as the pseudo-labeled source: each entry (with its
/// copies) is one sample of the epoch; its target is the stored distribution at
/// the reader's temperature (or one-hot in hard mode).
public struct StoreSoftLabels: SoftLabelProvider {
    public let reader: GenerationReader
    /// nil: `default` if the generation has it, else every labelled sample once.
    public let selection: String?

    public init(store: Store, generation: Int, selection: String? = nil, options: LabelReadOptions = .init()) throws {
        reader = try GenerationReader(store: store, generation: generation, options: options)
        self.selection = try selection ?? reader.defaultSelection()
    }

    public var classCount: Int { reader.classCount }
    public func entries() throws -> [UInt64] { try reader.entries(selection: selection) }
    public func decode(_ record: UnsafeRawBufferPointer, of id: UInt64, into out: UnsafeMutableBufferPointer<Float>) throws {
        try reader.decode(record, into: out)
    }
}
