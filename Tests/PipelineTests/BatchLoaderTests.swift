import Foundation
import XCTest
import Augment
import Batches
import ImageCodec
import Pipeline
import TestSupport

/// The batch pipeline through real decoding: in-memory sources keep these tests
/// about sampling, mixing, determinism and recovery (the store path is covered
/// end to end by the CLI tests).
final class BatchLoaderTests: XCTestCase {
    /// 40 labeled JPEGs of varied sizes (4 classes) and 100 unlabeled ones.
    static let fixture: (images: [UInt64: [UInt8]], labeled: [LabeledItem], unlabeled: [UInt64]) = {
        var images: [UInt64: [UInt8]] = [:]
        var labeled: [LabeledItem] = []
        var unlabeled: [UInt64] = []
        for id in 0..<140 as Range<UInt64> {
            let w = 60 + Int(id % 7) * 13, h = 50 + Int(id % 5) * 11
            images[id] = Fixtures.jpeg(width: w, height: h, quality: 85, seed: id + 1)
            if id < 40 { labeled.append(LabeledItem(id: id, classIndex: Int(id % 4))) } else { unlabeled.append(id) }
        }
        return (images, labeled, unlabeled)
    }()

    static func softLabels() -> InMemorySoftLabels {
        var labels: [UInt64: [Float]] = [:]
        for id in fixture.unlabeled {
            var p: [Float] = (0..<4).map { Float((Int(id) * 7 + $0 * 3) % 5 + 1) }
            let s = p.reduce(0, +)
            p = p.map { $0 / s }
            labels[id] = p
        }
        return InMemorySoftLabels(classCount: 4, labels: labels)
    }

    func config(threads: Int = 2, batch: Int = 16, ratio: Double = 3, randAugment: Bool = true,
                layout: OutputLayout = .uint8NHWC) -> PipelineConfig {
        let view = View.train(TrainView(size: 32, randAugment: randAugment ? RandAugment(layers: 2, magnitude: 9) : nil, cutout: 8))
        return PipelineConfig(view: view, channels: 3, layout: layout, batchSize: batch, ratio: ratio, seed: 42,
                              threads: threads, prefetch: 3, labelSmoothing: 0.1)
    }

    func loader(_ c: PipelineConfig, pseudo: Bool = true, state: StreamState? = nil,
                images: [UInt64: [UInt8]]? = nil, log: @escaping @Sendable (String) -> Void = { _ in }) throws -> BatchLoader {
        let source = InMemorySampleSource(images: images ?? Self.fixture.images, pseudoLabels: pseudo ? Self.softLabels() : nil)
        return try BatchLoader(config: c, source: source, labeled: Self.fixture.labeled, classCount: 4, state: state, log: log)
    }

    func bytes(_ b: Batch) -> [UInt8] {
        switch b.images {
        case .uint8(let a): return a
        case .float32(let a): return a.withUnsafeBytes { Array($0) }
        case .external(let e): return Array(UnsafeRawBufferPointer(start: e.base, count: e.used))
        }
    }

    /// Lends slots of one allocation, as `noisy serve` lends shared memory; a slot comes
    /// back only when the test gives it back, and none is lent twice.
    final class SlotStorage: ExternalImageStorage, @unchecked Sendable {
        // `free` is guarded by `lock`; the memory is written by one loader worker per slot.
        let memory: UnsafeMutableRawPointer
        let slotBytes: Int
        private let lock = NSLock()
        private var free: [Int]
        init(slots: Int, slotBytes: Int) {
            memory = .allocate(byteCount: slots * slotBytes, alignment: 64)
            self.slotBytes = slotBytes
            free = Array((0..<slots).reversed())
        }
        deinit { memory.deallocate() }
        struct Exhausted: Error {}
        func acquire(bytes: Int) throws -> ExternalImageBuffer {
            lock.lock(); defer { lock.unlock() }
            guard bytes <= slotBytes, let slot = free.popLast() else { throw Exhausted() }
            return ExternalImageBuffer(base: memory + slot * slotBytes, capacity: slotBytes, slot: slot)
        }
        func giveBack(_ slot: Int) { lock.lock(); free.insert(slot, at: 0); lock.unlock() }
    }

