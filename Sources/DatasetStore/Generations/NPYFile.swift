import ImageCodec
import Foundation

/// A NumPy .npy file, memory-mapped: rows are read from the page cache as they
/// are needed, so a 4 GB prediction matrix costs no heap.
///
/// Accepts format versions 1-3, C order, little-endian `<f4` (float32), `<f2`,
/// `<i8` / `<u8` (ids). Anything else is refused with a one-line reason.
public final class NPYFile: @unchecked Sendable {
    // Immutable after init; the mapping is read-only and unmapped in deinit, so
    // sharing it between threads is safe.
    public let path: String
    public let dtype: String
    public let shape: [Int]
    private let map: UnsafeMutableRawPointer
    private let mapLength: Int
    private let dataOffset: Int

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw StoreError(.io, "\(path): cannot open (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw StoreError(.io, "\(path): cannot stat") }
        let length = Int(st.st_size)
        guard length >= 10 else { throw StoreError(.invalidArgument, "\(path): not a NumPy .npy file (only \(length) bytes)") }
        guard let m = mmap(nil, length, PROT_READ, MAP_PRIVATE, fd, 0), m != MAP_FAILED else {
            throw StoreError(.io, "\(path): cannot map the file")
        }
        map = m
        mapLength = length
        let bytes = UnsafeRawBufferPointer(start: m, count: length)
        do {
            guard bytes[0] == 0x93, Array(bytes[1..<6]) == Array("NUMPY".utf8) else {
                throw StoreError(.invalidArgument, "\(path): not a NumPy .npy file (bad magic)")
            }
            let major = bytes[6]
            let headerLength: Int
            let headerStart: Int
            switch major {
            case 1:
                headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
                headerStart = 10
            case 2, 3:
                guard length >= 12 else { throw StoreError(.invalidArgument, "\(path): truncated .npy header") }
                headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
                headerStart = 12
            default:
                throw StoreError(.invalidArgument, "\(path): .npy format version \(major) is not supported (1-3 are)")
            }
            guard headerStart + headerLength <= length else { throw StoreError(.invalidArgument, "\(path): truncated .npy header") }
            let header = String(decoding: bytes[headerStart..<(headerStart + headerLength)], as: UTF8.self)
            let parsed = try Self.parseHeader(header, path: path)
            dtype = parsed.dtype
            shape = parsed.shape
            dataOffset = headerStart + headerLength
            // A hostile header can name a shape whose size overflows: refuse it, do not trap.
            var need = Self.itemSize(dtype), overflow = false
            for d in shape where !overflow { (need, overflow) = need.multipliedReportingOverflow(by: d) }
            guard !overflow, need <= length - dataOffset else {
                if overflow { throw StoreError(.invalidArgument, "\(path): shape \(shape) is too large for any file") }
                throw StoreError(.invalidArgument, "\(path): truncated: shape \(shape) of \(dtype) needs \(need) bytes of data, the file has \(length - dataOffset)")
            }
        } catch {
            munmap(m, length)
            throw error
        }
    }

    deinit { munmap(map, mapLength) }

    static func itemSize(_ dtype: String) -> Int {
        switch dtype { case "<f2": 2; case "<f4": 4; case "<i8", "<u8", "<f8": 8; case "<i4", "<u4": 4; default: 1 }
    }

    /// Reads `{'descr': '<f4', 'fortran_order': False, 'shape': (N, C), }`.
    static func parseHeader(_ h: String, path: String) throws -> (dtype: String, shape: [Int]) {
        func value(_ key: String) -> Substring? {
            guard let r = h.range(of: "'\(key)':") else { return nil }
            return h[r.upperBound...].drop(while: { $0 == " " })
        }
        guard let d = value("descr"), d.first == "'", let end = d.dropFirst().firstIndex(of: "'") else {
            throw StoreError(.invalidArgument, "\(path): .npy header has no dtype")
        }
        var dtype = String(d[d.index(after: d.startIndex)..<end])
        if dtype.hasPrefix("|") || dtype.hasPrefix("=") { dtype = "<" + dtype.dropFirst() }
        guard let f = value("fortran_order") else { throw StoreError(.invalidArgument, "\(path): .npy header has no fortran_order") }
        if f.hasPrefix("True") {
            throw StoreError(.invalidArgument, "\(path): Fortran-ordered arrays are not supported (save with np.ascontiguousarray)")
        }
        guard let s = value("shape"), s.first == "(", let close = s.firstIndex(of: ")") else {
            throw StoreError(.invalidArgument, "\(path): .npy header has no shape")
        }
        let dims = s[s.index(after: s.startIndex)..<close].split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
        var shape: [Int] = []
        for d in dims {
            guard let v = Int(d), v >= 0 else { throw StoreError(.invalidArgument, "\(path): bad shape entry '\(d)'") }
            shape.append(v)
        }
        return (dtype, shape)
    }

