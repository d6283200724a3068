import Foundation
import Batches
internal import COpenBLAS
import KeyedRandom

/// A float array with a shape. Activations are NHWC (a convolution is then one
/// GEMM over every pixel of the batch), dense activations [N, features].
public struct Tensor: Sendable {
    public var shape: [Int]
    public var data: [Float]

    public init(shape: [Int], data: [Float]) {
        precondition(shape.reduce(1, *) == data.count, "tensor data does not match its shape")
        self.shape = shape
        self.data = data
    }

    public init(zeros shape: [Int]) {
        self.init(shape: shape, data: [Float](repeating: 0, count: shape.reduce(1, *)))
    }

    public var count: Int { data.count }

    /// Samples [range] of the batch (a copy).
    public func rows(_ range: Range<Int>) -> Tensor {
        if range.lowerBound == 0 && range.count == batch { return self }
        var shape = self.shape
        shape[0] = range.count
        let per = perSample
        return Tensor(shape: shape, data: Array(data[(range.lowerBound * per)..<(range.upperBound * per)]))
    }

    public mutating func scale(by factor: Float) {
        guard factor != 1 else { return }
        data.withUnsafeMutableBufferPointer { d in for i in 0..<d.count { d[i] *= factor } }
    }
    public var batch: Int { shape[0] }
    /// Elements per sample.
    public var perSample: Int { count / max(1, shape[0]) }
}

/// C = alpha * op(A) * op(B) + beta * C, row-major (cblas_sgemm).
@inline(__always)
func gemm(_ transA: Bool, _ transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
          _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int, beta: Float,
          _ c: UnsafeMutablePointer<Float>, ldc: Int) {
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// OpenBLAS starts its own threads; cap them so that decode threads keep their cores.
public func setBLASThreads(_ n: Int) { openblas_set_num_threads(Int32(max(1, n))) }

/// The trainer's noise generator: SplitMix64 with float draws.
public struct TrainerRandom: Sendable {
    private var base: SplitMix64
    public init(seed: UInt64) { base = SplitMix64(seed: seed &+ splitMix64Gamma) }
    public mutating func next() -> UInt64 { base.next() }
    /// Uniform in [0, 1).
    public mutating func unit() -> Float { Float(next() >> 40) * 0x1.0p-24 }
    /// Standard normal (Box-Muller).
    public mutating func normal() -> Float {
        let u1 = max(unit(), 1e-7), u2 = unit()
        return (-2 * logf(u1)).squareRoot() * cosf(2 * .pi * u2)
    }
}
