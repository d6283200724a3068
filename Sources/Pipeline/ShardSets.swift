import Augment
import Batches
import DatasetStore
import Digest

/// The shards of a set one node serves, read as one source: each id goes to the shard
/// that holds it (samples keep their ids across a set, so the map is the union of the
/// shards' indexes).
public struct ShardSetSampleSource: SampleSource {
    public let stores: [Store]
    let shardOf: [UInt64: Int]
    let labels: ShardSetSoftLabels?

    public init(stores: [Store], pseudoLabels: ShardSetSoftLabels? = nil) throws {
        self.stores = stores
        shardOf = try ShardManifest.shardMap(stores)
        labels = pseudoLabels
    }

    public var pseudoLabels: (any SoftLabelProvider)? { labels }

    /// Runs of consecutive requests on one shard are read in one snapshot of that shard.
    public func withSamples(_ requests: [SampleRequest],
                            _ body: (Int, UnsafeRawBufferPointer?, UnsafeRawBufferPointer?) throws -> Void) throws {
        var start = 0
        while start < requests.count {
            let shard = shardOf[requests[start].id]
            var end = start + 1
            while end < requests.count && shardOf[requests[end].id] == shard { end += 1 }
            let run = Array(requests[start..<end])
            if let shard {
                let source = StoreSampleSource(store: stores[shard], pseudoLabels: labels?.perShard[shard])
                let offset = start
                try source.withSamples(run) { i, image, label in try body(offset + i, image, label) }
            } else {
                for i in start..<end { try body(i, nil, nil) }  // not on this node: "missing from the store"
            }
            start = end
        }
    }
}

/// One generation's selection over a node's shards: the entries of every shard, in
/// id order; a record decodes the same whichever shard holds it.
public struct ShardSetSoftLabels: SoftLabelProvider {
    public let perShard: [StoreSoftLabels]

    public init(stores: [Store], generation: Int, selection: String?, options: LabelReadOptions) throws {
        perShard = try stores.map { try StoreSoftLabels(store: $0, generation: generation, selection: selection, options: options) }
    }

    public var classCount: Int { perShard.first?.classCount ?? 0 }
    public func entries() throws -> [UInt64] { try perShard.flatMap { try $0.entries() }.sorted() }
    public func decode(_ record: UnsafeRawBufferPointer, of id: UInt64, into out: UnsafeMutableBufferPointer<Float>) throws {
        guard let first = perShard.first else { throw PipelineError(.badLabel, "no shard holds the pseudo labels") }
        try first.decode(record, of: id, into: out)
    }
}

extension BatchLoader {
    /// A loader over the shards `node` of a set (their union), for one node of a
    /// multi-node job. Each epoch takes as many items as any node serving as many shards
    /// can (the manifest says how many), so every rank of every node gets the same
    /// number of batches; ranks are the node's local ranks.
    public convenience init(set manifest: ShardManifest, stores: [Store], node: [Int], config: PipelineConfig,
                            generation: Int? = nil, selection: String? = nil, labelOptions: LabelReadOptions = .init(),
                            state: StreamState? = nil, storage: (any ExternalImageStorage)? = nil,
                            log: @escaping @Sendable (String) -> Void = { _ in }) throws {
        if let generation {
            guard let g = manifest.generations.first(where: { $0.generation == generation }) else {
                throw PipelineError(.invalidConfiguration, "generation \(generation) is not committed on this shard set")
            }
            if let selection, g.selectionEntries[selection] == nil {
                throw PipelineError(.invalidConfiguration, "selection '\(selection)' of generation \(generation) is not committed on this shard set")
            }
        }
        let mine = node.map { stores[$0] }
        var labeled: [LabeledItem] = []
        for s in mine {
            labeled += try s.index(of: .labeled).compactMap { e in e.classIndex.map { LabeledItem(id: e.id, classIndex: Int($0)) } }
        }
        labeled.sort { $0.id < $1.id }
        let pseudo = try generation.map { try ShardSetSoftLabels(stores: mine, generation: $0, selection: selection, options: labelOptions) }
        var config = config
        config.labeledEpochLength = manifest.epochLength(perNode: node.count)
        if let generation, let first = pseudo?.perShard.first {
            config.pseudoEpochLength = manifest.epochLength(perNode: node.count, generation: generation, selection: first.selection)
        }
        let view = "\(config.view)|\(config.layout.name)|\(config.channels)"
        config.origin = "shard set \(manifest.sha256?.prefix(12) ?? "?") shards \(node.map(String.init).joined(separator: ",")), view "
            + "\(SHA256.hash(Array(view.utf8)).hexString.prefix(12))"
        try self.init(config: config, source: try ShardSetSampleSource(stores: mine, pseudoLabels: pseudo), labeled: labeled,
                      classCount: manifest.classes.count, state: state, storage: storage, log: log)
    }
}