    /// Rendering into lent memory (shared-memory slots) gives the bytes of the loader's
    /// own buffers, batch for batch, and needs no more slots than the prefetch bound
    /// plus what the consumer holds.
    func testBatchesRenderedIntoLentSlotsEqualOwnedBuffers() throws {
        for layout in [OutputLayout.uint8NHWC, .float32NCHW(.imageNet(channels: 3))] {
            var c = config(threads: 2)
            c.layout = layout
            let owned = try loader(c)
            let per = c.layout.bytesPerSample(size: c.view.size, channels: c.channels) * c.batchSize
            let storage = SlotStorage(slots: c.prefetchBound + 1, slotBytes: per)
            let source = InMemorySampleSource(images: Self.fixture.images, pseudoLabels: Self.softLabels())
            let lent = try BatchLoader(config: c, source: source, labeled: Self.fixture.labeled, classCount: 4, storage: storage)
            for _ in 0..<10 {
                let a = try owned.next(), b = try lent.next()
                guard case .external(let buffer) = b.images else { return XCTFail("not rendered into the lent slot") }
                XCTAssertEqual(bytes(a), bytes(b), "batch \(a.index)")
                XCTAssertEqual(a.ids, b.ids)
                XCTAssertEqual(a.targets, b.targets)
                storage.giveBack(buffer.slot)   // the consumer holds one batch at a time
                owned.recycle(a)
            }
        }
    }

    func testSameBytesWhateverTheThreadCount() throws {
        let one = try loader(config(threads: 1))
        let three = try loader(config(threads: 3))
        for _ in 0..<8 {
            let a = try one.next(), b = try three.next()
            XCTAssertEqual(a.index, b.index)
            XCTAssertEqual(a.ids, b.ids)
            XCTAssertEqual(bytes(a), bytes(b), "batch \(a.index) differs between 1 and 3 threads")
            XCTAssertEqual(a.targets, b.targets)
        }
        // A different seed gives different batches.
        var c = config(threads: 1)
        c.seed = 43
        let other = try loader(c)
        let first = try loader(config(threads: 1)).next()
        XCTAssertNotEqual(try other.next().ids, first.ids)
    }

    func testResumeContinuesExactly() throws {
        let full = try loader(config())
        var batches: [Batch] = []
        for _ in 0..<9 { batches.append(try full.next()) }
        let saved = batches[3].stateAfter
        // Through JSON, as a checkpoint or a client would carry it.
        let restored = try JSONDecoder().decode(StreamState.self, from: JSONEncoder().encode(saved))
        let resumed = try loader(config(threads: 1), state: restored)
        for k in 4..<9 {
            let b = try resumed.next()
            XCTAssertEqual(b.index, k)
            XCTAssertEqual(b.ids, batches[k].ids)
            XCTAssertEqual(bytes(b), bytes(batches[k]), "batch \(k) after resume differs")
            XCTAssertEqual(b.targets, batches[k].targets)
        }
        XCTAssertEqual(resumed.state, batches[8].stateAfter)
        // A state resumes only its own stream: another seed, or no pseudo labels where it
        // had them, is refused with a reason.
        var otherSeed = config(threads: 1)
        otherSeed.seed = 43
        XCTAssertThrowsError(try loader(otherSeed, state: restored)) { e in
            XCTAssertEqual((e as? PipelineError)?.kind, .badState)
            XCTAssertTrue("\(e)".contains("seed 42") && "\(e)".contains("43"), "\(e)")
        }
        XCTAssertThrowsError(try loader(config(threads: 1), pseudo: false, state: restored)) { e in
            XCTAssertTrue("\(e)".contains("pseudo labels"), "\(e)")
        }
    }

