import Augment
import Batches
import DatasetStore
import Foundation
import Pipeline

/// What every session starts from: the server, the client's connection and hello, the log.
struct SessionContext {
    let server: Server
    let conn: Connection
    let hello: [String: Any]
    let log: @Sendable (String) -> Void
}

protocol Session {
    var context: SessionContext { get }
}

extension Session {
    var server: Server { context.server }
    var conn: Connection { context.conn }
    var hello: [String: Any] { context.hello }
    var log: @Sendable (String) -> Void { context.log }
}

/// A train session: noised batches of this client's rank, from its state, until it
/// stops or goes away. The loader holds at most `prefetch` finished batches and
/// the socket write blocks when the client is slow: memory per client is bounded.
struct TrainSession: Session {
    let context: SessionContext

    func run() throws {
        let store = server.store
        var config = server.config.pipeline
        if let r = hello["rank"] as? Int {
            config.rank = r
            config.worldSize = hello["world_size"] as? Int ?? 1
        } else {
            config.rank = server.assignRank()
            config.worldSize = hello["world_size"] as? Int ?? server.config.worldSize
        }
        guard config.worldSize >= 1, config.rank >= 0, config.rank < config.worldSize else {
            throw WireError("rank \(config.rank) is not in 0..<\(config.worldSize)")
        }
        var state: StreamState?
        if let s = hello["state"], !(s is NSNull) {
            do { state = try WireJSON.decode(StreamState.self, from: s) } catch {
                throw WireError("state is not a stream state: \(error)")
            }
        }
        let pseudo = try server.config.generation.map {
            try StoreSoftLabels(store: store, generation: $0, selection: server.config.selection, options: server.config.labelOptions)
        }
        let peer = conn.peer
        let log = self.log
        let loader = try BatchLoader(store: store, config: config, pseudoLabels: pseudo, state: state,
                                     log: { log("\(peer): \($0)") })
        let classes = try store.classes()
        let size = config.view.size
        try conn.send(Frame(header: [
            "type": "welcome", "version": Server.protocolVersion, "session": "train",
            "rank": config.rank, "world_size": config.worldSize, "batches_per_epoch": loader.batchesPerEpoch,
            "batch_size": config.batchSize, "class_count": classes.count, "classes": classes,
            "layout": config.layout.name, "channels": config.channels, "height": size, "width": size,
            "generation": server.config.generation as Any? ?? NSNull(), "state": try WireJSON.object(loader.state),
        ]))
        log("\(peer): train session, rank \(config.rank) of \(config.worldSize), from batch \(loader.state.batches)")
        var sent = 0
        while true {
            if conn.hasIncoming() {
                let f = try conn.receive()
                if f.type == "stop" { break }
                throw WireError("unexpected '\(f.type)' during a train session")
            }
            let b = try loader.next()
            try conn.send(Frame(header: ["type": "batch", "version": Server.protocolVersion, "index": b.index,
                                         "replaced": b.replaced, "state": try WireJSON.object(b.stateAfter)]),
                          arrays: [
                            ArraySpec.images(of: b),
                            ArraySpec(name: "targets", dtype: "<f4", shape: [b.count, b.classCount], bytes: b.targets.withUnsafeBytes { Array($0) }),
                            ArraySpec(name: "weights", dtype: "<f4", shape: [b.count], bytes: b.weights.withUnsafeBytes { Array($0) }),
                            ArraySpec(name: "ids", dtype: "<i8", shape: [b.count], bytes: b.ids.map { Int64($0) }.withUnsafeBytes { Array($0) }),
                            ArraySpec(name: "source", dtype: "|u1", shape: [b.count], bytes: b.origins.map(\.rawValue)),
                          ])
            loader.recycle(b)
            sent += 1
        }
        log("\(peer): train session ended after \(sent) batches")
    }
}

/// A label session: clean teacher-view batches of a split, in id order; the client
/// answers each with float32 [n, C]; on `commit` the answers become a generation in
/// one atomic import. A session that breaks off before commit writes nothing.
struct LabelSession: Session {
    let context: SessionContext

