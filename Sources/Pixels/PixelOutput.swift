internal import CPixelKernels

/// Where a view's finished pixels go: `width x height x channels` elements in a
/// batch slot, as bytes (HWC) or as normalised floats (CHW or HWC), mirrored left
/// to right when `flip` is set. Handing rows straight to the slot spares the
/// whole-image byte copy, the flip and the separate float pass.
///
/// A borrowed view of the slot: valid only while the memory behind `base` is.
public struct PixelOutput {
    public enum Layout: Sendable { case uint8HWC, float32CHW, float32HWC }
    public var base: UnsafeMutableRawPointer
    public var layout: Layout
    public var flip: Bool
    /// Float layouts: `v * scale[c] + offset[c]` per channel (multiply, then add; never fused).
    public var scale: [Float]
    public var offset: [Float]

    public init(base: UnsafeMutableRawPointer, layout: Layout, flip: Bool = false, scale: [Float] = [], offset: [Float] = []) {
        self.base = base; self.layout = layout; self.flip = flip; self.scale = scale; self.offset = offset
    }

    /// The C description, alive for the length of `body`.
    func withC<R>(channels: Int, _ body: (UnsafePointer<pk_output>) -> R) -> R {
        let kind: pk_out_kind = switch layout {
        case .uint8HWC: PK_OUT_U8_HWC
        case .float32CHW: PK_OUT_F32_CHW
        case .float32HWC: PK_OUT_F32_HWC
        }
        precondition(layout == .uint8HWC || (scale.count >= channels && offset.count >= channels),
                     "one scale and offset per channel")
        return scale.withUnsafeBufferPointer { s in
            offset.withUnsafeBufferPointer { o in
                var c = pk_output(kind: Int32(kind.rawValue), flip: flip ? 1 : 0, scale: s.baseAddress, offset: o.baseAddress, out: base)
                return body(&c)
            }
        }
    }
}

extension PixelBuffer {
    /// Writes these pixels into `output` (no resampling).
    public func write(to output: PixelOutput) {
        output.withC(channels: channels) { pk_write_output(base, Int32(width), Int32(height), Int32(channels), $0) }
    }
}
