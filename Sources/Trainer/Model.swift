import Batches
import Foundation

/// What a model is: enough to rebuild it from a checkpoint.
public struct Architecture: Codable, Sendable, Equatable {
    /// mlp or cnn.
    public var kind: String
    /// Multiplies every layer's width (a student can be wider than its teacher).
    public var width: Double
    /// MLP: hidden layers. CNN: residual blocks per stage.
    public var depth: Int
    public var height: Int
    public var imageWidth: Int
    public var channels: Int
    public var classes: Int
    /// Dropout before the classifier.
    public var dropout: Double
    /// Stochastic depth: survival of the last residual block (linear from 1).
    public var finalSurvival: Double
    /// Batch normalisation after every convolution (CNN) or hidden dense layer (MLP).
    public var batchNorm: Bool

    public init(kind: String, width: Double = 1, depth: Int = 1, height: Int, imageWidth: Int, channels: Int, classes: Int,
                dropout: Double = 0, finalSurvival: Double = 1, batchNorm: Bool = false) {
        self.kind = kind; self.width = width; self.depth = depth; self.height = height; self.imageWidth = imageWidth
        self.channels = channels; self.classes = classes; self.dropout = dropout; self.finalSurvival = finalSurvival
        self.batchNorm = batchNorm
    }

    enum CodingKeys: String, CodingKey {
        case kind, width, depth, height, imageWidth, channels, classes, dropout, finalSurvival, batchNorm
    }

    /// Checkpoints written before batch normalisation existed have no `batch_norm`: false.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        kind = try c.decode(String.self, forKey: .kind)
        width = try c.decode(Double.self, forKey: .width)
        depth = try c.decode(Int.self, forKey: .depth)
        height = try c.decode(Int.self, forKey: .height)
        imageWidth = try c.decode(Int.self, forKey: .imageWidth)
        channels = try c.decode(Int.self, forKey: .channels)
        classes = try c.decode(Int.self, forKey: .classes)
        dropout = try c.decode(Double.self, forKey: .dropout)
        finalSurvival = try c.decode(Double.self, forKey: .finalSurvival)
        batchNorm = try c.decodeIfPresent(Bool.self, forKey: .batchNorm) ?? false
    }
}

/// A sequential network built from an architecture and a seed.
public final class Model {
    public let architecture: Architecture
    let layers: [Layer]

    public init(_ a: Architecture, seed: UInt64) throws {
        guard ["mlp", "cnn"].contains(a.kind) else { throw TrainerError(.architecture, "model must be mlp or cnn (got \(a.kind))") }
        guard a.width > 0, a.depth >= 0, a.classes >= 2 else { throw TrainerError(.architecture, "width must be > 0, depth >= 0, classes >= 2") }
        guard a.kind == "mlp" || (a.height >= 4 && a.imageWidth >= 4) else {
            throw TrainerError(.architecture, "the CNN pools twice: images must be at least 4x4 (got \(a.height)x\(a.imageWidth))")
        }
        architecture = a
        var rng = TrainerRandom(seed: seed)
        var l: [Layer] = []
        func w(_ base: Int) -> Int { max(1, Int((Double(base) * a.width).rounded())) }
        if a.kind == "mlp" {
            var inputs = a.height * a.imageWidth * a.channels
            l.append(Flatten())
            for i in 0..<max(1, a.depth) {
                l.append(Dense(inputs, w(256), rng: &rng, name: "fc\(i)"))
                if a.batchNorm { l.append(BatchNorm(w(256), name: "fc\(i).bn")) }
                l.append(ReLU())
                inputs = w(256)
            }
            l.append(Dropout(Float(a.dropout)))
            l.append(Dense(inputs, a.classes, rng: &rng, name: "classifier"))
        } else {
            let c1 = w(16), c2 = w(32)
            let blocks = 2 * a.depth
            var block = 0
            func survival() -> Float {
                block += 1
                return Float(1 - (1 - a.finalSurvival) * Double(block) / Double(max(1, blocks)))
            }
            let bn = a.batchNorm
            let stem = Conv3x3(a.channels, c1, bias: !bn, rng: &rng, name: "stem")
            stem.needsInputGradient = false
            l.append(stem)
            if bn { l.append(BatchNorm(c1, name: "stem.bn")) }
            l.append(ReLU())
            for i in 0..<a.depth {
                l.append(Residual(channels: c1, survival: survival(), batchNorm: bn, rng: &rng, name: "s1.b\(i)")); l.append(ReLU())
            }
            l.append(MaxPool2())
            l.append(Conv3x3(c1, c2, bias: !bn, rng: &rng, name: "conv2"))
            if bn { l.append(BatchNorm(c2, name: "conv2.bn")) }
            l.append(ReLU())
            for i in 0..<a.depth {
                l.append(Residual(channels: c2, survival: survival(), batchNorm: bn, rng: &rng, name: "s2.b\(i)")); l.append(ReLU())
            }
            l.append(MaxPool2())
            l.append(Flatten())
            l.append(Dense((a.height / 4) * (a.imageWidth / 4) * c2, w(128), rng: &rng, name: "fc")); l.append(ReLU())
            l.append(Dropout(Float(a.dropout)))
            l.append(Dense(w(128), a.classes, rng: &rng, name: "classifier"))
        }
        layers = Model.poolingBeforeReLU(l)
    }

