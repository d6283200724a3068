import ArgumentParser
import Augment
import Batches
import DatasetStore
import Foundation
import ImageCodec
import Pipeline
import Pixels

struct Preview: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a contact sheet of augmented samples with their labels.",
        discussion: """
        The first batch of the stream, exactly as a trainer would get it: the same seed
        gives the same PNG bytes.

        Examples:
          noisy preview --store data.noisy --count 16 --seed 1 --out grid.png
          noisy preview --store data.noisy --randaugment 2,9 --out ra.png
          noisy preview --store fmnist.noisy --size 28 --crop pad --pad 2 --cutout 10 \\
              --out f.png
          noisy preview --store data.noisy --view teacher --out clean.png
        """
    )
    @OptionGroup var storeOption: StoreOption
    @Option(help: "Samples on the sheet.") var count: Int = 16
    @Option(help: "Tiles per row.") var columns: Int = 8
    @Option(help: ArgumentHelp("PNG to write.", valueName: "file.png")) var out: String
    @OptionGroup var pipeline: PipelineOptions

    func run() throws {
        try runReportingErrors {
            guard count >= 1 && count <= 4096 else { throw ValidationError("--count must be 1-4096") }
            let source = try PipelineSource(path: storeOption.store)
            let store = source.store
            var config = try pipeline.config(store: store)
            config.batchSize = count
            config.layout = .uint8NHWC
            let loader = try source.loader(config: config, options: pipeline, log: { Terminal.warn($0) })
            let batch = try loader.next()
            let classes = try store.classes()
            guard case .uint8(let pixels) = batch.images else { return }
            let per = batch.width * batch.height * batch.channels
            let tiles = (0..<batch.count).map { i -> (image: Image, caption: String) in
                let img = Image(width: batch.width, height: batch.height, channels: batch.channels,
                                pixels: Array(pixels[(i * per)..<((i + 1) * per)]))
                let c = batch.argmaxTarget(i)
                let name = c < classes.count ? classes[c] : "#\(c)"
                let caption = batch.origins[i] == .labeled
                    ? name : String(format: "%@ %.2f", name, batch.targets[i * batch.classCount + c])
                return (img, caption)
            }
            let png = try Codec.encodePNG(ContactSheet(columns: columns).render(tiles))
            guard FileManager.default.createFile(atPath: out, contents: Data(png)) else {
                throw ValidationError("\(out): cannot write")
            }
            FileHandle.standardError.write(Data("wrote \(out): \(batch.count) samples, \(pipeline.view) view, \(batch.width)x\(batch.height)x\(batch.channels)\n".utf8))
        }
    }
}
