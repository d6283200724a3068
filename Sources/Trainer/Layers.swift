import Foundation
internal import CTensorKernels

/// An array a model keeps: learned (weights, biases) with its gradient and optimiser
/// state, or a running average the forward pass measures (batch normalisation's
/// statistics), which lives beside the weights so that checkpoints, replicas and the
/// EMA carry it with them.
public final class Parameter {
    public enum Role: Sendable, Equatable {
        /// Learned, with weight decay.
        case weight
        /// Learned, without weight decay (biases, batch-norm scales and shifts).
        case bias
        /// Not learned: value = (1 - momentum) * value + momentum * this step's measurement.
        /// A training forward pass records its measurement in `grad` and the rows it
        /// covered in `observedRows`; the shards' measurements merge weighted by rows
        /// (`accumulate`), and the optimiser's update blends them in.
        case runningAverage(momentum: Float)
    }
    public let name: String
    public let role: Role
    public var value: [Float]
    public var grad: [Float]
    public var velocity: [Float]
    /// Rows behind the measurement in `grad` (running averages; 0: none this step, as
    /// when stochastic depth dropped the block).
    var observedRows = 0

    public init(name: String, value: [Float], role: Role) {
        self.name = name; self.value = value; self.role = role
        grad = [Float](repeating: 0, count: value.count)
        velocity = [Float](repeating: 0, count: value.count)
    }

    public convenience init(name: String, value: [Float], decays: Bool) {
        self.init(name: name, value: value, role: decays ? .weight : .bias)
    }

    /// Weight decay applies (weights yes, biases no).
    public var decays: Bool { role == .weight }
    /// The optimiser learns it (weights and biases; not running averages).
    public var isLearned: Bool {
        if case .runningAverage = role { return false }
        return true
    }

    /// Records a training step's measurement of a running average.
    func observe(_ measurement: [Float], rows: Int) {
        grad = measurement
        observedRows = rows
    }

    /// A shard's gradient into the live one: grad += other.grad, and other.grad = 0.
    /// Running averages merge the measurements instead, weighted by their rows.
    func accumulate(from other: Parameter) {
        var mine = grad, theirs = other.grad
        grad = []; other.grad = []
        let weights: (Float, Float)? = isLearned ? nil : {
            let total = observedRows + other.observedRows
            return total > 0 ? (Float(observedRows) / Float(total), Float(other.observedRows) / Float(total)) : (1, 0)
        }()
        mine.withUnsafeMutableBufferPointer { m in
            theirs.withUnsafeMutableBufferPointer { t in
                if let (a, b) = weights {
                    for i in 0..<m.count { m[i] = a * m[i] + b * t[i]; t[i] = 0 }
                } else {
                    for i in 0..<m.count { m[i] += t[i]; t[i] = 0 }
                }
            }
        }
        grad = mine; other.grad = theirs
        observedRows += other.observedRows
        other.observedRows = 0
    }
}

/// Per-step context: training or evaluation, and the noise generator.
public struct StepContext {
    public var training: Bool
    public var rng: TrainerRandom
    /// Matrix products row by row (`rowGEMM`): a sample's outputs then do not depend on
    /// the batch it is in. Slower; for predictions that must not depend on batching.
    public var batchInvariant = false
    public init(training: Bool, seed: UInt64) { self.training = training; rng = TrainerRandom(seed: seed) }
}

/// c[m x n] += a[m x k] * b[k x n] (row-major): OpenBLAS, or row by row when the
/// context asks for batch-invariant results.
@inline(__always)
func forwardGEMM(_ ctx: StepContext, m: Int, n: Int, k: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                 _ c: UnsafeMutablePointer<Float>) {
    if ctx.batchInvariant {
        tk_gemm_rows(a, m, k, b, n, c)
    } else {
        gemm(false, false, m: m, n: n, k: k, a, lda: k, b, ldb: n, beta: 1, c, ldc: n)
    }
}

