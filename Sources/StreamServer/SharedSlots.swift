internal import CSharedMemory
import Batches
import Foundation

/// Where the arrays of one batch lie inside a shared-memory slot: images first (the
/// loader renders straight into them), then targets, weights, ids and source, each
/// at a 64-byte boundary so that `numpy.frombuffer` views them without a copy.
struct SlotLayout: Equatable {
    let images: Int, targets: Int, weights: Int, ids: Int, source: Int
    /// Bytes per slot, rounded up to whole pages.
    let slotBytes: Int

    init(batchSize: Int, bytesPerSample: Int, classCount: Int) {
        func align(_ n: Int, _ a: Int = Frame.alignment) -> Int { (n + a - 1) / a * a }
        images = 0
        targets = align(batchSize * bytesPerSample)
        weights = targets + align(batchSize * classCount * 4)
        ids = weights + align(batchSize * 4)
        source = ids + align(batchSize * 8)
        slotBytes = align(source + batchSize, 4096)
    }
}

/// The batch slots a train session shares with its client: one anonymous memfd,
/// mapped here and in the client, cut into `count` slots of `layout.slotBytes`.
///
/// A slot is free, rendering (lent to the loader) or with the client (sent, not yet
/// released). The session sizes the ring at the loader's prefetch bound plus the
/// batches a client may hold, so the loader always finds a free slot. The memfd has
/// no name: when the session closes it and the client dies or unmaps it, the kernel
/// frees the memory; nothing can leak into /dev/shm.
///
/// `@unchecked Sendable`: `owners` is read and written only under `lock`; `base`,
/// `fd` and the sizes are set once in `init`.
final class SharedSlots: ExternalImageStorage, @unchecked Sendable {
    enum Owner { case free, rendering, client }

    let fd: Int32
    let base: UnsafeMutableRawPointer
    let layout: SlotLayout
    let count: Int
    private let lock = NSLock()
    private var owners: [Owner]

    init(count: Int, layout: SlotLayout) throws {
        let total = count * layout.slotBytes
        let fd = nsm_memfd("noisy-batches", total)
        guard fd >= 0 else { throw WireError(.socket, "shared memory of \(total) bytes: \(String(cString: strerror(-fd)))") }
        guard let p = mmap(nil, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            let e = String(cString: strerror(errno))
            close(fd)
            throw WireError(.socket, "mapping \(total) bytes of shared memory: \(e)")
        }
        self.fd = fd; base = p; self.layout = layout; self.count = count
        owners = Array(repeating: .free, count: count)
    }

    deinit {
        munmap(base, count * layout.slotBytes)
        close(fd)
    }

    /// Sends the memfd to the client over the session's Unix socket.
    func send(over socket: Int32) throws {
        let r = nsm_send_fd(socket, fd)
        guard r == 0 else { throw WireError(.socket, "passing the shared memory: \(String(cString: strerror(-r)))") }
    }

    /// True when descriptors can travel over `socket` (a Unix socket, not TCP).
    static func canPass(over socket: Int32) -> Bool { nsm_is_unix_socket(socket) == 1 }

    func slotBase(_ slot: Int) -> UnsafeMutableRawPointer { base + slot * layout.slotBytes }

    func acquire(bytes: Int) throws -> ExternalImageBuffer {
        guard bytes <= layout.targets else {
            throw WireError("a batch of \(bytes) image bytes does not fit a shared slot (\(layout.targets))")
        }
        lock.lock(); defer { lock.unlock() }
        guard let slot = owners.firstIndex(of: .free) else {
            throw WireError("no free shared-memory slot (\(count) slots): the client holds more batches than it said")
        }
        owners[slot] = .rendering
        return ExternalImageBuffer(base: slotBase(slot), capacity: layout.targets, slot: slot)
    }

    /// The batch in `slot` has been sent: it is the client's until it releases it.
    func lend(_ slot: Int) {
        lock.lock(); defer { lock.unlock() }
        owners[slot] = .client
    }

    /// The client is done with `slot`: the loader may render into it again.
    func release(_ slot: Int) throws {
        lock.lock(); defer { lock.unlock() }
        guard owners.indices.contains(slot), owners[slot] == .client else {
            throw WireError("release of slot \(slot), which the client does not hold")
        }
        owners[slot] = .free
    }

    /// Writes a batch's targets, weights, ids and sources after its images, and
    /// returns the `arrays` entries of its frame (offsets counted from the slot's start).
    func fill(_ b: Batch, slot: Int) -> [[String: Any]] {
        let p = slotBase(slot)
        let l = layout
        b.targets.withUnsafeBytes { UnsafeMutableRawBufferPointer(start: p + l.targets, count: $0.count).copyMemory(from: $0) }
        b.weights.withUnsafeBytes { UnsafeMutableRawBufferPointer(start: p + l.weights, count: $0.count).copyMemory(from: $0) }
        let ids = p.advanced(by: l.ids).bindMemory(to: Int64.self, capacity: b.count)
        let source = p.advanced(by: l.source).bindMemory(to: UInt8.self, capacity: b.count)
        for i in 0..<b.count {
            ids[i] = Int64(bitPattern: b.ids[i]).littleEndian
            source[i] = b.origins[i].rawValue
        }
        let image = ArraySpec.imageShape(of: b)
        func spec(_ name: String, _ dtype: String, _ shape: [Int], _ offset: Int, _ item: Int) -> [String: Any] {
            ["name": name, "dtype": dtype, "shape": shape, "offset": offset, "bytes": shape.reduce(1, *) * item]
        }
        return [
            spec("images", image.dtype, image.shape, l.images, image.dtype == "|u1" ? 1 : 4),
            spec("targets", "<f4", [b.count, b.classCount], l.targets, 4),
            spec("weights", "<f4", [b.count], l.weights, 4),
            spec("ids", "<i8", [b.count], l.ids, 8),
            spec("source", "|u1", [b.count], l.source, 1),
        ]
    }
}
