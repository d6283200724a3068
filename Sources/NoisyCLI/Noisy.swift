import ArgumentParser

@main
struct Noisy: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "noisy",
        abstract: "The data side of Noisy Student self-training: an LMDB image store, views and batches, pseudo-label generations.",
        discussion: """
        Start with `noisy demo` (Fashion-MNIST), or ingest your own folders:
          noisy ingest --store data.noisy --labeled train/ --unlabeled extra/ \\
              --test val/
          noisy info --store data.noisy
        """,
        version: "0.1.0",
        subcommands: [Ingest.self, Info.self, Show.self, Verify.self, Salvage.self, Compact.self, Shard.self, Preview.self, AugmentCommand.self, Labels.self, Train.self, Evaluate.self, Robustness.self, LabelCommand.self, Run.self, Serve.self, Bench.self, Demo.self]
    )

    /// Parses, applies the process-wide setup the chosen command needs (once, here),
    /// then runs it.
    static func main() {
        do {
            var command = try parseAsRoot()
            ProcessSetup.installFaultLine()
            if command is TrainsModels { ProcessSetup.prepareForTraining() }
            try command.run()
        } catch {
            exit(withError: error)
        }
    }
}

/// The `--store` option every verb takes.
struct StoreOption: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The store folder (an LMDB environment).", valueName: "path"))
    var store: String

    /// Names this store in the line a faulting read prints (see `ProcessSetup.installFaultLine`).
    func validate() throws {
        ProcessSetup.faultLineNames(store: store)
    }
}
