import Batches
import KeyedRandom
import Parallelism
import Foundation
import Dispatch

/// One model, its optimiser and the noise seed: steps over batches, predicts
/// without noise.
///
/// Every batch is cut into `shards` contiguous parts (2 by default), each run
/// forward and backward by its own replica of the model on its own thread, and
/// the replicas' gradients are summed in shard order before the update. The
/// arithmetic depends on the shard count only, never on how many cores run the
/// shards, so results are the same on one core or two; on two cores a step takes
/// about 60% of the time of one unsharded pass (the element-wise work and the
/// GEMM packing, which one BLAS call keeps on one core, now run in parallel).
public final class Trainer {
    public let model: Model
    public let optimizer: SGD
    public let seed: UInt64
    /// Replicas of `model` for shards 1..<shards (shard 0 is `model` itself).
    private let replicas: [Model]

    public init(model: Model, optimizer: SGD, seed: UInt64, shards: Int = 2) {
        self.model = model; self.optimizer = optimizer; self.seed = seed
        // The architecture built once already, so a replica cannot fail to build.
        replicas = (1..<max(1, shards)).compactMap { _ in try? Model(model.architecture, seed: 0) }
    }

    public convenience init(architecture: Architecture, optimizer config: SGDConfig, seed: UInt64, shards: Int = 2) throws {
        let model = try Model(architecture, seed: seed)
        self.init(model: model, optimizer: SGD(parameters: model.parameters, config: config), seed: seed, shards: shards)
    }

    public var shards: Int { replicas.count + 1 }

    /// Row ranges of the shards of an n-row batch (contiguous, sizes differ by at most one).
    private func shardRanges(_ n: Int) -> [Range<Int>] {
        let s = min(shards, max(1, n))
        return (0..<s).map { k in (k * n / s)..<((k + 1) * n / s) }
    }

    private func model(forShard k: Int) -> Model { k == 0 ? model : replicas[k - 1] }

    /// Copies the live weights into the replicas that will run.
    private func syncReplicas(_ count: Int) {
        guard count > 1 else { return }
        let live = model.parameters
        for r in replicas.prefix(count - 1) {
            for (dst, src) in zip(r.parameters, live) { dst.value = src.value }
        }
    }

    /// One optimisation step. Returns the batch loss and how many samples' argmax
    /// matched their target's argmax.
    @discardableResult
    public func step(_ batch: Batch) throws -> (loss: Float, correct: Int) {
        try check(batch)
        let input = try Model.input(batch)
        let n = batch.count, c = batch.classCount
        let ranges = shardRanges(n)
        syncReplicas(ranges.count)
        let results = ConcurrentSlots<(loss: Float, correct: Int)>(count: ranges.count, initial: (0, 0))
        let step = UInt64(optimizer.step), seed = self.seed
        let work = ShardWork(self)
        results.forEachWorker { k in
            let trainer = work.trainer
            let r = ranges[k]
            let m = trainer.model(forShard: k)
            // Shard 0 keeps the unsharded noise stream; others get their own.
            var ctx = StepContext(training: true, seed: seed ^ (step &* splitMix64Gamma) ^ (UInt64(k) &* 0xD1B5_4A32_D192_ED03))
            let logits = m.forward(input.rows(r), &ctx)
            let targets = Array(batch.targets[(r.lowerBound * c)..<(r.upperBound * c)])
            let weights = Array(batch.weights[r])
            // The shard's mean, rescaled so that the shards sum to the batch mean.
            var (loss, grad) = SoftCrossEntropy.lossAndGradient(logits: logits, targets: targets, weights: weights)
            let share = Float(r.count) / Float(n)
            grad.scale(by: share)
            m.backward(grad)
            var correct = 0
            for i in 0..<r.count where argmax(logits.data, i * c, c) == batch.argmaxTarget(r.lowerBound + i) { correct += 1 }
            loss *= share
            results[k] = (loss, correct)
        }
        let loss = results.values.reduce(0) { $0 + $1.loss }
        guard loss.isFinite else { throw TrainerError(.diverged, "the loss diverged (\(loss)) at step \(optimizer.step); a lower learning rate may help") }
        // Sum the replicas' gradients into the live ones, in shard order, and clear them.
        let live = model.parameters
        for k in 1..<ranges.count {
            for (dst, src) in zip(live, model(forShard: k).parameters) {
                dst.accumulate(from: src)
                // The replica shared the live array since `syncReplicas`; letting go of it
                // lets the update write in place instead of copying every weight first.
                src.value = []
            }
        }
        optimizer.update()
        return (loss, results.values.reduce(0) { $0 + $1.correct })
    }

