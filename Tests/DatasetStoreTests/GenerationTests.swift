import XCTest
import DatasetStore
import ImageCodec
import TestSupport

/// Generations through the store API with real LMDB files: import from in-memory
/// rows, read back in every precision, filter and balance, tags, delete, orphans.
final class GenerationTests: XCTestCase {
    var root = ""
    override func setUp() { root = Fixtures.temporaryDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    /// 4 classes (2 labeled images each) and `unlabeled` unlabeled images (ids 8...).
    func makeStore(unlabeled: Int = 40) throws -> Store {
        for c in 0..<4 {
            for i in 0..<2 { Fixtures.write(Fixtures.png(width: 8, height: 8, seed: UInt64(c * 10 + i)), to: "\(root)/l/c\(c)/\(i).png") }
        }
        for i in 0..<unlabeled { Fixtures.write(Fixtures.png(width: 8, height: 9, seed: UInt64(1000 + i)), to: "\(root)/u/\(i).png") }
        let store = try Store.openOrCreate(path: "\(root)/s.noisy")
        var o = IngestOptions()
        o.labeled = ["\(root)/l"]; o.unlabeled = ["\(root)/u"]
        _ = try Ingester(store: store, options: o).run()
        return store
    }

    /// A deterministic distribution per sample: peaked on class (id % 4) with strength by id.
    func rows(_ ids: [UInt64], classes: Int = 4) -> [Float] {
        var out: [Float] = []
        for id in ids {
            var p = [Float](repeating: 0, count: classes)
            let peak = Int(id % UInt64(classes))
            let strength = Float(id % 7) / 7
            for c in 0..<classes { p[c] = (1 - strength) / Float(classes) + (c == peak ? strength : 0) }
            out += p
        }
        return out
    }

    func importRows(_ store: Store, ids: [UInt64], precision: LabelPrecision = .f16, parent: ParentChoice = .latest,
                    values: [Float]? = nil) throws -> LabelImportSummary {
        let origin = PredictionOrigin(kind: "label", matchedBy: "id")
        return try store.importLabels(LabelImportRequest(
            input: .rows(ids: ids, rows: values ?? rows(ids), classCount: 4, origin: origin),
            teacher: TeacherInfo(description: "test"), parent: parent, precision: precision))
    }

    func distribution(_ store: Store, _ k: Int, _ id: UInt64, _ options: LabelReadOptions = .init()) throws -> [Float] {
        let reader = try GenerationReader(store: store, generation: k, options: options)
        var out = [Float](repeating: 0, count: 4)
        try out.withUnsafeMutableBufferPointer { try reader.distribution(of: id, into: $0) }
        return out
    }

    func testPrecisionsReadBackAsFullDistributions() throws {
        let store = try makeStore()
        let ids = Array(UInt64(8)..<UInt64(48))
        let expected = rows(ids)
        let f32 = try importRows(store, ids: ids, precision: .f32)
        let f16 = try importRows(store, ids: ids, precision: .f16)
        let top1 = try importRows(store, ids: ids, precision: .topK(1))
        XCTAssertEqual(f32.bytesPerSample, 8 + 16)
        XCTAssertEqual(f16.bytesPerSample, 8 + 8)
        XCTAssertEqual(top1.bytesPerSample, 8 + 4 + 4)
        for (i, id) in ids.enumerated() {
            let want = Array(expected[(i * 4)..<(i * 4 + 4)])
            let a = try distribution(store, f32.generation, id)
            let b = try distribution(store, f16.generation, id)
            let t = try distribution(store, top1.generation, id)
            for c in 0..<4 {
                XCTAssertEqual(a[c], want[c], accuracy: 1e-6)
                XCTAssertEqual(b[c], want[c], accuracy: 1e-3)
            }
            XCTAssertEqual(t.reduce(0, +), 1, accuracy: 1e-5)
            // top-1 keeps the peak; the rest of the mass is spread evenly over the other three.
            let peak = Int(id % 4)
            XCTAssertEqual(t[peak], want[peak], accuracy: 1e-3)
            let others = (0..<4).filter { $0 != peak }.map { t[$0] }
            XCTAssertEqual(others.max()! - others.min()!, 0, accuracy: 1e-6)
        }
        // Temperature: p^(1/T) renormalised; hard: one-hot with smoothing.
        let id: UInt64 = 13  // strength 6/7, peak 1
        let p = try distribution(store, f32.generation, id)
        let t2 = try distribution(store, f32.generation, id, LabelReadOptions(temperature: 2))
        let root2 = p.map { $0.squareRoot() }
        let s = root2.reduce(0, +)
        for c in 0..<4 { XCTAssertEqual(t2[c], root2[c] / s, accuracy: 1e-5) }
        let hard = try distribution(store, f32.generation, id, LabelReadOptions(hard: true, smoothing: 0.1))
        for (c, want) in [0.025, 0.925, 0.025, 0.025].enumerated() { XCTAssertEqual(hard[c], Float(want), accuracy: 1e-6) }
    }

    func testFilterKeepsConfidentAndBalancesExactly() throws {
        let store = try makeStore(unlabeled: 60)
        let ids = Array(UInt64(8)..<UInt64(68))
        let g = try importRows(store, ids: ids)
        // Top confidence of sample id: (1 - s)/4 + s with s = (id % 7) / 7.
        func conf(_ id: UInt64) -> Double { let s = Double(id % 7) / 7; return (1 - s) / 4 + s }
        let threshold = 0.5
        let sel = try store.filterLabels(LabelFilterRequest(generation: g.generation, threshold: threshold, perClass: 9, seed: 3))
        var copies: [UInt64: Int] = [:]
        try store.forEachSelectionEntry(g.generation, "default") { id, n in copies[id] = n }
        XCTAssertEqual(sel.entries, copies.values.reduce(0, +))
        XCTAssertEqual(sel.samples, copies.count)
        for cls in 0..<4 {
            // With f16 storage the stored confidence is within 1e-3 of the input's.
            let candidates = ids.filter { Int($0 % 4) == cls && conf($0) >= threshold + 1e-3 }
            let kept = copies.filter { Int($0.key % 4) == cls }
            XCTAssertEqual(kept.values.reduce(0, +), 9, "class \(cls) ends with exactly 9 entries")
            XCTAssertEqual(sel.countsAfter[cls], 9)
            if candidates.count >= 9 {
                XCTAssertTrue(kept.values.allSatisfy { $0 == 1 })
                let minKept = kept.keys.map(conf).min()!
                let maxDropped = candidates.filter { kept[$0] == nil }.map(conf).max() ?? 0
                XCTAssertGreaterThanOrEqual(minKept, maxDropped, "the most confident are kept")
            } else {
                let n = kept.count
                XCTAssertTrue(kept.values.allSatisfy { $0 == 9 / n || $0 == 9 / n + 1 }, "\(kept)")
                // Extra copies go to the most confident.
                let extra = kept.filter { $0.value == 9 / n + 1 }.keys.map(conf)
                let base = kept.filter { $0.value == 9 / n }.keys.map(conf)
                if let lo = extra.min(), let hi = base.max() { XCTAssertGreaterThanOrEqual(lo, hi) }
            }
            XCTAssertEqual(sel.confidenceHistograms[cls].reduce(0, +), sel.countsBefore[cls])
        }
        XCTAssertEqual(sel.countsBefore.reduce(0, +), 60)
        // A selection never changes.
        XCTAssertThrowsError(try store.filterLabels(LabelFilterRequest(generation: g.generation, threshold: 0.1))) { e in
            XCTAssertTrue("\(e)".contains("already has a selection 'default'"), "\(e)")
        }
        let plain = try store.filterLabels(LabelFilterRequest(generation: g.generation, name: "plain", threshold: threshold))
        XCTAssertEqual(plain.countsAfter, plain.countsAboveThreshold)
        XCTAssertNil(plain.perClass)
        // The reader expands entries by their copies.
        let reader = try GenerationReader(store: store, generation: g.generation)
        XCTAssertEqual(try reader.entries(selection: "default").count, 36)
        XCTAssertEqual(try reader.entries(selection: nil).count, 60)
        XCTAssertEqual(try reader.defaultSelection(), "default")
    }

    func testTagsDeleteAndNumbersAreNeverReused() throws {
        let store = try makeStore()
        let ids = Array(UInt64(8)..<UInt64(20))
        let g1 = try importRows(store, ids: ids)
        let g2 = try importRows(store, ids: ids)
        XCTAssertEqual(g1.generation, 1)
        XCTAssertEqual(g2.parent, 1, "the parent defaults to the newest generation")
        XCTAssertEqual(try store.tags()["latest"], 2)
        try store.setTag("best", generation: 1)
        XCTAssertEqual(try store.resolveGeneration("best").generation, 1)
        XCTAssertThrowsError(try store.setTag("7", generation: 1) as Void, "a numeric tag would shadow generation 7")
        XCTAssertThrowsError(try store.setTag("best", generation: 9) as Void)
        try store.deleteGeneration(1)
        XCTAssertNil(try store.tags()["best"], "tags of a deleted generation go with it")
        XCTAssertEqual(try store.generations().map(\.generation), [2])
        XCTAssertEqual(try store.generation(2)?.parent, 1, "other generations are untouched")
        var left = 0
        try store.forEachLabel(1) { _, _ in left += 1 }
        XCTAssertEqual(left, 0)
        let g3 = try importRows(store, ids: ids, parent: .none)
        XCTAssertEqual(g3.generation, 3, "numbers are never reused")
        XCTAssertNil(g3.parent)
        XCTAssertThrowsError(try store.resolveGeneration("nope")) { e in XCTAssertTrue("\(e)".contains("latest"), "\(e)") }
    }

    func testRefusedInputsWriteNothing() throws {
        let store = try makeStore()
        let ids = Array(UInt64(8)..<UInt64(12))
        var bad = rows(ids)
        bad[5] = .nan
        var negative = rows(ids)
        negative[2] = -0.1; negative[3] += 0.1
        var unnormalised = rows(ids)
        unnormalised[0] += 0.5
        let cases: [([UInt64], [Float], String)] = [
            (ids, bad, "not a finite number"),
            (ids, negative, "negative probability"),
            (ids, unnormalised, "sums to 1.5000"),
            ([8, 9, 9, 10], rows(ids), "appears twice"),
            ([8, 9, 10, 9999], rows(ids), "unknown sample id"),
            ([8, 9, 10], rows(ids), "4 rows but 3 ids"),
        ]
        for (i, v, needle) in cases {
            XCTAssertThrowsError(try importRows(store, ids: i, values: v)) { e in
                XCTAssertTrue("\(e)".contains(needle), "expected '\(needle)' in: \(e)")
            }
        }
        XCTAssertTrue(try store.generations().isEmpty)
        var any = 0
        for k in 1...3 { try store.forEachLabel(k) { _, _ in any += 1 } }
        XCTAssertEqual(any, 0, "no label was written")
        // Logits are softmaxed.
        let logits: [Float] = [0, 0, 0, Float(log(3.0))] + [Float](repeating: 1, count: 12)
        let origin = PredictionOrigin(kind: "label", logits: true, matchedBy: "id")
        let g = try store.importLabels(LabelImportRequest(input: .rows(ids: ids, rows: logits, classCount: 4, origin: origin),
                                                          logits: true, teacher: TeacherInfo(description: "l"), precision: .f32))
        let p = try distribution(store, g.generation, 8)
        XCTAssertEqual(p[3], 0.5, accuracy: 1e-6)
        XCTAssertEqual(p[0], 1.0 / 6, accuracy: 1e-6)
    }
}
