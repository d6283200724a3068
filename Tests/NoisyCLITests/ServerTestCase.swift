import XCTest
import TestSupport

/// A test case with a temporary folder and at most one `noisy serve` process,
/// stopped on tear-down.
class ServerTestCase: XCTestCase {
    var root = ""
    var server: Process?
    override func setUp() { root = Fixtures.temporaryDirectory(name) }
    override func tearDown() {
        if let s = server, s.isRunning { s.terminate(); s.waitUntilExit() }
        try? FileManager.default.removeItem(atPath: root)
    }

    /// Starts the server and waits until its log says `ready`; stderr goes to log.txt.
    func startServer(_ args: [String], ready: String = "serving") throws {
        server = try Processes.startServer(args, log: "\(root)/log.txt", ready: ready)
    }

    var serverLog: String { (try? String(contentsOfFile: "\(root)/log.txt", encoding: .utf8)) ?? "" }
}