    /// ReLU then max-pool equals max-pool then ReLU (ReLU is monotonic), and the
    /// second order does the ReLU, forward and backward, on a quarter of the values.
    /// Neither layer has parameters, so checkpoints are the same either way.
    private static func poolingBeforeReLU(_ layers: [Layer]) -> [Layer] {
        var l = layers
        for i in l.indices.dropLast() where l[i] is ReLU && l[i + 1] is MaxPool2 { l.swapAt(i, i + 1) }
        return l
    }

    public var parameters: [Parameter] { layers.flatMap(\.parameters) }
    /// Learned values (running statistics excluded, as PyTorch counts).
    public var parameterCount: Int { parameters.filter(\.isLearned).reduce(0) { $0 + $1.value.count } }

    /// Logits [N, classes].
    public func forward(_ x: Tensor, _ ctx: inout StepContext) -> Tensor {
        var h = x
        for layer in layers { h = layer.forward(h, &ctx) }
        return h
    }

    public func backward(_ dLogits: Tensor) {
        var g = dLogits
        for layer in layers.reversed() { g = layer.backward(g) }
    }

    /// The layout every batch must have: NHWC floats, v / 255 - 0.5. The pipeline
    /// renders exactly this (`OutputLayout.float32NHWC(.centred)`), so the trainer
    /// neither transposes nor re-normalises.
    public static let inputLayout = ImageLayout.float32(order: .nhwc, normalization: .centred)

    /// A batch's images as the model's input: the batch's own floats, no copy.
    public static func input(_ b: Batch) throws(TrainerError) -> Tensor {
        guard b.layout == inputLayout, case .float32(let f) = b.images, f.count == b.count * b.height * b.width * b.channels else {
            throw TrainerError(.inputLayout, "the trainer takes float32 NHWC images normalised as v/255 - 0.5; this batch is \(b.layout)")
        }
        return Tensor(shape: [b.count, b.height, b.width, b.channels], data: f)
    }
}

/// Why training could not go on, with a one-line reason in the trainer's words.
public struct TrainerError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// An architecture that cannot be built (input too small, no classes).
        case architecture
        /// A batch whose shape or layout the model does not take.
        case inputLayout
        /// The loss became NaN or infinite.
        case diverged
        /// A checkpoint that cannot be read or does not fit.
        case checkpoint
        /// Reading or writing a file failed.
        case io
    }
    public let kind: Kind
    public let description: String
    public init(_ kind: Kind, _ d: String) { self.kind = kind; description = d }
}

/// Cross-entropy against soft targets, weighted per sample, averaged over the batch
/// (the paper's joint loss: labeled and pseudo-labeled samples in one mean).
public enum SoftCrossEntropy {
    /// Returns the loss and dLoss/dLogits.
    public static func lossAndGradient(logits: Tensor, targets: [Float], weights: [Float]) -> (Float, Tensor) {
        let n = logits.batch, c = logits.perSample
        var grad = [Float](repeating: 0, count: n * c)
        var total: Double = 0
        for i in 0..<n {
            let row = i * c
            var m = logits.data[row]
            for j in 1..<c { m = max(m, logits.data[row + j]) }
            var sum: Double = 0
            for j in 0..<c { sum += Double(expf(logits.data[row + j] - m)) }
            let logSum = Float(log(sum)) + m
            var ce: Float = 0
            for j in 0..<c {
                let logp = logits.data[row + j] - logSum
                ce -= targets[row + j] * logp
                grad[row + j] = weights[i] * (expf(logp) - targets[row + j]) / Float(n)
            }
            total += Double(weights[i] * ce)
        }
        return (Float(total / Double(n)), Tensor(shape: logits.shape, data: grad))
    }
}
