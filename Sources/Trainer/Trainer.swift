import Batches
import Foundation

/// One model, its optimiser and the noise seed: steps over batches, predicts
/// without noise. Deterministic for a given seed and BLAS thread count.
public final class Trainer {
    public let model: Model
    public let optimizer: SGD
    public let seed: UInt64

    public init(model: Model, optimizer: SGD, seed: UInt64) {
        self.model = model; self.optimizer = optimizer; self.seed = seed
    }

    public convenience init(architecture: Architecture, optimizer config: SGDConfig, seed: UInt64) throws {
        let model = try Model(architecture, seed: seed)
        self.init(model: model, optimizer: SGD(parameters: model.parameters, config: config), seed: seed)
    }

    /// One optimisation step. Returns the batch loss and how many samples' argmax
    /// matched their target's argmax.
    @discardableResult
    public func step(_ batch: Batch) throws -> (loss: Float, correct: Int) {
        try check(batch)
        var ctx = StepContext(training: true, seed: seed ^ (UInt64(optimizer.step) &* 0x9E37_79B9_7F4A_7C15))
        let logits = model.forward(Model.input(batch), &ctx)
        let (loss, grad) = SoftCrossEntropy.lossAndGradient(logits: logits, targets: batch.targets, weights: batch.weights)
        guard loss.isFinite else { throw TrainerError("the loss diverged (\(loss)) at step \(optimizer.step); lower --lr") }
        model.backward(grad)
        optimizer.update()
        var correct = 0
        let c = batch.classCount
        for i in 0..<batch.count where argmax(logits.data, i * c, c) == batch.argmaxTarget(i) { correct += 1 }
        return (loss, correct)
    }

    /// Class probabilities [N, C] without noise (EMA weights when kept).
    public func predict(_ input: Tensor) -> [Float] {
        optimizer.withAveragedWeights {
            var ctx = StepContext(training: false, seed: 0)
            let logits = model.forward(input, &ctx)
            let c = logits.perSample
            var out = logits.data
            for i in 0..<logits.batch {
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
            throw TrainerError("batch is \(b.height)x\(b.width)x\(b.channels) with \(b.classCount) classes; the model takes \(a.height)x\(a.imageWidth)x\(a.channels) with \(a.classes)")
        }
    }
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