/// a[m x k] * b[k x n] into a new array: OpenBLAS writes every element (beta 0), so
/// the array skips its zero fill; the row-by-row product adds, so it starts from zeros.
func productGEMM(_ ctx: StepContext, m: Int, n: Int, k: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>) -> [Float] {
    if ctx.batchInvariant {
        var c = [Float](repeating: 0, count: m * n)
        tk_gemm_rows(a, m, k, b, n, &c)
        return c
    }
    var c = uninitializedFloats(m * n)
    gemm(false, false, m: m, n: n, k: k, a, lda: k, b, ldb: n, beta: 0, &c, ldc: n)
    return c
}

/// A layer keeps what its backward pass needs from the last forward pass.
public protocol Layer: AnyObject {
    func forward(_ x: Tensor, _ ctx: inout StepContext) -> Tensor
    /// Gradient w.r.t. the input; accumulates parameter gradients.
    func backward(_ dy: Tensor) -> Tensor
    var parameters: [Parameter] { get }
}

extension Layer {
    public var parameters: [Parameter] { [] }
}

/// He-normal initial weights.
func heInit(_ count: Int, fanIn: Int, rng: inout TrainerRandom) -> [Float] {
    let std = (2 / Float(fanIn)).squareRoot()
    return (0..<count).map { _ in rng.normal() * std }
}

/// y = x W + b over the last dimension: [N, in] -> [N, out].
public final class Dense: Layer {
    let inputs: Int, outputs: Int
    let w: Parameter, b: Parameter
    private var x = Tensor(zeros: [0])

    public init(_ inputs: Int, _ outputs: Int, rng: inout TrainerRandom, name: String) {
        self.inputs = inputs; self.outputs = outputs
        w = Parameter(name: name + ".w", value: heInit(inputs * outputs, fanIn: inputs, rng: &rng), decays: true)
        b = Parameter(name: name + ".b", value: [Float](repeating: 0, count: outputs), decays: false)
    }

    public var parameters: [Parameter] { [w, b] }

    public func forward(_ input: Tensor, _ ctx: inout StepContext) -> Tensor {
        x = input
        let n = input.batch
        var y = [Float](repeating: 0, count: n * outputs)
        fillRows(&y, rows: n, with: b.value)
        forwardGEMM(ctx, m: n, n: outputs, k: inputs, x.data, w.value, &y)
        return Tensor(shape: [n, outputs], data: y)
    }

    public func backward(_ dy: Tensor) -> Tensor {
        let n = dy.batch
        gemm(true, false, m: inputs, n: outputs, k: n, x.data, lda: inputs, dy.data, ldb: outputs, beta: 1, &w.grad, ldc: outputs)
        sumRows(dy.data, rows: n, into: &b.grad)
        var dx = uninitializedFloats(n * inputs)  // beta 0: the product writes every element
        gemm(false, true, m: n, n: inputs, k: outputs, dy.data, lda: outputs, w.value, ldb: outputs, beta: 0, &dx, ldc: inputs)
        return Tensor(shape: x.shape, data: dx)
    }
}

/// 3x3 convolution, stride 1, zero padding 1, NHWC.
///
/// Two ways to compute it, chosen per layer by shape (`directSupported`):
/// - **direct** (`conv3x3.c`: AVX2 + FMA, or AVX-512 with the same bits) for the
///   residual blocks' convolutions, as many channels in as out, at most 32 and a
///   multiple of 8: the input is copied once into a zero-bordered image and each
///   kernel sums taps and channels in registers. There the GEMM below is a tall
///   product only 16-32 columns wide, which OpenBLAS spends as long packing as
///   multiplying; direct, the deeper student (`--student-width 1 --student-depth 1`)
///   trains 1.35x as fast with AVX2 (BENCHMARKS.md, "Direct convolutions").
/// - **im2col + GEMM** otherwise: one GEMM of the im2col matrix [N*H*W, 9*Cin] by
///   the weights [9*Cin, Cout]. For the stem and the stage convolutions (1 -> 16,
///   16 -> 32, 32 -> 64 in the demo's models) it is as fast or faster, and keeping
///   them on it leaves models without residual blocks computing exactly as before.
public final class Conv3x3: Layer {
    let cin: Int, cout: Int
    let w: Parameter
    /// nil when batch normalisation follows (its shift makes a bias redundant).
    let b: Parameter?
    /// The first layer's input gradient is never used: skipping it saves a GEMM and a col2im.
    var needsInputGradient = true
    /// The direct kernels run this layer (see the type's comment).
    let direct: Bool
    /// Reused between steps: the im2col matrix (kept for the weight gradient) and its
    /// gradient, or the direct path's zero-bordered input and output gradient.
    private var cols: [Float] = []
    private var dcols: [Float] = []
    private var inShape: [Int] = []

