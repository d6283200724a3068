import Foundation

/// One message on the wire (schemas/wire-protocol.md): a 16-byte prefix (magic
/// "NOIS", u32 header length, u64 payload length, little-endian), a JSON header,
/// zero padding to a 64-byte boundary, then the payload, in which every array
/// starts at a 64-byte-aligned offset so that `numpy.frombuffer` can view it.
public struct Frame {
    public static let magic: [UInt8] = Array("NOIS".utf8)
    public static let maxHeader = 1 << 20
    public static let maxPayload: UInt64 = 8 << 30
    public static let alignment = 64

    public var header: [String: Any]
    public var payload: [UInt8]

    public init(header: [String: Any], payload: [UInt8] = []) {
        self.header = header
        self.payload = payload
    }

    public var type: String { header["type"] as? String ?? "" }
}

/// An array in a frame's payload.
public struct ArraySpec {
    public var name: String
    /// NumPy type string: "|u1", "<f4", "<i8".
    public var dtype: String
    public var shape: [Int]
    public var bytes: [UInt8]
    public init(name: String, dtype: String, shape: [Int], bytes: [UInt8]) {
        self.name = name; self.dtype = dtype; self.shape = shape; self.bytes = bytes
    }
}

/// A protocol or socket failure, with a one-line reason.
public struct WireError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        /// The peer broke the protocol (garbage, wrong version, unexpected frame, bad values).
        case protocolViolation
        /// A socket call failed.
        case socket
        /// A non-loopback address without remote listening allowed.
        case remoteNotAllowed
        /// The peer did not authenticate.
        case unauthorised
    }
    public let kind: Kind
    public let description: String
    public init(_ kind: Kind, _ d: String) { self.kind = kind; description = d }
    /// A protocol violation: the common case.
    public init(_ d: String) { self.init(.protocolViolation, d) }
}

/// A connected socket with frame reads and writes.
public final class Connection: @unchecked Sendable {
    // The file descriptor is used by one session thread; `shutdown()` may be called
    // from the server's signal handler, which is safe on a socket.
    public let fd: Int32
    public let peer: String

    public init(fd: Int32, peer: String) {
        self.fd = fd
        self.peer = peer
        var one: Int32 = 1
        setsockopt(fd, Int32(SOL_SOCKET), SO_KEEPALIVE, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit { close(fd) }

    /// Ends both directions: a blocked read or write in the session returns.
    public func shutdown() { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }

    /// Read timeout in seconds (0: none).
    public func setReadTimeout(_ seconds: Double) {
        var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1e6))
        setsockopt(fd, Int32(SOL_SOCKET), SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    public func send(_ frame: Frame, arrays: [ArraySpec] = []) throws {
        var header = frame.header
        var offset = 0
        var specs: [[String: Any]] = []
        for a in arrays {
            offset = (offset + Frame.alignment - 1) / Frame.alignment * Frame.alignment
            specs.append(["name": a.name, "dtype": a.dtype, "shape": a.shape, "offset": offset, "bytes": a.bytes.count])
            offset += a.bytes.count
        }
        if !arrays.isEmpty { header["arrays"] = specs }
        let json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        let payloadLength = arrays.isEmpty ? frame.payload.count : offset
        var prefix = Frame.magic
        withUnsafeBytes(of: UInt32(json.count).littleEndian) { prefix += $0 }
        withUnsafeBytes(of: UInt64(payloadLength).littleEndian) { prefix += $0 }
        let headerEnd = 16 + json.count
        let pad = (Frame.alignment - headerEnd % Frame.alignment) % Frame.alignment
        try write(prefix + [UInt8](json) + [UInt8](repeating: 0, count: pad))
        if arrays.isEmpty {
            try write(frame.payload)
        } else {
            var at = 0
            for a in arrays {
                let start = (at + Frame.alignment - 1) / Frame.alignment * Frame.alignment
                if start > at { try write([UInt8](repeating: 0, count: start - at)) }
                try write(a.bytes)
                at = start + a.bytes.count
            }
        }
    }

    /// Reads one frame. Oversized or malformed prefixes are errors; the caller closes.
    public func receive() throws -> Frame {
        let prefix = try read(16)
        guard Array(prefix[0..<4]) == Frame.magic else {
            throw WireError("not a noisy frame (bad magic \(prefix[0..<4].map { String(format: "%02x", $0) }.joined()))")
        }
        let h = prefix.withUnsafeBytes { Int($0.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian) }
        let p = prefix.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self).littleEndian }
        guard h > 0, h <= Frame.maxHeader else { throw WireError("header of \(h) bytes (limit \(Frame.maxHeader))") }
        guard p <= Frame.maxPayload else { throw WireError("payload of \(p) bytes (limit \(Frame.maxPayload))") }
        let json = try read(h)
        let pad = (Frame.alignment - (16 + h) % Frame.alignment) % Frame.alignment
        if pad > 0 { _ = try read(pad) }
        guard let header = try? JSONSerialization.jsonObject(with: Data(json)) as? [String: Any] else {
            throw WireError("header is not a JSON object")
        }
        let payload = try read(Int(p))
        return Frame(header: header, payload: payload)
    }

