import XCTest
import TestSupport

/// Stores damaged after they were written, and stores created by several processes
/// at once: commands end with one line, never a signal.
final class DamagedStoreTests: XCTestCase {
    var root = ""
    override func setUp() { root = Fixtures.temporaryDirectory(name) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    /// A half-copied store (data.mdb cut short, as an interrupted cp or rsync leaves
    /// it) used to crash every command with SIGBUS inside liblmdb. Cut at 10 points:
    /// each command exits 1 with one line naming the file, the size it has and the
    /// size it needs.
    func testTruncatedDataFileIsRefusedWithOneLine() throws {
        for i in 0..<60 { Fixtures.write(Fixtures.png(width: 40, height: 40, seed: UInt64(900 + i)), to: "\(root)/u/\(i).png") }
        let store = "\(root)/s.noisy"
        XCTAssertEqual(try Processes.noisy(["ingest", "--store", store, "--unlabeled", "\(root)/u", "--quiet"]).status, 0)
        let data = try Data(contentsOf: URL(fileURLWithPath: store + "/data.mdb"))
        XCTAssertGreaterThan(data.count, 100_000)
        var refused = 0
        for k in 1...10 {
            // Cut points from just past the two meta pages to one page short of the end.
            let cut = k == 10 ? data.count - 4096 : 8192 + (data.count - 8192) * (k - 1) / 10
            let copy = "\(root)/cut-\(k).noisy"
            try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
            try data.prefix(cut).write(to: URL(fileURLWithPath: copy + "/data.mdb"))
            // verify reads the file itself, page by page, and reports instead.
            let v = try Processes.noisy(["verify", "--store", copy])
            XCTAssertEqual(v.terminationReason, .exit, v.stderr)
            XCTAssertEqual(v.status, 1, v.stdout)
            XCTAssertTrue(v.stdout.contains("the file holds") && v.stdout.contains("incomplete"), v.stdout)
            for args in [["info", "--store", copy], ["labels", "list", "--store", copy],
                         ["ingest", "--store", copy, "--unlabeled", "\(root)/u", "--quiet"]] {
                let r = try Processes.noisy(args)
                XCTAssertEqual(r.terminationReason, .exit, "\(args[0]) at \(cut) bytes died of a signal: \(r.stderr)")
                XCTAssertEqual(r.status, 1, "\(args[0]) at \(cut) bytes: \(r.stdout)\(r.stderr)")
                let lines = r.stderr.split(separator: "\n")
                XCTAssertEqual(lines.count, 1, "\(args[0]): one line: \(r.stderr)")
                XCTAssertTrue(r.stderr.contains("data.mdb: \(cut) bytes"), r.stderr)
                XCTAssertTrue(r.stderr.contains("incomplete") && r.stderr.contains("noisy salvage"), r.stderr)
                refused += 1
            }
        }
        XCTAssertEqual(refused, 30)
        // Cut inside the meta pages: too short to be any store.
        let tiny = "\(root)/tiny.noisy"
        try FileManager.default.createDirectory(atPath: tiny, withIntermediateDirectories: true)
        try data.prefix(5000).write(to: URL(fileURLWithPath: tiny + "/data.mdb"))
        let r = try Processes.noisy(["info", "--store", tiny])
        XCTAssertEqual(r.terminationReason, .exit, r.stderr)
        XCTAssertEqual(r.status, 1, r.stderr)
        // The whole file still opens.
        XCTAssertEqual(try Processes.noisy(["verify", "--store", store]).status, 0)
    }

    /// Four `noisy ingest` runs started together on a path that does not exist yet:
    /// every one succeeds, and the store holds exactly the union of their files.
    /// Twenty times, since a race shows only now and then. (One did: a run that
    /// looked for data.mdb just before another renamed it into place, and listed
    /// the folder just after, took the finished store for a foreign folder.)
    func testConcurrentCreationOfOneStore() throws {
        for w in 0..<4 {
            for i in 0..<5 { Fixtures.write(Fixtures.png(width: 12, height: 12, seed: UInt64(5000 + 10 * w + i)), to: "\(root)/w\(w)/\(i).png") }
        }
        for round in 0..<20 {
            let store = "\(root)/race-\(round).noisy"
            let runs = try (0..<4).map { w in
                try Processes.spawnNoisy(["ingest", "--store", store, "--unlabeled", "\(root)/w\(w)", "--quiet"],
                                         stderr: "\(root)/err-\(w).txt")
            }
            for (w, p) in runs.enumerated() {
                p.waitUntilExit()
                let said = (try? String(contentsOfFile: "\(root)/err-\(w).txt", encoding: .utf8)) ?? ""
                XCTAssertEqual(p.terminationReason, .exit, "round \(round), run \(w): \(said)")
                XCTAssertEqual(p.terminationStatus, 0, "round \(round), run \(w) failed: \(said)")
                XCTAssertEqual(said, "", "round \(round), run \(w)")
            }
            let info = try Processes.noisy(["info", "--store", store, "--json"])
            let j = try XCTUnwrap(JSONSerialization.jsonObject(with: info.stdoutData) as? [String: Any], info.stderr)
            XCTAssertEqual(j["samples"] as? Int, 20, "round \(round): the union of the four folders")
            XCTAssertEqual(try Processes.noisy(["verify", "--store", store]).status, 0)
            try? FileManager.default.removeItem(atPath: store)
        }
    }
}
