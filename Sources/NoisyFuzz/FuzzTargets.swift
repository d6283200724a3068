import DatasetStore
import Foundation

/// The prediction parsers of `noisy labels import`, driven by arbitrary bytes. A
/// parser may refuse an input with an error; any trap, crash or sanitizer report
/// is a finding. The first byte picks the parser (even: NPY, odd: JSON Lines with
/// 1-12 classes) unless NOISY_FUZZ_ONLY=npy|jsonl pins it; the rest is the input.
enum FuzzTargets {
    static let only = ProcessInfo.processInfo.environment["NOISY_FUZZ_ONLY"]

    /// Where the NPY probe writes its input (NPYFile maps a file); one per process.
    static let scratch = NSTemporaryDirectory() + "/noisy-fuzz-\(getpid()).npy"

    static func run(_ input: UnsafeRawBufferPointer) {
        guard let selector = input.first else { return }
        let body = UnsafeRawBufferPointer(rebasing: input.dropFirst())
        let useNPY = only.map { $0 == "npy" } ?? (selector & 1 == 0)
        if useNPY { npy(body) } else { jsonl(body, classCount: Int(selector >> 1) % 12 + 1) }
    }

    static func npy(_ bytes: UnsafeRawBufferPointer) {
        guard FileManager.default.createFile(atPath: scratch, contents: Data(bytes)) else { return }
        guard let file = try? NPYFile(path: scratch) else { return }
        // Touch what the importer touches: ids of a 1-D array, every row of a 2-D float32 one.
        if file.shape.count == 1 { _ = try? file.ids() }
        // As the importer: rows are read only once the row length is known to be a
        // real class count (it must equal the store's, at least 2), so the row count
        // is bounded by the file size.
        if file.shape.count == 2, file.dtype == "<f4", file.shape[1] > 0 {
            var sum: Float = 0
            for i in 0..<file.shape[0] { for v in file.floatRow(i) { sum += v } }
            if sum.isNaN { file.releaseAll() }
        }
    }

    static func jsonl(_ bytes: UnsafeRawBufferPointer, classCount: Int) {
        _ = try? JSONLPredictions.parse(Data(bytes), path: "fuzz.jsonl", classCount: classCount, logits: classCount % 2 == 0) { source in
            source.count % 3 == 0 ? [] : Array(repeating: UInt64(source.utf8.count), count: source.count % 3)
        }
    }
}
