import Foundation
import ImageCodec
import Digest

public enum LabelExportFormat: String, Sendable, CaseIterable {
    case npy, jsonl, safetensors
}

public struct LabelExportRequest: Sendable {
    public var generation: Int
    /// nil: the `default` selection if there is one, else every sample once.
    public var selection: String?
    public var format: LabelExportFormat
    public var out: String
    /// npy/safetensors: float16 probabilities instead of float32.
    public var keepPrecision: Bool
    public var force: Bool
    public init(generation: Int, selection: String? = nil, format: LabelExportFormat, out: String,
                keepPrecision: Bool = false, force: Bool = false) {
        self.generation = generation; self.selection = selection; self.format = format; self.out = out
        self.keepPrecision = keepPrecision; self.force = force
    }
}

/// The snapshot's table of contents. schemas/labels-export-manifest.schema.json
public struct LabelExportManifest: Codable, Sendable {
    public struct File: Codable, Sendable {
        public var name: String
        public var bytes: Int
        public var sha256: String
        public var dtype: String?
        public var shape: [Int]?
    }
    public var format: String
    public var formatVersion: Int
    public var created: String
    public var export: String
    public var store: String
    public var generation: GenerationRecord
    public var selection: String?
    public var selectionThreshold: Double?
    public var selectionPerClass: Int?
    public var samples: Int
    public var entries: Int
    public var classes: [String]
    public var files: [File]
}

/// What an export reads, whatever holds it (one store, or the shards of a set).
struct LabelExportInput {
    var record: GenerationRecord
    var precision: LabelPrecision
    var selection: String?
    var selectionRecord: SelectionRecord?
    var classes: [String]
    var storePath: String
    /// Visits (id, copies, stored value) in id order.
    var visit: ((UInt64, Int, UnsafeRawBufferPointer) throws -> Void) throws -> Void
    /// A sample's stored source path.
    var source: (UInt64) throws -> String
}

extension Store {
    /// Writes a generation (or one of its selections) as a snapshot folder, streaming:
    /// memory stays constant whatever the number of samples. `manifest.json` is
    /// written last, so a folder without one is an interrupted export.
    public func exportLabels(_ r: LabelExportRequest) throws -> LabelExportManifest {
        let reader = try GenerationReader(store: self, generation: r.generation)
        let selection = try r.selection ?? reader.defaultSelection()
        var selRecord: SelectionRecord?
        if let selection {
            selRecord = try self.selection(r.generation, selection)
            guard selRecord != nil else {
                throw StoreError(.notFound, "\(path): generation \(r.generation) has no selection '\(selection)'")
            }
        }
        let input = LabelExportInput(
            record: reader.record, precision: reader.precision, selection: selection, selectionRecord: selRecord,
            classes: try classes(), storePath: path,
            visit: { body in
                if let selection {
                    try self.forEachSelectionEntry(r.generation, selection) { id, copies in
                        try self.withLabel(r.generation, id) { v in
                            guard let v else { throw StoreError(.corrupt, "\(self.path): selected sample \(id) has no label") }
                            try body(id, copies, v)
                        }
                    }
                } else {
                    try self.forEachLabel(r.generation) { id, v in try body(id, 1, v) }
                }
            },
            source: { id in try self.sample(id)?.source ?? "" })
        return try Self.writeLabelExport(r, input)
    }

