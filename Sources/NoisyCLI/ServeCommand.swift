import ArgumentParser
import Augment
import DatasetStore
import Dispatch
import Foundation
import Pipeline
import StreamServer

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stream batches to external trainers (PyTorch, JAX) and take their predictions back.",
        discussion: """
        Clients (the `noisy` Python package: python/noisy/client.py) open train
        sessions (noised batches of their rank, from their resume state) or label
        sessions (clean teacher-view batches of a split; they answer with float32 [n,
        C]; commit creates a generation). The wire format is in
        schemas/wire-protocol.md. Listens on loopback only unless --allow-remote, which
        requires --token-file. SIGINT or SIGTERM closes every session; a label session
        that has not committed writes nothing.

        Examples:
          noisy serve --store data.noisy --socket /tmp/noisy.sock --size 224 \\
              --randaugment 2,9 --batch-size 256
          noisy serve --store data.noisy --listen 127.0.0.1:5555 --generation latest \\
              --ratio 3 --layout float32
          noisy serve --store data.noisy --listen 0.0.0.0:5555 --allow-remote \\
              --token-file secret.txt
          # node 0 of 2, over a shard set
          noisy serve --store data-8/ --shards 0-3 --socket /tmp/noisy.sock
          noisy serve --store data.noisy --socket /tmp/c.sock --size 224 \\
              --crop-fraction 1 --corruption fog --severity 3

        With --corruption, label sessions stream the clean teacher view under that
        corruption (keyed by --seed and sample id; with --crop-fraction 1, the images
        noisy robustness scores), each batch with its samples' classes ("targets"), so
        that a PyTorch model can be scored the same way; such a server makes no
        generations.

        Over a shard set (noisy shard), each node serves its own shards (--shards) to
        its local ranks (LOCAL_RANK / LOCAL_WORLD_SIZE, which the Python client sends).
        Every node must serve as many shards: each epoch then takes as many samples as
        the smallest such group holds, and every rank of every node gets the same
        number of batches (uneven counts hang DDP). A server over every shard of a set
        also takes label sessions: one generation over the set, committed in its
        manifest.
        """
    )
    @Option(help: ArgumentHelp("With a shard set as --store: the shards this node serves, e.g. 0-3 or 0,2 (default: all).", valueName: "list"))
    var shards: String?
    @OptionGroup var storeOption: StoreOption
    @Option(help: ArgumentHelp("Unix socket path.", valueName: "path")) var socket: String?
    @Option(help: ArgumentHelp("TCP address (port 0: any free port, printed).", valueName: "host:port")) var listen: String?
    @Flag(help: "Allow a non-loopback --listen address (needs --token-file).") var allowRemote = false
    @Option(help: ArgumentHelp("File whose first line every client must send as its token.", valueName: "file")) var tokenFile: String?
    @Option(help: "Seconds a client has to send its hello.") var handshakeTimeout: Double = 5
    @Option(help: ArgumentHelp("Label sessions stream the teacher view under this ImageNet-C corruption, with each sample's class, to score a model (no generations are made).",
                               valueName: "name")) var corruption: String?
    @Option(help: "With --corruption: its severity, 1-5.") var severity: Int = 3
    @OptionGroup var pipeline: PipelineOptions

    func run() throws {
        try runReportingErrors {
            guard (socket == nil) != (listen == nil) else { throw ValidationError("give exactly one of --socket and --listen") }
            var token: String?
            if let tokenFile {
                guard let text = try? String(contentsOfFile: tokenFile, encoding: .utf8),
                      let first = text.split(separator: "\n").first, !first.isEmpty else {
                    throw ValidationError("\(tokenFile): cannot read a token from its first line")
                }
                token = String(first)
            }
            if allowRemote && token == nil { throw ValidationError("--allow-remote needs --token-file") }
            var set: ShardSetServing?
            let store: Store
            if ShardManifest.isSet(storeOption.store) {
                let (m, folder) = try ShardManifest.read(storeOption.store)
                let stores = try m.openShards(folder: folder, readOnly: false)  // label sessions write generations
                let node = try shards.map { try Self.parseShards($0, count: m.shards.count) } ?? Array(0..<m.shards.count)
                set = ShardSetServing(path: storeOption.store, manifest: m, stores: stores, node: node)
                store = stores[node[0]]
            } else {
                guard shards == nil else { throw ValidationError("--shards needs a shard set as --store (see noisy shard)") }
                store = try Store(path: storeOption.store)
            }
            var config = try pipeline.config(store: store)
            let generation = try pipeline.generation.map { try store.resolveGeneration($0).generation }
            if let generation, let set, !set.manifest.generations.contains(where: { $0.generation == generation }) {
                throw ValidationError("generation \(generation) is not committed on this shard set (its manifest lists "
                                      + "\(set.manifest.generations.map { String($0.generation) }.joined(separator: ", ")))")
            }
            let worldSize = config.worldSize
            config.rank = 0
            config.worldSize = 1
            var serveConfig = ServeConfig(
                pipeline: config, generation: generation, selection: pipeline.selection,
                labelOptions: LabelReadOptions(temperature: pipeline.temperature, hard: pipeline.hard, smoothing: pipeline.hardSmoothing),
                teacherView: .teacher(TeacherView(size: pipeline.size, cropFraction: pipeline.cropFraction)),
                token: token, worldSize: worldSize, handshakeTimeout: handshakeTimeout, shardSet: set)
            serveConfig.corruption = try corruption.map { name in
                guard (1...5).contains(severity) else { throw ValidationError("--severity \(severity): use 1 to 5") }
                guard let c = try Robustness.parseCorruptions(name).first else { throw ValidationError("--corruption: none given") }
                return (c, severity)
            }
            let server = Server(store: store, config: serveConfig, log: { Terminal.info($0) })
            if let socket {
                try server.listen(unixPath: socket)
                Terminal.info("serving \(storeOption.store) on unix:\(socket)")
            } else if let listen {
                guard let colon = listen.lastIndex(of: ":"), let port = UInt16(listen[listen.index(after: colon)...]) else {
                    throw ValidationError("--listen wants host:port (got \(listen))")
                }
                let host = String(listen[..<colon])
                let bound = try server.listen(host: host, port: port, allowRemote: allowRemote)
                Terminal.info("serving \(storeOption.store) on \(host):\(bound)")
            }
            signal(SIGINT, SIG_IGN)
            signal(SIGTERM, SIG_IGN)
            signal(SIGPIPE, SIG_IGN)
            let queue = DispatchQueue(label: "noisy.serve.signals")
            let sources = [SIGINT, SIGTERM].map { sig -> DispatchSourceSignal in
                let s = DispatchSource.makeSignalSource(signal: sig, queue: queue)
                s.setEventHandler {
                    Terminal.info("signal \(sig): closing sessions")
                    server.stop()
                }
                s.resume()
                return s
            }
            server.run()
            sources.forEach { $0.cancel() }
            Terminal.info("stopped")
        }
    }
}

extension Serve {
    /// "0-3", "0,2,5" or a mix: shard indices, each in 0..<count, none twice.
    static func parseShards(_ text: String, count: Int) throws -> [Int] {
        var out: [Int] = []
        for part in text.split(separator: ",") {
            let ends = part.split(separator: "-").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard (1...2).contains(ends.count), let lo = ends.first ?? nil, let hi = ends.last ?? nil, lo <= hi else {
                throw ValidationError("--shards \(text): use indices and ranges such as 0-3 or 0,2")
            }
            out += Array(lo...hi)
        }
        guard !out.isEmpty, out.allSatisfy({ (0..<count).contains($0) }), Set(out).count == out.count else {
            throw ValidationError("--shards \(text): the set has shards 0 to \(count - 1), each named once")
        }
        return out
    }
}
