import Foundation
import ImageCodec
import Pixels

/// Test fixtures built on the spot with our own encoder: nothing is downloaded.
public enum Fixtures {
    /// A smooth, non-trivial RGB or gray image (gradients plus a seeded texture),
    /// the kind of content JPEG encodes realistically.
    public static func image(width: Int, height: Int, channels: Int = 3, seed: UInt64 = 1) -> Image {
        var img = Image(width: width, height: height, channels: channels)
        var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        for y in 0..<height {
            for x in 0..<width {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17
                let noise = Int(s % 24)
                for c in 0..<channels {
                    let base = (x * 255 / max(1, width - 1) * (c + 1) + y * 255 / max(1, height - 1) * (3 - c)) / 4
                    let wave = Int(40 * sin(Double(x + c * 7) / 9.0) * cos(Double(y) / 13.0))
                    img[x, y, c] = UInt8(clamping: base + wave + noise)
                }
            }
        }
        return img
    }

    public static func jpeg(width: Int, height: Int, channels: Int = 3, quality: Int = 90, progressive: Bool = false,
                            seed: UInt64 = 1) -> [UInt8] {
        (try? Codec.encodeJPEG(image(width: width, height: height, channels: channels, seed: seed),
                               quality: quality, progressive: progressive)) ?? []
    }

    public static func png(width: Int, height: Int, channels: Int = 3, seed: UInt64 = 1) -> [UInt8] {
        (try? Codec.encodePNG(image(width: width, height: height, channels: channels, seed: seed))) ?? []
    }

    /// A fresh temporary folder, removed by the caller's `defer`.
    public static func temporaryDirectory(_ name: String = #function) -> String {
        let safe = name.filter { $0.isLetter || $0.isNumber }
        let path = NSTemporaryDirectory() + "noisy-test-\(safe)-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    public static func write(_ bytes: [UInt8], to path: String) {
        let dir = (path as NSString).deletingLastPathComponent
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
    }

    /// Mean absolute difference of two equally sized images.
    public static func meanAbsoluteDifference(_ a: Image, _ b: Image) -> Double {
        precondition(a.pixels.count == b.pixels.count)
        var total = 0
        for i in 0..<a.pixels.count { total += abs(Int(a.pixels[i]) - Int(b.pixels[i])) }
        return Double(total) / Double(max(1, a.pixels.count))
    }
}

/// A finished child process.
public struct ProcessResult {
    /// The exit status, or the signal number when `terminationReason` is `.uncaughtSignal`.
    public var status: Int32
    public var terminationReason: Process.TerminationReason = .exit
    public var stdout: String
    public var stderr: String
    public var stdoutData: Data
}

