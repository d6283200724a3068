import DatasetStore
import StreamServer
import ArgumentParser
import Foundation

/// Output helpers: errors on stderr in one line, JSON on stdout, progress on a
/// terminal as a bar and elsewhere as periodic plain lines.
enum Terminal {
    /// `text` wrapped at word boundaries into lines of at most `width` characters, each
    /// starting with `indent` (later lines with `hanging` too). For help text made up at
    /// run time: ArgumentParser keeps a discussion's line breaks and wraps only lines
    /// longer than the terminal, which leaves ragged stubs.
    static func wrapped(_ text: String, width: Int = 79, indent: String = "", hanging: String = "") -> String {
        var lines: [String] = []
        var line = ""
        for word in text.split(separator: " ") {
            let prefix = lines.isEmpty ? indent : indent + hanging
            if !line.isEmpty, prefix.count + line.count + 1 + word.count > width {
                lines.append(prefix + line)
                line = ""
            }
            line += line.isEmpty ? String(word) : " " + word
        }
        lines.append((lines.isEmpty ? indent : indent + hanging) + line)
        return lines.joined(separator: "\n")
    }

    static func error(_ message: String) {
        FileHandle.standardError.write(Data("noisy: error: \(message)\n".utf8))
    }

    /// A log line on stderr (servers, long jobs).
    static func info(_ message: String) {
        FileHandle.standardError.write(Data("noisy: \(message)\n".utf8))
    }

    static func warn(_ message: String) {
        FileHandle.standardError.write(Data("noisy: warning: \(message)\n".utf8))
    }

    /// Prints `value` as JSON. `snakeCase` converts camelCase property names (the
    /// generation records, which are stored that way).
    static func printJSON<T: Encodable>(_ value: T, snakeCase: Bool = false) throws {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        if snakeCase { e.keyEncodingStrategy = .convertToSnakeCase }
        let data = try e.encode(value)
        print(String(decoding: data, as: UTF8.self))
    }

    static var stderrIsTerminal: Bool { isatty(2) != 0 }
}

/// Runs a command body, turning any error into one line on stderr and exit code 1.
/// A file-size limit (`ulimit -f`) would otherwise kill the process with SIGXFSZ in
/// the middle of a write; ignored, the write fails with EFBIG and LMDB aborts the
/// transaction, so the user gets a message and the store its last commit.
func runReportingErrors(_ body: () throws -> Void) throws {
    signal(SIGXFSZ, SIG_IGN)
    do {
        try body()
    } catch let e as ExitCode {
        throw e
    } catch let e as ValidationError {
        throw e
    } catch {
        Terminal.error(FlagNames.describe(error))
        throw ExitCode.failure
    }
}

/// Library errors speak the domain ("threshold 1.2 is not a probability") and say
/// which request field they are about; here, and only here, that field becomes
/// the flag a user types.
enum FlagNames {
    static func flag(for field: RequestField) -> String {
        switch field {
        case .threshold: "--threshold"
        case .perClass: "--per-class"
        case .selectionName: "--name"
        case .precision: "--precision"
        case .sampleIDs: "--ids or --sources"
        case .logits: "--logits"
        case .overwrite: "--force"
        }
    }

    /// The error's one line, with the flag that controls it.
    static func describe(_ error: any Error) -> String {
        switch error {
        case let e as StoreError:
            return e.field.map { "\(e.message) (\(flag(for: $0)))" } ?? e.message
        case let e as WireError where e.kind == .remoteNotAllowed:
            return "\(e.description) (--allow-remote with --token-file)"
        default:
            return "\(error)"
        }
    }
}

/// A progress display for long work: files done, total, rate and ETA.
final class ProgressLine {
    let label: String
    private let tty = Terminal.stderrIsTerminal
    private var lastPrint = 0.0
    private let quiet: Bool

    let unit: String

    init(_ label: String, unit: String = "files", quiet: Bool = false) {
        self.label = label
        self.unit = unit
        self.quiet = quiet
    }

    func update(done: Int, total: Int, elapsed: Double) {
        guard !quiet else { return }
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let eta = rate > 0 ? Double(total - done) / rate : 0
        if tty {
            let width = 30
            let filled = total > 0 ? width * done / total : width
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            let line = String(format: "\r%@ [%@] %d/%d  %.0f/s  ETA %@ ", label, bar, done, total, rate, Self.duration(eta))
            FileHandle.standardError.write(Data(line.utf8))
            if done >= total { FileHandle.standardError.write(Data("\n".utf8)) }
        } else if elapsed - lastPrint >= 2 || done >= total {
            lastPrint = elapsed
            let line = String(format: "%@: %d/%d %@, %.0f/s, ETA %@\n", label, done, total, unit, rate, Self.duration(eta))
            FileHandle.standardError.write(Data(line.utf8))
        }
    }

    static func duration(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? "\(t / 3600)h\(t % 3600 / 60)m" : t >= 60 ? "\(t / 60)m\(t % 60)s" : "\(t)s"
    }
}