    public init(_ cin: Int, _ cout: Int, bias: Bool = true, rng: inout TrainerRandom, name: String) {
        self.cin = cin; self.cout = cout
        w = Parameter(name: name + ".w", value: heInit(9 * cin * cout, fanIn: 9 * cin, rng: &rng), decays: true)
        b = bias ? Parameter(name: name + ".b", value: [Float](repeating: 0, count: cout), decays: false) : nil
        direct = Conv3x3.directSupported(cin: cin, cout: cout)
    }

    /// Square convolutions of 8-32 channels (in steps of 8) on a CPU with AVX2 and FMA.
    static func directSupported(cin: Int, cout: Int) -> Bool {
        cin == cout && cout <= 32 && tk_conv3x3_direct_supported(cin, cout) != 0
    }

    public var parameters: [Parameter] { b.map { [w, $0] } ?? [w] }

    public func forward(_ x: Tensor, _ ctx: inout StepContext) -> Tensor {
        let (n, h, wd) = (x.shape[0], x.shape[1], x.shape[2])
        inShape = x.shape
        let k = 9 * cin, rows = n * h * wd
        var out: [Float]
        if direct {
            // Per-pixel sums in a fixed order: batch-invariant without `ctx.batchInvariant`.
            let padded = n * (h + 2) * (wd + 2) * cin
            if cols.count != padded { cols = uninitializedFloats(padded) }
            x.data.withUnsafeBufferPointer { src in
                cols.withUnsafeMutableBufferPointer { p in tk_pad1(src.baseAddress, n, h, wd, cin, p.baseAddress) }
            }
            // The kernel starts each sum from the bias (or zero) and overwrites every output.
            out = uninitializedFloats(rows * cout)
            cols.withUnsafeBufferPointer { p in
                out.withUnsafeMutableBufferPointer { o in
                    if let b {
                        b.value.withUnsafeBufferPointer { bp in
                            tk_conv3x3_forward(p.baseAddress, n, h, wd, cin, w.value, cout, bp.baseAddress, o.baseAddress)
                        }
                    } else {
                        tk_conv3x3_forward(p.baseAddress, n, h, wd, cin, w.value, cout, nil, o.baseAddress)
                    }
                }
            }
            return Tensor(shape: [n, h, wd, cout], data: out)
        }
        if cols.count != rows * k { cols = [Float](repeating: 0, count: rows * k) }
        x.data.withUnsafeBufferPointer { src in
            cols.withUnsafeMutableBufferPointer { col in tk_im2col3x3(src.baseAddress, n, h, wd, cin, col.baseAddress) }
        }
        if let b {
            out = uninitializedFloats(rows * cout)
            fillRows(&out, rows: rows, with: b.value)
            forwardGEMM(ctx, m: rows, n: cout, k: k, cols, w.value, &out)
        } else {
            out = productGEMM(ctx, m: rows, n: cout, k: k, cols, w.value)
        }
        return Tensor(shape: [n, h, wd, cout], data: out)
    }

