import Glibc

/// One thing wrong in a data file, found by `PageWalk`.
public struct PageProblem: Sendable, Equatable, CustomStringConvertible {
    /// The named database the damaged page belongs to ("" for the file itself or
    /// the list of databases, "free list" for LMDB's own free-page records).
    public var database: String
    public var page: UInt64?
    public var problem: String
    /// The keys the damaged part covers, when its parent says: [low, high), nil = open.
    public var lowKey: [UInt8]?
    public var highKey: [UInt8]?
    /// Whether records were dropped because of it (a page or an entry that could not
    /// be read), as opposed to an inconsistency read past (counts, unused bits, order).
    public var losesRecords = true

    public var description: String {
        var s = database.isEmpty ? "" : "database \(database): "
        if let page { s += "page \(page): " }
        return s + problem
    }
}

/// A validating, read-only walk over an LMDB data file that trusts none of it.
///
/// LMDB keeps no page checksums and follows the page numbers it finds: a flipped
/// bit in a branch page sends it through a wild pointer (SIGSEGV), and nothing in
/// its API can catch that. This walk reads the file ourselves, memory-mapped, and
/// checks every page before following it:
/// - page numbers lie inside the file and below the meta page's last page;
/// - each page's header names its own number and the kind its parent expects;
/// - node offsets and sizes stay inside the page, keys are in order and inside
///   the bounds the parent's separators give;
/// - every leaf lies at the depth, and every tree has the page and entry counts,
///   that its database record states; no page is used twice;
/// - the free list names only pages no tree uses, and every page is either used
///   or free.
/// When the walk finds nothing wrong, LMDB's own traversal of the same snapshot is
/// safe. When it finds damage, it says where, and still hands out every record of
/// every page it could trust (what `noisy salvage` keeps).
///
/// The layout (lmdb.h and mdb.c of LMDB 0.9, 64-bit): a page starts with a
/// 16-byte header (page number u64, pad u16, flags u16, then lower/upper u16 or an
/// overflow page count u32) followed by u16 node offsets. A node is lo u16, hi u16,
/// flags u16, key size u16, key, data; a branch node's child page number is
/// lo | hi << 16 | flags << 32, a leaf node's data size lo | hi << 16. A database
/// record (`MDB_db`, 48 bytes) is pad u32, flags u16, depth u16, branch, leaf and
/// overflow page counts, entries and root page (u64 each). Meta pages 0 and 1 hold
/// magic u32 at 16, version u32 at 20, the free and main database records at 40
/// and 88, the last page at 136 and the transaction id at 144.
public final class PageWalk {
    /// Page-level problems, in the order found.
    public private(set) var problems: [PageProblem] = []
    /// Every record of every trusted leaf, per named database, in key order. Key
    /// and value point into the mapped file: valid only inside `withWalk`.
    public private(set) var records: [String: [(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)]] = [:]
    /// The named databases the file lists.
    public private(set) var databaseNames: [String] = []
    /// Which meta page was used (0 or 1) and its transaction id.
    public private(set) var meta: Int = 0
    public private(set) var transactionID: UInt64 = 0
    public private(set) var pageSize = 0
    /// Pages the file holds in use (the meta page's last page + 1).
    public private(set) var pagesInUse: UInt64 = 0

    public var isSound: Bool { problems.isEmpty }
    /// Problems that dropped records.
    /// (The free list holds no records of ours: its damage costs none.)
    var lostRecords: Int { problems.filter { $0.losesRecords && $0.database != "free list" }.count }
    /// Records handed out, over every named database.
    var recordCount: Int { records.values.reduce(0) { $0 + $1.count } }

