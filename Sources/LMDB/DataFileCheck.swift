#if canImport(Glibc)
import Glibc
#endif

/// Checks a data file's length against its own meta pages before LMDB maps it.
///
/// LMDB trusts the file: it maps `data.mdb` and touches every page up to the last
/// one its meta page says is in use. A file cut short (an interrupted `cp`, `rsync`
/// or download) ends before that page, and the first touch past its end is SIGBUS,
/// which no error handling can catch. Reading the two meta pages ourselves and
/// comparing is cheap (two small reads) and turns that crash into a sentence.
///
/// The layout read here (lmdb.h, mdb.c): a 16-byte page header, then `MDB_meta`:
/// magic (u32, 0xBEEFC0DE) at 16, version at 20, the free-page database's `md_pad`
/// (which holds the page size) at 40, `mm_last_pg` at 136 and `mm_txnid` at 144;
/// meta page 1 starts one page in. The meta with the larger transaction id is current.
public enum DataFileCheck {
    static let magic: UInt32 = 0xBEEF_C0DE

    /// What the check found about a data file.
    public enum Outcome: Equatable, Sendable {
        /// Long enough for every page its current meta page says is in use.
        case whole
        /// Shorter than the pages in use: `size` bytes, `needed` bytes.
        case truncated(size: Int, needed: Int)
        /// Not an LMDB data file, or unreadable: left to `mdb_env_open` to report.
        case unknown
    }

    public static func check(dataFile path: String) -> Outcome {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .unknown }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return .unknown }
        let size = Int(st.st_size)
        guard let first = meta(fd, at: 0) else { return .unknown }
        let pageSize = Int(first.pageSize)
        guard pageSize >= 512, pageSize <= 1 << 16, pageSize & (pageSize - 1) == 0 else { return .unknown }
        // Both meta pages must exist; then the current one says how far the file reaches.
        guard size >= 2 * pageSize, let second = meta(fd, at: pageSize) else {
            let (claimed, overflow) = Int(clamping: first.lastPage).addingReportingOverflow(1).partialValue.multipliedReportingOverflow(by: pageSize)
            return .truncated(size: size, needed: overflow ? Int.max : max(2 * pageSize, claimed))
        }
        let current = second.txnid > first.txnid ? second : first
        let (pages, overflow) = Int(clamping: current.lastPage).addingReportingOverflow(1)
        let (needed, overflow2) = pages.multipliedReportingOverflow(by: pageSize)
        guard !overflow, !overflow2 else { return .unknown }
        return size >= needed ? .whole : .truncated(size: size, needed: needed)
    }

    private struct Meta { var pageSize: UInt32; var lastPage: UInt64; var txnid: UInt64 }

    /// The meta page at `offset`, or nil when it cannot be read or lacks LMDB's magic.
    private static func meta(_ fd: Int32, at offset: Int) -> Meta? {
        var buffer = [UInt8](repeating: 0, count: 152)
        let got = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 152, off_t(offset)) }
        guard got == 152 else { return nil }
        return buffer.withUnsafeBytes { raw in
            guard raw.loadUnaligned(fromByteOffset: 16, as: UInt32.self) == magic else { return nil }
            return Meta(pageSize: raw.loadUnaligned(fromByteOffset: 40, as: UInt32.self),
                        lastPage: raw.loadUnaligned(fromByteOffset: 136, as: UInt64.self),
                        txnid: raw.loadUnaligned(fromByteOffset: 144, as: UInt64.self))
        }
    }
}