    public func backward(_ dy: Tensor) -> Tensor {
        let (n, h, wd) = (inShape[0], inShape[1], inShape[2])
        let k = 9 * cin, rows = n * h * wd
        if direct {
            cols.withUnsafeBufferPointer { p in
                dy.data.withUnsafeBufferPointer { g in tk_conv3x3_weight_grad(p.baseAddress, n, h, wd, cin, g.baseAddress, cout, &w.grad) }
            }
        } else {
            gemm(true, false, m: k, n: cout, k: rows, cols, lda: k, dy.data, ldb: cout, beta: 1, &w.grad, ldc: cout)
        }
        if let b { sumRows(dy.data, rows: rows, into: &b.grad) }
        guard needsInputGradient else { return Tensor(zeros: [0]) }
        if direct {
            let padded = n * (h + 2) * (wd + 2) * cout
            if dcols.count != padded { dcols = uninitializedFloats(padded) }
            var flipped = uninitializedFloats(9 * cin * cout)
            tk_conv3x3_flip(w.value, cin, cout, &flipped)
            var dx = uninitializedFloats(n * h * wd * cin)
            dy.data.withUnsafeBufferPointer { g in
                dcols.withUnsafeMutableBufferPointer { p in
                    tk_pad1(g.baseAddress, n, h, wd, cout, p.baseAddress)
                    dx.withUnsafeMutableBufferPointer { o in
                        tk_conv3x3_forward(p.baseAddress, n, h, wd, cout, flipped, cin, nil, o.baseAddress)
                    }
                }
            }
            return Tensor(shape: inShape, data: dx)
        }
        if dcols.count != rows * k { dcols = [Float](repeating: 0, count: rows * k) }
        gemm(false, true, m: rows, n: k, k: cout, dy.data, lda: cout, w.value, ldb: cout, beta: 0, &dcols, ldc: k)
        var dx = [Float](repeating: 0, count: n * h * wd * cin)
        dcols.withUnsafeBufferPointer { d in
            dx.withUnsafeMutableBufferPointer { o in tk_col2im3x3_add(d.baseAddress, n, h, wd, cin, o.baseAddress) }
        }
        return Tensor(shape: inShape, data: dx)
    }
}

/// An array whose every element the caller overwrites (skips the zero fill).
@inline(__always)
func uninitializedFloats(_ count: Int) -> [Float] {
    [Float](unsafeUninitializedCapacity: count) { buf, initialized in
        // Float is trivial: leaving the bytes as they are is defined; callers overwrite them all.
        initialized = count
    }
}

public final class ReLU: Layer {
    private var output: [Float] = []
    public init() {}
    public func forward(_ x: Tensor, _ ctx: inout StepContext) -> Tensor {
        let n = x.count
        var y = uninitializedFloats(n)
        y.withUnsafeMutableBufferPointer { yp in
            x.data.withUnsafeBufferPointer { xp in tk_relu(xp.baseAddress, yp.baseAddress, n) }
        }
        output = y
        return Tensor(shape: x.shape, data: y)
    }
    public func backward(_ dy: Tensor) -> Tensor {
        let n = dy.count
        var g = uninitializedFloats(n)
        g.withUnsafeMutableBufferPointer { gp in
            output.withUnsafeBufferPointer { o in
                dy.data.withUnsafeBufferPointer { d in tk_relu_backward(o.baseAddress, d.baseAddress, gp.baseAddress, n) }
            }
        }
        return Tensor(shape: dy.shape, data: g)
    }
}

/// Copies `row` into every row of `out` (a bias before a GEMM with beta 1).
func fillRows(_ out: inout [Float], rows: Int, with row: [Float]) {
    out.withUnsafeMutableBufferPointer { o in
        row.withUnsafeBufferPointer { r in tk_fill_rows(o.baseAddress, rows, r.baseAddress, r.count) }
    }
}

/// Adds every row of `m` into `acc` (a bias gradient).
func sumRows(_ m: [Float], rows: Int, into acc: inout [Float]) {
    m.withUnsafeBufferPointer { mp in
        acc.withUnsafeMutableBufferPointer { a in tk_sum_rows(mp.baseAddress, rows, a.count, a.baseAddress) }
    }
}