    func run() throws {
        let store = server.store
        guard let teacher = hello["teacher"] as? String, !teacher.isEmpty else {
            throw WireError("a label session needs 'teacher' (a description of the model)")
        }
        let splitName = hello["split"] as? String ?? "unlabeled"
        guard let split = Split(rawValue: splitName) else { throw WireError("unknown split '\(splitName)'") }
        let logits = hello["logits"] as? Bool ?? false
        let parent: ParentChoice
        switch hello["parent"] {
        case let p as Int: parent = .generation(p)
        case let s as String where s == "none": parent = .none
        default: parent = .latest
        }
        let cfg = server.config.pipeline
        let ids = try store.index(of: split).map(\.id)
        guard !ids.isEmpty else { throw WireError("split \(splitName) is empty") }
        let batcher = try SequenceLoader(store: store, split: split, view: server.config.teacherView, channels: cfg.channels,
                                         layout: cfg.layout, batchSize: cfg.batchSize, threads: cfg.threads)
        let classes = try store.classes()
        let c = classes.count
        let size = server.config.teacherView.size
        try conn.send(Frame(header: [
            "type": "welcome", "version": Server.protocolVersion, "session": "label", "split": splitName,
            "samples": ids.count, "batches": batcher.batchCount, "batch_size": cfg.batchSize, "class_count": c,
            "classes": classes, "layout": cfg.layout.name, "channels": cfg.channels, "height": size, "width": size,
        ]))
        log("\(conn.peer): label session over \(splitName) (\(ids.count) samples), teacher '\(teacher)'")
        var rows = [Float]()
        rows.reserveCapacity(ids.count * c)
        var index = 0
        while let b = try batcher.next() {
            try conn.send(Frame(header: ["type": "label_batch", "version": Server.protocolVersion, "index": index]),
                          arrays: [ArraySpec(name: "ids", dtype: "<i8", shape: [b.count],
                                             bytes: b.ids.map { Int64($0) }.withUnsafeBytes { Array($0) }),
                                   ArraySpec.images(of: b)])
            batcher.recycle(b)
            let answer = try conn.receive()
            guard answer.type == "predictions" else { throw WireError("expected predictions for batch \(index), got '\(answer.type)'") }
            guard answer.header["index"] as? Int == index else { throw WireError("predictions for batch \(answer.header["index"] ?? "?"), expected \(index)") }
            let probs = try Connection.array(answer, "probs")
            guard probs.dtype == "<f4", probs.shape == [b.count, c] else {
                throw WireError("batch \(index): probs must be float32 [\(b.count), \(c)], got \(probs.dtype) \(probs.shape)")
            }
            probs.bytes.withUnsafeBytes { raw in rows.append(contentsOf: raw.bindMemory(to: Float.self)) }
            index += 1
        }
        try conn.send(Frame(header: ["type": "end", "version": Server.protocolVersion, "batches": index, "samples": ids.count]))
        let last = try conn.receive()
        guard last.type == "commit" else {
            log("\(conn.peer): label session aborted by the client; nothing written")
            return
        }
        let origin = PredictionOrigin(kind: "label", logits: logits, matchedBy: "split")
        let summary = try store.importLabels(LabelImportRequest(
            input: .rows(ids: ids, rows: rows, classCount: c, origin: origin), logits: logits,
            teacher: TeacherInfo(description: teacher, model: hello["model"] as? String, checkpoint: hello["checkpoint"] as? String,
                                 checkpointSha256: hello["checkpoint_sha256"] as? String),
            parent: parent, precision: LabelPrecision(hello["precision"] as? String ?? "f16") ?? .f16))
        try conn.send(Frame(header: ["type": "committed", "version": Server.protocolVersion,
                                     "generation": summary.generation, "samples": summary.samples]))
        log("\(conn.peer): committed generation \(summary.generation) (\(summary.samples) samples)")
    }
}

extension ArraySpec {
    /// A batch's images as the wire sends them: the layout the batch says it has.
    static func images(of b: Batch) -> ArraySpec {
        switch (b.images, b.layout) {
        case (.uint8(let a), _):
            return ArraySpec(name: "images", dtype: "|u1", shape: [b.count, b.height, b.width, b.channels], bytes: a)
        case (.float32(let a), .float32(order: .nhwc, _)):
            return ArraySpec(name: "images", dtype: "<f4", shape: [b.count, b.height, b.width, b.channels],
                             bytes: a.withUnsafeBytes { Array($0) })
        case (.float32(let a), _):
            return ArraySpec(name: "images", dtype: "<f4", shape: [b.count, b.channels, b.height, b.width],
                             bytes: a.withUnsafeBytes { Array($0) })
        }
    }
}
