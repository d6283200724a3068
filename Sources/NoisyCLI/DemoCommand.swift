import ArgumentParser
import Datasets
import DatasetStore
import Foundation
import SelfTraining
import Trainer

struct Demo: ParsableCommand, TrainsModels {
    static let configuration = CommandConfiguration(
        abstract: "Fashion-MNIST end to end: folders, ingest, then the Noisy Student loop for 3 iterations.",
        discussion: """
        Writes PNG folders from Debian's dataset-fashion-mnist (a validation split of
        500 training images per class with their labels, held out with a fixed seed;
        100 labeled images per class chosen from the rest with --seed; the other 54,000
        training images unlabeled; the 10,000 test images), ingests them into
        <workdir>/store.noisy, then runs `noisy run` (a CNN teacher on the 1,000
        labels, 240 epochs under RandAugment; 3 iterations of labelling, filtering
        (threshold 0.3, which keeps nearly every unlabeled image) and a twice-wider
        student under noise on batches half labeled, half pseudo-labeled) and writes
        <workdir>/report.json. Every model reports validation accuracy each epoch; the
        test split is scored once per model, for the report. Then it scores the first
        teacher and the final student under the ImageNet-C corruptions (all severities)
        and the perturbation sequences on a seeded subset of --robustness-samples test
        images (see noisy robustness), prints clean accuracy, mCE and mFR (baseline:
        the first teacher), adds them to the report and draws <workdir>/robustness.png.
        About 13 minutes on 2 AMD EPYC cores, robustness pass included (up to 20 on
        slower ones). A second run reuses the work folder and resumes an interrupted
        loop.

        --long trains a deeper student instead (16 and 32 channels, one residual block
        per stage with stochastic depth, batch normalisation: --student-width 1
        --student-depth 1 --batch-norm students) for 14 epochs, for the same 3
        iterations, in .noisy-demo-long unless --workdir says otherwise. It is the
        strongest setting measured on validation (88.9% test, +3.3 points over the
        first teacher, mean of 3 seeds); about 40 minutes on 2 Intel Xeon cores.

        Examples:
          noisy demo
          noisy demo --long
          noisy demo --workdir /tmp/demo --iterations 1 --student-epochs 2
        """
    )
    @Option(help: "Work folder, reused between runs (default: .noisy-demo, or .noisy-demo-long with --long).") var workdir: String?
    @Flag(help: "The stronger, slower demo (about 40 minutes): a deeper student with batch normalisation (--student-width 1 --student-depth 1 --student-epochs 14 --batch-norm students); options given explicitly still apply.")
    var long = false
    @Option(help: "Labeled images per class.") var perClass: Int = 100
    @Option(help: "Unlabeled images taken from the rest of the training set (at most 60000 minus the labeled and validation images).") var unlabeled: Int = 54000
    @Option(help: "Validation images per class, held out of the training set with a fixed seed (0: none).") var validationPerClass: Int = 500
    @Option(help: "Folder with the Fashion-MNIST IDX files.") var data: String = FashionMNIST.defaultDirectory
    @Flag(help: "Only write the folders and ingest (no training).") var ingestOnly = false
    @Option(help: "Test images the robustness pass scores (a seeded subset; 0: no robustness pass).") var robustnessSamples: Int = 1000
    @OptionGroup var loop: LoopOptions

    func validate() throws {
        if perClass < 1 || perClass > 6000 { throw ValidationError("--per-class must be 1...6000") }
        if validationPerClass < 0 || perClass + validationPerClass > 6000 {
            throw ValidationError("--validation-per-class must be >= 0, and with --per-class at most 6000 (the smallest class)")
        }
        if unlabeled < 0 { throw ValidationError("--unlabeled must be >= 0") }
    }

