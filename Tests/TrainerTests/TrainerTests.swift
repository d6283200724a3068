import XCTest
import KeyedRandom
import Batches
@testable import Trainer

/// Every layer's backward pass against central finite differences, the loss, and
/// training behaviour: determinism, exact resume from a checkpoint, learning.
final class TrainerTests: XCTestCase {
    override func setUp() { setBLASThreads(1) }

    func testDenseGradients() {
        var r = TrainerRandom(seed: 1)
        gradientCheck([Dense(7, 5, rng: &r, name: "d")], input: random([3, 7], seed: 2))
    }

    func testConvolutionGradients() {
        var r = TrainerRandom(seed: 3)
        gradientCheck([Conv3x3(2, 3, rng: &r, name: "c")], input: random([2, 5, 6, 2], seed: 4))
        // Narrowing and equal widths, and odd image sides.
        gradientCheck([Conv3x3(3, 2, rng: &r, name: "n")], input: random([2, 5, 6, 3], seed: 9))
        gradientCheck([Conv3x3(3, 3, rng: &r, name: "s")], input: random([1, 4, 7, 3], seed: 10))
    }

    func testPoolReluFlattenGradients() {
        var r = TrainerRandom(seed: 5)
        // Distinct values keep the max and the ReLU kinks away from the finite-difference steps.
        var x = random([2, 6, 4, 3], seed: 6)
        x.data = x.data.enumerated().map { i, v in v + Float(i % 7) * 0.3 }
        gradientCheck([MaxPool2(), ReLU(), Flatten(), Dense(18, 4, rng: &r, name: "d")], input: x)
    }

    /// Ties send the gradient to the window's first maximum only (as the forward's
    /// comparisons pick it), and odd edges, which no window covers, get zero.
    func testMaxPoolTiesAndOddEdges() {
        let pool = MaxPool2()
        var ctx = StepContext(training: true, seed: 0)
        // 1 image, 3x3, 2 channels: channel 0 all equal, channel 1 with a maximum at (1, 1).
        var x = [Float](repeating: 0, count: 18)
        for p in 0..<9 { x[2 * p] = 0.5; x[2 * p + 1] = Float(p) * 0.1 }
        x[2 * 4 + 1] = 2
        let y = pool.forward(Tensor(shape: [1, 3, 3, 2], data: x), &ctx)
        XCTAssertEqual(y.shape, [1, 1, 1, 2])
        XCTAssertEqual(y.data, [0.5, 2])
        let dx = pool.backward(Tensor(shape: [1, 1, 1, 2], data: [3, 7]))
        var expected = [Float](repeating: 0, count: 18)
        expected[0] = 3          // first of four equal values
        expected[2 * 4 + 1] = 7  // the strict maximum
        XCTAssertEqual(dx.data, expected)
    }

    func testResidualBlockGradients() {
        var r = TrainerRandom(seed: 7)
        gradientCheck([Residual(channels: 2, survival: 1, rng: &r, name: "r")], input: random([1, 4, 4, 2], seed: 8, scale: 0.5), eps: 1e-3)
    }

    func testSoftCrossEntropyGradientAndHardEquivalence() {
        let logits = random([4, 5], seed: 9)
        var targets = [Float](repeating: 0, count: 20)
        let labels = [1, 0, 4, 2]
        for (i, y) in labels.enumerated() { targets[i * 5 + y] = 1 }
        let weights: [Float] = [1, 0.5, 2, 1]
        let (loss, grad) = SoftCrossEntropy.lossAndGradient(logits: logits, targets: targets, weights: weights)
        // Hard cross-entropy computed directly: -log softmax at the label.
        var hard = 0.0
        for (i, y) in labels.enumerated() {
            let row = Array(logits.data[(i * 5)..<(i * 5 + 5)]).map(Double.init)
            let lse = log(row.map { exp($0) }.reduce(0, +))
            hard += Double(weights[i]) * (lse - row[y])
        }
        XCTAssertEqual(Double(loss), hard / 4, accuracy: 1e-5)
        let eps: Float = 1e-3
        for i in [0, 3, 7, 12, 19] {
            var a = logits, b = logits
            a.data[i] += eps; b.data[i] -= eps
            let numeric = (SoftCrossEntropy.lossAndGradient(logits: a, targets: targets, weights: weights).0
                           - SoftCrossEntropy.lossAndGradient(logits: b, targets: targets, weights: weights).0) / (2 * eps)
            XCTAssertEqual(grad.data[i], numeric, accuracy: 2e-3)
        }
    }

