import Dispatch

/// A fixed number of slots, one per parallel worker, in memory that is allocated
/// once and never moves or resizes: worker k writes slot k, and the owner reads
/// them all after the workers have finished.
///
/// Why not `[T?]` in a class: writing a Swift `Array` from several threads is a data
/// race even at distinct indices (a write may trigger a uniqueness check or a copy
/// of the whole buffer). Here each slot is a separate, initialised memory location
/// reached through a raw pointer, so distinct writers never touch shared state.
///
/// `@unchecked Sendable`, safe under this contract, which `forEachWorker` enforces
/// by construction: during a parallel region slot k is touched only by worker k;
/// `values` is read only after the region returns (concurrentPerform returns
/// after every iteration has finished, which orders their writes before the read).
public final class ConcurrentSlots<T>: @unchecked Sendable {
    private let base: UnsafeMutablePointer<T>
    public let count: Int

    public init(count: Int, initial: T) {
        precondition(count >= 0, "a negative slot count")
        self.count = count
        base = .allocate(capacity: max(1, count))
        base.initialize(repeating: initial, count: count)
    }

    deinit {
        base.deinitialize(count: count)
        base.deallocate()
    }

    /// Slot `k`. Only worker k may write it while workers run.
    public subscript(k: Int) -> T {
        get {
            precondition(k >= 0 && k < count, "slot \(k) of \(count)")
            return base[k]
        }
        set {
            precondition(k >= 0 && k < count, "slot \(k) of \(count)")
            base[k] = newValue
        }
    }

    /// Every slot, in order (read after the workers have finished).
    public var values: [T] { Array(UnsafeBufferPointer(start: base, count: count)) }

    /// Runs `body(k)` for k in 0..<count on the global pool and returns when all have
    /// finished; `body` must write only slot k.
    public func forEachWorker(_ body: @Sendable (Int) -> Void) {
        DispatchQueue.concurrentPerform(iterations: count, execute: body)
    }
}
