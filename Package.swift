// swift-tools-version:6.0
// noisy: the data side of Noisy Student self-training.
// Dependencies point one way: CLI -> pipeline/trainer -> store/codec -> C.
import PackageDescription

let package = Package(
    name: "noisy",
    products: [
        .executable(name: "noisy", targets: ["NoisyCLI"]),
        .executable(name: "noisy-fuzz", targets: ["NoisyFuzz"]),
        .library(name: "DatasetStore", targets: ["DatasetStore"]),
        .library(name: "ImageCodec", targets: ["ImageCodec"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // C libraries from Debian, installed by tools/bootstrap.sh.
        .systemLibrary(name: "CLMDB", pkgConfig: "lmdb", providers: [.apt(["liblmdb-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CJPEG", pkgConfig: "libjpeg", providers: [.apt(["libjpeg-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CMalloc"),

        // The codec loops in C: every libjpeg/libpng longjmp stays inside this target.
        .target(
            name: "CNoisyCodec",
            dependencies: ["CJPEG", "CPNG", "CZlib"],
            cSettings: [.unsafeFlags(["-O3"])]
        ),
        // The trainer's element-wise loops in C, where they vectorise (no codec, no store).
        .target(name: "CTensorKernels", cSettings: [.unsafeFlags(["-O3"])]),

        .target(name: "LMDB", dependencies: ["CLMDB"]),
        .target(name: "ImageCodec", dependencies: ["CNoisyCodec"]),
        .target(name: "DatasetStore", dependencies: ["LMDB", "ImageCodec", "CNoisyCodec"]),
        // Views and RandAugment: pixels in, pixels out (PIL's maths), keyed randomness.
        .target(name: "Augment", dependencies: ["ImageCodec", "CNoisyCodec"]),
        // What a trainer consumes: batch values only, no store, no codec.
        .target(name: "Batches"),
        // Sampling, mixing, parallel rendering of batches from the store.
        .target(name: "Pipeline", dependencies: ["Batches", "Augment", "DatasetStore", "ImageCodec"]),
        // CPU training on OpenBLAS; consumes batch values only (no store, no codec).
        .target(name: "Trainer", dependencies: ["Batches", "COpenBLAS", "CMalloc", "CTensorKernels"]),
        // The Noisy Student loop over a store: train, evaluate, label, iterate.
        .target(name: "SelfTraining", dependencies: ["Trainer", "Pipeline", "Augment", "Batches", "DatasetStore", "ImageCodec"]),
        // `noisy serve`: batches and label sessions over a socket (schemas/wire-protocol.md).
        .target(name: "StreamServer", dependencies: ["Pipeline", "Batches", "Augment", "DatasetStore", "ImageCodec"]),
        // Example data for `noisy demo`: Fashion-MNIST IDX files written out as image folders.
        .target(name: "Datasets", dependencies: ["ImageCodec", "Batches"]),

        .executableTarget(
            name: "NoisyCLI",
            dependencies: [
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                "DatasetStore", "ImageCodec", "Datasets", "Augment", "Batches", "Pipeline", "StreamServer", "Trainer", "SelfTraining",
            ]
        ),

        // libFuzzer harness over the prediction parsers (tools/fuzz/parsers.sh); built
        // normally it replays a corpus (the tests run it over Tests/Fixtures/fuzz).
        .executableTarget(name: "NoisyFuzz", dependencies: ["DatasetStore"]),

        .target(name: "TestSupport", dependencies: ["ImageCodec"], path: "Tests/TestSupport"),
        .testTarget(name: "PipelineTests", dependencies: ["Pipeline", "Augment", "Batches", "DatasetStore", "ImageCodec", "TestSupport"]),
        .testTarget(name: "LMDBTests", dependencies: ["LMDB", "TestSupport"]),
        .testTarget(name: "TrainerTests", dependencies: ["Trainer", "Batches"]),
        .testTarget(name: "ImageCodecTests", dependencies: ["ImageCodec", "TestSupport"]),
        .testTarget(name: "DatasetStoreTests", dependencies: ["DatasetStore", "ImageCodec", "Datasets", "TestSupport", "NoisyFuzz"]),
        // Depends on the executable so that `swift test` builds the `noisy` binary it runs.
        .testTarget(name: "NoisyCLITests", dependencies: ["NoisyCLI", "DatasetStore", "ImageCodec", "Datasets", "TestSupport"]),
    ]
)
