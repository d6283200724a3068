internal import CDigest

/// SHA-256 (FIPS 180-4): content hashes of stored images, checkpoint and
/// prediction-file fingerprints, export manifests. Its own module so that a
/// component that only hashes (the store, the loop) does not depend on the image codec.
public enum SHA256 {
    /// The digest of `bytes` (32 bytes).
    public static func hash(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: 32) { out, count in
            dg_sha256(bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count, out.baseAddress)
            count = 32
        }
    }

    public static func hash(_ bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBytes { hash($0) }
    }

    /// The digest of a file's bytes (memory-mapped, so a large checkpoint is not copied).
    public static func hash(fileAt path: String) throws -> [UInt8] {
        try MappedFile(path: path).withBytes { hash($0) }
    }
}

/// SHA-256 over data that arrives in pieces (files written as a stream).
public struct SHA256Stream {
    private var ctx = dg_sha256_ctx()
    public init() { dg_sha256_init(&ctx) }
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        dg_sha256_update(&ctx, base.assumingMemoryBound(to: UInt8.self), bytes.count)
    }
    public mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }
    public mutating func finish() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        out.withUnsafeMutableBufferPointer { dg_sha256_final(&ctx, $0.baseAddress) }
        return out
    }
}

extension Array where Element == UInt8 {
    /// Lower-case hex, for hashes in JSON and messages.
    public var hexString: String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var s = [UInt8]()
        s.reserveCapacity(count * 2)
        for b in self { s.append(digits[Int(b >> 4)]); s.append(digits[Int(b & 15)]) }
        return String(decoding: s, as: UTF8.self)
    }
}
