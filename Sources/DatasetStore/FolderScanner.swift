import Foundation

/// One file found under an ingest folder, or the reason it cannot be read.
public struct ScannedFile: Sendable {
    public var split: Split
    /// Absolute path as found (what reports name).
    public var path: String
    /// Path relative to the ingest folder: the sample's `source`.
    public var source: String
    public var className: String?
    /// Set when the file is refused before reading (symlink out of the folder, ...).
    public var refusal: Refusal?

    /// Why a file was refused: a report category and a one-line reason.
    public struct Refusal: Sendable, Equatable {
        public var category: RefusalCategory
        public var reason: String
    }
}

/// Walks an ingest folder. Labeled and test folders hold one subfolder per class;
/// an unlabeled folder is any tree. Hidden entries are ignored. A symlink is
/// followed only when it resolves to a file inside the folder; anything else it
/// points to is refused with a reason, so ingest never reads outside what it was given.
///
/// The walk streams: it holds one folder's names at a time (plus the open folders
/// above it), never the whole tree, so ingest memory does not grow with the file
/// count. Files come in order of their relative path, the same order as sorting
/// every path, because a folder's entries are sorted with a "/" after folder names.
public enum FolderScanner {
    /// Checks that `root` is a folder (before anything is written).
    public static func checkRoot(_ root: String, split: Split) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root, isDirectory: &isDir) else {
            throw StoreError(.missingFolder, "\(root): no such folder (given as the \(split.rawValue) folder)")
        }
        guard isDir.boolValue else { throw StoreError(.missingFolder, "\(root): not a folder (given as the \(split.rawValue) folder)") }
    }

    /// Every file under `root`, in path order (for tests and small folders; ingest streams with `walk`).
    public static func scan(_ root: String, split: Split) throws -> [ScannedFile] {
        var out: [ScannedFile] = []
        try walk(root, split: split) { out.append($0) }
        return out
    }

    /// How many entries `walk` will visit (a cheap first pass, for progress totals).
    public static func count(_ root: String, split: Split) throws -> Int {
        var n = 0
        try walk(root, split: split, countOnly: true) { _ in n += 1 }
        return n
    }

    /// Calls `visit` for every file (or refusal) under `root`, in path order.
    public static func walk(_ root: String, split: Split, countOnly: Bool = false,
                            _ visit: (ScannedFile) throws -> Void) throws {
        try checkRoot(root, split: split)
        let rootURL = URL(fileURLWithPath: root).standardizedFileURL
        let realRoot = (rootURL.path as NSString).resolvingSymlinksInPath
        try withoutActuallyEscaping(visit) { visit in
            try Walker(realRoot: realRoot, split: split, countOnly: countOnly, visit: visit).walk(rootURL.path, relative: "", depth: 0)
        }
    }

    private struct Walker {
        let realRoot: String
        let split: Split
        let countOnly: Bool
        let visit: (ScannedFile) throws -> Void

        /// An entry, its lstat file type (0 when lstat failed, with the errno) and its sort key.
        private struct Entry { var name: String; var mode: mode_t; var statError: Int32; var key: String }

        func walk(_ dir: String, relative: String, depth: Int) throws {
            let classed = split != .unlabeled
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else {
                try visit(ScannedFile(split: split, path: dir, source: relative, className: nil,
                                      refusal: .init(category: .unreadable, reason: "cannot list folder: permission denied or unreadable")))
                return
            }
            // lstat once per entry: the sort key needs to know folders, and the visit reuses the mode.
            var entries: [Entry] = []
            entries.reserveCapacity(names.count)
            for name in names where !name.hasPrefix(".") {
                var st = stat()
                let ok = lstat(dir + "/" + name, &st) == 0
                let mode: mode_t = ok ? st.st_mode & S_IFMT : 0
                entries.append(Entry(name: name, mode: mode, statError: ok ? 0 : errno, key: mode == S_IFDIR ? name + "/" : name))
            }
            entries.sort { $0.key < $1.key }
            for entry in entries {
                let name = entry.name
                let full = dir + "/" + name
                let rel = relative.isEmpty ? name : relative + "/" + name
                let className = classed ? rel.split(separator: "/").first.map(String.init) : nil
                func refuse(_ category: RefusalCategory, _ reason: String) throws {
                    try visit(ScannedFile(split: split, path: full, source: rel, className: className,
                                          refusal: .init(category: category, reason: reason)))
                }
                var mode = entry.mode
                if mode == 0 {
                    try refuse(.unreadable, "cannot stat: \(String(cString: strerror(entry.statError)))")
                    continue
                }
                if mode == S_IFLNK {
                    var tst = stat()
                    if stat(full, &tst) != 0 { try refuse(.brokenSymlink, "broken symlink"); continue }
                    let target = (full as NSString).resolvingSymlinksInPath
                    guard target.hasPrefix(realRoot + "/") else {
                        try refuse(.symlinkOutside, "symlink leads outside \(realRoot) (not followed)")
                        continue
                    }
                    mode = tst.st_mode & S_IFMT
                    if mode == S_IFDIR { try refuse(.symlinkedFolder, "symlinked folder (not followed)"); continue }
                }
                if mode == S_IFDIR {
                    try walk(full, relative: rel, depth: depth + 1)
                } else if mode == S_IFREG {
                    if classed && depth == 0 {
                        try refuse(.notInClassFolder, "not inside a class folder (expected \(split.rawValue) folder/<class>/<file>)")
                    } else if countOnly {
                        try visit(ScannedFile(split: split, path: "", source: "", className: nil, refusal: nil))
                    } else {
                        try visit(ScannedFile(split: split, path: full, source: rel, className: className, refusal: nil))
                    }
                } else {
                    // A FIFO, socket or device: opening one can block or read forever.
                    let kind = mode == S_IFIFO ? "a FIFO" : mode == S_IFSOCK ? "a socket" : mode == S_IFCHR || mode == S_IFBLK ? "a device" : "not a file"
                    try refuse(.notARegularFile, "\(kind), not a regular file (not read)")
                }
            }
        }
    }

    /// Class folders directly under a labeled or test root.
    public static func classFolders(_ root: String) -> [String] {
        let fm = FileManager.default
        let names = (try? fm.contentsOfDirectory(atPath: root)) ?? []
        return names.filter { name in
            // lstat semantics: a symlinked folder is not followed, so it is not a class.
            guard !name.hasPrefix("."), let attrs = try? fm.attributesOfItem(atPath: root + "/" + name) else { return false }
            return attrs[.type] as? FileAttributeType == .typeDirectory
        }.sorted()
    }
}
