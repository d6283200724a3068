import Augment
import Batches
import DatasetStore
import Foundation
import Pipeline

/// What every session starts from: the server, the client's connection and hello, the log.
struct SessionContext {
    let server: Server
    /// The server's number for this client.
    let client: Int
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
///
/// With `shared_memory` in the hello (Unix sockets only), the loader renders each
/// batch straight into a slot of memory the client maps; the frame then carries only
/// the header, and the client releases a slot when it asks for a batch beyond the
/// `hold` it keeps (schemas/wire-protocol.md).
struct TrainSession: Session {
    let context: SessionContext

    func run() throws {
        let store = server.store
        var config = server.config.pipeline
        if server.config.shardSet != nil, let r = hello["local_rank"] as? Int {
            // A node of a shard set serves its local ranks: its shards are theirs alone.
            config.rank = r
            config.worldSize = hello["local_world_size"] as? Int ?? 1
        } else if let r = hello["rank"] as? Int {
            config.rank = r
            config.worldSize = hello["world_size"] as? Int ?? 1
        } else {
            config.rank = server.assignRank()
            config.worldSize = hello["world_size"] as? Int ?? server.config.worldSize
        }
        guard config.worldSize >= 1, config.rank >= 0, config.rank < config.worldSize else {
            throw WireError("rank \(config.rank) is not in 0..<\(config.worldSize)")
        }
        try server.join(client: context.client, rank: config.rank, worldSize: config.worldSize)
        defer { server.leave(client: context.client) }
        var state: StreamState?
        if let s = hello["state"], !(s is NSNull) {
            do { state = try WireJSON.decode(StreamState.self, from: s) } catch {
                throw WireError("state is not a stream state: \(error)")
            }
        }
        let hold = hello["hold"] as? Int ?? 2
        guard (1...64).contains(hold) else { throw WireError("hold must be 1 to 64 batches (got \(hold))") }
        let classes = try store.classes()
        // Shared memory when asked for and the socket can carry the descriptor (not TCP).
        let slots: SharedSlots? = (hello["shared_memory"] as? Bool ?? false) && SharedSlots.canPass(over: conn.fd)
            ? try SharedSlots(count: config.prefetchBound + hold,
                              layout: SlotLayout(batchSize: config.batchSize,
                                                 bytesPerSample: config.layout.bytesPerSample(size: config.view.size, channels: config.channels),
                                                 classCount: classes.count))
            : nil
        let peer = conn.peer
        let log = self.log
        let loader: BatchLoader
        if let set = server.config.shardSet {
            loader = try BatchLoader(set: set.manifest, stores: set.stores, node: set.node, config: config,
                                     generation: server.config.generation, selection: server.config.selection,
                                     labelOptions: server.config.labelOptions, state: state, storage: slots, log: { log("\(peer): \($0)") })
        } else {
            let pseudo = try server.config.generation.map {
                try StoreSoftLabels(store: store, generation: $0, selection: server.config.selection, options: server.config.labelOptions)
            }
            loader = try BatchLoader(store: store, config: config, pseudoLabels: pseudo, state: state, storage: slots,
                                     log: { log("\(peer): \($0)") })
        }
        let size = config.view.size
        let shared: Any = slots.map { ["slots": $0.count, "slot_bytes": $0.layout.slotBytes, "hold": hold] as [String: Any] } ?? NSNull()
        try conn.send(Frame(header: [
            "type": "welcome", "version": Server.protocolVersion, "session": "train",
            "rank": config.rank, "world_size": config.worldSize, "batches_per_epoch": loader.batchesPerEpoch,
            "batch_size": config.batchSize, "class_count": classes.count, "classes": classes,
            "layout": config.layout.name, "channels": config.channels, "height": size, "width": size,
            "generation": server.config.generation as Any? ?? NSNull(), "state": try WireJSON.object(loader.state),
            "shared_memory": shared,
        ]))
        try slots?.send(over: conn.fd)
        log("\(peer): train session, rank \(config.rank) of \(config.worldSize), from batch \(loader.state.batches)"
            + (slots.map { ", shared memory (\($0.count) slots of \($0.layout.slotBytes) bytes)" } ?? ""))
        var sent = 0
        var lent: [Int] = []  // slots the client holds, oldest first
        /// Handles one client frame; false when the client asked to stop.
        func handle(_ f: Frame) throws -> Bool {
            switch f.type {
            case "stop": return false
            case "release" where slots != nil:
                guard let slot = f.header["slot"] as? Int, let slots else { throw WireError("release without a slot number") }
                try slots.release(slot)
                lent.removeAll { $0 == slot }
                return true
            default: throw WireError("unexpected '\(f.type)' during a train session")
            }
        }
        stream: while true {
            // A client keeps at most `hold` batches: wait for a release before the next.
            while slots != nil && lent.count >= hold {
                guard try handle(conn.receive()) else { break stream }
            }
            while conn.hasIncoming() {
                guard try handle(conn.receive()) else { break stream }
            }
            let b = try loader.next()
            var header: [String: Any] = ["type": "batch", "version": Server.protocolVersion, "index": b.index,
                                         "replaced": b.replaced, "state": try WireJSON.object(b.stateAfter)]
            if let slots, case .external(let buffer) = b.images {
                header["slot"] = buffer.slot
                header["arrays"] = slots.fill(b, slot: buffer.slot)
                slots.lend(buffer.slot)
                lent.append(buffer.slot)
                try conn.send(Frame(header: header))
            } else {
                try conn.send(Frame(header: header), arrays: [
                    ArraySpec.images(of: b),
                    ArraySpec(name: "targets", dtype: "<f4", shape: [b.count, b.classCount], bytes: b.targets.withUnsafeBytes { Array($0) }),
                    ArraySpec(name: "weights", dtype: "<f4", shape: [b.count], bytes: b.weights.withUnsafeBytes { Array($0) }),
                    ArraySpec(name: "ids", dtype: "<i8", shape: [b.count], bytes: b.ids.map { Int64($0) }.withUnsafeBytes { Array($0) }),
                    ArraySpec(name: "source", dtype: "|u1", shape: [b.count], bytes: b.origins.map(\.rawValue)),
                ])
            }
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
        let set = server.config.shardSet
        // A server over part of a set (one per node) labels only a job's parts on its own shards.
        let partial = set.map { $0.node.count != $0.stores.count } ?? false
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
        // A job's part (torchrun ranks, array tasks): only the part's samples, submitted as that part.
        var job = try JobPart(hello: hello)
        if partial {
            guard let j = job else {
                throw WireError("this server serves shards \(set?.node.map(String.init).joined(separator: ",") ?? "") of a set: a label session "
                                + "here must be a label job's part (job, part, parts), and the job commits when every shard has every part")
            }
            // On a node's server the part is the rank's place on the node: torchrun's LOCAL_RANK of LOCAL_WORLD_SIZE.
            if let r = hello["local_rank"] as? Int, let w = hello["local_world_size"] as? Int { job = JobPart(name: j.name, part: r, parts: w) }
        }
        let ids: [UInt64]
        if let set {
            ids = try job.map { try ShardManifest.labelPartIDs(stores: set.stores, shards: set.node, split: split, part: $0.part, parts: $0.parts) }
                ?? set.stores.flatMap { try $0.index(of: split).map(\.id) }.sorted()
        } else {
            ids = try job.map { try store.labelPartIDs(split: split, part: $0.part, parts: $0.parts) } ?? store.index(of: split).map(\.id)
        }
        guard !ids.isEmpty else { throw WireError("split \(splitName) is empty" + (job.map { " in part \($0.part) of \($0.parts)" } ?? "")) }
        let classes = try store.classes()
        var source: any SampleSource = try set.map { try ShardSetSampleSource(stores: $0.stores) } ?? StoreSampleSource(store: store)
        var view = server.config.teacherView
        let corrupted = server.config.corruption
        if let corrupted {
            // The clean view first, then the corruption; the loader then leaves the images as they are.
            let c = CorruptedSampleSource(base: source, corruption: corrupted.corruption, severity: corrupted.severity,
                                          seed: cfg.seed, view: view, channels: cfg.channels)
            source = c
            view = c.identity
        }
        // The class of each sample, sent with its batch (-1: none), so that a client can score itself.
        let classOf = try Dictionary((set?.stores ?? [store]).flatMap { try $0.index(of: split) }.map { ($0.id, Int64($0.classIndex.map { Int($0) } ?? -1)) },
                                     uniquingKeysWith: { a, _ in a })
        let batcher = try SequenceLoader(items: ids.map { (id: $0, classIndex: nil) }, source: source,
                                         classCount: classes.count, view: view, channels: cfg.channels,
                                         layout: cfg.layout, batchSize: cfg.batchSize, threads: cfg.threads)
        let c = classes.count
        let size = server.config.teacherView.size
        try conn.send(Frame(header: [
            "type": "welcome", "version": Server.protocolVersion, "session": "label", "split": splitName,
            "samples": ids.count, "batches": batcher.batchCount, "batch_size": cfg.batchSize, "class_count": c,
            "classes": classes, "layout": cfg.layout.name, "channels": cfg.channels, "height": size, "width": size,
            "job": job.map { ["job": $0.name, "part": $0.part, "parts": $0.parts] as [String: Any] } ?? NSNull(),
            "corruption": corrupted.map { ["name": $0.corruption.rawValue, "severity": $0.severity, "seed": Int(cfg.seed)] as [String: Any] } ?? NSNull(),
            "shards": set.map { $0.node as Any } ?? NSNull(),
        ]))
        log("\(conn.peer): label session over \(splitName) (\(ids.count) samples), teacher '\(teacher)'"
            + (job.map { ", job \($0.name) part \($0.part) of \($0.parts)" } ?? ""))
        var rows = [Float]()
        rows.reserveCapacity(ids.count * c)
        var index = 0
        while let b = try batcher.next() {
            try conn.send(Frame(header: ["type": "label_batch", "version": Server.protocolVersion, "index": index]),
                          arrays: [ArraySpec(name: "ids", dtype: "<i8", shape: [b.count],
                                             bytes: b.ids.map { Int64($0) }.withUnsafeBytes { Array($0) }),
                                   ArraySpec.images(of: b),
                                   ArraySpec(name: "targets", dtype: "<i8", shape: [b.count],
                                             bytes: b.ids.map { classOf[$0] ?? -1 }.withUnsafeBytes { Array($0) })])
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
        if let corrupted {
            throw WireError("this server streams \(corrupted.corruption.rawValue) at severity \(corrupted.severity) (--corruption): "
                            + "it scores models and makes no generation; end the session without commit")
        }
        let info = TeacherInfo(description: teacher, model: hello["model"] as? String, checkpoint: hello["checkpoint"] as? String,
                               checkpointSha256: hello["checkpoint_sha256"] as? String)
        let precision = LabelPrecision(hello["precision"] as? String ?? "f16") ?? .f16
        if let job {
            let request = LabelJobRequest(job: job.name, split: split, parts: job.parts, teacher: info, logits: logits,
                                          precision: precision, parent: set == nil ? parent : .latest)
            let r = try set.map { try ShardManifest.submitLabelPart(inSet: $0.path, stores: $0.stores, shards: $0.node, request, part: job.part,
                                                                    ids: ids, rows: rows, classCount: c, worker: conn.peer) }
                ?? store.submitLabelPart(request, part: job.part, ids: ids, rows: rows, classCount: c, worker: conn.peer)
            let outcome: String
            switch r.outcome {
            case .stored: outcome = "stored"
            case .alreadySubmitted: outcome = "already_submitted"
            }
            try conn.send(Frame(header: ["type": "committed", "version": Server.protocolVersion, "samples": ids.count,
                                         "generation": r.committed?.generation as Any? ?? NSNull(), "job": job.name,
                                         "part": job.part, "parts": job.parts, "outcome": outcome, "missing": r.missing,
                                         "created": r.committed?.created ?? false]))
            log("\(conn.peer): job \(job.name) part \(job.part) of \(job.parts) \(outcome)"
                + (r.committed.map { "; all parts in, generation \($0.generation)" } ?? "; \(r.missing.count) part(s) missing"))
            return
        }
        if let set {
            let (_, k) = try ShardManifest.importLabels(intoSet: set.path, stores: set.stores, ids: ids, rows: rows, classCount: c,
                                                        logits: logits, teacher: info, precision: precision)
            try conn.send(Frame(header: ["type": "committed", "version": Server.protocolVersion, "generation": k, "samples": ids.count]))
            log("\(conn.peer): committed generation \(k) over the shard set (\(ids.count) samples)")
            return
        }
        let origin = PredictionOrigin(kind: "label", logits: logits, matchedBy: "split")
        let summary = try store.importLabels(LabelImportRequest(
            input: .rows(ids: ids, rows: rows, classCount: c, origin: origin), logits: logits,
            teacher: info, parent: parent, precision: precision))
        try conn.send(Frame(header: ["type": "committed", "version": Server.protocolVersion,
                                     "generation": summary.generation, "samples": summary.samples]))
        log("\(conn.peer): committed generation \(summary.generation) (\(summary.samples) samples)")
    }
}

/// The `job`, `part` and `parts` of a label hello: all three, or none.
struct JobPart {
    let name: String, part: Int, parts: Int

    init(name: String, part: Int, parts: Int) { self.name = name; self.part = part; self.parts = parts }

    init?(hello: [String: Any]) throws {
        guard let name = hello["job"] as? String else { return nil }
        guard let part = hello["part"] as? Int, let parts = hello["parts"] as? Int else {
            throw WireError("a label session for job \(name) needs 'part' and 'parts'")
        }
        self.name = name; self.part = part; self.parts = parts
    }
}

extension ArraySpec {
    /// The dtype and shape a batch's images have on the wire: the layout the batch says it has.
    static func imageShape(of b: Batch) -> (dtype: String, shape: [Int]) {
        switch b.layout {
        case .uint8NHWC: ("|u1", [b.count, b.height, b.width, b.channels])
        case .float32(order: .nhwc, _): ("<f4", [b.count, b.height, b.width, b.channels])
        case .float32(order: .nchw, _): ("<f4", [b.count, b.channels, b.height, b.width])
        }
    }

    /// A batch's images as the socket sends them (a copy).
    static func images(of b: Batch) -> ArraySpec {
        let (dtype, shape) = imageShape(of: b)
        let bytes: [UInt8] = switch b.images {
        case .uint8(let a): a
        case .float32(let a): a.withUnsafeBytes { Array($0) }
        case .external(let e): Array(UnsafeRawBufferPointer(start: e.base, count: e.used))
        }
        return ArraySpec(name: "images", dtype: dtype, shape: shape, bytes: bytes)
    }
}