    /// Class probabilities [N, C] without noise (EMA weights when kept), the rows
    /// split over the shards like a training batch.
    /// Class probabilities [N, C] for a batch's images (see `predict(_:)` on a tensor).
    /// - Parameter batchInvariant: compute every matrix product row by row, so that a
    ///   sample's prediction does not depend on which samples share its batch (label jobs,
    ///   whose parts batch a split differently; slower than OpenBLAS).
    public func predict(_ batch: Batch, batchInvariant: Bool = false) throws -> [Float] {
        try check(batch)
        return predict(try Model.input(batch), batchInvariant: batchInvariant)
    }

    public func predict(_ input: Tensor, batchInvariant: Bool = false) -> [Float] {
        optimizer.withAveragedWeights {
            let ranges = shardRanges(input.batch)
            syncReplicas(ranges.count)
            let outputs = ConcurrentSlots<[Float]>(count: ranges.count, initial: [])
            let work = ShardWork(self)
            outputs.forEachWorker { k in
                var ctx = StepContext(training: false, seed: 0)
                ctx.batchInvariant = batchInvariant
                outputs[k] = work.trainer.model(forShard: k).forward(input.rows(ranges[k]), &ctx).data
            }
            var out = outputs.values.flatMap { $0 }
            let c = out.count / max(1, input.batch)
            for i in 0..<input.batch {
                let row = i * c
                var m = out[row]
                for j in 1..<c { m = max(m, out[row + j]) }
                var s: Float = 0
                for j in 0..<c { out[row + j] = expf(out[row + j] - m); s += out[row + j] }
                for j in 0..<c { out[row + j] /= s }
            }
            return out
        }
    }

    private func check(_ b: Batch) throws {
        let a = model.architecture
        guard b.classCount == a.classes, b.height == a.height, b.width == a.imageWidth, b.channels == a.channels else {
            throw TrainerError(.inputLayout, "batch is \(b.height)x\(b.width)x\(b.channels) with \(b.classCount) classes; the model takes \(a.height)x\(a.imageWidth)x\(a.channels) with \(a.classes)")
        }
    }
}

/// The trainer handed to the shard threads. `@unchecked Sendable` because shard k
/// touches only replica k's layers and parameters (shard 0: the live model), and
/// reads the shared input, which nobody writes while the shards run.
private final class ShardWork: @unchecked Sendable {
    let trainer: Trainer
    init(_ t: Trainer) { trainer = t }
}

func argmax(_ v: [Float], _ offset: Int, _ n: Int) -> Int {
    var best = 0
    for j in 1..<n where v[offset + j] > v[offset + best] { best = j }
    return best
}

/// Accuracy, per-class accuracy and the confusion matrix of predictions.
public struct Evaluation: Codable, Sendable {
    public var samples: Int
    public var accuracy: Double
    public var perClassAccuracy: [Double]
    /// confusion[true][predicted].
    public var confusion: [[Int]]

    public init(classes: Int) {
        samples = 0; accuracy = 0
        perClassAccuracy = [Double](repeating: 0, count: classes)
        confusion = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
    }

    public mutating func add(probabilities p: [Float], labels: [Int]) {
        let c = confusion.count
        for (i, y) in labels.enumerated() {
            confusion[y][argmax(p, i * c, c)] += 1
            samples += 1
        }
        let right = (0..<c).reduce(0) { $0 + confusion[$1][$1] }
        accuracy = samples > 0 ? Double(right) / Double(samples) : 0
        perClassAccuracy = (0..<c).map { k in
            let n = confusion[k].reduce(0, +)
            return n > 0 ? Double(confusion[k][k]) / Double(n) : 0
        }
    }
}
