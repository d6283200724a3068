import Augment
import Dispatch
import Foundation
import ImageCodec

/// Batches of a fixed list of samples, in order, through one view (the clean
/// teacher view when labelling): every sample once, the last batch partial.
/// Samples are rendered in parallel, each thread on its own contiguous part
/// with its own renderer, so the bytes never depend on the thread count.
public final class SplitBatcher {
    public let ids: [UInt64]
    public let view: View
    public let channels: Int
    public let layout: OutputLayout
    public let batchSize: Int
    private let source: any ImageSource
    private let renderers: RendererSet
    public private(set) var position = 0

    public init(ids: [UInt64], source: any ImageSource, view: View, channels: Int, layout: OutputLayout,
                batchSize: Int, threads: Int) throws {
        guard batchSize >= 1 else { throw PipelineError("batch size must be at least 1") }
        guard channels == 1 || channels == 3 else { throw PipelineError("channels must be 1 or 3") }
        self.ids = ids; self.source = source; self.view = view; self.channels = channels; self.layout = layout
        self.batchSize = batchSize
        renderers = RendererSet((0..<max(1, threads)).map { _ in ViewRenderer(channels: channels, layout: layout) })
    }

    public var batchCount: Int { (ids.count + batchSize - 1) / batchSize }
    public var bytesPerSample: Int { layout.bytesPerSample(size: view.size, channels: channels) }

    /// The next batch's ids and images (bytes in the layout), or nil at the end.
    /// A sample that cannot be read or decoded is an error naming it: labelling
    /// must not silently skip or replace samples.
    public func next() throws -> (ids: [UInt64], images: [UInt8])? {
        guard position < ids.count else { return nil }
        let chunk = Array(ids[position..<min(ids.count, position + batchSize)])
        position += chunk.count
        let per = bytesPerSample
        var images = [UInt8](repeating: 0, count: chunk.count * per)
        let parts = min(renderers.items.count, chunk.count)
        let failures = FailureSlots(parts)
        let renderers = self.renderers, source = self.source, view = self.view
        images.withUnsafeMutableBytes { raw in
            let out = SendableRawBuffer(raw)
            DispatchQueue.concurrentPerform(iterations: parts) { t in
                let lo = chunk.count * t / parts, hi = chunk.count * (t + 1) / parts
                let renderer = renderers.items[t]
                do {
                    try source.withImages(Array(chunk[lo..<hi])) { i, bytes in
                        let id = chunk[lo + i]
                        guard let bytes else { throw PipelineError("sample \(id) is missing from the store") }
                        do {
                            try renderer.render(bytes, view: view, key: SampleKey(seed: 0, epoch: 0, sample: id),
                                                into: UnsafeMutableRawBufferPointer(rebasing: out.buffer[((lo + i) * per)..<((lo + i + 1) * per)]))
                        } catch {
                            throw PipelineError("sample \(id) does not decode: \(error)")
                        }
                    }
                } catch {
                    failures.set(t, "\(error)")
                }
            }
        }
        if let f = failures.first { throw PipelineError(f) }
        return (chunk, images)
    }
}

/// A raw buffer handed to concurrentPerform iterations that write disjoint ranges.
struct SendableRawBuffer: @unchecked Sendable {
    // Safe: each iteration writes only its own [lo, hi) slice, and the buffer
    // outlives concurrentPerform, which returns only when all iterations are done.
    let buffer: UnsafeMutableRawBufferPointer
    init(_ b: UnsafeMutableRawBufferPointer) { buffer = b }
}

/// One renderer per concurrentPerform iteration.
final class RendererSet: @unchecked Sendable {
    // Safe: iteration t uses only items[t], and iterations with the same t never
    // run at the same time (one batch at a time).
    let items: [ViewRenderer]
    init(_ items: [ViewRenderer]) { self.items = items }
}

/// One error slot per iteration, in memory that is never resized.
final class FailureSlots: @unchecked Sendable {
    // Safe: iteration t writes only slot t; `first` is read after concurrentPerform returns.
    private let slots: UnsafeMutablePointer<String?>
    private let count: Int
    init(_ n: Int) {
        count = n
        slots = .allocate(capacity: n)
        slots.initialize(repeating: nil, count: n)
    }
    deinit {
        slots.deinitialize(count: count)
        slots.deallocate()
    }
    func set(_ i: Int, _ s: String) { slots[i] = s }
    var first: String? { (0..<count).lazy.compactMap { self.slots[$0] }.first }
}
