import Augment
import Batches
import DatasetStore
import Foundation
import Pipeline

/// What a server streams; per-client rank, world size and state come from the client.
public struct ServeConfig: Sendable {
    /// Train sessions: view, layout, batch size, ratio, seed, threads per client.
    public var pipeline: PipelineConfig
    public var generation: Int?
    public var selection: String?
    public var labelOptions: LabelReadOptions
    /// Label sessions: the clean view they stream.
    public var teacherView: View
    /// Required from every client when set (remote listening).
    public var token: String?
    /// Ranks handed to clients that do not say theirs: 0, 1, ... modulo this.
    public var worldSize: Int
    /// Seconds a client has to send its hello.
    public var handshakeTimeout: Double
    /// This node's shards of a shard set, when serving one (train sessions only).
    public var shardSet: ShardSetServing?
    /// Label sessions stream the teacher view under this corruption (to score a model the
    /// way `noisy robustness` does); such a server makes no generations.
    public var corruption: (corruption: Corruption, severity: Int)?

    public init(pipeline: PipelineConfig, generation: Int? = nil, selection: String? = nil,
                labelOptions: LabelReadOptions = .init(), teacherView: View, token: String? = nil,
                worldSize: Int = 1, handshakeTimeout: Double = 5, shardSet: ShardSetServing? = nil) {
        self.pipeline = pipeline; self.generation = generation; self.selection = selection
        self.labelOptions = labelOptions; self.teacherView = teacherView; self.token = token
        self.worldSize = worldSize; self.handshakeTimeout = handshakeTimeout; self.shardSet = shardSet
    }
}

/// The shards of a set one node serves.
public struct ShardSetServing: Sendable {
    /// The set's manifest (a file, or the folder holding it): label sessions re-read it.
    public var path: String
    public var manifest: ShardManifest
    /// Every shard of the set, opened and checked against the manifest.
    public var stores: [Store]
    /// The indices this node serves.
    public var node: [Int]
    public init(path: String, manifest: ShardManifest, stores: [Store], node: [Int]) {
        self.path = path; self.manifest = manifest; self.stores = stores; self.node = node
    }
}

/// `noisy serve`: accepts clients on a Unix socket or TCP and runs one session per
/// client on its own thread. A client that breaks off or sends garbage loses its
/// session (logged); the server and the other clients carry on.
public final class Server: @unchecked Sendable {
    // Mutable state (clients, counters, stopping) is guarded by `lock`; the
    // listening descriptor is written once before `run()`.
    public static let protocolVersion = 1

    public let store: Store
    public let config: ServeConfig
    private let log: @Sendable (String) -> Void
    private var listenFD: Int32 = -1
    private var unixPath: String?
    private let lock = NSCondition()
    private var clients: [Int: Connection] = [:]
    private var nextClient = 1
    private var nextRank = 0
    private var stopping = false
    private var running = 0
    /// Live train sessions: their rank and world size (every rank of a job must agree).
    private var trainSessions: [Int: (rank: Int, worldSize: Int)] = [:]

    public init(store: Store, config: ServeConfig, log: @escaping @Sendable (String) -> Void) {
        self.store = store; self.config = config; self.log = log
    }