    func run() throws {
        try runReportingErrors {
            var loop = self.loop
            if long { loop.applyLongPreset() }
            let workdir = self.workdir ?? (long ? ".noisy-demo-long" : ".noisy-demo")
            let folders = workdir + "/folders"
            let marker = folders + "/.complete-\(perClass)-\(unlabeled)-\(validationPerClass)-\(loop.seed)"
            if !FileManager.default.fileExists(atPath: marker) {
                try? FileManager.default.removeItem(atPath: folders)
                print("demo: writing Fashion-MNIST folders to \(folders) ...")
                fflush(nil)  // all streams: the line shows before the work it announces, also through a pipe
                let fm = try FashionMNIST.load(from: data)
                try fm.writeFolders(to: folders, perClass: perClass, unlabeledCount: unlabeled, validationPerClass: validationPerClass,
                                    seed: loop.seed, threads: loop.threads)
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
            options.validation = validationPerClass > 0 ? [folders + "/validation"] : []
            let summary = try IngestRunner.run(store: store, options: options, reportPath: nil, quiet: false)
            IngestRunner.printSummary(summary)
            try Info.parse(["--store", storePath]).run()
            guard !ingestOnly else { return }
            let config = try loop.config(store: store, workdir: workdir + "/run")
            var report = try LoopOptions.runLoop(store: store, config: config, reportPath: workdir + "/report.json")
            if let first = report.firstTeacherValidationAccuracy, let last = report.finalStudentValidationAccuracy {
                print(String(format: "demo: validation: first teacher %.2f%%, final student %.2f%% (%+.2f points)", 100 * first, 100 * last,
                             100 * (last - first)))
            }
            if let first = report.firstTeacherAccuracy, let last = report.finalStudentAccuracy {
                print(String(format: "demo: test (scored once per model): first teacher %.2f%%, final student %.2f%% (%+.2f points)",
                             100 * first, 100 * last, 100 * (last - first)))
            }
            if robustnessSamples > 0, let student = report.iterations.last?.studentCheckpoint {
                report.robustness = try robustness(store: store, storePath: storePath, workdir: workdir,
                                                   checkpoints: [config.workdir + "/teacher-0.ckpt", student])
                let e = JSONEncoder()
                e.keyEncodingStrategy = .convertToSnakeCase
                e.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
                guard FileManager.default.createFile(atPath: workdir + "/report.json", contents: try e.encode(report)) else {
                    throw ValidationError("\(workdir)/report.json: cannot write")
                }
            }
        }
    }
}

extension Demo {
    /// The first teacher against the final student: every available corruption at every
    /// severity and every perturbation sequence, on a seeded subset of the test split.
    func robustness(store: Store, storePath: String, workdir: String, checkpoints: [String]) throws -> RobustnessSummary {
        let models = try checkpoints.map { path -> RobustnessModel in
            let (h, model, opt) = try Checkpoint.load(path: path)
            return RobustnessModel(path: path, trainer: Trainer(model: model, optimizer: opt, seed: h.seed),
                                   size: h.architecture.height, channels: h.architecture.channels)
        }
        print("demo: robustness of the first teacher and the final student on \(robustnessSamples) test images ...")
        let bar = ProgressLine("robustness", unit: "passes", quiet: false)
        let start = Date()
        let r = try evaluateRobustness(stores: [store], storePath: storePath, models: models, baseline: 0,
                                       options: RobustnessOptions(limit: robustnessSamples, seed: loop.seed, threads: loop.threads)) { done, total in
            bar.update(done: done, total: total, elapsed: Date().timeIntervalSince(start))
        }
        try Robustness.drawPlot(r, to: workdir + "/robustness.png")
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        _ = FileManager.default.createFile(atPath: workdir + "/robustness.json", contents: try e.encode(r))
        for (name, m) in zip(["first teacher", "final student"], r.models) {
            print(String(format: "demo: %@: clean %.2f%%, mCE %.1f%%, relative mCE %.1f%%, mFR %.1f%%", name, 100 * m.cleanAccuracy,
                         100 * m.mCE, 100 * m.relativeMCE, 100 * m.mFR))
        }
        print(String(format: "demo: robustness over %d test images (%d corruptions x %d severities, %d perturbation sequences) in %.0f s; "
                     + "wrote %@/robustness.png and %@/robustness.json", r.samples, r.corruptions.count, r.severities.count,
                     r.perturbations.count, Date().timeIntervalSince(start), workdir, workdir))
        return RobustnessSummary(r)
    }
}