    /// The named array of a received frame, checked against its declared shape and dtype size.
    public static func array(_ frame: Frame, _ name: String) throws -> (dtype: String, shape: [Int], bytes: ArraySlice<UInt8>) {
        guard let specs = frame.header["arrays"] as? [[String: Any]],
              let s = specs.first(where: { $0["name"] as? String == name }),
              let dtype = s["dtype"] as? String, let shape = s["shape"] as? [Int],
              let offset = s["offset"] as? Int, let bytes = s["bytes"] as? Int else {
            throw WireError("\(frame.type): no array '\(name)'")
        }
        let item = ["|u1": 1, "<f2": 2, "<f4": 4, "<i8": 8, "<i4": 4, "<u8": 8][dtype] ?? 0
        guard item > 0, shape.allSatisfy({ $0 >= 0 }), shape.reduce(1, *) * item == bytes,
              offset >= 0, offset + bytes <= frame.payload.count else {
            throw WireError("\(frame.type): array '\(name)' (\(dtype) \(shape), \(bytes) bytes at \(offset)) does not fit the payload")
        }
        return (dtype, shape, frame.payload[offset..<(offset + bytes)])
    }

    private func write(_ bytes: [UInt8]) throws {
        var sent = 0
        try bytes.withUnsafeBytes { raw in
            while sent < raw.count {
                let n = Glibc.send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw WireError(.socket, "send: \(String(cString: strerror(errno)))")
                }
                sent += n
            }
        }
    }

    private func read(_ count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        try out.withUnsafeMutableBytes { raw in
            while got < count {
                let n = recv(fd, raw.baseAddress! + got, count - got, 0)
                if n == 0 { throw WireError("connection closed") }
                if n < 0 {
                    if errno == EINTR { continue }
                    if errno == EAGAIN || errno == EWOULDBLOCK { throw WireError("timed out waiting for data") }
                    throw WireError(.socket, "recv: \(String(cString: strerror(errno)))")
                }
                got += n
            }
        }
        return out
    }

    /// True when the peer has closed its end or the connection failed (data still
    /// waiting to be read does not count).
    public func peerClosed() -> Bool {
        let rdhup: Int16 = 0x2000  // POLLRDHUP (Linux): the peer shut down its writing side
        var p = pollfd(fd: fd, events: Int16(POLLIN) | rdhup, revents: 0)
        guard poll(&p, 1, 0) > 0 else { return false }
        return p.revents & (rdhup | Int16(POLLHUP) | Int16(POLLERR)) != 0
    }

    /// True when the peer has sent something (or closed) that can be read now.
    public func hasIncoming() -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) > 0
    }
}
