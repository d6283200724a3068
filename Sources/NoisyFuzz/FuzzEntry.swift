import Foundation

/// One input to the parsers (libFuzzer's callback signature).
func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    FuzzTargets.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

#if FUZZING
/// libFuzzer's driver, for a program that keeps its own main (SwiftPM links an
/// executable's @main as `main`, so libFuzzer's main is not used).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> Int32) -> Int32
#endif

/// Built by tools/fuzz/parsers.sh (-sanitize=fuzzer,address -DFUZZING) it runs
/// libFuzzer; built normally it replays the files named on the command line (the
/// kept corpus, in the tests), where a finding crashes the process.
@main
struct FuzzMain {
    static func main() {
        #if FUZZING
        var argc = CommandLine.argc
        var argv = Optional(CommandLine.unsafeArgv)
        exit(LLVMFuzzerRunDriver(&argc, &argv) { fuzzOneInput($0, $1) })
        #else
        var count = 0
        for path in CommandLine.arguments.dropFirst() {
            guard let data = FileManager.default.contents(atPath: path) else {
                FileHandle.standardError.write(Data("noisy-fuzz: \(path): cannot read\n".utf8))
                exit(2)
            }
            data.withUnsafeBytes { FuzzTargets.run($0) }
            count += 1
        }
        try? FileManager.default.removeItem(atPath: FuzzTargets.scratch)
        print("replayed \(count) inputs")
        #endif
    }
}
