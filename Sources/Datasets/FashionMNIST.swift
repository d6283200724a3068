import Foundation
import ImageCodec
import Gzip
import KeyedRandom
import Parallelism
import Pixels

/// Fashion-MNIST as Debian's `dataset-fashion-mnist` ships it: gzip'd IDX files.
public struct FashionMNIST: Sendable {
    public static let defaultDirectory = "/usr/share/datasets/fashion-mnist"
    /// Folder-safe class names, in label order 0...9.
    public static let classNames = ["tshirt-top", "trouser", "pullover", "dress", "coat",
                                    "sandal", "shirt", "sneaker", "bag", "ankle-boot"]

    public struct Split: Sendable {
        public var images: [UInt8]  // count x 28 x 28
        public var labels: [UInt8]
        public var count: Int { labels.count }
        public func image(_ i: Int) -> Image {
            Image(width: 28, height: 28, channels: 1, pixels: Array(images[(i * 784)..<((i + 1) * 784)]))
        }
    }

    public var train: Split
    public var test: Split

    public static func load(from dir: String = defaultDirectory) throws -> FashionMNIST {
        func file(_ name: String) throws -> [UInt8] {
            let path = dir + "/" + name
            guard FileManager.default.fileExists(atPath: path) else {
                throw DatasetError(.missing, "\(path): missing; install it with tools/bootstrap.sh (Debian package dataset-fashion-mnist)")
            }
            do { return try Gzip.read(path: path) } catch { throw DatasetError(.io, error.description) }
        }
        return FashionMNIST(
            train: try parse(images: file("train-images-idx3-ubyte.gz"), labels: file("train-labels-idx1-ubyte.gz"), name: "train"),
            test: try parse(images: file("t10k-images-idx3-ubyte.gz"), labels: file("t10k-labels-idx1-ubyte.gz"), name: "t10k"))
    }

    static func be32(_ b: [UInt8], _ o: Int) -> Int {
        Int(b[o]) << 24 | Int(b[o + 1]) << 16 | Int(b[o + 2]) << 8 | Int(b[o + 3])
    }

    static func parse(images: [UInt8], labels: [UInt8], name: String) throws -> Split {
        guard images.count >= 16, be32(images, 0) == 0x0803, labels.count >= 8, be32(labels, 0) == 0x0801 else {
            throw DatasetError(.malformed, "\(name): not IDX image/label files")
        }
        let n = be32(images, 4), rows = be32(images, 8), cols = be32(images, 12)
        guard rows == 28, cols == 28, images.count == 16 + n * 784, be32(labels, 4) == n, labels.count == 8 + n else {
            throw DatasetError(.malformed, "\(name): IDX sizes do not match")
        }
        return Split(images: Array(images[16...]), labels: Array(labels[8...]))
    }

    /// The seed of the demo's validation hold-out: fixed, so that every `--seed` (which
    /// picks the labeled images) is scored on the same validation images.
    public static let validationSeed: UInt64 = 0x7661_6C69_6461_7465

    /// Which training images go where: `validation` (`validationPerClass` per class,
    /// chosen with `validationSeed`), then `labeled` (`perClass` per class from the rest,
    /// chosen with `seed`), then `unlabeled` (up to `unlabeledCount` of what remains,
    /// chosen with `seed`). The three are disjoint. Indices into `train`, ascending.
    public func demoSplit(perClass: Int, unlabeledCount: Int, validationPerClass: Int, seed: UInt64)
        -> (validation: [Int], labeled: [Int], unlabeled: [Int]) {
        var byClass = [[Int]](repeating: [], count: 10)
        for i in 0..<train.count { byClass[Int(train.labels[i])].append(i) }
        var held = SplitMix64(seed: Self.validationSeed)
        var validation = Set<Int>()
        for c in 0..<10 { validation.formUnion(byClass[c].shuffled(using: &held).prefix(validationPerClass)) }
        var rng = SplitMix64(seed: seed)
        var labeled = Set<Int>()
        for c in 0..<10 { labeled.formUnion(byClass[c].filter { !validation.contains($0) }.shuffled(using: &rng).prefix(perClass)) }
        let rest = (0..<train.count).filter { !labeled.contains($0) && !validation.contains($0) }
        return (validation.sorted(), labeled.sorted(), Array(rest.shuffled(using: &rng).prefix(unlabeledCount)).sorted())
    }

    /// Writes the demo's folders (see `demoSplit`): `validation/<class>/`, `labeled/<class>/`,
    /// `unlabeled/`, and `test/<class>/` with the test set. PNG files, named by their index.
    public func writeFolders(to root: String, perClass: Int, unlabeledCount: Int, validationPerClass: Int = 0, seed: UInt64,
                             threads: Int = 2) throws {
        let fm = FileManager.default
        let split = demoSplit(perClass: perClass, unlabeledCount: unlabeledCount, validationPerClass: validationPerClass, seed: seed)
        for name in Self.classNames {
            try fm.createDirectory(atPath: "\(root)/labeled/\(name)", withIntermediateDirectories: true)
            try fm.createDirectory(atPath: "\(root)/test/\(name)", withIntermediateDirectories: true)
            if validationPerClass > 0 { try fm.createDirectory(atPath: "\(root)/validation/\(name)", withIntermediateDirectories: true) }
        }
        try fm.createDirectory(atPath: "\(root)/unlabeled", withIntermediateDirectories: true)
        // (from the test set, index, path): PNG encoding is most of the work, so the
        // files are shared out over `threads` workers; which worker writes a file
        // changes nothing in it.
        let jobs: [(test: Bool, index: Int, path: String)] =
            split.validation.map { (false, $0, "\(root)/validation/\(Self.classNames[Int(train.labels[$0])])/train-\($0).png") }
            + split.labeled.map { (false, $0, "\(root)/labeled/\(Self.classNames[Int(train.labels[$0])])/train-\($0).png") }
            + split.unlabeled.map { (false, $0, "\(root)/unlabeled/train-\($0).png") }
            + (0..<test.count).map { (true, $0, "\(root)/test/\(Self.classNames[Int(test.labels[$0])])/test-\($0).png") }
        let workers = max(1, min(threads, 16))
        let failures = ConcurrentSlots<String?>(count: workers, initial: nil)
        let data = self
        failures.forEachWorker { k in
            for j in stride(from: k, to: jobs.count, by: workers) {
                let job = jobs[j]
                do {
                    let png = try Codec.encodePNG(job.test ? data.test.image(job.index) : data.train.image(job.index))
                    guard FileManager.default.createFile(atPath: job.path, contents: Data(png)) else {
                        failures[k] = "\(job.path): cannot write"
                        return
                    }
                } catch {
                    failures[k] = "\(job.path): \(error)"
                    return
                }
            }
        }
        if let first = failures.values.compactMap({ $0 }).first { throw DatasetError(.io, first) }
    }
}

/// Why the example data could not be read or written out.
public struct DatasetError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The data files are not installed.
        case missing
        /// The files exist but are not what they should be.
        case malformed
        /// Reading or writing failed.
        case io
    }
    public let kind: Kind
    public let description: String
    public init(_ kind: Kind, _ d: String) { self.kind = kind; description = d }
}
