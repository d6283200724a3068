import Augment
import Batches
import DatasetStore

extension BatchLoader {
    /// A loader over a store's labeled split (and a pseudo-labeled source, if given).
    public convenience init(store: Store, config: PipelineConfig, pseudoLabels: (any SoftLabelProvider)? = nil,
                            state: StreamState? = nil, log: @escaping @Sendable (String) -> Void = { _ in }) throws {
        let labeled = try store.index(of: .labeled).compactMap { e in
            e.classIndex.map { LabeledItem(id: e.id, classIndex: Int($0)) }
        }
        try self.init(config: config, source: StoreImageSource(store: store), labeled: labeled,
                      classCount: try store.classes().count, pseudoLabels: pseudoLabels, state: state, log: log)
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