    // Page and node flags (mdb.c).
    static let pBranch: UInt16 = 0x01, pLeaf: UInt16 = 0x02, pOverflow: UInt16 = 0x04, pMeta: UInt16 = 0x08
    static let pDirty: UInt16 = 0x10, pLeaf2: UInt16 = 0x20, pSubpage: UInt16 = 0x40
    static let fBigData: UInt16 = 0x01, fSubData: UInt16 = 0x02, fDupData: UInt16 = 0x04
    static let dupSort: UInt16 = 0x04, integerKey: UInt16 = 0x08, dupFixed: UInt16 = 0x10, integerDup: UInt16 = 0x20
    static let invalidPage = UInt64.max
    static let headerSize = 16, nodeSize = 8, dbRecordSize = 48

    private let file: UnsafeRawBufferPointer
    private var visited: [UInt64: String] = [:]
    private var lastPage: UInt64 = 0

    /// Maps `dataFile` read-only, walks it, and calls `body` with the result while
    /// the mapping (which the records point into) is alive. Throws only when the
    /// file cannot be opened or mapped; damage is reported in `problems`.
    public static func withWalk<R>(dataFile path: String, _ body: (PageWalk) throws -> R) throws -> R {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LMDBError(code: errno, operation: "open the data file", path: path) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw LMDBError(code: errno, operation: "stat the data file", path: path) }
        let size = Int(st.st_size)
        if size == 0 {
            let walk = PageWalk(file: UnsafeRawBufferPointer(start: nil, count: 0))
            walk.problems.append(PageProblem(database: "", problem: "the data file is empty"))
            return try body(walk)
        }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
            throw LMDBError(code: errno, operation: "map the data file", path: path)
        }
        defer { munmap(base, size) }
        let walk = PageWalk(file: UnsafeRawBufferPointer(start: base, count: size))
        walk.run()
        return try body(walk)
    }

    private init(file: UnsafeRawBufferPointer) { self.file = file }

    // MARK: Reading bytes, bounds-checked

    private func u16(_ at: Int) -> UInt16? {
        guard at >= 0, at + 2 <= file.count else { return nil }
        return UInt16(littleEndian: file.loadUnaligned(fromByteOffset: at, as: UInt16.self))
    }
    private func u32(_ at: Int) -> UInt32? {
        guard at >= 0, at + 4 <= file.count else { return nil }
        return UInt32(littleEndian: file.loadUnaligned(fromByteOffset: at, as: UInt32.self))
    }
    private func u64(_ at: Int) -> UInt64? {
        guard at >= 0, at + 8 <= file.count else { return nil }
        return UInt64(littleEndian: file.loadUnaligned(fromByteOffset: at, as: UInt64.self))
    }
    private func bytes(_ at: Int, _ count: Int) -> UnsafeRawBufferPointer? {
        guard at >= 0, count >= 0, at <= file.count - count else { return nil }
        return UnsafeRawBufferPointer(rebasing: file[at..<(at + count)])
    }

    /// A database record (`MDB_db`) at byte `at`.
    struct DBRecord {
        var flags: UInt16, depth: UInt16
        var branchPages: UInt64, leafPages: UInt64, overflowPages: UInt64, entries: UInt64, root: UInt64
    }

    private func dbRecord(_ b: UnsafeRawBufferPointer) -> DBRecord? {
        guard b.count == Self.dbRecordSize else { return nil }
        func q(_ i: Int) -> UInt64 { UInt64(littleEndian: b.loadUnaligned(fromByteOffset: i, as: UInt64.self)) }
        return DBRecord(flags: UInt16(littleEndian: b.loadUnaligned(fromByteOffset: 4, as: UInt16.self)),
                        depth: UInt16(littleEndian: b.loadUnaligned(fromByteOffset: 6, as: UInt16.self)),
                        branchPages: q(8), leafPages: q(16), overflowPages: q(24), entries: q(32), root: q(40))
    }

    // MARK: The walk

    private struct Meta { var index: Int; var pageSize: Int; var free: DBRecord; var main: DBRecord; var lastPage: UInt64; var txnid: UInt64 }

    private func readMeta(_ index: Int, pageSize: Int) -> Meta? {
        let at = index * pageSize
        guard u32(at + 16) == 0xBEEF_C0DE, u32(at + 20) == 1,
              let flags = u16(at + 10), flags & Self.pMeta != 0,
              let ps = u32(at + 40), Int(ps) == pageSize,
              let free = bytes(at + 40, 48).flatMap(dbRecord), let main = bytes(at + 88, 48).flatMap(dbRecord),
              let last = u64(at + 136), let txnid = u64(at + 144) else { return nil }
        return Meta(index: index, pageSize: pageSize, free: free, main: main, lastPage: last, txnid: txnid)
    }

    private func run() {
        // The page size is in meta 0 (and must agree in meta 1).
        var candidates: [Meta] = []
        for ps in [4096, 8192, 16384, 32768, 65536, 1024, 2048, 512] {
            candidates = [readMeta(0, pageSize: ps), readMeta(1, pageSize: ps)].compactMap { $0 }
            if !candidates.isEmpty { break }
        }
        guard !candidates.isEmpty else {
            problems.append(PageProblem(database: "", page: 0, problem: "neither meta page is readable (not an LMDB data file, or both damaged)"))
            return
        }
        if candidates.count == 1 {
            problems.append(PageProblem(database: "", page: UInt64(1 - candidates[0].index), problem: "meta page is damaged; using the other one", losesRecords: false))
        }
        // LMDB writes meta page (id & 1) at each commit, so the current meta's page
        // matches its id's parity and the other holds the commit before it. A flip
        // in an id would make LMDB read an older snapshot as current.
        if candidates.count == 2 {
            let current = candidates.max { $0.txnid < $1.txnid }!, other = candidates.min { $0.txnid < $1.txnid }!
            // The file only grows: an older snapshot cannot use more pages than a newer one.
            if current.txnid & 1 != UInt64(current.index) || other.txnid &+ 1 != current.txnid || other.lastPage > current.lastPage {
                problems.append(PageProblem(database: "", page: UInt64(current.index),
                                            problem: "meta pages name transactions \(candidates[0].txnid) and \(candidates[1].txnid), which cannot follow each other", losesRecords: false))
            }
        }
        // LMDB uses the meta with the larger transaction id; when that one's trees
        // are damaged and the older one's are whole, the older snapshot is kept.
        candidates.sort { $0.txnid > $1.txnid }
        // The newest snapshot is read unless damage cost it records that an older,
        // whole one still has.
        var best: PageWalk?, newest: PageWalk?
        for m in candidates {
            let attempt = PageWalk(file: file)
            attempt.problems = problems
            attempt.walk(m)
            if newest == nil { newest = attempt }
            if attempt.lostRecords == 0 && best == nil { best = attempt; break }
            // Both damaged: keep the one that still hands out more records.
            if let b = best, b.recordCount >= attempt.recordCount { continue }
            best = attempt
        }
        if let best, let newest, best !== newest {
            // LMDB reads the newest snapshot; when only an older one is whole, the
            // records come from it, and the newest one's damage is what gets reported.
            best.problems.insert(contentsOf: newest.problems.dropFirst(problems.count).prefix(20), at: problems.count)
            best.problems.insert(PageProblem(database: "", page: UInt64(candidates[0].index),
                                             problem: "the newest snapshot (transaction \(candidates[0].txnid)) is damaged; the previous one (transaction \(best.transactionID)) is whole and is what was read"),
                                 at: problems.count)
        }
        if let best {
            problems = best.problems; records = best.records; databaseNames = best.databaseNames
            meta = best.meta; transactionID = best.transactionID; pageSize = best.pageSize; pagesInUse = best.pagesInUse
        }
    }

    private func walk(_ m: Meta) {
        meta = m.index; transactionID = m.txnid; pageSize = m.pageSize; lastPage = m.lastPage
        pagesInUse = m.lastPage &+ 1
        let filePages = UInt64(file.count / m.pageSize)
        guard m.lastPage >= 1 else {
            problems.append(PageProblem(database: "", page: UInt64(m.index), problem: "meta page's last page \(m.lastPage) is impossible"))
            return
        }
        if m.lastPage >= filePages {
            // Cut short: what lies in the pages that are there can still be read.
            problems.append(PageProblem(database: "", page: UInt64(m.index),
                                        problem: "meta page says \(m.lastPage &+ 1) pages are in use, the file holds \(filePages): the copy looks incomplete", losesRecords: false))
            // A page cut part way still holds the entries before the cut (LMDB's own
            // mapping reads them too); those past it are reported as lost one by one.
            let partial = UInt64((file.count + m.pageSize - 1) / m.pageSize)
            lastPage = max(partial, 2) - 1
        }
        visited[0] = "meta"; visited[1] = "meta"
        if m.main.flags != 0 || m.free.flags != Self.integerKey {
            problems.append(PageProblem(database: "", page: UInt64(m.index), problem: "meta page's database flags are damaged", losesRecords: false))
        }
        // The list of named databases: main-tree leaves whose values are MDB_db records.
        var named: [(String, DBRecord)] = []
        walkTree(m.main, database: "", label: "list of databases") { key, value, flags in
            let name = String(decoding: key, as: UTF8.self)
            guard flags & Self.fSubData != 0, let r = dbRecord(value) else {
                return "entry '\(name)' is not a database record"
            }
            // The flags noisy's databases may carry: duplicates (sorted), nothing else.
            guard r.flags & ~Self.dupSort == 0 else { return "database '\(name)' has damaged flags 0x\(String(r.flags, radix: 16))" }
            named.append((name, r))
            return nil
        }
        databaseNames = named.map(\.0)
        for (name, r) in named {
            var out: [(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer)] = []
            out.reserveCapacity(Int(clamping: min(r.entries, 1 << 24)))
            let dup = r.flags & Self.dupSort != 0
            walkTree(r, database: name, label: name) { key, value, flags in
                if flags & Self.fDupData != 0 {
                    guard dup else { return "duplicate values in a database without them" }
                    return walkDuplicates(key: key, value: value, nodeFlags: flags, database: name, parentFlags: r.flags) {
                        out.append((key, $0))
                    }
                }
                if flags & Self.fSubData != 0 {
                    // LMDB reads such an entry as plain data (the flag matters only with duplicates).
                    problems.append(PageProblem(database: name, problem: "an entry is flagged as a nested database",
                                                lowKey: Array(key), highKey: Array(key), losesRecords: false))
                }
                out.append((key, value))
                return nil
            }
            records[name] = out
        }
        walkFreeList(m.free)
        let accounted = UInt64(visited.count)
        if accounted != pagesInUse && problems.isEmpty {
            problems.append(PageProblem(database: "", problem: "\(pagesInUse - min(accounted, pagesInUse)) pages are neither in a tree nor free (the free list or a tree lost track of them)", losesRecords: false))
        }
    }

    /// Visits one tree; `leaf` gets each record (key, resolved value, node flags)
    /// and returns a problem or nil. Counts are checked against the record.
    private func walkTree(_ r: DBRecord, database: String, label: String, integerKeys: Bool? = nil,
                                   leaf: (UnsafeRawBufferPointer, UnsafeRawBufferPointer, UInt16) -> String?) {
        guard r.root != Self.invalidPage else {
            if r.entries != 0 || r.depth != 0 {
                problems.append(PageProblem(database: database, problem: "empty tree claims \(r.entries) entries", losesRecords: false))
            }
            return
        }
        let intKeys = integerKeys ?? (r.flags & Self.integerKey != 0)
        var counts = (branch: UInt64(0), leaf: UInt64(0), overflow: UInt64(0), entries: UInt64(0))
        let before = problems.count
        visit(r.root, depth: 1, maxDepth: Int(r.depth), low: nil, high: nil, database: database, label: label,
              integerKeys: intKeys, counts: &counts, leaf: leaf)
        // Counts only mean something when every page was readable.
        if problems.count == before {
            if counts.branch != r.branchPages || counts.leaf != r.leafPages || counts.overflow != r.overflowPages {
                problems.append(PageProblem(database: database, problem: "tree has \(counts.branch)/\(counts.leaf)/\(counts.overflow) branch/leaf/overflow pages, its record says \(r.branchPages)/\(r.leafPages)/\(r.overflowPages)", losesRecords: false))
            }
            if counts.entries != r.entries {
                problems.append(PageProblem(database: database, problem: "tree holds \(counts.entries) entries, its record says \(r.entries)", losesRecords: false))
            }
        }
    }

    private func compare(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, integer: Bool) -> Int {
        if integer, a.count == 8, b.count == 8 {
            let x = a.loadUnaligned(as: UInt64.self), y = b.loadUnaligned(as: UInt64.self)
            return x < y ? -1 : (x == y ? 0 : 1)
        }
        let n = min(a.count, b.count)
        if n > 0, let pa = a.baseAddress, let pb = b.baseAddress {
            let c = memcmp(pa, pb, n)
            if c != 0 { return c < 0 ? -1 : 1 }
        }
        return a.count < b.count ? -1 : (a.count == b.count ? 0 : 1)
    }

    /// Claims a page for `label`; false (and a problem) when it is out of range or used twice.
    /// Claims a page for `label`. Out of range: nil (and a problem). Already used:
    /// false (and a problem): a damaged pointer in one tree can name another tree's
    /// page, and which of the two is wrong is not known here, so a leaf page used
    /// twice is still read for both (its records are whole) while a branch page is not
    /// descended twice (that bounds the walk however the pointers loop).
    private func claim(_ pgno: UInt64, database: String, label: String) -> Bool? {
        guard pgno >= 2, pgno <= lastPage else {
            problems.append(PageProblem(database: database, page: pgno, problem: "page number out of range (the file has \(lastPage &+ 1) pages in use)"))
            return nil
        }
        if let owner = visited[pgno] {
            problems.append(PageProblem(database: database, page: pgno, problem: "page is used twice (also by \(owner))", losesRecords: false))
            return false
        }
        visited[pgno] = label
        return true
    }

    private func visit(_ pgno: UInt64, depth: Int, maxDepth: Int, low: UnsafeRawBufferPointer?, high: UnsafeRawBufferPointer?,
                                database: String, label: String, integerKeys: Bool,
                                counts: inout (branch: UInt64, leaf: UInt64, overflow: UInt64, entries: UInt64),
                                leaf: (UnsafeRawBufferPointer, UnsafeRawBufferPointer, UInt16) -> String?) {
        func bad(_ s: String, loses: Bool = true) {
            problems.append(PageProblem(database: database, page: pgno, problem: s, lowKey: low.map { Array($0) }, highKey: high.map { Array($0) },
                                        losesRecords: loses))
        }
        // LMDB follows branch pages down to a leaf and does not read the depth; a
        // cursor holds at most 32 levels, which bounds the walk however pointers loop.
        guard depth <= 32 else { bad("tree is deeper than 32 levels"); return }
        guard let first = claim(pgno, database: database, label: label) else { return }
        if !first && depth < maxDepth { return }
        let base = Int(pgno) * pageSize
        guard let pageNumber = u64(base), let flags = u16(base + 10), let lower = u16(base + 12), let upper = u16(base + 14) else {
            bad("page lies past the end of the file"); return
        }
        // What LMDB itself relies on when it reads a page decides whether its records
        // are read; anything else that is wrong is reported and the records kept
        // (LMDB never reads a page's own number, its unused flag bits or `upper`).
        if pageNumber != pgno { bad("page header names page \(pageNumber)", loses: false) }
        // LMDB tells the kinds apart by the branch and leaf bits alone (a meta or
        // overflow bit on a tree page is never read there). With both bits set the
        // tree's depth, which LMDB does not read either, decides.
        let isBranch = flags & Self.pBranch != 0, isLeafBit = flags & Self.pLeaf != 0
        guard isBranch || isLeafBit else {
            bad("page flags 0x\(String(flags, radix: 16)), expected a branch or leaf page"); return
        }
        let isLeaf = isBranch && isLeafBit ? depth == maxDepth : isLeafBit
        if isLeaf != (depth == maxDepth) {
            bad("a \(isLeaf ? "leaf" : "branch") page at depth \(depth) of a tree whose record says \(maxDepth)", loses: false)
        }
        let expected = (isLeaf ? Self.pLeaf : Self.pBranch) | Self.pLeaf2
        if flags & ~expected != 0 { bad("page flags 0x\(String(flags, radix: 16)) carry bits a \(isLeaf ? "leaf" : "branch") page does not", loses: false) }
        let lo = Int(lower), up = Int(upper)
        guard lo >= Self.headerSize, lo <= pageSize, (lo - Self.headerSize) % 2 == 0 else {
            bad("entry table end \(lo) is impossible"); return
        }
        if up < lo || up > pageSize { bad("free-space end \(up) is impossible", loses: false) }
        let n = (lo - Self.headerSize) / 2
        guard n >= 1 else { bad("page holds no entries"); return }
        if isLeaf { counts.leaf += 1 } else { counts.branch += 1 }
        if flags & Self.pLeaf2 != 0 {
            bad("fixed-size leaf page in a tree that does not use them"); return
        }
        var previous: UnsafeRawBufferPointer?
        var children: [(UInt64, UnsafeRawBufferPointer?)] = []
        var orderReported = false
        func disorder(_ s: String) {
            if !orderReported { bad(s, loses: false) }
            orderReported = true
        }
        for i in 0..<n {
            guard let offset16 = u16(base + Self.headerSize + 2 * i) else { bad("entry table is cut off"); return }
            let off = Int(offset16)
            guard off >= lo, off + Self.nodeSize <= pageSize,
                  let mnLo = u16(base + off), let mnHi = u16(base + off + 2), let nf = u16(base + off + 4),
                  let ksize = u16(base + off + 6) else {
                bad(base + off + Self.nodeSize > file.count ? "entry \(i) lies past the end of the file" : "entry \(i) lies outside the page")
                continue
            }
            guard off + Self.nodeSize + Int(ksize) <= pageSize, let key = bytes(base + off + Self.nodeSize, Int(ksize)) else {
                // A branch entry's child number is whole even when its key is not: LMDB
                // never reads the first key, and a damaged separator only widens the bounds.
                if !isLeaf {
                    if i > 0 { bad("entry \(i)'s key lies outside the page", loses: false) }
                    children.append((UInt64(mnLo) | UInt64(mnHi) << 16 | UInt64(nf) << 32, nil))
                    continue
                }
                bad("entry \(i) lies outside the page"); continue
            }
            // Key order: strictly increasing, inside the parent's bounds (a branch's
            // first key is a placeholder LMDB never compares).
            if isLeaf || i > 0 {
                // Order is what searches rely on; a scan reads the records regardless.
                if let previous, compare(previous, key, integer: integerKeys) >= 0 { disorder("keys out of order at entry \(i)") }
                if let low, compare(key, low, integer: integerKeys) < 0 { disorder("key below its parent's separator at entry \(i)") }
                if let high, compare(key, high, integer: integerKeys) >= 0 { disorder("key above its parent's next separator at entry \(i)") }
                previous = key
            }
            if isLeaf {
                let dsize = Int(UInt32(mnLo) | UInt32(mnHi) << 16)
                let dataAt = base + off + Self.nodeSize + Int(ksize)
                let value: UnsafeRawBufferPointer
                if nf & Self.fBigData != 0 {
                    guard nf & (Self.fSubData | Self.fDupData) == 0, off + Self.nodeSize + Int(ksize) + 8 <= pageSize,
                          let overflow = u64(dataAt) else { bad("entry \(i) has an impossible large-value reference"); continue }
                    guard let v = readOverflow(overflow, size: dsize, database: database, label: label, key: key, counts: &counts) else {
                        continue  // problem recorded; the record is lost, the rest of the page is not
                    }
                    value = v
                } else if nf & Self.fSubData != 0 && (database.isEmpty || nf & Self.fDupData != 0) && dsize != Self.dbRecordSize {
                    // A database record (in the list of databases, or a nested tree of
                    // duplicates) is an MDB_db, which LMDB copies by its own size and never
                    // by the node's: a damaged size field loses nothing. Elsewhere the flag
                    // is itself the damage, and LMDB reads the entry as data by its size.
                    guard off + Self.nodeSize + Int(ksize) + Self.dbRecordSize <= pageSize,
                          let v = bytes(dataAt, Self.dbRecordSize) else { bad("entry \(i)'s value lies outside the page"); continue }
                    bad("entry \(i)'s size field says \(dsize) bytes; a database record is \(Self.dbRecordSize)", loses: false)
                    value = v
                } else {
                    guard off + Self.nodeSize + Int(ksize) + dsize <= pageSize,
                          let v = bytes(dataAt, dsize) else { bad("entry \(i)'s value lies outside the page"); continue }
                    value = v
                }
                if nf & Self.fDupData == 0 { counts.entries += 1 }
                if let problem = leaf(key, value, nf) {
                    problems.append(PageProblem(database: database, page: pgno, problem: problem, lowKey: Array(key), highKey: Array(key)))
                    continue
                }
                if nf & Self.fDupData != 0 { counts.entries += dupCount }
            } else {
                let child = UInt64(mnLo) | UInt64(mnHi) << 16 | UInt64(nf) << 32
                children.append((child, i == 0 ? nil : key))
            }
        }
        for (i, (child, separator)) in children.enumerated() {
            let childLow = i == 0 ? low : separator
            let childHigh = i + 1 < children.count ? children[i + 1].1 : high
            visit(child, depth: depth + 1, maxDepth: maxDepth, low: childLow, high: childHigh, database: database,
                  label: label, integerKeys: integerKeys, counts: &counts, leaf: leaf)
        }
    }

    /// Duplicates counted by the last `walkDuplicates` (added to the entry count).
    private var dupCount: UInt64 = 0

    private func readOverflow(_ pgno: UInt64, size: Int, database: String, label: String, key: UnsafeRawBufferPointer,
                                       counts: inout (branch: UInt64, leaf: UInt64, overflow: UInt64, entries: UInt64)) -> UnsafeRawBufferPointer? {
        func bad(_ s: String, loses: Bool = true) {
            problems.append(PageProblem(database: database, page: pgno, problem: s, lowKey: Array(key), highKey: Array(key), losesRecords: loses))
        }
        guard pgno >= 2, pgno <= lastPage else { bad("large value's page number is out of range"); return nil }
        let base = Int(pgno) * pageSize
        guard let header = u64(base), let flags = u16(base + 10), let pages = u32(base + 12) else { bad("large value lies past the end of the file"); return nil }
        // LMDB reads a large value by its node's size alone; the header is checked
        // and reported, but only the size decides which pages hold the value.
        if header != pgno || flags != Self.pOverflow { bad("large value's page header is damaged", loses: false) }
        let needed = (Self.headerSize + size + pageSize - 1) / pageSize
        if Int(pages) != needed { bad("large value of \(size) bytes claims \(pages) pages, needs \(needed)", loses: false) }
        guard pgno + UInt64(needed) - 1 <= lastPage, let value = bytes(base + Self.headerSize, size) else {
            bad("large value of \(size) bytes runs past the pages in use"); return nil
        }
        for p in pgno..<(pgno + UInt64(needed)) {
            guard claim(p, database: database, label: label) != nil else { return nil }
        }
        counts.overflow += UInt64(needed)
        return value
    }

    /// The values stored under one key of a duplicate-keys database: a sub-page
    /// inside the node, or a nested tree whose keys are the values.
    private func walkDuplicates(key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, nodeFlags: UInt16,
                                         database: String, parentFlags: UInt16, _ emit: (UnsafeRawBufferPointer) -> Void) -> String? {
        dupCount = 0
        if nodeFlags & Self.fSubData != 0 {
            guard let r = dbRecord(value) else { return "nested duplicates record is damaged" }
            var n: UInt64 = 0
            let before = problems.count
            walkTree(r, database: database, label: database, integerKeys: parentFlags & Self.integerDup != 0) { k, _, f in
                guard f == 0 else { return "nested duplicate carries flags" }
                emit(k); n += 1
                return nil
            }
            dupCount = n
            return problems.count == before ? nil : "duplicates of this key are damaged"
        }
        // A sub-page: a page header and nodes, offsets relative to the sub-page.
        guard value.count >= Self.headerSize else { return "duplicates sub-page is too short" }
        let flags = UInt16(littleEndian: value.loadUnaligned(fromByteOffset: 10, as: UInt16.self))
        let lower = Int(UInt16(littleEndian: value.loadUnaligned(fromByteOffset: 12, as: UInt16.self)))
        let upper = Int(UInt16(littleEndian: value.loadUnaligned(fromByteOffset: 14, as: UInt16.self)))
        // A sub-page is built in memory and keeps the dirty bit it had there.
        guard flags & ~Self.pDirty == Self.pLeaf | Self.pSubpage, lower >= Self.headerSize, lower <= upper, upper <= value.count,
              (lower - Self.headerSize) % 2 == 0 else { return "duplicates sub-page header is damaged" }
        let n = (lower - Self.headerSize) / 2
        guard n >= 1 else { return "duplicates sub-page is empty" }
        var previous: UnsafeRawBufferPointer?
        var found: [UnsafeRawBufferPointer] = []
        for i in 0..<n {
            let off = Int(UInt16(littleEndian: value.loadUnaligned(fromByteOffset: Self.headerSize + 2 * i, as: UInt16.self)))
            guard off >= upper, off + Self.nodeSize <= value.count else { return "duplicate \(i) lies outside its sub-page" }
            let ksize = Int(UInt16(littleEndian: value.loadUnaligned(fromByteOffset: off + 6, as: UInt16.self)))
            let nf = UInt16(littleEndian: value.loadUnaligned(fromByteOffset: off + 4, as: UInt16.self))
            guard nf == 0, off + Self.nodeSize + ksize <= value.count else { return "duplicate \(i) lies outside its sub-page" }
            let v = UnsafeRawBufferPointer(rebasing: value[(off + Self.nodeSize)..<(off + Self.nodeSize + ksize)])
            if let previous, compare(previous, v, integer: false) >= 0 { return "duplicates out of order" }
            previous = v
            found.append(v)
        }
        for v in found { emit(v) }
        dupCount = UInt64(n)
        return nil
    }

    /// The free list: transaction id -> list of page numbers (count, then pages).
    private func walkFreeList(_ r: DBRecord) {
        var free: [UInt64] = []
        walkTree(r, database: "free list", label: "free list", integerKeys: true) { key, value, flags in
            // A long list of free pages lives in overflow pages (already resolved here).
            guard key.count == 8, flags & ~Self.fBigData == 0, value.count >= 8, value.count % 8 == 0 else { return "free-list record is damaged" }
            let n = UInt64(littleEndian: value.loadUnaligned(as: UInt64.self))
            guard n == UInt64(value.count / 8 - 1) else { return "free-list record's count disagrees with its length" }
            for i in 0..<Int(n) { free.append(UInt64(littleEndian: value.loadUnaligned(fromByteOffset: 8 * (i + 1), as: UInt64.self))) }
            return nil
        }
        for p in free {
            if p < 2 || p > lastPage {
                problems.append(PageProblem(database: "free list", page: p, problem: "free page number out of range", losesRecords: false))
            } else if let owner = visited[p] {
                problems.append(PageProblem(database: "free list", page: p, problem: "page is listed as free but used by \(owner)", losesRecords: false))
            } else {
                visited[p] = "free list"
            }
        }
    }
}
