import Foundation
import Batches
import COpenBLAS
import CMalloc

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
    public init(seed: UInt64) { base = SplitMix64(seed: seed &+ 0x9E37_79B9_7F4A_7C15) }
    public mutating func next() -> UInt64 { base.next() }
    /// Uniform in [0, 1).
    public mutating func unit() -> Float { Float(next() >> 40) * 0x1.0p-24 }
    /// Standard normal (Box-Muller).
    public mutating func normal() -> Float {
        let u1 = max(unit(), 1e-7), u2 = unit()
        return (-2 * logf(u1)).squareRoot() * cosf(2 * .pi * u2)
    }
}

/// Readies this process for training: the OpenBLAS kernels for this CPU, and an
/// allocator that keeps freed activation buffers. A step allocates and frees the
/// same few megabyte-sized arrays; with glibc's defaults they are mmapped or
/// trimmed back to the kernel and every step page-faults them in again (measured:
/// 20% of a student's step). Raising both thresholds keeps them in the heap.
public func prepareTrainingProcess() {
    #if os(Linux)
    _ = mallopt(M_MMAP_THRESHOLD, 256 << 20)
    _ = mallopt(M_TRIM_THRESHOLD, 1 << 30)
    #endif
    ensureOpenBLASKernels()
}

/// OpenBLAS chooses its kernels when the library loads, from the CPU model; on
/// virtual machines that hide the model it falls back to its oldest x86-64 kernels
/// (Prescott), 3-4x slower. Before any training, a process whose CPU has AVX-512 or
/// AVX2 and whose environment names no core type sets OPENBLAS_CORETYPE and
/// re-executes itself, so that the library loads with the right kernels. Returns
/// only when no re-exec was needed or it failed (then training is slower, not wrong).
public func ensureOpenBLASKernels() {
    guard getenv("OPENBLAS_CORETYPE") == nil, getenv("NOISY_NO_REEXEC") == nil else { return }
    #if arch(x86_64)
    guard let cpuinfo = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
          let flags = cpuinfo.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return }
    let set = Set(flags.split(separator: " ").map(String.init))
    let core = set.contains("avx512f") && set.contains("avx512bw") ? "SkylakeX" : set.contains("avx2") && set.contains("fma") ? "Haswell" : nil
    guard let core else { return }
    setenv("OPENBLAS_CORETYPE", core, 1)
    setenv("NOISY_NO_REEXEC", "1", 1)
    execv("/proc/self/exe", CommandLine.unsafeArgv)
    #endif
}
