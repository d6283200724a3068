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
        Clients (the `noisy` Python package: python/noisy/client.py) open train sessions (noised batches of
        their rank, from their resume state) or label sessions (clean teacher-view
        batches of a split; they answer with float32 [n, C]; commit creates a
        generation). The wire format is in schemas/wire-protocol.md. Listens on
        loopback only unless --allow-remote, which requires --token-file. SIGINT or
        SIGTERM closes every session; a label session that has not committed writes
        nothing.

        Examples:
          noisy serve --store data.noisy --socket /tmp/noisy.sock --size 224 --randaugment 2,9 --batch-size 256
          noisy serve --store data.noisy --listen 127.0.0.1:5555 --generation latest --ratio 3 --layout float32
          noisy serve --store data.noisy --listen 0.0.0.0:5555 --allow-remote --token-file secret.txt
        """
    )
    @OptionGroup var storeOption: StoreOption
    @Option(help: ArgumentHelp("Unix socket path.", valueName: "path")) var socket: String?
    @Option(help: ArgumentHelp("TCP address (port 0: any free port, printed).", valueName: "host:port")) var listen: String?
    @Flag(help: "Allow a non-loopback --listen address (needs --token-file).") var allowRemote = false
    @Option(help: ArgumentHelp("File whose first line every client must send as its token.", valueName: "file")) var tokenFile: String?
    @Option(help: "Seconds a client has to send its hello.") var handshakeTimeout: Double = 5
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
            let store = try Store(path: storeOption.store)
            var config = try pipeline.config(store: store)
            let generation = try pipeline.generation.map { try store.resolveGeneration($0).generation }
            let worldSize = config.worldSize
            config.rank = 0
            config.worldSize = 1
            let serveConfig = ServeConfig(
                pipeline: config, generation: generation, selection: pipeline.selection,
                labelOptions: LabelReadOptions(temperature: pipeline.temperature, hard: pipeline.hard, smoothing: pipeline.hardSmoothing),
                teacherView: .teacher(TeacherView(size: pipeline.size, cropFraction: pipeline.cropFraction)),
                token: token, worldSize: worldSize, handshakeTimeout: handshakeTimeout)
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