    /// Listens on a Unix socket (a stale socket file left by a dead server is replaced).
    public func listen(unixPath path: String) throws {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { throw WireError("\(path): socket path too long") }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        var st = stat()
        if lstat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFSOCK else { throw WireError("\(path): exists and is not a socket") }
            let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            let live = withUnsafePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(probe, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
            }
            close(probe)
            if live { throw WireError("\(path): another server is listening there") }
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw WireError(.socket, "socket: \(String(cString: strerror(errno)))") }
        try Self.bindAndListen(fd, &addr, name: path)
        listenFD = fd
        unixPath = path
    }

    /// Listens on TCP. Only loopback addresses unless `allowRemote`.
    public func listen(host: String, port: UInt16, allowRemote: Bool) throws -> UInt16 {
        let loopback = ["127.0.0.1", "localhost", "::1"].contains(host)
        guard loopback || allowRemote else {
            throw WireError(.remoteNotAllowed, "\(host) is not a loopback address; listening there must be allowed explicitly, with a token")
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw WireError(.socket, "socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, Int32(SOL_SOCKET), SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        let ip = host == "localhost" ? "127.0.0.1" : host
        guard inet_pton(AF_INET, ip, &addr.sin_addr) == 1 else {
            close(fd)
            throw WireError("\(host): not an IPv4 address")
        }
        try Self.bindAndListen(fd, &addr, name: "\(host):\(port)")
        var bound = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        listenFD = fd
        return UInt16(bigEndian: bound.sin_port)
    }

    /// bind + listen on any sockaddr_* value; closes the socket on failure.
    private static func bindAndListen<Address>(_ fd: Int32, _ addr: inout Address, name: String) throws {
        let ok = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<Address>.size)) == 0 }
        }
        guard ok, Glibc.listen(fd, 64) == 0 else {
            let e = String(cString: strerror(errno))
            close(fd)
            throw WireError("\(name): cannot listen: \(e)")
        }
    }

    /// Accepts clients until `stop()`; then waits for their sessions to end.
    public func run() {
        while true {
            let fd = accept(listenFD, nil, nil)
            lock.lock()
            let stop = stopping
            lock.unlock()
            if stop { if fd >= 0 { close(fd) }; break }
            if fd < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                log("accept failed: \(String(cString: strerror(errno)))")
                usleep(50_000)
                continue
            }
            lock.lock()
            let id = nextClient
            nextClient += 1
            let conn = Connection(fd: fd, peer: "client \(id)")
            clients[id] = conn
            running += 1
            lock.unlock()
            let t = Thread { [self] in
                self.serve(conn, client: id)
                lock.lock()
                clients[id] = nil
                running -= 1
                lock.broadcast()
                lock.unlock()
            }
            t.start()
        }
        lock.lock()
        while running > 0 { lock.wait() }
        lock.unlock()
        close(listenFD)
        if let unixPath { unlink(unixPath) }
    }

    /// Stops accepting and ends every session (from a signal handler's queue). A label
    /// session that has not committed commits nothing.
    public func stop() {
        lock.lock()
        stopping = true
        for c in clients.values { c.shutdown() }
        lock.unlock()
        _ = Glibc.shutdown(listenFD, Int32(SHUT_RDWR))
        // Wake a blocked accept() on systems where shutdown does not.
        if let unixPath {
            let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in
                for (i, b) in unixPath.utf8.enumerated() { raw[i] = b }
            }
            _ = withUnsafePointer(to: &addr) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(probe, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            close(probe)
        }
    }

    func assignRank() -> Int {
        lock.lock(); defer { lock.unlock() }
        let r = nextRank % max(1, config.worldSize)
        nextRank += 1
        return r
    }

    /// Registers a train session of rank `rank` in a job of `worldSize` ranks. Refused
    /// when a live session of this server belongs to a job of another size: ranks that
    /// disagree on the world size would get uneven shares and hang DDP, so the newcomer
    /// gets one line instead. Sessions whose client has gone away do not count (an
    /// elastic restart at another size may arrive before they notice).
    func join(client: Int, rank: Int, worldSize: Int) throws {
        lock.lock(); defer { lock.unlock() }
        let others = trainSessions.filter { id, s in s.worldSize != worldSize && !(clients[id]?.peerClosed() ?? true) }
        if let (_, other) = others.min(by: { $0.key < $1.key }) {
            throw WireError("rank \(rank) says the world has \(worldSize) ranks, but rank \(other.rank) of this server's live "
                            + "sessions says \(other.worldSize); every rank of a job must give the same world size "
                            + "(check WORLD_SIZE, --nproc_per_node and --nnodes)")
        }
        trainSessions[client] = (rank, worldSize)
    }

    func leave(client: Int) {
        lock.lock(); defer { lock.unlock() }
        trainSessions[client] = nil
    }

    /// One client: handshake, then its session; every failure ends only this client.
    private func serve(_ conn: Connection, client: Int) {
        conn.setReadTimeout(config.handshakeTimeout)
        do {
            let hello = try conn.receive()
            guard hello.type == "hello" else { throw WireError("expected hello, got '\(hello.type)'") }
            let version = hello.header["version"] as? Int ?? -1
            guard version == Self.protocolVersion else {
                throw WireError("protocol version \(version) is not supported (this server speaks \(Self.protocolVersion))")
            }
            if let token = config.token {
                let given = Array((hello.header["token"] as? String ?? "").utf8), want = Array(token.utf8)
                var diff = given.count ^ want.count
                for i in 0..<max(given.count, want.count) {
                    diff |= Int((i < given.count ? given[i] : 0) ^ (i < want.count ? want[i] : 0))
                }
                guard diff == 0 else { throw WireError(.unauthorised, "wrong token") }
            }
            conn.setReadTimeout(0)
            let context = SessionContext(server: self, client: client, conn: conn, hello: hello.header, log: log)
            switch hello.header["session"] as? String ?? "train" {
            case "train": try TrainSession(context: context).run()
            case "label": try LabelSession(context: context).run()
            case let other: throw WireError("unknown session kind '\(other)' (train or label)")
            }
        } catch {
            log("\(conn.peer): session closed: \(error)")
            try? conn.send(Frame(header: ["type": "error", "version": Self.protocolVersion, "message": "\(error)"]))
        }
    }
}

/// JSON helpers for StreamState on the wire (snake_case keys, exact 64-bit seeds).
enum WireJSON {
    static func object<T: Encodable>(_ value: T) throws -> Any {
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        return try JSONSerialization.jsonObject(with: e.encode(value))
    }

    static func decode<T: Decodable>(_ type: T.Type, from object: Any) throws -> T {
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        return try d.decode(type, from: JSONSerialization.data(withJSONObject: object))
    }
}