    static func writeLabelExport(_ r: LabelExportRequest, _ input: LabelExportInput) throws -> LabelExportManifest {
        let g = input.record
        let selection = input.selection, selRecord = input.selectionRecord
        let visit = input.visit, sample = input.source
        try prepareExportFolder(r.out, force: r.force)
        let c = g.classCount
        let n = selRecord?.samples ?? g.samples
        let classNames = input.classes
        var files: [LabelExportManifest.File] = []
        var probs = [Float](repeating: 0, count: c)
        func decoded(_ v: UnsafeRawBufferPointer) throws -> [Float] {
            try probs.withUnsafeMutableBufferPointer { try LabelEncoding.decode(v, precision: input.precision, into: $0) }
            return probs
        }
        let probType = r.keepPrecision ? "<f2" : "<f4"
        func probBytes(_ p: [Float]) -> [UInt8] {
            if r.keepPrecision { return p.map { Float16($0) }.withUnsafeBytes { Array($0) } }
            return p.withUnsafeBytes { Array($0) }
        }
        var count = 0
        switch r.format {
        case .npy:
            var ids = try NPYWriter(path: r.out + "/ids.npy", dtype: "<i8", shape: [n])
            var pr = try NPYWriter(path: r.out + "/probs.npy", dtype: probType, shape: [n, c])
            var mult = try NPYWriter(path: r.out + "/multiplicity.npy", dtype: "<i4", shape: [n])
            var sources = try TextWriter(path: r.out + "/sources.txt")
            try visit { id, copies, v in
                try ids.write([Int64(id)])
                try pr.write(probBytes(try decoded(v)))
                try mult.write([Int32(copies)])
                try sources.write((try sample(id)) + "\n")
                count += 1
            }
            let (hi, bi) = try ids.finish(), (hp, bp) = try pr.finish(), (hm, bm) = try mult.finish(), (hs, bs) = try sources.finish()
            files = [
                .init(name: "ids.npy", bytes: bi, sha256: hi, dtype: "int64", shape: [n]),
                .init(name: "probs.npy", bytes: bp, sha256: hp, dtype: r.keepPrecision ? "float16" : "float32", shape: [n, c]),
                .init(name: "multiplicity.npy", bytes: bm, sha256: hm, dtype: "int32", shape: [n]),
                .init(name: "sources.txt", bytes: bs, sha256: hs, dtype: nil, shape: [n]),
            ]
        case .jsonl:
            var w = try TextWriter(path: r.out + "/labels.jsonl")
            try visit { id, copies, v in
                let p = try decoded(v)
                let src = try sample(id)
                let srcJSON = String(decoding: try JSONEncoder().encode(src), as: UTF8.self)
                let values = p.map { String(format: "%.7g", $0) }.joined(separator: ",")
                try w.write("{\"id\":\(id),\"source\":\(srcJSON),\"multiplicity\":\(copies),\"probs\":[\(values)]}\n")
                count += 1
            }
            let (h, b) = try w.finish()
            files = [.init(name: "labels.jsonl", bytes: b, sha256: h, dtype: nil, shape: [n])]
        case .safetensors:
            let pSize = r.keepPrecision ? 2 : 4
            let header: [String: Any] = [
                "__metadata__": ["generation": String(r.generation), "selection": selection ?? "", "format": "noisy-labels-export"],
                "ids": ["dtype": "I64", "shape": [n], "data_offsets": [0, 8 * n]],
                "probs": ["dtype": r.keepPrecision ? "F16" : "F32", "shape": [n, c], "data_offsets": [8 * n, 8 * n + pSize * n * c]],
                "multiplicity": ["dtype": "I32", "shape": [n], "data_offsets": [8 * n + pSize * n * c, 8 * n + pSize * n * c + 4 * n]],
            ]
            var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
            while json.count % 8 != 0 { json.append(0x20) }
            var w = try TextWriter(path: r.out + "/labels.safetensors")
            try w.write(withUnsafeBytes(of: UInt64(json.count).littleEndian) { Array($0) })
            try w.write([UInt8](json))
            // Three streaming passes: ids, probabilities, copies.
            try visit { id, _, _ in try w.write(withUnsafeBytes(of: Int64(id).littleEndian) { Array($0) }); count += 1 }
            try visit { _, _, v in try w.write(probBytes(try decoded(v))) }
            try visit { _, copies, _ in try w.write(withUnsafeBytes(of: Int32(copies).littleEndian) { Array($0) }) }
            let (h, b) = try w.finish()
            files = [.init(name: "labels.safetensors", bytes: b, sha256: h, dtype: nil, shape: [n])]
        }
        guard count == n else {
            throw StoreError(.corrupt, "\(input.storePath): export found \(count) samples, the metadata says \(n)")
        }
        let manifest = LabelExportManifest(
            format: "noisy-labels-export", formatVersion: 1, created: GenerationJSON.now(), export: r.format.rawValue,
            store: input.storePath, generation: g, selection: selection, selectionThreshold: selRecord?.threshold,
            selectionPerClass: selRecord?.perClass, samples: n, entries: selRecord?.entries ?? n, classes: classNames, files: files)
        let e = GenerationJSON.encoder
        e.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        guard FileManager.default.createFile(atPath: r.out + "/manifest.json", contents: try e.encode(manifest)) else {
            throw StoreError(.io, "\(r.out)/manifest.json: cannot write")
        }
        return manifest
    }

    /// A new or empty folder; a non-empty one only with `force`.
    static func prepareExportFolder(_ out: String, force: Bool) throws {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: out, isDirectory: &isDir) {
            guard isDir.boolValue else { throw StoreError(.conflict, "\(out): exists and is not a folder") }
            let contents = (try? fm.contentsOfDirectory(atPath: out)) ?? []
            if !contents.isEmpty && !force {
                throw StoreError(.conflict, "\(out): folder is not empty (\(contents.count) entries); writing into it must be asked for", field: .overwrite)
            }
        } else {
            do { try fm.createDirectory(atPath: out, withIntermediateDirectories: true) } catch {
                throw StoreError(.io, "\(out): cannot create the folder: \(error.localizedDescription)")
            }
        }
    }
}

/// A buffered file writer with a running SHA-256.
struct TextWriter {
    let path: String
    private let handle: FileHandle
    private var buffer: [UInt8] = []
    private var hash = SHA256Stream()
    private var written = 0

    init(path: String) throws {
        self.path = path
        guard FileManager.default.createFile(atPath: path, contents: nil), let h = FileHandle(forWritingAtPath: path) else {
            throw StoreError(.io, "\(path): cannot create")
        }
        handle = h
        buffer.reserveCapacity(1 << 20)
    }

    mutating func write(_ s: String) throws { try write(Array(s.utf8)) }

    mutating func write(_ bytes: [UInt8]) throws {
        buffer.append(contentsOf: bytes)
        if buffer.count >= 1 << 20 { try flush() }
    }

    private mutating func flush() throws {
        hash.update(buffer)
        written += buffer.count
        do { try handle.write(contentsOf: Data(buffer)) } catch {
            throw StoreError(.io, "\(path): write failed: \(error.localizedDescription)")
        }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Flushes, syncs to disk (a file renamed into place after this survives a crash)
    /// and closes.
    mutating func finish() throws -> (String, Int) {
        try flush()
        do { try handle.synchronize() } catch {
            throw StoreError(.io, "\(path): sync failed: \(error.localizedDescription)")
        }
        try handle.close()
        return (hash.finish().hexString, written)
    }
}