    func testMixingRatioTargetsAndWeights() throws {
        let l = try loader(config(batch: 16, ratio: 3))
        let provider = Self.softLabels()
        // 100 pseudo-labeled items at 12 per batch: 8 batches per epoch; the 40 labeled (4 per batch)
        // wrap every 10 batches and keep coming.
        XCTAssertEqual(l.batchesPerEpoch, 8)
        var labeledSeen: [UInt64: Int] = [:]
        for _ in 0..<20 {
            let b = try l.next()
            XCTAssertEqual(b.count, 16)
            XCTAssertEqual(b.origins.filter { $0 == .pseudoLabeled }.count, 12)
            XCTAssertEqual(b.origins.filter { $0 == .labeled }.count, 4)
            for i in 0..<b.count {
                let row = Array(b.targets[(i * 4)..<((i + 1) * 4)])
                XCTAssertEqual(row.reduce(0, +), 1, accuracy: 1e-5)
                if b.origins[i] == .labeled {
                    labeledSeen[b.ids[i], default: 0] += 1
                    let cls = Int(b.ids[i] % 4)
                    XCTAssertEqual(row[cls], 0.9 + 0.025, accuracy: 1e-6, "smoothed one-hot")
                    XCTAssertEqual(row[(cls + 1) % 4], 0.025, accuracy: 1e-6)
                } else {
                    XCTAssertEqual(row, provider.labels[b.ids[i]]!)
                    XCTAssertGreaterThanOrEqual(b.ids[i], 40)
                }
            }
            XCTAssertEqual(b.weights, [Float](repeating: 1, count: 16))
        }
        // 80 labeled draws over 40 samples: two full epochs, each sample exactly twice.
        XCTAssertEqual(labeledSeen.count, 40)
        XCTAssertEqual(Set(labeledSeen.values), [2])
    }

    func testLabeledOnlyWithoutPseudoLabels() throws {
        let l = try loader(config(batch: 8), pseudo: false)
        XCTAssertEqual(l.batchesPerEpoch, 5)
        var ids: [UInt64] = []
        for _ in 0..<5 {
            let b = try l.next()
            XCTAssertTrue(b.origins.allSatisfy { $0 == .labeled })
            ids += b.ids
        }
        XCTAssertEqual(ids.sorted(), Self.fixture.labeled.map(\.id), "one epoch visits every labeled sample once")
        XCTAssertEqual(l.state.labeled.epoch, 1)
        XCTAssertNil(l.state.pseudoLabeled)
    }

    func testRanksAreDisjointWithEqualBatchCounts() throws {
        var perRank: [[UInt64]] = []
        var counts: [Int] = []
        for r in 0..<3 {
            var c = config(batch: 10, ratio: 4)
            c.rank = r
            c.worldSize = 3
            let l = try loader(c)
            counts.append(l.batchesPerEpoch)
            var ids: [UInt64] = []
            for _ in 0..<l.batchesPerEpoch { ids += try l.next().ids.filter { $0 >= 40 } }
            perRank.append(ids)
        }
        XCTAssertEqual(Set(counts).count, 1, "every rank has the same number of batches per epoch")
        for a in 0..<3 {
            XCTAssertEqual(Set(perRank[a]).count, perRank[a].count, "no repeats inside a rank's epoch")
            for b in (a + 1)..<3 { XCTAssertTrue(Set(perRank[a]).isDisjoint(with: perRank[b]), "ranks \(a) and \(b) overlap") }
        }
    }

    func testCorruptSampleIsReplacedAndLogged() throws {
        var images = Self.fixture.images
        let victim: UInt64 = 50
        images[victim] = Array(images[victim]!.prefix(200))  // truncated JPEG
        images.removeValue(forKey: 60)  // missing entirely
        let log = LogCollector()
        let l = try loader(config(batch: 20, ratio: 4), images: images, log: log.add)
        var replaced = 0
        for _ in 0..<l.batchesPerEpoch {
            let b = try l.next()
            XCTAssertEqual(b.count, 20, "the batch keeps its size")
            XCTAssertFalse(b.ids.contains(victim))
            XCTAssertFalse(b.ids.contains(60))
            replaced += b.replaced
        }
        XCTAssertEqual(replaced, 2)
        XCTAssertEqual(l.replacedCount, 2)
        let lines = log.lines
        XCTAssertEqual(lines.count, 2)
        XCTAssertTrue(lines.contains { $0.contains("sample 50 skipped") }, "\(lines)")
        XCTAssertTrue(lines.contains { $0.contains("sample 60 skipped (missing") }, "\(lines)")
    }