/// 2x2 max pooling, stride 2, NHWC (odd edges dropped).
public final class MaxPool2: Layer {
    /// Input index of each output's maximum (training only; reused between steps).
    private var argmax: [Int64] = []
    private var inShape: [Int] = []
    public init() {}
    public func forward(_ x: Tensor, _ ctx: inout StepContext) -> Tensor {
        let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        inShape = x.shape
        var out = uninitializedFloats(n * (h / 2) * (w / 2) * c)
        var at = argmax
        argmax = []
        if ctx.training && at.count != out.count { at = [Int64](repeating: 0, count: out.count) }
        x.data.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { o in
                if ctx.training {
                    at.withUnsafeMutableBufferPointer { a in tk_maxpool2(src.baseAddress, n, h, w, c, o.baseAddress, a.baseAddress) }
                } else {
                    tk_maxpool2(src.baseAddress, n, h, w, c, o.baseAddress, nil)
                }
            }
        }
        argmax = at
        return Tensor(shape: [n, h / 2, w / 2, c], data: out)
    }
    public func backward(_ dy: Tensor) -> Tensor {
        var dx = [Float](repeating: 0, count: inShape.reduce(1, *))
        dx.withUnsafeMutableBufferPointer { d in
            argmax.withUnsafeBufferPointer { a in
                dy.data.withUnsafeBufferPointer { g in tk_maxpool2_backward(g.baseAddress, a.baseAddress, min(a.count, g.count), d.baseAddress) }
            }
        }
        return Tensor(shape: inShape, data: dx)
    }
}

/// [N, H, W, C] -> [N, H*W*C].
public final class Flatten: Layer {
    private var inShape: [Int] = []
    public init() {}
    public func forward(_ x: Tensor, _ ctx: inout StepContext) -> Tensor {
        inShape = x.shape
        return Tensor(shape: [x.batch, x.perSample], data: x.data)
    }
    public func backward(_ dy: Tensor) -> Tensor { Tensor(shape: inShape, data: dy.data) }
}

/// Inverted dropout: off in evaluation.
public final class Dropout: Layer {
    public var rate: Float
    private var mask: [Float] = []
    public init(_ rate: Float) { self.rate = rate }
    public func forward(_ x: Tensor, _ ctx: inout StepContext) -> Tensor {
        guard ctx.training, rate > 0 else { mask = []; return x }
        let keep = 1 - rate
        mask = (0..<x.count).map { _ in ctx.rng.unit() < keep ? 1 / keep : 0 }
        return Tensor(shape: x.shape, data: zip(x.data, mask).map(*))
    }
    public func backward(_ dy: Tensor) -> Tensor {
        guard !mask.isEmpty else { return dy }
        return Tensor(shape: dy.shape, data: zip(dy.data, mask).map(*))
    }
}

/// y = x + f(x), f = conv-relu-conv (with batch normalisation: conv-bn-relu-conv-bn,
/// the last scale starting at 0 so that the block starts as the identity); stochastic
/// depth: in training f is dropped for the whole batch with probability 1 - survival,
/// and scaled by 1/survival when kept, so that evaluation (always kept, unscaled) sees
/// the same expectation.
public final class Residual: Layer {
    let body: [Layer]
    public var survival: Float
    private var kept = true
    public init(channels: Int, survival: Float, batchNorm: Bool = false, rng: inout TrainerRandom, name: String) {
        let conv1 = Conv3x3(channels, channels, bias: !batchNorm, rng: &rng, name: name + ".conv1")
        let conv2 = Conv3x3(channels, channels, bias: !batchNorm, rng: &rng, name: name + ".conv2")
        body = batchNorm
            ? [conv1, BatchNorm(channels, name: name + ".bn1"), ReLU(), conv2, BatchNorm(channels, name: name + ".bn2", scale: 0)]
            : [conv1, ReLU(), conv2]
        self.survival = survival
    }
    public var parameters: [Parameter] { body.flatMap(\.parameters) }
    public func forward(_ x: Tensor, _ ctx: inout StepContext) -> Tensor {
        kept = !ctx.training || ctx.rng.unit() < survival
        guard kept else { return x }
        var f = x
        for l in body { f = l.forward(f, &ctx) }
        let scale: Float = ctx.training ? 1 / survival : 1
        var y = f.data
        y.withUnsafeMutableBufferPointer { yp in
            x.data.withUnsafeBufferPointer { xp in for i in 0..<yp.count { yp[i] = xp[i] + scale * yp[i] } }
        }
        return Tensor(shape: x.shape, data: y)
    }
    private var trainingScale: Float { 1 / survival }
    public func backward(_ dy: Tensor) -> Tensor {
        guard kept else { return dy }
        let scale = trainingScale
        var g = Tensor(shape: dy.shape, data: dy.data.map { $0 * scale })
        for l in body.reversed() { g = l.backward(g) }
        var out = g.data
        out.withUnsafeMutableBufferPointer { o in
            dy.data.withUnsafeBufferPointer { d in for i in 0..<o.count { o[i] += d[i] } }
        }
        return Tensor(shape: dy.shape, data: out)
    }
}

