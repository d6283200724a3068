import ArgumentParser
import Augment
import Batches
import DatasetStore
import Pipeline

/// The view and batch options shared by preview, bench pipeline, train and serve.
struct PipelineOptions: ParsableArguments {
    @Option(help: "Output side in pixels (square).") var size: Int = 224
    @Option(help: "train (noised) or teacher (clean resize + centre crop).")
    var view: ViewChoice = .train
    @Option(help: "Train crop: rrc (RandomResizedCrop) or pad (zero-pad then random crop, for small images).")
    var crop: CropChoice = .rrc
    @Option(help: "Padding for --crop pad.") var pad: Int = 4
    @Option(help: ArgumentHelp("RandomResizedCrop area range.", valueName: "lo,hi")) var scale: String = "0.08,1"
    @Option(help: ArgumentHelp("RandAugment layers and magnitude, e.g. 2,9 (magnitudes above 10 extrapolate).", valueName: "N,M"))
    var randaugment: String?
    @Option(help: "RandAugment defaults: reference (TF code: p=1, unclamped, absolute pixels) or timm (p=0.5, mstd 0.5, clamped, relative).")
    var raPreset: RandAugment.Preset = .reference
    @Option(help: "Side of a random grey Cutout square after RandAugment (0: off).") var cutout: Int = 0
    @Flag(help: "No random horizontal flip.") var noFlip = false
    @Flag(help: "Decode whole images at full scale to RGB, as Pillow does (slower; the fast path decodes only the crop, DCT-scaled, and resizes restart-marked JPEGs in YCbCr).")
    var exactDecode = false
    @Option(help: "Teacher view: centre crop share of the resized shorter side.") var cropFraction: Double = 0.875
    @Option(help: "Output channels: 1, 3 or auto (what most labeled samples are).")
    var channels: ChannelsChoice = .auto
    @Option(help: "uint8 (NHWC bytes) or float32 (NCHW, ImageNet-normalised).")
    var layout: LayoutChoice = .uint8
    @Option(help: "Samples per batch.") var batchSize: Int = 64
    @Option(help: "Pseudo-labeled samples per labeled one in each batch.") var ratio: Double = 1
    @Option(help: "Seed for order and augmentation.") var seed: UInt64 = 0
    @Option(help: "This process's rank.") var rank: Int = 0
    @Option(help: "Number of ranks sharing each epoch.") var worldSize: Int = 1
    @Option(help: "Decode/augment threads.") var threads: Int = 2
    @Option(help: "Label smoothing for labeled targets.") var labelSmoothing: Float = 0
    @Option(help: ArgumentHelp("Pseudo-label generation (number or tag) to mix in.", valueName: "K")) var generation: String?
    @Option(help: ArgumentHelp("Selection of the generation (default: 'default' if it exists, else every sample).", valueName: "name"))
    var selection: String?
    @Option(help: "Soft-label temperature: p^(1/T), renormalised.") var temperature: Double = 1
    @Flag(help: "Hard pseudo labels: one-hot of the top class with --hard-smoothing.") var hard = false
    @Option(help: "Label smoothing of hard pseudo labels.") var hardSmoothing: Float = 0.1

    /// The pseudo-labeled source, when --generation is given.
    func softLabels(store: Store) throws -> StoreSoftLabels? {
        guard let generation else {
            if selection != nil { throw ValidationError("--selection needs --generation") }
            return nil
        }
        guard temperature > 0 else { throw ValidationError("--temperature must be above 0") }
        let g = try store.resolveGeneration(generation)
        return try StoreSoftLabels(store: store, generation: g.generation, selection: selection,
                                   options: LabelReadOptions(temperature: temperature, hard: hard, smoothing: hardSmoothing))
    }