    func testFloatLayoutIsTheNormalisedBytes() throws {
        let norm = Normalization.imageNet(channels: 3)
        let u = try loader(config(randAugment: false)).next()
        let f = try loader(config(randAugment: false, layout: .float32NCHW(norm))).next()
        guard case .uint8(let px) = u.images, case .float32(let fl) = f.images else { return XCTFail("layouts") }
        XCTAssertEqual(fl.count, px.count)
        let plane = 32 * 32
        for i in stride(from: 0, to: 16 * plane, by: 97) {
            let n = i / plane, p = i % plane
            for c in 0..<3 {
                let v = Float(px[(n * plane + p) * 3 + c])
                let expected = (v / 255 - norm.mean[c]) / norm.std[c]
                XCTAssertEqual(fl[n * 3 * plane + c * plane + p], expected, accuracy: 1e-5)
            }
        }
    }

    /// The trainer's layout: NHWC floats v/255 - 0.5, labelled as such on the batch,
    /// from the same bytes as the uint8 batch.
    func testTrainerLayoutIsNHWCCentredFloats() throws {
        let u = try loader(config(randAugment: false)).next()
        let f = try loader(config(randAugment: false, layout: .float32NHWC(.centred))).next()
        guard case .uint8(let px) = u.images, case .float32(let fl) = f.images else { return XCTFail("layouts") }
        XCTAssertEqual(f.layout, .float32(order: .nhwc, normalization: .centred))
        XCTAssertEqual(u.layout, .uint8NHWC)
        XCTAssertEqual(fl.count, px.count)
        for i in 0..<px.count { XCTAssertEqual(fl[i], Float(px[i]) / 255 - 0.5, accuracy: 1e-6, "element \(i)") }
        // A gray stream takes the same path.
        var gray = config(randAugment: false, layout: .float32NHWC(.centred))
        gray.channels = 1
        var grayBytes = config(randAugment: false)
        grayBytes.channels = 1
        guard case .float32(let g) = try loader(gray).next().images, case .uint8(let gb) = try loader(grayBytes).next().images
        else { return XCTFail("layouts") }
        XCTAssertEqual(g.count, gb.count)
        for i in stride(from: 0, to: gb.count, by: 7) { XCTAssertEqual(g[i], Float(gb[i]) / 255 - 0.5, accuracy: 1e-6) }
    }

    /// Evaluating and labelling read a fixed list once, in order, through the same
    /// engine: every sample exactly once, the last batch partial, labeled samples with
    /// one-hot targets, unlabeled ones with zero targets and weights; the bytes do not
    /// depend on the thread count; a sample that does not decode is an error naming it.
    func testSequenceLoaderCoversTheListOnceInOrder() throws {
        var items: [(id: UInt64, classIndex: Int?)] = []
        for i in 0..<45 {
            let cls: Int? = i < 20 ? i % 4 : nil
            items.append((id: UInt64(i + 20), classIndex: cls))
        }
        func run(threads: Int, images: [UInt64: [UInt8]] = Self.fixture.images) throws -> [Batch] {
            let l = try SequenceLoader(items: items, source: InMemorySampleSource(images: images), classCount: 4,
                                       view: .teacher(TeacherView(size: 24)), channels: 3, layout: .uint8NHWC,
                                       batchSize: 16, threads: threads)
            XCTAssertEqual(l.batchCount, 3)
            var out: [Batch] = []
            while let b = try l.next() { out.append(b) }
            XCTAssertNil(try l.next(), "stays at the end")
            return out
        }
        let one = try run(threads: 1), three = try run(threads: 3)
        XCTAssertEqual(one.map(\.count), [16, 16, 13])
        XCTAssertEqual(one.flatMap(\.ids), items.map(\.id))
        XCTAssertEqual(one.map(bytes), three.map(bytes), "same bytes whatever the thread count")
        let first = one[0]
        for i in 0..<first.count {
            let cls = items[i].classIndex
            if let cls {
                XCTAssertEqual(first.origins[i], .labeled)
                XCTAssertEqual(first.argmaxTarget(i), cls)
                XCTAssertEqual(first.weights[i], 1)
            } else {
                XCTAssertEqual(first.origins[i], .unlabeled)
                XCTAssertEqual(first.weights[i], 0)
            }
        }
        XCTAssertEqual(one[2].origins, [SampleOrigin](repeating: .unlabeled, count: 13))
        var broken = Self.fixture.images
        broken[33] = Array(broken[33]!.prefix(100))
        XCTAssertThrowsError(try run(threads: 2, images: broken)) { e in
            XCTAssertEqual((e as? PipelineError)?.kind, .badSample)
            XCTAssertTrue("\(e)".contains("sample 33"), "\(e)")
        }
    }

