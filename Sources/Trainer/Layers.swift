import Foundation

/// A learnable array with its gradient and optimiser state.
public final class Parameter {
    public let name: String
    public var value: [Float]
    public var grad: [Float]
    public var velocity: [Float]
    /// Weight decay applies (weights yes, biases no).
    public let decays: Bool
    public init(name: String, value: [Float], decays: Bool) {
        self.name = name; self.value = value; self.decays = decays
        grad = [Float](repeating: 0, count: value.count)
        velocity = [Float](repeating: 0, count: value.count)
    }
}

/// Per-step context: training or evaluation, and the noise generator.
public struct StepContext {
    public var training: Bool
    public var rng: TrainerRandom
    public init(training: Bool, seed: UInt64) { self.training = training; rng = TrainerRandom(seed: seed) }
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
        gemm(false, false, m: n, n: outputs, k: inputs, x.data, lda: inputs, w.value, ldb: outputs, beta: 1, &y, ldc: outputs)
        return Tensor(shape: [n, outputs], data: y)
    }

    public func backward(_ dy: Tensor) -> Tensor {
        let n = dy.batch
        gemm(true, false, m: inputs, n: outputs, k: n, x.data, lda: inputs, dy.data, ldb: outputs, beta: 1, &w.grad, ldc: outputs)
        sumRows(dy.data, rows: n, into: &b.grad)
        var dx = [Float](repeating: 0, count: n * inputs)
        gemm(false, true, m: n, n: inputs, k: outputs, dy.data, lda: outputs, w.value, ldb: outputs, beta: 0, &dx, ldc: inputs)
        return Tensor(shape: x.shape, data: dx)
    }
}

/// 3x3 convolution, stride 1, zero padding 1, NHWC: one GEMM of the im2col matrix
/// [N*H*W, 9*Cin] by the weights [9*Cin, Cout].
public final class Conv3x3: Layer {
    let cin: Int, cout: Int
    let w: Parameter, b: Parameter
    private var cols: [Float] = []
    private var inShape: [Int] = []

    public init(_ cin: Int, _ cout: Int, rng: inout TrainerRandom, name: String) {
        self.cin = cin; self.cout = cout
        w = Parameter(name: name + ".w", value: heInit(9 * cin * cout, fanIn: 9 * cin, rng: &rng), decays: true)
        b = Parameter(name: name + ".b", value: [Float](repeating: 0, count: cout), decays: false)
    }

    public var parameters: [Parameter] { [w, b] }

    public func forward(_ x: Tensor, _ ctx: inout StepContext) -> Tensor {
        let (n, h, wd) = (x.shape[0], x.shape[1], x.shape[2])
        inShape = x.shape
        let k = 9 * cin, rows = n * h * wd
        if cols.count != rows * k { cols = [Float](repeating: 0, count: rows * k) }
        let cin = self.cin
        x.data.withUnsafeBufferPointer { srcBuf in
            cols.withUnsafeMutableBufferPointer { colBuf in
                let src = srcBuf.baseAddress!, col = colBuf.baseAddress!
                for img in 0..<n {
                    for y in 0..<h {
                        for xx in 0..<wd {
                            var dst = col + ((img * h + y) * wd + xx) * k
                            for ky in 0..<3 {
                                let sy = y + ky - 1
                                for kx in 0..<3 {
                                    let sx = xx + kx - 1
                                    if sy < 0 || sy >= h || sx < 0 || sx >= wd {
                                        for c in 0..<cin { dst[c] = 0 }
                                    } else {
                                        let s = src + ((img * h + sy) * wd + sx) * cin
                                        for c in 0..<cin { dst[c] = s[c] }
                                    }
                                    dst += cin
                                }
                            }
                        }
                    }
                }
            }
        }
        var out = [Float](repeating: 0, count: rows * cout)
        fillRows(&out, rows: rows, with: b.value)
        gemm(false, false, m: rows, n: cout, k: k, cols, lda: k, w.value, ldb: cout, beta: 1, &out, ldc: cout)
        return Tensor(shape: [n, h, wd, cout], data: out)
    }

