import ArgumentParser
import Datasets
import DatasetStore
import Foundation

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fashion-MNIST end to end: write image folders, ingest them, show the store.",
        discussion: """
        Writes PNG folders from Debian's dataset-fashion-mnist (100 labeled images per class
        chosen with --seed, unlabeled images from the rest, the 10,000 test images), ingests
        them into <workdir>/store.noisy and prints `info`. A second run reuses the work folder.

        Examples:
          noisy demo
          noisy demo --workdir /tmp/demo --unlabeled 59000
        """
    )
    @Option(help: "Work folder, reused between runs.") var workdir: String = ".noisy-demo"
    @Option(help: "Labeled images per class.") var perClass: Int = 100
    @Option(help: "Unlabeled images taken from the rest of the training set (max 59000 with 100 per class).") var unlabeled: Int = 20000
    @Option(help: "Seed for choosing the labeled images.") var seed: UInt64 = 0
    @Option(help: "Folder with the Fashion-MNIST IDX files.") var data: String = FashionMNIST.defaultDirectory

    func validate() throws {
        if perClass < 1 || perClass > 6000 { throw ValidationError("--per-class must be 1...6000") }
        if unlabeled < 0 { throw ValidationError("--unlabeled must be >= 0") }
    }

    func run() throws {
        try runReportingErrors {
            let folders = workdir + "/folders"
            let marker = folders + "/.complete-\(perClass)-\(unlabeled)-\(seed)"
            if !FileManager.default.fileExists(atPath: marker) {
                try? FileManager.default.removeItem(atPath: folders)
                print("demo: writing Fashion-MNIST folders to \(folders) ...")
                let fm = try FashionMNIST.load(from: data)
                try fm.writeFolders(to: folders, perClass: perClass, unlabeledCount: unlabeled, seed: seed)
                _ = FileManager.default.createFile(atPath: marker, contents: Data())
            } else {
                print("demo: reusing \(folders)")
            }
            let storePath = workdir + "/store.noisy"
            let store = try Store.openOrCreate(path: storePath)
            var options = IngestOptions()
            options.labeled = [folders + "/labeled"]
            options.unlabeled = [folders + "/unlabeled"]
            options.test = [folders + "/test"]
            let summary = try IngestRunner.run(store: store, options: options, reportPath: nil, quiet: false)
            IngestRunner.printSummary(summary)
            try Info.parse(["--store", storePath]).run()
        }
    }
}