    func testTeacherViewIsDeterministicAndGrayStaysGray() throws {
        let r = ViewRenderer(channels: 1, layout: .uint8NHWC)
        let jpeg = Fixtures.jpeg(width: 90, height: 70, channels: 1, seed: 3)
        let view = View.teacher(TeacherView(size: 28))
        let a = try jpeg.withUnsafeBytes { try r.renderImage($0, view: view, key: SampleKey(seed: 1, epoch: 0, sample: 5)) }
        let b = try jpeg.withUnsafeBytes { try r.renderImage($0, view: view, key: SampleKey(seed: 99, epoch: 7, sample: 6)) }
        XCTAssertEqual(a, b, "the teacher view ignores every random key")
        XCTAssertEqual([a.width, a.height, a.channels], [28, 28, 1])
        // An RGB source rendered for a gray stream becomes gray (and vice versa).
        let rgb = Fixtures.jpeg(width: 40, height: 40, seed: 4)
        let g = try rgb.withUnsafeBytes { try r.renderImage($0, view: view, key: SampleKey(seed: 0, epoch: 0, sample: 0)) }
        XCTAssertEqual(g.channels, 1)
    }

    /// The batch path writes the resize's rows straight into the slot (mirrored when
    /// the view flips, converted to floats there). It must give exactly what the
    /// step-by-step path gives: the rendered image (flipped in place, the path the
    /// Pillow and torchvision parity tests check) converted element by element.
    func testDirectSlotWritesEqualTheStepByStepImage() throws {
        var checked = 0, flipped = 0
        for channels in [3, 1] {
            var sources: [[UInt8]] = [Fixtures.jpeg(width: 203, height: 157, channels: channels, seed: 21),
                                      Fixtures.png(width: 90, height: 61, channels: channels, seed: 22)]
            // With restart markers, colour JPEG views take the YCbCr path (PlanarViewTests).
            if channels == 3 { sources.append(try XCTUnwrap(try Codec.addingRestartMarkers(sources[0]))) }
            let norm = channels == 3 ? Normalization.imageNet(channels: 3) : Normalization.centred
            for layout in [OutputLayout.uint8NHWC, .float32NCHW(norm), .float32NHWC(norm)] {
                let fused = ViewRenderer(channels: channels, layout: layout)
                let steps = ViewRenderer(channels: channels, layout: .uint8NHWC)
                for (k, src) in sources.enumerated() {
                    for s in 0..<12 as Range<UInt64> {
                        let size = [37, 64][Int(s % 2)]
                        let view: View = s % 3 == 2 ? .teacher(TeacherView(size: size)) : .train(TrainView(size: size))
                        let key = SampleKey(seed: 9, epoch: 1, sample: s + 100 * UInt64(k))
                        let image = try src.withUnsafeBytes { try steps.renderImage($0, view: view, key: key) }
                        var flip = key.random(.flip)
                        if case .train = view, flip.unit() < 0.5 { flipped += 1 }
                        let n = size * size * channels
                        switch layout {
                        case .uint8NHWC:
                            var out = [UInt8](repeating: 0, count: n)
                            try src.withUnsafeBytes { b in try out.withUnsafeMutableBytes { try fused.render(b, view: view, key: key, into: $0) } }
                            XCTAssertEqual(out.count, image.pixels.count)
                            XCTAssertEqual(zip(out, image.pixels).filter { $0 != $1 }.count, 0,
                                           "bytes, \(channels) channels, source \(k), sample \(s)")
                        case .float32NCHW(let nm), .float32NHWC(let nm):
                            var out = [Float](repeating: .nan, count: n)
                            try src.withUnsafeBytes { b in try out.withUnsafeMutableBytes { try fused.render(b, view: view, key: key, into: $0) } }
                            let chw: Bool = if case .float32NCHW = layout { true } else { false }
                            var differing = 0
                            for p in 0..<(size * size) {
                                for c in 0..<channels {
                                    let scale: Float = 1 / (255 * nm.std[c % nm.std.count])
                                    let offset: Float = -nm.mean[c % nm.mean.count] / nm.std[c % nm.std.count]
                                    let want = Float(image.pixels[p * channels + c]) * scale + offset
                                    if out[chw ? c * size * size + p : p * channels + c] != want { differing += 1 }
                                }
                            }
                            XCTAssertEqual(differing, 0, "\(layout.name), \(channels) channels, source \(k), sample \(s)")
                        }
                        checked += 1
                    }
                }
            }
        }
        XCTAssertEqual(checked, 5 * 3 * 12)
        XCTAssertGreaterThan(flipped, 20, "the flipped rows must be exercised")
    }