    /// The raw data (after the header).
    public var data: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: map + dataOffset, count: shape.reduce(1, *) * Self.itemSize(dtype))
    }

    /// Drops the mapped pages of rows [from, to) from this process's resident set
    /// (MADV_DONTNEED on a read-only private mapping: the page cache keeps them), so
    /// that streaming over a file larger than memory keeps RSS flat.
    public func release(rows from: Int, _ to: Int) {
        guard shape.count == 2, to > from else { return }
        let rowBytes = shape[1] * Self.itemSize(dtype)
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = dataOffset + from * rowBytes, end = dataOffset + to * rowBytes
        let alignedStart = (start + page - 1) / page * page, alignedEnd = end / page * page
        guard alignedEnd > alignedStart else { return }
        _ = madvise(map + alignedStart, alignedEnd - alignedStart, MADV_DONTNEED)
    }

    /// Drops every mapped page from the resident set (after a full pass such as hashing).
    public func releaseAll() { _ = madvise(map, mapLength / Int(sysconf(Int32(_SC_PAGESIZE))) * Int(sysconf(Int32(_SC_PAGESIZE))), MADV_DONTNEED) }

    /// Row i of a 2-D float32 array.
    public func floatRow(_ i: Int) -> UnsafeBufferPointer<Float> {
        let cols = shape[1]
        return UnsafeBufferPointer(start: (map + dataOffset).assumingMemoryBound(to: Float.self) + i * cols, count: cols)
    }

    /// A 1-D integer array as UInt64 ids (int64 must be non-negative).
    public func ids() throws -> [UInt64] {
        guard shape.count == 1 else { throw StoreError(.invalidArgument, "\(path): ids must be 1-D, the shape is \(shape)") }
        let n = shape[0]
        let base = map + dataOffset
        switch dtype {
        case "<i8":
            var out = [UInt64](repeating: 0, count: n)
            for i in 0..<n {
                let v = base.loadUnaligned(fromByteOffset: i * 8, as: Int64.self).littleEndian
                guard v >= 0 else { throw StoreError(.invalidArgument, "\(path): id at position \(i) is negative (\(v))") }
                out[i] = UInt64(v)
            }
            return out
        case "<u8":
            return (0..<n).map { base.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self).littleEndian }
        case "<i4":
            return try (0..<n).map { i in
                let v = base.loadUnaligned(fromByteOffset: i * 4, as: Int32.self).littleEndian
                guard v >= 0 else { throw StoreError(.invalidArgument, "\(path): id at position \(i) is negative (\(v))") }
                return UInt64(v)
            }
        default:
            throw StoreError(.invalidArgument, "\(path): ids must be int64 or uint64 (the dtype is \(dtype))")
        }
    }
}

/// Writes a .npy file as a stream: the header first (the shape is known up
/// front), then the data in any number of pieces, buffered, with a running SHA-256.
public struct NPYWriter {
    public let path: String
    private var file: TextWriter

    public init(path: String, dtype: String, shape: [Int]) throws {
        self.path = path
        file = try TextWriter(path: path)
        let dims = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(dtype)', 'fortran_order': False, 'shape': \(dims), }"
        // Pad so that the data starts on a 64-byte boundary (numpy's own rule), ending in \n.
        let total = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - total % 64) % 64) + "\n"
        var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
        let n = header.utf8.count
        bytes += [UInt8(n & 0xFF), UInt8(n >> 8)]
        bytes += Array(header.utf8)
        try file.write(bytes)
    }

    public mutating func write(_ bytes: [UInt8]) throws { try file.write(bytes) }

    public mutating func write<T: FixedWidthInteger>(_ values: [T]) throws {
        try file.write(values.withUnsafeBytes { Array($0) })
    }

    /// Closes the file and returns its SHA-256 and size.
    public mutating func finish() throws -> (sha256: String, bytes: Int) {
        let (h, b) = try file.finish()
        return (h, b)
    }
}

extension NPYFile {
    /// A part's predictions (float32 [n, C]) and ids (int64 [n]) read into memory.
    public static func readPart(predictions: String, ids idsPath: String) throws -> (rows: [Float], classCount: Int, ids: [UInt64]) {
        let file = try NPYFile(path: predictions)
        guard file.dtype == "<f4", file.shape.count == 2 else {
            throw StoreError(.invalidArgument, "\(predictions): predictions must be float32 [N, C] (the dtype is \(file.dtype), the shape \(file.shape))")
        }
        let ids = try NPYFile(path: idsPath).ids()
        guard ids.count == file.shape[0] else {
            throw StoreError(.invalidArgument, "\(predictions): \(file.shape[0]) rows but \(idsPath) has \(ids.count) ids")
        }
        var rows = [Float]()
        rows.reserveCapacity(file.shape[0] * file.shape[1])
        for i in 0..<file.shape[0] { rows.append(contentsOf: file.floatRow(i)) }
        return (rows, file.shape[1], ids)
    }
}
