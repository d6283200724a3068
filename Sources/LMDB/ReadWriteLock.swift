#if canImport(Glibc)
import Glibc
#endif

/// A pthread read-write lock in memory that never moves: the `pthread_rwlock_t`
/// lives in `ManagedBuffer` tail storage, as swift-nio keeps its locks, because the
/// address of a stored property passed with `&` is not guaranteed to be stable.
/// Every return code is checked: a failure here is a broken invariant, not bad input.
///
/// `@unchecked Sendable`: the lock is the synchronisation; its storage is only
/// reached through the pthread calls below.
final class ReadWriteLock: @unchecked Sendable {
    private let storage: ManagedBuffer<Void, pthread_rwlock_t>

    init() {
        storage = ManagedBuffer<Void, pthread_rwlock_t>.create(minimumCapacity: 1) { _ in }
        storage.withUnsafeMutablePointerToElements { lock in
            lock.initialize(to: pthread_rwlock_t())
            let rc = pthread_rwlock_init(lock, nil)
            precondition(rc == 0, "pthread_rwlock_init failed: \(rc)")
        }
    }

    deinit {
        storage.withUnsafeMutablePointerToElements { lock in
            let rc = pthread_rwlock_destroy(lock)
            precondition(rc == 0, "pthread_rwlock_destroy failed: \(rc)")
            lock.deinitialize(count: 1)
        }
    }

    /// Runs `body` holding the lock shared (many readers at once).
    func withReadLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        try holding(pthread_rwlock_rdlock, "pthread_rwlock_rdlock", body)
    }

    /// Runs `body` holding the lock exclusively.
    func withWriteLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        try holding(pthread_rwlock_wrlock, "pthread_rwlock_wrlock", body)
    }

    private func holding<T, E: Error>(_ acquire: (UnsafeMutablePointer<pthread_rwlock_t>) -> Int32, _ name: String,
                                      _ body: () throws(E) -> T) throws(E) -> T {
        storage.withUnsafeMutablePointerToElements { lock in
            let rc = acquire(lock)
            precondition(rc == 0, "\(name) failed: \(rc)")
        }
        defer { unlock() }
        return try body()
    }

    private func unlock() {
        storage.withUnsafeMutablePointerToElements { lock in
            let rc = pthread_rwlock_unlock(lock)
            precondition(rc == 0, "pthread_rwlock_unlock failed: \(rc)")
        }
    }
}