    public func backward(_ dy: Tensor) -> Tensor {
        let (n, h, wd) = (inShape[0], inShape[1], inShape[2])
        let k = 9 * cin, rows = n * h * wd
        gemm(true, false, m: k, n: cout, k: rows, cols, lda: k, dy.data, ldb: cout, beta: 1, &w.grad, ldc: cout)
        sumRows(dy.data, rows: rows, into: &b.grad)
        var dcols = [Float](repeating: 0, count: rows * k)
        gemm(false, true, m: rows, n: k, k: cout, dy.data, lda: cout, w.value, ldb: cout, beta: 0, &dcols, ldc: k)
        var dx = [Float](repeating: 0, count: n * h * wd * cin)
        let cin = self.cin
        dcols.withUnsafeBufferPointer { dcBuf in
            dx.withUnsafeMutableBufferPointer { outBuf in
                let dc = dcBuf.baseAddress!, out = outBuf.baseAddress!
                for img in 0..<n {
                    for y in 0..<h {
                        for xx in 0..<wd {
                            let row = dc + ((img * h + y) * wd + xx) * k
                            for ky in 0..<3 {
                                let sy = y + ky - 1
                                guard sy >= 0 && sy < h else { continue }
                                for kx in 0..<3 {
                                    let sx = xx + kx - 1
                                    guard sx >= 0 && sx < wd else { continue }
                                    let o = out + ((img * h + sy) * wd + sx) * cin, src = row + (ky * 3 + kx) * cin
                                    for c in 0..<cin { o[c] += src[c] }
                                }
                            }
                        }
                    }
                }
            }
        }
        return Tensor(shape: inShape, data: dx)
    }
}

public final class ReLU: Layer {
    private var output: [Float] = []
    public init() {}
    public func forward(_ x: Tensor, _ ctx: inout StepContext) -> Tensor {
        var y = x.data
        y.withUnsafeMutableBufferPointer { p in for i in 0..<p.count where p[i] < 0 { p[i] = 0 } }
        output = y
        return Tensor(shape: x.shape, data: y)
    }
    public func backward(_ dy: Tensor) -> Tensor {
        var g = dy.data
        g.withUnsafeMutableBufferPointer { gp in
            output.withUnsafeBufferPointer { o in for i in 0..<gp.count where o[i] <= 0 { gp[i] = 0 } }
        }
        return Tensor(shape: dy.shape, data: g)
    }
}

/// Copies `row` into every row of `out` (a bias before a GEMM with beta 1).
func fillRows(_ out: inout [Float], rows: Int, with row: [Float]) {
    let n = row.count
    out.withUnsafeMutableBufferPointer { o in
        row.withUnsafeBufferPointer { r in
            for i in 0..<rows {
                let d = o.baseAddress! + i * n
                for j in 0..<n { d[j] = r[j] }
            }
        }
    }
}

/// Adds every row of `m` into `acc` (a bias gradient).
func sumRows(_ m: [Float], rows: Int, into acc: inout [Float]) {
    let n = acc.count
    m.withUnsafeBufferPointer { mp in
        acc.withUnsafeMutableBufferPointer { a in
            for i in 0..<rows {
                let r = mp.baseAddress! + i * n
                for j in 0..<n { a[j] += r[j] }
            }
        }
    }
}

/// 2x2 max pooling, stride 2, NHWC (odd edges dropped).
public final class MaxPool2: Layer {
    private var argmax: [Int] = []
    private var inShape: [Int] = []
    public init() {}
    public func forward(_ x: Tensor, _ ctx: inout StepContext) -> Tensor {
        let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let oh = h / 2, ow = w / 2
        inShape = x.shape
        var out = [Float](repeating: 0, count: n * oh * ow * c)
        var at = [Int](repeating: 0, count: out.count)
        x.data.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { o in
                at.withUnsafeMutableBufferPointer { a in
                    for img in 0..<n {
                        for y in 0..<oh {
                            for xx in 0..<ow {
                                let base = ((img * h + 2 * y) * w + 2 * xx) * c
                                let candidates = [base, base + c, base + w * c, base + w * c + c]
                                let ob = ((img * oh + y) * ow + xx) * c
                                for ch in 0..<c {
                                    var best = src[candidates[0] + ch], bi = candidates[0] + ch
                                    for q in 1..<4 where src[candidates[q] + ch] > best {
                                        best = src[candidates[q] + ch]; bi = candidates[q] + ch
                                    }
                                    o[ob + ch] = best
                                    a[ob + ch] = bi
                                }
                            }
                        }
                    }
                }
            }
        }
        argmax = at
        return Tensor(shape: [n, oh, ow, c], data: out)
    }
    public func backward(_ dy: Tensor) -> Tensor {
        var dx = [Float](repeating: 0, count: inShape.reduce(1, *))
        dx.withUnsafeMutableBufferPointer { d in
            argmax.withUnsafeBufferPointer { a in
                dy.data.withUnsafeBufferPointer { g in for o in 0..<a.count { d[a[o]] += g[o] } }
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

/// y = x + f(x), f = conv-relu-conv; stochastic depth: in training f is dropped
/// for the whole batch with probability 1 - survival, and scaled by 1/survival
/// when kept, so that evaluation (always kept, unscaled) sees the same expectation.
public final class Residual: Layer {
    let body: [Layer]
    public var survival: Float
    private var kept = true
    public init(channels: Int, survival: Float, rng: inout TrainerRandom, name: String) {
        body = [Conv3x3(channels, channels, rng: &rng, name: name + ".conv1"), ReLU(),
                Conv3x3(channels, channels, rng: &rng, name: name + ".conv2")]
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
