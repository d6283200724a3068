import Foundation
import ImageCodec

/// What `noisy info` reports (schemas/info.schema.json).
public struct StoreInfo: Codable, Sendable {
    public struct ClassCount: Codable, Sendable {
        public var index: Int
        public var name: String
        public var labeled: Int
        public var test: Int
        public var validation: Int
    }
    public struct SizeRange: Codable, Sendable {
        public var minWidth, maxWidth, minHeight, maxHeight: Int
        enum CodingKeys: String, CodingKey {
            case minWidth = "min_width", maxWidth = "max_width", minHeight = "min_height", maxHeight = "max_height"
        }
    }
    public var store: String
    public var formatVersion: Int
    public var samples: Int
    public var splits: [String: Int]
    public var classes: [ClassCount]
    public var bytesStored: Int
    public var bytesOriginal: Int
    public var formats: [String: Int]
    public var channels: [String: Int]
    public var reencoded: Int
    public var sizeRange: SizeRange?
    public var generations: Int

    enum CodingKeys: String, CodingKey {
        case store, formatVersion = "format_version", samples, splits, classes, bytesStored = "bytes_stored"
        case bytesOriginal = "bytes_original", formats, channels, reencoded, sizeRange = "size_range", generations
    }
}

extension Store {
    /// Counts per split and class, bytes, formats and size range, from one metadata scan.
    public func info() throws -> StoreInfo {
        let names = try classes()
        var labeled = [Int](repeating: 0, count: names.count)
        var test = [Int](repeating: 0, count: names.count)
        var validation = [Int](repeating: 0, count: names.count)
        var splits = Dictionary(uniqueKeysWithValues: Split.allCases.map { ($0.rawValue, 0) })
        var formats: [String: Int] = [:]
        var channels: [String: Int] = [:]
        var stored = 0, original = 0, reencoded = 0, n = 0
        var range: StoreInfo.SizeRange?
        try forEachSample { r in
            n += 1
            splits[r.split.rawValue, default: 0] += 1
            if let c = r.classIndex, Int(c) < names.count {
                if r.split == .labeled { labeled[Int(c)] += 1 }
                if r.split == .test { test[Int(c)] += 1 }
                if r.split == .validation { validation[Int(c)] += 1 }
            }
            formats[r.format.rawValue, default: 0] += 1
            channels[String(r.channels), default: 0] += 1
            stored += r.byteSize
            original += r.originalByteSize
            if r.reencoded { reencoded += 1 }
            if var s = range {
                s.minWidth = min(s.minWidth, r.width); s.maxWidth = max(s.maxWidth, r.width)
                s.minHeight = min(s.minHeight, r.height); s.maxHeight = max(s.maxHeight, r.height)
                range = s
            } else {
                range = .init(minWidth: r.width, maxWidth: r.width, minHeight: r.height, maxHeight: r.height)
            }
        }
        let generations = try read { try $0.count(db.generations) }
        return StoreInfo(
            store: path, formatVersion: Layout.formatVersion, samples: n, splits: splits,
            classes: names.enumerated().map { .init(index: $0, name: $1, labeled: labeled[$0], test: test[$0],
                                                     validation: validation[$0]) },
            bytesStored: stored, bytesOriginal: original, formats: formats, channels: channels, reencoded: reencoded,
            sizeRange: range, generations: generations)
    }
}
