// swift-tools-version:6.0
// noisy: the data side of Noisy Student self-training.
// Dependencies point one way: CLI -> loop/server -> pipeline/trainer -> store/codec -> C.
// C modules are imported with `internal import`: no client of a Swift module sees them.
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
        .systemLibrary(name: "CWebP", pkgConfig: "libwebpdemux", providers: [.apt(["libwebp-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CMalloc"),

        // Decoders and encoders in C: every libjpeg/libpng longjmp stays inside this
        // target, which holds nothing else (no pixel loops, no hashing).
        .target(
            name: "CNoisyCodec",
            dependencies: ["CJPEG", "CPNG", "CWebP"],
            cSettings: [.unsafeFlags(["-O3"])]
        ),
        // Loops over 8-bit pixels (Pillow's resampling, PIL's enhance/transform
        // arithmetic, float conversion); no library calls, so no guard.
        .target(name: "CPixelKernels", cSettings: [.unsafeFlags(["-O3"])]),
        // SHA-256 in C.
        .target(name: "CDigest", cSettings: [.unsafeFlags(["-O3"])]),
        // The trainer's element-wise loops in C, where they vectorise (no codec, no store).
        .target(name: "CTensorKernels", cSettings: [.unsafeFlags(["-O3"])]),
        // The CLI's last line on a fault inside liblmdb (SIGSEGV/SIGBUS handlers).
        .target(name: "CFaultLine"),
        // memfd_create and descriptor passing (SCM_RIGHTS) for `noisy serve`'s shared-memory batches.
        .target(name: "CSharedMemory"),

        // Leaf Swift modules, one job each.
        // Seeded, counter-based randomness: the one home of every seeded choice.
        .target(name: "KeyedRandom"),
        // One slot per parallel worker, in memory that never moves.
        .target(name: "Parallelism"),
        // SHA-256 of bytes, streams and files.
        .target(name: "Digest", dependencies: ["CDigest"]),
        // Whole-file gzip reads (zlib).
        .target(name: "Gzip", dependencies: ["CZlib"]),
        // Image values and the loops over their pixels.
        .target(name: "Pixels", dependencies: ["CPixelKernels"]),

        // The LMDB wrapper: environments, typed read and write transactions.
        .target(name: "LMDB", dependencies: ["CLMDB", "Digest"]),
        // JPEG and PNG: sniff, header, decode (with DCT scaling and regions), encode.
        .target(name: "ImageCodec", dependencies: ["CNoisyCodec", "Pixels"]),
        // Samples, classes and pseudo-label generations in one LMDB environment.
        // The codec validates images at ingest and re-encodes with --max-side.
        .target(name: "DatasetStore", dependencies: ["LMDB", "ImageCodec", "Pixels", "Digest", "KeyedRandom", "Parallelism"]),
        // Views and RandAugment: pixels in, pixels out (PIL's maths), keyed randomness.
        .target(name: "Augment", dependencies: ["ImageCodec", "Pixels", "KeyedRandom", "Batches"]),
        // What a trainer consumes: batch values only, no store, no codec.
        .target(name: "Batches"),
        // Sampling, mixing, parallel rendering of batches from the store.
        .target(name: "Pipeline", dependencies: ["Batches", "Augment", "DatasetStore", "Digest", "ImageCodec", "KeyedRandom", "Parallelism"]),
        // CPU training on OpenBLAS; consumes batch values only (no store, no codec).
        .target(name: "Trainer", dependencies: ["Batches", "KeyedRandom", "Parallelism", "COpenBLAS", "CTensorKernels"]),
        // The Noisy Student loop over a store: train, evaluate, label, iterate.
        .target(name: "SelfTraining", dependencies: ["Trainer", "Pipeline", "Augment", "Batches", "DatasetStore", "ImageCodec", "Digest", "KeyedRandom", "Pixels", "Parallelism"]),
        // `noisy serve`: batches and label sessions over a socket (schemas/wire-protocol.md).
        .target(name: "StreamServer", dependencies: ["Pipeline", "Batches", "Augment", "DatasetStore", "CSharedMemory"]),
        // Example data for `noisy demo`: Fashion-MNIST IDX files written out as image folders.
        .target(name: "Datasets", dependencies: ["ImageCodec", "Pixels", "Gzip", "KeyedRandom", "Parallelism"]),

        .executableTarget(
            name: "NoisyCLI",
            dependencies: [
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                "DatasetStore", "ImageCodec", "Pixels", "Digest", "KeyedRandom", "Datasets", "Augment", "Batches", "Pipeline",
                "StreamServer", "Trainer", "SelfTraining", "CMalloc", "CFaultLine",
            ]
        ),

        // libFuzzer harness over the prediction parsers (tools/fuzz/parsers.sh); built
        // normally it replays a corpus (the tests run it over Tests/Fixtures/fuzz).
        .executableTarget(name: "NoisyFuzz", dependencies: ["DatasetStore"]),

        .target(name: "TestSupport", dependencies: ["ImageCodec", "Pixels", "KeyedRandom"], path: "Tests/TestSupport"),
        .testTarget(name: "PipelineTests", dependencies: ["Pipeline", "Augment", "Batches", "DatasetStore", "ImageCodec", "Pixels", "KeyedRandom", "TestSupport"]),
        .testTarget(name: "LMDBTests", dependencies: ["LMDB", "TestSupport"]),
        .testTarget(name: "TrainerTests", dependencies: ["Trainer", "Batches", "KeyedRandom", "Parallelism", "TestSupport"]),
        .testTarget(name: "ImageCodecTests", dependencies: ["ImageCodec", "Pixels", "Digest", "Gzip", "TestSupport"]),
        .testTarget(name: "DatasetStoreTests", dependencies: ["DatasetStore", "LMDB", "ImageCodec", "Pixels", "Digest", "KeyedRandom", "Datasets", "TestSupport", "NoisyFuzz"]),
        // Depends on the executable so that `swift test` builds the `noisy` binary it runs.
        .testTarget(name: "NoisyCLITests", dependencies: ["NoisyCLI", "DatasetStore", "Pipeline", "Augment", "Batches", "ImageCodec", "Pixels", "Digest", "KeyedRandom", "Datasets", "TestSupport"]),
    ]
)