    /// Two shards compute the same step as one: the per-shard losses and gradients,
    /// rescaled by their share of the batch, add up to the whole batch's (up to float
    /// rounding), and predictions split over shards equal unsplit ones.
    func testShardedStepsEqualOneShard() throws {
        var a = architecture()
        a.dropout = 0; a.finalSurvival = 1  // no noise: the shards' noise streams differ by design
        let config = SGDConfig(learningRate: 0.05, warmupSteps: 2, totalSteps: 10)
        let one = try Trainer(architecture: a, optimizer: config, seed: 4, shards: 1)
        let two = try Trainer(architecture: a, optimizer: config, seed: 4, shards: 2)
        XCTAssertEqual(two.shards, 2)
        for k in 0..<5 {
            let l1 = try one.step(toyBatch(k)), l2 = try two.step(toyBatch(k))
            XCTAssertEqual(l1.loss, l2.loss, accuracy: 1e-5 * max(1, abs(l1.loss)), "step \(k)")
            XCTAssertEqual(l1.correct, l2.correct)
        }
        for (p, q) in zip(one.model.parameters, two.model.parameters) {
            let worst = zip(p.value, q.value).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThan(worst, 1e-4, p.name)
        }
        let input = try Model.input(toyBatch(50))
        let worst = zip(one.predict(input), two.predict(input)).map { abs($0 - $1) }.max() ?? 1
        XCTAssertLessThan(worst, 1e-4)
    }

    /// Batch-invariant predictions (label jobs): a sample's outputs are the same bytes in
    /// a batch of 40, in every other sample's batch of 20, alone, and shifted by one row,
    /// for the MLP and the CNN on one and two shards; and they agree with OpenBLAS's to
    /// float rounding. (OpenBLAS's own do not pass the first part: measured, 17-35 of 40
    /// rows change when the batch is cut in two.)
    func testBatchInvariantPredictionsDoNotDependOnTheBatch() throws {
        for kind in ["mlp", "cnn"] {
            for shards in [1, 2] {
                var a = architecture(kind)
                a.dropout = 0; a.finalSurvival = 1; a.classes = 3
                let t = try Trainer(architecture: a, optimizer: SGDConfig(learningRate: 0.05, warmupSteps: 1, totalSteps: 2),
                                    seed: 3, shards: shards)
                var rng = SplitMix64(seed: 9)
                let n = 40, per = 64, c = 3
                let data = (0..<(n * per)).map { _ in Float(rng.next() >> 40) / Float(1 << 24) - 0.5 }
                func run(_ rows: [Int]) -> [[Float]] {
                    let x = rows.flatMap { data[($0 * per)..<(($0 + 1) * per)] }
                    let out = t.predict(Tensor(shape: [rows.count, 8, 8, 1], data: x), batchInvariant: true)
                    return (0..<rows.count).map { Array(out[($0 * c)..<(($0 + 1) * c)]) }
                }
                let full = run(Array(0..<n))
                let halves = run(stride(from: 0, to: n, by: 2).map { $0 }) + run(stride(from: 1, to: n, by: 2).map { $0 })
                let order = stride(from: 0, to: n, by: 2).map { $0 } + stride(from: 1, to: n, by: 2).map { $0 }
                for (j, r) in order.enumerated() { XCTAssertEqual(halves[j], full[r], "\(kind), \(shards) shards: sample \(r) in a half") }
                for r in [0, 17, 39] { XCTAssertEqual(run([r])[0], full[r], "\(kind): sample \(r) alone") }
                let shifted = run(Array(1..<n) + [0])
                for r in 1..<n { XCTAssertEqual(shifted[r - 1], full[r], "\(kind): sample \(r) shifted") }
                let blas = t.predict(Tensor(shape: [n, 8, 8, 1], data: data))
                let worst = zip(blas, full.flatMap { $0 }).map { abs($0 - $1) }.max() ?? 1
                XCTAssertLessThan(worst, 1e-5, "\(kind): row by row agrees with OpenBLAS to rounding")
            }
        }
    }