public enum Processes {
    /// The repository root (tests run from anywhere).
    public static var repositoryRoot: String {
        var url = URL(fileURLWithPath: #filePath)
        while url.path != "/" {
            url.deleteLastPathComponent()
            if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { return url.path }
        }
        return FileManager.default.currentDirectoryPath
    }

    /// The `noisy` binary SwiftPM built next to the test bundle.
    public static var noisyBinary: String { builtBinary("noisy") }

    /// An executable SwiftPM built next to the test bundle (a test target that
    /// depends on its target makes `swift test` build it).
    public static func builtBinary(_ name: String) -> String {
        var dir = Bundle.main.bundleURL
        for _ in 0..<3 {
            let candidate = dir.appendingPathComponent(name).path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir.deleteLastPathComponent()
        }
        return repositoryRoot + "/.build/debug/" + name
    }

    /// Debian's python3, which owns python3-numpy, -pil, -lmdb and -jsonschema.
    public static let python = "/usr/bin/python3"

    /// The project's virtual environment (torch, torchvision, timm, Pillow 13 from
    /// PyPI, pinned in tools/python-env.sh). `tools/bootstrap.sh` starts building it
    /// in the background; this waits for that build, or builds it, once per process.
    /// Throws, failing the test, when it cannot be had: it is never skipped.
    public static func torchPython() throws -> String {
        try venvReady.get()
        return repositoryRoot + "/.venv/bin/python"
    }

    /// The Python of `.venv-ic/`: the reference ImageNet-C corruptions (imagecorruptions 1.1.2
    /// from PyPI, with the dependencies it runs on; tools/python-env.sh builds it).
    public static func referencePython() throws -> String {
        try venvReady.get()
        return repositoryRoot + "/.venv-ic/bin/python"
    }

    private static let venvReady: Result<Void, ProcessFailure> = {
        do {
            let r = try run("/bin/bash", [repositoryRoot + "/tools/python-env.sh"])
            return r.status == 0 ? .success(()) : .failure(ProcessFailure("tools/python-env.sh failed: \(r.stdout)\(r.stderr)"))
        } catch {
            return .failure(ProcessFailure("tools/python-env.sh: \(error)"))
        }
    }()

    /// Runs a script with the virtual environment's Python.
    public static func torchScript(_ script: String, _ arguments: [String] = []) throws -> ProcessResult {
        try run(try torchPython(), ["-c", script] + arguments)
    }

    @discardableResult
    public static func run(_ executable: String, _ arguments: [String], stdin: Data? = nil,
                           environment: [String: String]? = nil) throws -> ProcessResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        if let environment { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let out = Pipe(), err = Pipe(), inp = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = inp
        try p.run()
        if let stdin { inp.fileHandleForWriting.write(stdin) }
        try? inp.fileHandleForWriting.close()
        // Drain both pipes concurrently so a chatty child cannot block on a full pipe.
        let errBox = DataBox()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            errBox.data = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        p.waitUntilExit()
        return ProcessResult(status: p.terminationStatus, terminationReason: p.terminationReason,
                             stdout: String(decoding: outData, as: UTF8.self),
                             stderr: String(decoding: errBox.data, as: UTF8.self), stdoutData: outData)
    }

    /// Starts `noisy` in the background with its output discarded (for kill and
    /// concurrency tests); with `stderr`, its error output goes to that file, so a
    /// failure can say why.
    public static func spawnNoisy(_ arguments: [String], stderr: String? = nil) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: noisyBinary)
        p.arguments = arguments
        p.standardOutput = FileHandle.nullDevice
        if let stderr, FileManager.default.createFile(atPath: stderr, contents: nil),
           let handle = FileHandle(forWritingAtPath: stderr) {
            p.standardError = handle
        } else {
            p.standardError = FileHandle.nullDevice
        }
        try p.run()
        return p
    }

    /// Starts `noisy serve` with its stderr in `log`, and waits until the log says
    /// `ready` (the server accepts connections); returns the running process.
    public static func startServer(_ arguments: [String], log: String, ready: String = "serving") throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: noisyBinary)
        p.arguments = ["serve"] + arguments
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        p.standardError = FileHandle(forWritingAtPath: log)
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        for _ in 0..<400 {
            if (try? String(contentsOfFile: log, encoding: .utf8))?.contains(ready) == true { return p }
            usleep(25_000)
        }
        p.terminate()
        throw ServerDidNotStart(log: (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }

    public struct ServerDidNotStart: Error, CustomStringConvertible {
        public let log: String
        public var description: String { "server did not start: \(log)" }
    }

    public static func noisy(_ arguments: [String]) throws -> ProcessResult {
        try run(noisyBinary, arguments)
    }

    /// Runs a Python snippet with Debian's python3.
    public static func python(_ script: String, _ arguments: [String] = []) throws -> ProcessResult {
        try run(python, ["-c", script] + arguments)
    }

    /// Validates JSON documents against a schema in schemas/ with python3-jsonschema.
    /// Returns nil when valid, else the validator's message.
    public static func schemaViolation(schema: String, json: Data, lines: Bool = false) throws -> String? {
        let script = """
        import glob, json, os, sys, jsonschema
        schema = json.load(open(sys.argv[1]))
        jsonschema.Draft202012Validator.check_schema(schema)
        # Every schema in the folder, by $id, so that "$ref": "generation.schema.json" resolves.
        store = {}
        for f in glob.glob(os.path.join(os.path.dirname(sys.argv[1]), "*.schema.json")):
            s = json.load(open(f)); store[s["$id"]] = s
        resolver = jsonschema.RefResolver(base_uri=schema["$id"], referrer=schema, store=store)
        validator = jsonschema.Draft202012Validator(schema, resolver=resolver)
        text = sys.stdin.read()
        docs = [json.loads(l) for l in text.splitlines() if l.strip()] if sys.argv[2] == "lines" else [json.loads(text)]
        if not docs: sys.exit("no JSON document to validate")
        for d in docs: validator.validate(d)
        print("valid", len(docs))
        """
        let r = try run(python, ["-c", script, repositoryRoot + "/schemas/" + schema, lines ? "lines" : "one"], stdin: json)
        return r.status == 0 ? nil : r.stderr
    }
}

/// `@unchecked Sendable`: written by one background block, read after `group.wait()`.
final class DataBox: @unchecked Sendable { var data = Data() }

/// A helper process that could not do its part, with what it said.
public struct ProcessFailure: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}