    func trainView() throws -> TrainView {
        let cropMode: TrainCrop
        switch crop {
        case .rrc:
            let parts = scale.split(separator: ",").compactMap { Double($0) }
            guard parts.count == 2, parts[0] > 0, parts[0] <= parts[1], parts[1] <= 1 else {
                throw ValidationError("--scale wants lo,hi with 0 < lo <= hi <= 1 (got \(scale))")
            }
            cropMode = .randomResized(scale: parts[0]...parts[1], ratio: (3.0 / 4)...(4.0 / 3))
        case .pad:
            guard pad >= 0 else { throw ValidationError("--pad must be 0 or more") }
            cropMode = .padCrop(padding: pad)
        }
        return TrainView(size: size, crop: cropMode, flip: !noFlip, randAugment: try parsedRandAugment(),
                         cutout: cutout, fastDecode: !exactDecode)
    }

    func parsedRandAugment() throws -> RandAugment? {
        try randaugment.flatMap { try RandAugment(option: $0, preset: raPreset) }
    }

    func resolvedView() throws -> View {
        guard size >= 1 && size <= 4096 else { throw ValidationError("--size must be 1-4096 (got \(size))") }
        switch view {
        case .train: return .train(try trainView())
        case .teacher:
            guard cropFraction > 0 && cropFraction <= 1 else { throw ValidationError("--crop-fraction must be in (0, 1]") }
            return .teacher(TeacherView(size: size, cropFraction: cropFraction, fastDecode: !exactDecode))
        }
    }

    func config(store: Store) throws -> PipelineConfig {
        let ch: Int
        switch channels {
        case .auto: ch = try store.dominantChannels()
        case .one: ch = 1
        case .three: ch = 3
        }
        let out: OutputLayout
        switch layout {
        case .uint8: out = .uint8NHWC
        case .float32: out = .float32NCHW(.imageNet(channels: ch))
        }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
        guard threads >= 1 && threads <= 256 else { throw ValidationError("--threads must be 1-256") }
        guard ratio > 0 else { throw ValidationError("--ratio must be above 0") }
        guard worldSize >= 1, rank >= 0, rank < worldSize else { throw ValidationError("--rank must be in 0..<--world-size") }
        return PipelineConfig(view: try resolvedView(), channels: ch, layout: out, batchSize: batchSize, ratio: ratio,
                              seed: seed, rank: rank, worldSize: worldSize, threads: threads,
                              labelSmoothing: labelSmoothing)
    }
}

/// What `--store` names for the pipeline commands: one store, or a shard set (every
/// shard, read as one source).
struct PipelineSource {
    /// The store, or the set's first shard (classes, channel defaults).
    let store: Store
    let set: (manifest: ShardManifest, stores: [Store])?

    init(path: String) throws {
        if ShardManifest.isSet(path) {
            let (m, folder) = try ShardManifest.read(path)
            let stores = try m.openShards(folder: folder)
            store = stores[0]
            set = (m, stores)
        } else {
            store = try Store(path: path, readOnly: true)
            set = nil
        }
    }

    /// The batch stream over the store, or over every shard of the set.
    func loader(config: PipelineConfig, options: PipelineOptions, log: @escaping @Sendable (String) -> Void) throws -> BatchLoader {
        guard let set else {
            return try BatchLoader(store: store, config: config, pseudoLabels: try options.softLabels(store: store), log: log)
        }
        // BatchLoader(set:) refuses a generation or selection the manifest does not list.
        let generation = try options.softLabels(store: store)?.reader.record.generation
        return try BatchLoader(set: set.manifest, stores: set.stores, node: Array(set.stores.indices), config: config,
                               generation: generation, selection: options.selection,
                               labelOptions: LabelReadOptions(temperature: options.temperature, hard: options.hard,
                                                              smoothing: options.hardSmoothing), log: log)
    }
}

extension RandAugment {
    /// `--randaugment N,M` (the same option in every command; `name` is the flag the
    /// error names): nil for `none` or N = 0.
    init?(option text: String, name: String = "--randaugment", preset: Preset) throws {
        if text == "none" { return nil }
        let parts = text.split(separator: ",")
        guard parts.count == 2, let n = Int(parts[0]), let m = Double(parts[1]), n >= 0, m >= 0 else {
            throw ValidationError("\(name) wants N,M such as 2,5, or none (got '\(text)')")
        }
        guard n > 0 else { return nil }
        self.init(layers: n, magnitude: m, preset: preset)
    }
}