    func testTrainingIsDeterministicAndLearns() throws {
        let config = SGDConfig(learningRate: 0.05, warmupSteps: 5, totalSteps: 60, emaDecay: 0.9)
        let a = try Trainer(architecture: architecture(), optimizer: config, seed: 11)
        let b = try Trainer(architecture: architecture(), optimizer: config, seed: 11)
        for k in 0..<60 {
            let la = try a.step(toyBatch(k)), lb = try b.step(toyBatch(k))
            XCTAssertEqual(la.loss, lb.loss, "step \(k)")
        }
        XCTAssertEqual(a.model.parameters.map(\.value), b.model.parameters.map(\.value), "same seed, same weights")
        XCTAssertGreaterThan(try toyAccuracy(a), 0.9, "the CNN learns the toy task")
        let mlp = try Trainer(architecture: architecture("mlp"), optimizer: config, seed: 2)
        var last: Float = 0
        for k in 0..<60 { last = try mlp.step(toyBatch(k)).loss }
        XCTAssertLessThan(last, 0.5)
    }

    func testCheckpointResumesExactly() throws {
        let dir = NSTemporaryDirectory() + "noisy-ckpt-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = SGDConfig(learningRate: 0.05, warmupSteps: 3, totalSteps: 20, emaDecay: 0.9)
        let full = try Trainer(architecture: architecture(), optimizer: config, seed: 5)
        let part = try Trainer(architecture: architecture(), optimizer: config, seed: 5)
        for k in 0..<20 { try full.step(toyBatch(k)) }
        for k in 0..<8 { try part.step(toyBatch(k)) }
        let path = dir + "/m.ckpt"
        try Checkpoint.save(path: path, model: part.model, optimizer: part.optimizer, seed: 5, stream: toyBatch(7).stateAfter,
                            notes: ["epochs": "1"])
        let (header, model, optimizer) = try Checkpoint.load(path: path)
        XCTAssertEqual(header.step, 8)
        XCTAssertEqual(header.stream, toyBatch(7).stateAfter)
        XCTAssertEqual(header.notes["epochs"], "1")
        let resumed = Trainer(model: model, optimizer: optimizer, seed: header.seed)
        for k in (header.stream?.batches ?? 0)..<20 { try resumed.step(toyBatch(k)) }
        XCTAssertEqual(resumed.model.parameters.map(\.value), full.model.parameters.map(\.value),
                       "interrupted at step 8 and resumed = uninterrupted")
        XCTAssertEqual(resumed.predict(try Model.input(toyBatch(50))), full.predict(try Model.input(toyBatch(50))))
        // A damaged file is refused with a reason.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        try bytes.prefix(bytes.count - 10).write(to: URL(fileURLWithPath: dir + "/cut.ckpt"))
        XCTAssertThrowsError(try Checkpoint.load(path: dir + "/cut.ckpt")) { e in XCTAssertTrue("\(e)".contains("truncated"), "\(e)") }
    }
}

extension TrainerTests {
    func testConvReluConvGradients() {
        var r = TrainerRandom(seed: 7)
        gradientCheck([Conv3x3(2, 2, rng: &r, name: "a"), ReLU(), Conv3x3(2, 2, rng: &r, name: "b")], input: random([1, 4, 4, 2], seed: 8, scale: 0.5), eps: 1e-3)
    }

    /// The trainer takes exactly the layout the pipeline renders for it, and says so
    /// for anything else instead of converting (bytes, NCHW, another normalisation).
    func testBatchesInAnotherLayoutAreRefused() throws {
        let t = try Trainer(architecture: architecture(), optimizer: SGDConfig(learningRate: 0.05, warmupSteps: 1, totalSteps: 4), seed: 1)
        var bytes = toyBatch(0)
        bytes.images = .uint8([UInt8](repeating: 0, count: bytes.count * 64))
        bytes.layout = .uint8NHWC
        var nchw = toyBatch(0)
        nchw.layout = .float32(order: .nchw, normalization: .centred)
        var imageNet = toyBatch(0)
        imageNet.layout = .float32(order: .nhwc, normalization: .imageNet(channels: 1))
        for b in [bytes, nchw, imageNet] {
            XCTAssertThrowsError(try t.step(b)) { e in
                XCTAssertEqual((e as? TrainerError)?.kind, .inputLayout, "\(e)")
            }
            XCTAssertThrowsError(try t.predict(b))
        }
        XCTAssertNoThrow(try t.step(toyBatch(0)))
    }
}

