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
        public var category: String
        public var reason: String
    }
}

/// Walks an ingest folder. Labeled and test folders hold one subfolder per class;
/// an unlabeled folder is any tree. Hidden entries are ignored. A symlink is
/// followed only when it resolves to a file inside the folder; anything else it
/// points to is refused with a reason, so ingest never reads outside what it was given.
public enum FolderScanner {
    public static func scan(_ root: String, split: Split) throws -> [ScannedFile] {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: root, isDirectory: &isDir) else {
            throw StoreError(.missingFolder, "\(root): no such folder (--\(split.rawValue))")
        }
        guard isDir.boolValue else { throw StoreError(.missingFolder, "\(root): not a folder (--\(split.rawValue))") }
        let rootURL = URL(fileURLWithPath: root).standardizedFileURL
        let realRoot = (rootURL.path as NSString).resolvingSymlinksInPath
        var out: [ScannedFile] = []
        walk(rootURL.path, relative: "", realRoot: realRoot, split: split, depth: 0, into: &out)
        out.sort { $0.source < $1.source }
        return out
    }

    private static func walk(_ dir: String, relative: String, realRoot: String, split: Split, depth: Int,
                             into out: inout [ScannedFile]) {
        let fm = FileManager.default
        let classed = split != .unlabeled
        guard let names = try? fm.contentsOfDirectory(atPath: dir) else {
            out.append(ScannedFile(split: split, path: dir, source: relative, className: nil,
                                   refusal: .init(category: "unreadable", reason: "cannot list folder: permission denied or unreadable")))
            return
        }
        for name in names.sorted() where !name.hasPrefix(".") {
            let full = dir + "/" + name
            let rel = relative.isEmpty ? name : relative + "/" + name
            let className = classed ? rel.split(separator: "/").first.map(String.init) : nil
            var st = stat()
            guard lstat(full, &st) == 0 else {
                out.append(ScannedFile(split: split, path: full, source: rel, className: className,
                                       refusal: .init(category: "unreadable", reason: "cannot stat: \(String(cString: strerror(errno)))")))
                continue
            }
            var mode = st.st_mode & S_IFMT
            if mode == S_IFLNK {
                let target = (full as NSString).resolvingSymlinksInPath
                var tst = stat()
                if stat(full, &tst) != 0 {
                    out.append(ScannedFile(split: split, path: full, source: rel, className: className,
                                           refusal: .init(category: "broken_symlink", reason: "broken symlink")))
                    continue
                }
                guard target.hasPrefix(realRoot + "/") else {
                    out.append(ScannedFile(split: split, path: full, source: rel, className: className,
                                           refusal: .init(category: "symlink_outside", reason: "symlink leads outside \(realRoot) (not followed)")))
                    continue
                }
                mode = tst.st_mode & S_IFMT
                if mode == S_IFDIR {
                    out.append(ScannedFile(split: split, path: full, source: rel, className: className,
                                           refusal: .init(category: "symlinked_folder", reason: "symlinked folder (not followed)")))
                    continue
                }
            }
            if mode == S_IFDIR {
                walk(full, relative: rel, realRoot: realRoot, split: split, depth: depth + 1, into: &out)
            } else if mode == S_IFREG {
                if classed && depth == 0 {
                    out.append(ScannedFile(split: split, path: full, source: rel, className: nil,
                                           refusal: .init(category: "not_in_class_folder", reason: "not inside a class folder (expected \(split.rawValue) folder/<class>/<file>)")))
                } else {
                    out.append(ScannedFile(split: split, path: full, source: rel, className: className, refusal: nil))
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
