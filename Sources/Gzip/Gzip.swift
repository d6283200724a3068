internal import CZlib
#if canImport(Glibc)
import Glibc
#endif

/// Whole-file gzip reads, for the Fashion-MNIST IDX files Debian ships compressed.
/// zlib reports errors by return code (no longjmp), so it needs no C guard.
public enum Gzip {
    /// The decompressed bytes of a gzip file (a plain file is read as it is, as gzread does).
    public static func read(path: String) throws(GzipError) -> [UInt8] {
        guard let file = gzopen(path, "rb") else {
            throw GzipError(path: path, reason: "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { gzclose(file) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = chunk.withUnsafeMutableBytes { gzread(file, $0.baseAddress, UInt32($0.count)) }
            if n < 0 {
                var code: Int32 = 0
                let message = gzerror(file, &code).map { String(cString: $0) } ?? "read error"
                throw GzipError(path: path, reason: message)
            }
            if n == 0 { return out }
            out.append(contentsOf: chunk[0..<Int(n)])
        }
    }
}

/// A gzip file that could not be read, with zlib's reason.
public struct GzipError: Error, Sendable, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "\(path): \(reason)" }
}
