import Foundation

/// Who made a generation's labels.
public struct TeacherInfo: Codable, Sendable, Equatable {
    public var description: String
    public var model: String?
    public var checkpoint: String?
    public var checkpointSha256: String?
    public init(description: String, model: String? = nil, checkpoint: String? = nil, checkpointSha256: String? = nil) {
        self.description = description; self.model = model; self.checkpoint = checkpoint; self.checkpointSha256 = checkpointSha256
    }
}

/// Where a generation's predictions came from.
public struct PredictionOrigin: Codable, Sendable, Equatable {
    /// npy, jsonl, or label (made in process by `noisy label` / a label session).
    public var kind: String
    public var path: String?
    public var sha256: String?
    public var logits: Bool
    /// How rows were matched to samples: id, source, or split (every sample of a split in id order).
    public var matchedBy: String
    public var idsPath: String?
    /// kind "job": the label job whose parts made the generation, and how many parts.
    public var job: String?
    public var parts: Int?
    public init(kind: String, path: String? = nil, sha256: String? = nil, logits: Bool = false, matchedBy: String, idsPath: String? = nil,
                job: String? = nil, parts: Int? = nil) {
        self.kind = kind; self.path = path; self.sha256 = sha256; self.logits = logits; self.matchedBy = matchedBy; self.idsPath = idsPath
        self.job = job; self.parts = parts
    }
}

/// Per-class statistics of a generation's top-1 labels.
public struct ClassLabelStats: Codable, Sendable, Equatable {
    public var classIndex: Int
    public var name: String
    /// Samples whose top class is this one.
    public var count: Int
    /// Their mean top probability.
    public var meanConfidence: Double
}

/// A generation's metadata: written once, in the transaction that makes it visible.
/// schemas/generation.schema.json
public struct GenerationRecord: Codable, Sendable, Equatable {
    public var formatVersion: Int
    public var generation: Int
    public var parent: Int?
    public var created: String
    public var teacher: TeacherInfo
    public var predictions: PredictionOrigin
    public var classCount: Int
    /// SHA-256 of the class names joined with newlines: the class list the labels were made against.
    public var classesSha256: String
    public var samples: Int
    public var precision: String
    /// What reading does with the mass top-k did not keep ("spread": evenly over the other classes).
    public var topkResidual: String?
    public var bytesStored: Int
    public var meanConfidence: Double
    public var perClass: [ClassLabelStats]
    /// SHA-256 over the stored label records (LabelDigest), written in the
    /// transaction that publishes the generation; nil in stores older than digests.
    public var labelsSha256: String?
}

/// A named, immutable filter + balance result inside a generation.
/// schemas/selection.schema.json
public struct SelectionRecord: Codable, Sendable, Equatable {
    public var name: String
    public var generation: Int
    public var created: String
    public var threshold: Double
    /// Every class ends with exactly this many entries (nil: no balancing).
    public var perClass: Int?
    public var seed: UInt64
    /// Distinct samples kept.
    public var samples: Int
    /// Entries counting copies: the length of one epoch of the pseudo-labeled source.
    public var entries: Int
    /// Per class (by top class): all labelled samples, those at or above the threshold, and
    /// the entries after balancing (copies counted).
    public var countsBefore: [Int]
    public var countsAboveThreshold: [Int]
    public var countsAfter: [Int]
    /// Classes with no sample at or above the threshold: balancing cannot fill them.
    public var emptyClasses: [Int]
    /// Per class, 101 bins of top confidence (bin i: [i/100, (i+1)/100), the last holds 1.0), before filtering.
    public var confidenceHistograms: [[Int]]
    /// SHA-256 over the stored entries (LabelDigest); nil in stores older than digests.
    public var entriesSha256: String?
}

enum GenerationJSON {
    static var encoder: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        e.keyEncodingStrategy = .convertToSnakeCase
        return e
    }

    static var decoder: JSONDecoder {
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        return d
    }

    static func now() -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: Date())
    }
}
