import Foundation

/// SGD with momentum (optionally Nesterov) and decoupled-from-bias weight decay,
/// with a linear warm-up then cosine decay of the learning rate.
public struct SGDConfig: Codable, Sendable, Equatable {
    public var learningRate: Double
    public var momentum: Double
    public var nesterov: Bool
    public var weightDecay: Double
    public var warmupSteps: Int
    public var totalSteps: Int
    /// EMA of the weights for evaluation and labelling (0: off).
    public var emaDecay: Double

    public init(learningRate: Double = 0.05, momentum: Double = 0.9, nesterov: Bool = true, weightDecay: Double = 5e-4,
                warmupSteps: Int = 100, totalSteps: Int, emaDecay: Double = 0) {
        self.learningRate = learningRate; self.momentum = momentum; self.nesterov = nesterov
        self.weightDecay = weightDecay; self.warmupSteps = warmupSteps; self.totalSteps = totalSteps; self.emaDecay = emaDecay
    }

    /// The learning rate at `step` (0-based).
    public func rate(at step: Int) -> Double {
        if step < warmupSteps { return learningRate * Double(step + 1) / Double(max(1, warmupSteps)) }
        let t = Double(step - warmupSteps) / Double(max(1, totalSteps - warmupSteps))
        return learningRate * 0.5 * (1 + cos(Double.pi * min(1, t)))
    }
}

public final class SGD {
    public let config: SGDConfig
    public private(set) var step = 0
    let parameters: [Parameter]
    /// EMA copies, in parameter order (empty when off).
    var ema: [[Float]]

    public init(parameters: [Parameter], config: SGDConfig) {
        self.parameters = parameters
        self.config = config
        ema = config.emaDecay > 0 ? parameters.map(\.value) : []
    }

    func restore(step: Int, ema: [[Float]]) { self.step = step; self.ema = ema }

    /// Applies the accumulated gradients and clears them.
    public func update() {
        let lr = Float(config.rate(at: step)), mu = Float(config.momentum), wd = Float(config.weightDecay)
        let nesterov = config.nesterov
        for p in parameters {
            if case .runningAverage(let momentum) = p.role {
                blend(p, momentum: momentum)
                continue
            }
            let decay = p.decays ? wd : 0
            // Move the arrays out of the class for the loop: no exclusivity checks per element.
            var value = p.value, grad = p.grad, velocity = p.velocity
            p.value = []; p.grad = []; p.velocity = []
            value.withUnsafeMutableBufferPointer { v in
                grad.withUnsafeMutableBufferPointer { g in
                    velocity.withUnsafeMutableBufferPointer { m in
                        for i in 0..<v.count {
                            let gi = g[i] + decay * v[i]
                            m[i] = mu * m[i] + gi
                            v[i] -= lr * (nesterov ? gi + mu * m[i] : m[i])
                            g[i] = 0
                        }
                    }
                }
            }
            p.value = value; p.grad = grad; p.velocity = velocity
        }
        if !ema.isEmpty {
            let d = Float(min(config.emaDecay, Double(1 + step) / Double(10 + step)))
            var averaged = ema
            ema = []
            for (k, p) in parameters.enumerated() {
                averaged[k].withUnsafeMutableBufferPointer { e in
                    p.value.withUnsafeBufferPointer { v in for i in 0..<e.count { e[i] = d * e[i] + (1 - d) * v[i] } }
                }
            }
            ema = averaged
        }
        step += 1
    }

    /// value = (1 - momentum) * value + momentum * this step's measurement, when the
    /// forward pass made one (a block that stochastic depth dropped did not).
    private func blend(_ p: Parameter, momentum: Float) {
        if p.observedRows > 0 {
            var value = p.value
            p.value = []
            value.withUnsafeMutableBufferPointer { v in
                p.grad.withUnsafeBufferPointer { g in for i in 0..<v.count { v[i] += momentum * (g[i] - v[i]) } }
            }
            p.value = value
        }
        // The measurement left in `grad` counts for nothing once no rows stand behind it.
        p.observedRows = 0
    }

    /// Runs `body` with the EMA weights in place of the live ones (evaluation, labelling).
    public func withAveragedWeights<T>(_ body: () throws -> T) rethrows -> T {
        guard !ema.isEmpty else { return try body() }
        let live = parameters.map(\.value)
        for (k, p) in parameters.enumerated() { p.value = ema[k] }
        defer { for (k, p) in parameters.enumerated() { p.value = live[k] } }
        return try body()
    }
}
