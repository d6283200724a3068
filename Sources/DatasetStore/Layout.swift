import LMDB

/// Names and key encodings of the store's LMDB databases; schemas/store-layout.md
/// is the prose version of this file and must change with it.
public enum Layout {
    /// Bumped when a stored byte layout changes incompatibly.
    public static let formatVersion = 1
    public static let formatName = "noisy-store"

    public static let meta = "meta"              // utf8 name -> JSON
    public static let samples = "samples"        // u64be id -> SampleRecord
    public static let images = "images"          // u64be id -> encoded bytes
    public static let hashes = "hashes"          // sha256 (32 bytes) -> u64be id
    public static let sources = "sources"        // utf8 source -> u64be id (dupsort)
    public static let splitIndex = "split_index" // u8 split ++ u64be id -> u32le class
    public static let classes = "classes"        // u32be index -> utf8 name
    public static let generations = "generations"// u32be k -> JSON metadata
    public static let labels = "labels"          // u32be k ++ u64be id -> distribution
    public static let selections = "selections"  // u32be k ++ utf8 name -> JSON + entries
    public static let tags = "tags"              // utf8 tag -> u32be k

    static let all: [DatabaseSpec] = [
        // Image bytes are checked against the hash in their sample record, and a
        // generation's labels against its digest: sealing them would hash them twice.
        // Metadata databases also keep a digest per record, so that `salvage` can
        // keep every intact generation, class and tag when one of them is damaged.
        DatabaseSpec(meta, recordDigests: true), DatabaseSpec(samples), DatabaseSpec(images, sealed: false), DatabaseSpec(hashes),
        DatabaseSpec(sources, duplicateKeys: true), DatabaseSpec(splitIndex), DatabaseSpec(classes, recordDigests: true),
        DatabaseSpec(generations, recordDigests: true), DatabaseSpec(labels, sealed: false), DatabaseSpec(selections),
        DatabaseSpec(tags, recordDigests: true),
    ]

    /// Big-endian so that LMDB's byte order is numeric order (and MDB_APPEND works).
    @inlinable public static func idKey(_ id: UInt64) -> [UInt8] {
        withUnsafeBytes(of: id.bigEndian) { Array($0) }
    }

    @inlinable public static func u32Key(_ v: UInt32) -> [UInt8] {
        withUnsafeBytes(of: v.bigEndian) { Array($0) }
    }

    /// Reads a big-endian u64. A key cut short by damage reads as if zero-padded
    /// (never past the buffer): the wrong id that results is caught by the checks
    /// that look the id up, instead of trapping in the middle of a read.
    @inlinable public static func readU64BE(_ b: UnsafeRawBufferPointer, at offset: Int = 0) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<8 { v = v << 8 | UInt64(offset + i < b.count && offset + i >= 0 ? b[offset + i] : 0) }
        return v
    }

    /// A big-endian u32, zero-padded like `readU64BE`.
    @inlinable public static func readU32BE(_ b: UnsafeRawBufferPointer, at offset: Int = 0) -> UInt32 {
        var v: UInt32 = 0
        for i in 0..<4 { v = v << 8 | UInt32(offset + i < b.count && offset + i >= 0 ? b[offset + i] : 0) }
        return v
    }

    static func splitKey(_ split: Split, _ id: UInt64) -> [UInt8] {
        [split.code] + idKey(id)
    }
}

/// Which part of the data a sample belongs to. `validation` (labeled, held out like
/// `test`) is what every choice is made on; `test` is scored once per model, for the
/// report. Codes are stored on disk: a new split takes the next code, never an old one.
public enum Split: String, Sendable, Codable, CaseIterable, Comparable {
    case labeled, unlabeled, test, validation

    public var code: UInt8 {
        switch self {
        case .labeled: 0
        case .unlabeled: 1
        case .test: 2
        case .validation: 3
        }
    }

    public init?(code: UInt8) {
        switch code {
        case 0: self = .labeled
        case 1: self = .unlabeled
        case 2: self = .test
        case 3: self = .validation
        default: return nil
        }
    }

    /// Held out from training: an image in one of these and in any other split leaks.
    public var isHeldOut: Bool { self == .test || self == .validation }

    public static func < (a: Split, b: Split) -> Bool { a.code < b.code }
}
