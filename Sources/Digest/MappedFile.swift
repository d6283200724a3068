#if canImport(Glibc)
import Glibc
#endif

/// A whole file mapped read-only for the length of one call.
struct MappedFile {
    let path: String

    /// Lends the file's bytes to `body`; an empty file lends an empty buffer.
    func withBytes<T>(_ body: (UnsafeRawBufferPointer) throws -> T) throws -> T {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw DigestError(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw DigestError(path: path, reason: String(cString: strerror(errno))) }
        let size = Int(st.st_size)
        if size == 0 { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw DigestError(path: path, reason: String(cString: strerror(errno)))
        }
        defer { munmap(base, size) }
        return try body(UnsafeRawBufferPointer(start: base, count: size))
    }
}

/// A file that could not be read for hashing.
public struct DigestError: Error, Sendable, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "\(path): cannot read: \(reason)" }
}