    /// Region decode at full scale equals full decode + crop + resize byte for
    /// byte; DCT-scaled decodes differ by a small, bounded amount.
    func testFastDecodeBound() throws {
        let photo = "/usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg"
        var sources: [[UInt8]] = (0..<4).map { Fixtures.jpeg(width: 480, height: 360, quality: 75 + 5 * $0, seed: UInt64($0 + 10)) }
        if let data = FileManager.default.contents(atPath: photo) { sources.append([UInt8](data)) }
        XCTAssertEqual(sources.count, 5, "python-matplotlib-data is missing: run tools/bootstrap.sh")
        let fast = ViewRenderer(channels: 3, layout: .uint8NHWC)
        let exact = ViewRenderer(channels: 3, layout: .uint8NHWC)
        var scaledCount = 0, exactCount = 0, worst = 0.0, total = 0.0
        for (k, src) in sources.enumerated() {
            for s in 0..<30 as Range<UInt64> {
                let key = SampleKey(seed: 5, epoch: 0, sample: s + UInt64(k) * 1000)
                for size in [64, 160] {
                    let v = TrainView(size: size, flip: false)
                    var slow = v
                    slow.fastDecode = false
                    let a = try src.withUnsafeBytes { try fast.renderImage($0, view: .train(v), key: key) }
                    let b = try src.withUnsafeBytes { try exact.renderImage($0, view: .train(slow), key: key) }
                    let h = try src.withUnsafeBytes { try Codec.header($0) }
                    var rng = key.random(.crop)
                    let crop = ViewGeometry.randomResizedCrop(width: h.width, height: h.height, scale: 0.08...1,
                                                              ratio: (3.0 / 4)...(4.0 / 3), rng: &rng)
                    let scaled = crop.width >= 2 * size && crop.height >= 2 * size
                    let mad = Fixtures.meanAbsoluteDifference(a, b)
                    if scaled {
                        scaledCount += 1
                        worst = max(worst, mad)
                        total += mad
                    } else {
                        exactCount += 1
                        let differing = zip(a.pixels, b.pixels).filter { $0 != $1 }.count
                        XCTAssertEqual(differing, 0, "region decode at full scale must equal full decode + crop (image \(k), sample \(s), size \(size))")
                    }
                }
            }
        }
        XCTAssertGreaterThan(scaledCount, 50, "the test should exercise DCT scaling")
        XCTAssertGreaterThan(exactCount, 50)
        // The documented bound (README, "Fast decode").
        XCTAssertLessThan(worst, 3.0, "worst mean absolute difference of a DCT-scaled view")
        print(String(format: "fast decode: %d DCT-scaled views, mean MAD %.3f, worst %.3f; %d full-scale region views identical",
                     scaledCount, total / Double(scaledCount), worst, exactCount))
    }
}

/// Collects log lines from worker threads.
final class LogCollector: @unchecked Sendable {
    // Guarded by `lock`: the pipeline calls `add` from its worker threads.
    private let lock = NSLock()
    private var stored: [String] = []
    var lines: [String] { lock.lock(); defer { lock.unlock() }; return stored }
    func add(_ s: String) { lock.lock(); stored.append(s); lock.unlock() }
}