/// Batch normalisation over the last dimension: NHWC channels after a convolution,
/// or features after a dense layer. Training normalises with the batch's statistics
/// (each shard's own, as each GPU's in PyTorch DDP without SyncBatchNorm) and keeps
/// running averages of them (momentum 0.1, the unbiased variance, as PyTorch);
/// evaluation and labelling normalise with the running averages, so a sample's output
/// does not depend on its batch.
public final class BatchNorm: Layer {
    let channels: Int
    let gamma: Parameter, beta: Parameter
    let runningMean: Parameter, runningVariance: Parameter
    static let epsilon: Float = 1e-5
    /// The normalised input and 1/std of the last training forward (for backward).
    private var xhat: [Float] = []
    private var invstd: [Float] = []

    /// - Parameter scale: gamma's initial value; 0 for the last normalisation of a
    ///   residual branch, so that every block starts as the identity (Goyal et al., 2017).
    public init(_ channels: Int, name: String, scale: Float = 1, momentum: Float = 0.1) {
        self.channels = channels
        gamma = Parameter(name: name + ".gamma", value: [Float](repeating: scale, count: channels), role: .bias)
        beta = Parameter(name: name + ".beta", value: [Float](repeating: 0, count: channels), role: .bias)
        runningMean = Parameter(name: name + ".mean", value: [Float](repeating: 0, count: channels), role: .runningAverage(momentum: momentum))
        runningVariance = Parameter(name: name + ".var", value: [Float](repeating: 1, count: channels), role: .runningAverage(momentum: momentum))
    }

    public var parameters: [Parameter] { [gamma, beta, runningMean, runningVariance] }

    public func forward(_ x: Tensor, _ ctx: inout StepContext) -> Tensor {
        let c = channels, rows = x.count / max(1, c)
        var y = uninitializedFloats(x.count)
        var mean: [Float], inv: [Float]
        if ctx.training {
            var v = [Float](repeating: 0, count: c)
            mean = [Float](repeating: 0, count: c)
            x.data.withUnsafeBufferPointer { xp in tk_bn_statistics(xp.baseAddress, rows, c, &mean, &v) }
            inv = v.map { 1 / ($0 + Self.epsilon).squareRoot() }
            let unbiased = Float(rows) / Float(max(1, rows - 1))
            runningMean.observe(mean, rows: rows)
            runningVariance.observe(v.map { $0 * unbiased }, rows: rows)
            if xhat.count != x.count { xhat = uninitializedFloats(x.count) }
        } else {
            mean = runningMean.value
            inv = runningVariance.value.map { 1 / ($0 + Self.epsilon).squareRoot() }
        }
        invstd = inv
        let training = ctx.training
        x.data.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                if training {
                    xhat.withUnsafeMutableBufferPointer { h in
                        tk_bn_forward(xp.baseAddress, rows, c, mean, inv, gamma.value, beta.value, h.baseAddress, yp.baseAddress)
                    }
                } else {
                    tk_bn_forward(xp.baseAddress, rows, c, mean, inv, gamma.value, beta.value, nil, yp.baseAddress)
                }
            }
        }
        return Tensor(shape: x.shape, data: y)
    }

    public func backward(_ dy: Tensor) -> Tensor {
        let c = channels, rows = dy.count / max(1, c)
        var dx = uninitializedFloats(dy.count)
        dy.data.withUnsafeBufferPointer { g in
            xhat.withUnsafeBufferPointer { h in
                dx.withUnsafeMutableBufferPointer { o in
                    tk_bn_backward(g.baseAddress, h.baseAddress, rows, c, gamma.value, invstd, &gamma.grad, &beta.grad, o.baseAddress)
                }
            }
        }
        return Tensor(shape: dy.shape, data: dx)
    }
}
