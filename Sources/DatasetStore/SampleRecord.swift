import ImageCodec

/// Everything the store knows about one sample except its encoded bytes, in a
/// fixed little-endian layout (schemas/store-layout.md, "samples"): a metadata
/// scan over a million samples reads ~120 MB and never touches image pages.
public struct SampleRecord: Sendable, Equatable {
    public static let version: UInt8 = 1
    static let fixedSize = 108
    public static let noClass = UInt32.max

    public var id: UInt64
    public var split: Split
    /// Format of the stored bytes.
    public var format: ImageFormat
    public var channels: Int
    /// Class index for labeled and test samples.
    public var classIndex: UInt32?
    public var width: Int
    public var height: Int
    public var originalWidth: Int
    public var originalHeight: Int
    public var originalFormat: ImageFormat
    /// True when `--max-side` re-encoded the image.
    public var reencoded: Bool
    public var byteSize: Int
    public var originalByteSize: Int
    /// SHA-256 of the original file: the dedupe key.
    public var contentHash: [UInt8]
    /// SHA-256 of the stored bytes: what `verify` re-checks.
    public var dataHash: [UInt8]
    /// Path relative to the folder given at ingest.
    public var source: String

    public init(id: UInt64, split: Split, format: ImageFormat, channels: Int, classIndex: UInt32?,
                width: Int, height: Int, originalWidth: Int, originalHeight: Int, originalFormat: ImageFormat,
                reencoded: Bool, byteSize: Int, originalByteSize: Int, contentHash: [UInt8], dataHash: [UInt8],
                source: String) {
        self.id = id; self.split = split; self.format = format; self.channels = channels
        self.classIndex = classIndex; self.width = width; self.height = height
        self.originalWidth = originalWidth; self.originalHeight = originalHeight
        self.originalFormat = originalFormat; self.reencoded = reencoded; self.byteSize = byteSize
        self.originalByteSize = originalByteSize; self.contentHash = contentHash; self.dataHash = dataHash
        self.source = source
    }

    static func formatCode(_ f: ImageFormat) -> UInt8 {
        switch f {
        case .jpeg: 1
        case .png: 2
        case .webp: 3
        }
    }
    static func format(code: UInt8) -> ImageFormat? {
        switch code {
        case 1: .jpeg
        case 2: .png
        case 3: .webp
        default: nil
        }
    }

    public func encoded() -> [UInt8] {
        var out = [UInt8]()
        let src = Array(source.utf8)
        out.reserveCapacity(Self.fixedSize + src.count)
        func le<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        out.append(Self.version)
        out.append(split.code)
        out.append(Self.formatCode(format))
        out.append(UInt8(channels))
        le(classIndex ?? Self.noClass)
        le(UInt32(width)); le(UInt32(height))
        le(UInt32(originalWidth)); le(UInt32(originalHeight))
        out.append(Self.formatCode(originalFormat))
        out.append(reencoded ? 1 : 0)
        le(UInt16(src.count))
        le(UInt64(byteSize)); le(UInt64(originalByteSize))
        out.append(contentsOf: contentHash)
        out.append(contentsOf: dataHash)
        out.append(contentsOf: src)
        return out
    }

    /// Parses a stored record; nil when the bytes are not a valid record.
    public init?(id: UInt64, bytes b: UnsafeRawBufferPointer) {
        guard b.count >= Self.fixedSize, b[0] == Self.version,
              let split = Split(code: b[1]), let format = Self.format(code: b[2]),
              let originalFormat = Self.format(code: b[24]) else { return nil }
        func le<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T {
            var v = T.zero
            withUnsafeMutableBytes(of: &v) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: b[offset..<offset + MemoryLayout<T>.size])) }
            return T(littleEndian: v)
        }
        let sourceLength = Int(le(26, UInt16.self))
        guard b.count == Self.fixedSize + sourceLength else { return nil }
        let cls = le(4, UInt32.self)
        // Sizes beyond Int (only a damaged record holds them) make the record invalid.
        guard le(28, UInt64.self) <= UInt64(Int.max), le(36, UInt64.self) <= UInt64(Int.max) else { return nil }
        self.init(id: id, split: split, format: format, channels: Int(b[3]),
                  classIndex: cls == Self.noClass ? nil : cls,
                  width: Int(le(8, UInt32.self)), height: Int(le(12, UInt32.self)),
                  originalWidth: Int(le(16, UInt32.self)), originalHeight: Int(le(20, UInt32.self)),
                  originalFormat: originalFormat, reencoded: b[25] & 1 != 0,
                  byteSize: Int(le(28, UInt64.self)), originalByteSize: Int(le(36, UInt64.self)),
                  contentHash: Array(b[44..<76]), dataHash: Array(b[76..<108]),
                  source: String(decoding: b[108..<(108 + sourceLength)], as: UTF8.self))
    }
}
