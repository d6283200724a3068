import Foundation

/// How a generation stores each sample's distribution.
public enum LabelPrecision: Equatable, Sendable, CustomStringConvertible {
    case f32
    case f16
    /// The K largest probabilities with their classes, and the rest of the mass.
    case topK(Int)

    public init?(_ text: String) {
        switch text {
        case "f32": self = .f32
        case "f16": self = .f16
        default:
            guard text.hasPrefix("topk:"), let k = Int(text.dropFirst(5)), k >= 1 else { return nil }
            self = .topK(k)
        }
    }

    public var description: String {
        switch self { case .f32: "f32"; case .f16: "f16"; case .topK(let k): "topk:\(k)" }
    }

    /// Bytes of one stored value: an 8-byte header (top class u32, top probability
    /// f32) and the payload.
    public func valueSize(classCount c: Int) -> Int {
        switch self {
        case .f32: 8 + 4 * c
        case .f16: 8 + 2 * c
        case .topK(let k): 8 + 4 * min(k, c) + 4
        }
    }
}

/// Encodes and decodes stored distributions (schemas/store-layout.md, "labels").
///
/// Reading always gives a full distribution that sums to 1: f16 values are
/// renormalised after widening; for top-k the residual mass is spread evenly
/// over the classes not stored (so no class is ever certain to be wrong), then
/// the whole is renormalised.
public enum LabelEncoding {
    /// The stored value of distribution `p` (which sums to 1).
    public static func encode(_ p: UnsafeBufferPointer<Float>, precision: LabelPrecision, into out: inout [UInt8]) {
        let c = p.count
        var top = 0
        for i in 1..<c where p[i] > p[top] { top = i }
        out.removeAll(keepingCapacity: true)
        appendLE(UInt32(top), &out)
        appendLE(p[top].bitPattern, &out)
        switch precision {
        case .f32:
            for v in p { appendLE(v.bitPattern, &out) }
        case .f16:
            for v in p { appendLE(Float16(v).bitPattern, &out) }
        case .topK(let kRequested):
            let k = min(kRequested, c)
            // The k largest in one pass: a small sorted buffer (descending; ties keep
            // the lower class first), most values rejected by one comparison.
            var best: [(p: Float, c: Int)] = []
            best.reserveCapacity(k + 1)
            for i in 0..<c {
                let v = p[i]
                if best.count == k, v <= best[k - 1].p { continue }
                var j = best.count
                while j > 0 && best[j - 1].p < v { j -= 1 }
                best.insert((v, i), at: j)
                if best.count > k { best.removeLast() }
            }
            var kept: Float = 0
            for e in best {
                appendLE(UInt16(e.c), &out)
                appendLE(Float16(e.p).bitPattern, &out)
                kept += e.p
            }
            appendLE(max(0, 1 - kept).bitPattern, &out)
        }
    }

    /// Top class and probability from a stored value's header.
    @inline(__always)
    public static func top(_ v: UnsafeRawBufferPointer) -> (classIndex: Int, probability: Float) {
        // A value cut short by damage reads as class -1 (callers skip classes out of range).
        guard v.count >= 8 else { return (-1, 0) }
        return (Int(v.loadUnaligned(fromByteOffset: 0, as: UInt32.self).littleEndian),
         Float(bitPattern: v.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian))
    }

    /// Decodes a stored value into a full distribution (sums to 1).
    public static func decode(_ v: UnsafeRawBufferPointer, precision: LabelPrecision, into out: UnsafeMutableBufferPointer<Float>) throws {
        let c = out.count
        guard v.count == precision.valueSize(classCount: c) else {
            throw StoreError(.corrupt, "stored label has \(v.count) bytes, \(precision) over \(c) classes needs \(precision.valueSize(classCount: c))")
        }
        switch precision {
        case .f32:
            for i in 0..<c { out[i] = Float(bitPattern: v.loadUnaligned(fromByteOffset: 8 + 4 * i, as: UInt32.self).littleEndian) }
        case .f16:
            for i in 0..<c { out[i] = Float(Float16(bitPattern: v.loadUnaligned(fromByteOffset: 8 + 2 * i, as: UInt16.self).littleEndian)) }
        case .topK(let kRequested):
            let k = min(kRequested, c)
            let residual = Float(bitPattern: v.loadUnaligned(fromByteOffset: 8 + 4 * k, as: UInt32.self).littleEndian)
            let spread = c > k ? residual / Float(c - k) : 0
            for i in 0..<c { out[i] = spread }
            for j in 0..<k {
                let cls = Int(v.loadUnaligned(fromByteOffset: 8 + 4 * j, as: UInt16.self).littleEndian)
                guard cls < c else { throw StoreError(.corrupt, "stored label names class \(cls) of \(c)") }
                out[cls] = Float(Float16(bitPattern: v.loadUnaligned(fromByteOffset: 8 + 4 * j + 2, as: UInt16.self).littleEndian))
            }
        }
        var sum: Float = 0
        for i in 0..<c { sum += out[i] }
        if sum > 0 { for i in 0..<c { out[i] /= sum } }
    }

    @inline(__always) static func appendLE<T: FixedWidthInteger>(_ v: T, _ out: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }
}

/// How a reader turns a stored distribution into a training target.
public struct LabelReadOptions: Sendable, Equatable {
    /// Soft labels re-tempered as p^(1/T), renormalised (T = 1: as stored).
    public var temperature: Double
    /// One-hot of the top class instead, with label smoothing.
    public var hard: Bool
    public var smoothing: Float

    public init(temperature: Double = 1, hard: Bool = false, smoothing: Float = 0.1) {
        self.temperature = temperature; self.hard = hard; self.smoothing = smoothing
    }

    /// Applies temperature or hard mode in place to a distribution.
    public func apply(_ p: UnsafeMutableBufferPointer<Float>) {
        let c = p.count
        if hard {
            var top = 0
            for i in 1..<c where p[i] > p[top] { top = i }
            let off = smoothing / Float(c)
            for i in 0..<c { p[i] = off }
            p[top] += 1 - smoothing
            return
        }
        guard temperature != 1 else { return }
        let inv = 1 / temperature
        var sum = 0.0
        for i in 0..<c {
            let v = p[i] > 0 ? Foundation.pow(Double(p[i]), inv) : 0
            p[i] = Float(v)
            sum += v
        }
        if sum > 0 { for i in 0..<c { p[i] = Float(Double(p[i]) / sum) } }
    }
}
