import XCTest
import DatasetStore
import TestSupport

/// Replays the kept libFuzzer corpus of the prediction parsers (tools/fuzz/parsers.sh)
/// through the plain `noisy-fuzz` build: every input must be parsed or refused with
/// an error, never crash the process.
final class ParserFuzzCorpusTests: XCTestCase {
    func testEveryKeptParserInputIsParsedOrRefused() throws {
        for parser in ["npy", "jsonl"] {
            let dir = Processes.repositoryRoot + "/Tests/Fixtures/fuzz/" + parser
            let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { !$0.hasPrefix(".") }.sorted().map { dir + "/" + $0 }
            XCTAssertGreaterThan(files.count, 10, "the \(parser) corpus is kept in \(dir)")
            let r = try Processes.run(Processes.builtBinary("noisy-fuzz"), files, environment: ["NOISY_FUZZ_ONLY": parser])
            XCTAssertEqual(r.status, 0, "\(parser): a kept input crashed the parser: \(r.stderr)")
            XCTAssertEqual(r.stdout, "replayed \(files.count) inputs\n", r.stderr)
        }
    }

    /// The finding that fuzzing the NPY header would hit first: a shape whose size
    /// overflows Int must be refused with a reason, not trap.
    func testAnNPYShapeThatOverflowsIsRefused() throws {
        let dir = Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4611686018427387904), }"
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)]
        bytes += Array(header.utf8) + [UInt8](repeating: 0, count: 16)
        Fixtures.write(bytes, to: dir + "/huge.npy")
        XCTAssertThrowsError(try NPYFile(path: dir + "/huge.npy")) { error in
            XCTAssertTrue("\(error)".contains("too large"), "\(error)")
        }
    }
}
