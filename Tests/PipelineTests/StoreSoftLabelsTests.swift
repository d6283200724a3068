import XCTest
import Augment
import Batches
import DatasetStore
import Pipeline
import TestSupport

/// The pseudo-labeled source read from a real generation in a real store.
final class StoreSoftLabelsTests: XCTestCase {
    var root = ""
    override func setUp() { root = Fixtures.temporaryDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    /// A stream state names its stream (the store's creation time and the view): it
    /// resumes on the same store or a copy of it, and is refused on another store or
    /// with another view.
    func testAStateResumesOnlyItsOwnStoreAndView() throws {
        for c in 0..<2 {
            for i in 0..<6 { Fixtures.write(Fixtures.png(width: 12, height: 12, seed: UInt64(40 + 6 * c + i)), to: "\(root)/l/c\(c)/\(i).png") }
        }
        func make(_ name: String) throws -> Store {
            let store = try Store.openOrCreate(path: "\(root)/\(name)")
            var o = IngestOptions()
            o.labeled = ["\(root)/l"]
            _ = try Ingester(store: store, options: o).run()
            return store
        }
        let a = try make("a.noisy"), b = try make("b.noisy")
        let config = PipelineConfig(view: .train(TrainView(size: 8)), channels: 3, batchSize: 4, seed: 5, threads: 1)
        let loader = try BatchLoader(store: a, config: config)
        for _ in 0..<3 { _ = try loader.next() }
        let saved = try JSONDecoder().decode(StreamState.self, from: JSONEncoder().encode(loader.state))
        XCTAssertTrue(saved.origin?.hasPrefix("store created \(try a.createdAt()), view ") == true, "\(saved.origin ?? "nil")")
        XCTAssertEqual(try BatchLoader(store: a, config: config, state: saved).next().index, 3)
        // A copy of the store keeps its creation time, so it resumes there too.
        try FileManager.default.copyItem(atPath: "\(root)/a.noisy", toPath: "\(root)/copy.noisy")
        XCTAssertEqual(try BatchLoader(store: try Store(path: "\(root)/copy.noisy", readOnly: true), config: config, state: saved).next().index, 3)
        XCTAssertThrowsError(try BatchLoader(store: b, config: config, state: saved)) { e in
            XCTAssertEqual((e as? PipelineError)?.kind, .badState)
            XCTAssertTrue("\(e)".contains("another stream"), "\(e)")
        }
        var other = config
        other.view = .train(TrainView(size: 16))
        XCTAssertThrowsError(try BatchLoader(store: a, config: other, state: saved)) { e in
            XCTAssertTrue("\(e)".contains("another stream"), "\(e)")
        }
    }

    func testBatchesCarryTheSelectionWithItsCopiesAndTheStoredTargets() throws {
        for c in 0..<3 {
            for i in 0..<2 { Fixtures.write(Fixtures.jpeg(width: 20, height: 20, seed: UInt64(c * 2 + i)), to: "\(root)/l/c\(c)/\(i).jpg") }
        }
        for i in 0..<30 { Fixtures.write(Fixtures.jpeg(width: 24, height: 20, seed: UInt64(100 + i)), to: "\(root)/u/\(i).jpg") }
        let store = try Store.openOrCreate(path: "\(root)/s.noisy")
        var o = IngestOptions()
        o.labeled = ["\(root)/l"]; o.unlabeled = ["\(root)/u"]
        _ = try Ingester(store: store, options: o).run()
        let ids = Array(UInt64(6)..<UInt64(36))
        var rows: [Float] = []
        for id in ids {
            let peak = Int(id % 3), s = Float(id % 5) / 5
            rows += (0..<3).map { (1 - s) / 3 + ($0 == peak ? s : 0) }
        }
        let g = try store.importLabels(LabelImportRequest(
            input: .rows(ids: ids, rows: rows, classCount: 3, origin: PredictionOrigin(kind: "label", matchedBy: "id")),
            teacher: TeacherInfo(description: "t"), precision: .f32))
        let sel = try store.filterLabels(LabelFilterRequest(generation: g.generation, threshold: 0.5, perClass: 6))
        XCTAssertEqual(sel.entries, 18)

        let labels = try StoreSoftLabels(store: store, generation: g.generation, options: LabelReadOptions(temperature: 2))
        XCTAssertEqual(labels.selection, "default", "the default selection is used when none is named")
        var copies: [UInt64: Int] = [:]
        try store.forEachSelectionEntry(g.generation, "default") { copies[$0] = $1 }

        let config = PipelineConfig(view: .teacher(TeacherView(size: 16)), channels: 3, batchSize: 8, ratio: 3, seed: 5, threads: 2)
        let loader = try BatchLoader(store: store, config: config, pseudoLabels: labels)
        XCTAssertEqual(loader.batchesPerEpoch, 3, "18 entries at 6 per batch")
        var seen: [UInt64: Int] = [:]
        let reader = try GenerationReader(store: store, generation: g.generation, options: LabelReadOptions(temperature: 2))
        for _ in 0..<loader.batchesPerEpoch {
            let b = try loader.next()
            XCTAssertEqual(b.origins.filter { $0 == .pseudoLabeled }.count, 6)
            for i in 0..<b.count where b.origins[i] == .pseudoLabeled {
                seen[b.ids[i], default: 0] += 1
                var want = [Float](repeating: 0, count: 3)
                try want.withUnsafeMutableBufferPointer { try reader.distribution(of: b.ids[i], into: $0) }
                XCTAssertEqual(Array(b.targets[(i * 3)..<(i * 3 + 3)]), want)
            }
        }
        XCTAssertEqual(seen, copies, "one epoch visits every entry as many times as its copies")
    }
}