/// Helpers shared by the trainer's test classes.
extension XCTestCase {
    func random(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
        var r = TrainerRandom(seed: seed)
        return Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in r.normal() * scale })
    }

    /// Checks dL/dx and dL/dparams of `layers` for L = sum(y * g) with a fixed random g.
    /// A small `eps` where ReLUs sit inside the checked function, so that steps rarely cross a kink.
    func gradientCheck(_ layers: [Layer], input: Tensor, eps: Float = 1e-2, file: StaticString = #filePath, line: UInt = #line) {
        func run(_ x: Tensor) -> Tensor {
            var ctx = StepContext(training: true, seed: 1)
            var h = x
            for l in layers { h = l.forward(h, &ctx) }
            return h
        }
        let y = run(input)
        let g = random(y.shape, seed: 99)
        func loss(_ x: Tensor) -> Double { zip(run(x).data, g.data).reduce(0) { $0 + Double($1.0 * $1.1) } }
        let learned = layers.flatMap(\.parameters).filter(\.isLearned)
        for p in learned { p.grad = [Float](repeating: 0, count: p.value.count) }
        _ = run(input)
        var dx = g
        for l in layers.reversed() { dx = l.backward(dx) }
        var worst = 0.0
        for i in stride(from: 0, to: input.count, by: max(1, input.count / 23)) {
            var a = input, b = input
            a.data[i] += eps; b.data[i] -= eps
            let numeric = (loss(a) - loss(b)) / Double(2 * eps)
            worst = max(worst, abs(numeric - Double(dx.data[i])) / max(1, abs(numeric)))
        }
        for p in learned {
            let analytic = p.grad
            for i in stride(from: 0, to: p.value.count, by: max(1, p.value.count / 17)) {
                let v = p.value[i]
                p.value[i] = v + eps; let up = loss(input)
                p.value[i] = v - eps; let down = loss(input)
                p.value[i] = v
                let numeric = (up - down) / Double(2 * eps)
                worst = max(worst, abs(numeric - Double(analytic[i])) / max(1, abs(numeric)))
            }
        }
        XCTAssertLessThan(worst, 2e-2, "worst relative gradient error \(worst)", file: file, line: line)
    }

    /// A toy task: class = whether the left half of the image is brighter.
    func toyBatch(_ index: Int, n: Int = 16) -> Batch {
        var r = TrainerRandom(seed: UInt64(index) &* 7919 &+ 1)
        var px = [UInt8](repeating: 0, count: n * 8 * 8)
        var targets = [Float](repeating: 0, count: n * 2)
        for i in 0..<n {
            let left = r.unit() < 0.5
            for y in 0..<8 {
                for x in 0..<8 {
                    let bright = (x < 4) == left
                    px[(i * 8 + y) * 8 + x] = UInt8(min(255, Int(r.unit() * 100) + (bright ? 120 : 0)))
                }
            }
            targets[i * 2 + (left ? 0 : 1)] = 1
        }
        return Batch(index: index, count: n, channels: 1, height: 8, width: 8,
                     images: .float32(px.map { Float($0) * (1 / 255) - 0.5 }), layout: Model.inputLayout, classCount: 2,
                     targets: targets, weights: [Float](repeating: 1, count: n), ids: (0..<n).map { UInt64($0) },
                     origins: [SampleOrigin](repeating: .labeled, count: n),
                     stateAfter: StreamState(labeled: SamplerState(seed: 0, epoch: 0, position: index + 1), batches: index + 1))
    }

    /// Accuracy on four held-out toy batches (64 samples), without noise.
    func toyAccuracy(_ t: Trainer) throws -> Double {
        var eval = Evaluation(classes: 2)
        for k in 100..<104 {
            let batch = toyBatch(k)
            eval.add(probabilities: try t.predict(batch), labels: (0..<batch.count).map { batch.argmaxTarget($0) })
        }
        return eval.accuracy
    }

    func architecture(_ kind: String = "cnn") -> Architecture {
        Architecture(kind: kind, width: 0.5, depth: 1, height: 8, imageWidth: 8, channels: 1, classes: 2,
                     dropout: 0.2, finalSurvival: 0.8)
    }
}
