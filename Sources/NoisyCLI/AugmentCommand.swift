import ArgumentParser
import Augment
import DatasetStore
import Foundation
import ImageCodec
import KeyedRandom
import Pixels

struct AugmentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "augment",
        abstract: "Apply one RandAugment op, an ImageNet-C corruption, or a whole view to an image file and write a PNG.",
        discussion: """
        With --param the op takes its raw parameter; with --magnitude M the parameter
        comes from M as RandAugment maps it (--ra-preset picks the reference or timm
        mapping; signed ops take a random sign from --seed).

        Ops and their raw parameters:
        \(AugmentOp.allCases.map { Terminal.wrapped("\($0.rawValue): \($0.parameterMeaning)", indent: "  ", hanging: "  ") }.joined(separator: "\n"))

        Examples:
          noisy augment photo.jpg rotated.png --op rotate --param 30
          # negative values need =
          noisy augment photo.jpg sheared.png --op shear_x --param=-0.3
          noisy augment photo.jpg out.png --op solarize --magnitude 9
          noisy augment photo.jpg out.png --op cutout --param 40 --center 100,80
          noisy augment photo.jpg view.png --view train --size 224 --randaugment 2,9 \\
              --seed 3
          noisy augment photo.jpg foggy.png --corruption fog --severity 3 --seed 1

        Corruptions (ImageNet-C, the parameters of the imagecorruptions package),
        severities 1-5:
        \(Terminal.wrapped(Corruption.available.map(\.rawValue).joined(separator: ", "), indent: "  "))
        \(Corruption.allCases.compactMap { c in c.unavailable.map { Terminal.wrapped("\(c.rawValue): \($0)", indent: "  ", hanging: "  ") } }.joined(separator: "\n"))
        """
    )
    @Argument(help: "Input JPEG or PNG.") var input: String
    @Argument(help: "Output PNG.") var output: String
    @Option(help: ArgumentHelp("The op to apply: \(AugmentOp.names).", valueName: "op")) var op: AugmentOp?
    @Option(help: "Raw parameter of the op.") var param: Double?
    @Option(help: "RandAugment magnitude (0-30) mapped to the op's parameter.") var magnitude: Double?
    @Option(help: "Magnitude mapping for --magnitude.") var raPreset: RandAugment.Preset = .reference
    @Option(help: ArgumentHelp("Cutout square centre.", valueName: "x,y")) var center: String?
    @Option(help: "Instead of one op: render this view.") var view: ViewChoice?
    @Option(help: "View size.") var size: Int = 224
    @Option(help: ArgumentHelp("RandAugment for --view train.", valueName: "N,M")) var randaugment: String?
    @Option(help: "Seed for random choices.") var seed: UInt64 = 0
    @Option(help: ArgumentHelp("Instead of an op: this ImageNet-C corruption.", valueName: "name")) var corruption: String?
    @Option(help: "Corruption severity, 1-5.") var severity: Int = 3
    @Option(help: ArgumentHelp("elastic_transform: the two uniform fields (float64 .npy [2, H, W]) instead of drawing them.",
                               valueName: "F.npy")) var field: String?
    @Option(help: ArgumentHelp("motion_blur: the angle in degrees instead of drawing it.", valueName: "deg")) var angle: Double?

    func run() throws {
        try runReportingErrors {
            guard let data = FileManager.default.contents(atPath: input) else {
                throw ValidationError("\(input): cannot read the file")
            }
            let bytes = [UInt8](data)
            let header: ImageHeader
            do { header = try bytes.withUnsafeBytes { raw in try Result { () throws(CodecError) in try Codec.header(raw) }.get() } }
            catch { throw ValidationError("\(input): \(error)") }
            let renderer = ViewRenderer(channels: header.channels, layout: .uint8NHWC)
            var image: Image
            if let corruption {
                guard op == nil, view == nil else { throw ValidationError("give one of --op, --view and --corruption") }
                image = try corrupt(bytes.withUnsafeBytes { try renderer.decodeFull($0) }, name: corruption)
            } else if let view {
                guard op == nil else { throw ValidationError("give either --op or --view") }
                var options = try PipelineOptions.parse(["--size", "\(size)", "--view", view.rawValue, "--seed", "\(seed)"]
                                                        + (randaugment.map { ["--randaugment", $0] } ?? []))
                options.raPreset = raPreset
                let v = try options.resolvedView()
                image = try bytes.withUnsafeBytes { raw in
                    try renderer.renderImage(raw, view: v, key: SampleKey(seed: seed, epoch: 0, sample: 0))
                }
            } else {
                guard let theOp = op else { throw ValidationError("give --op NAME (or --view)") }
                image = try bytes.withUnsafeBytes { try renderer.decodeFull($0) }
                let p: Double
                var rng = KeyedRandom(seed: seed, epoch: 0, sample: 0, purpose: .randAugment)
                switch (param, magnitude) {
                case (let v?, nil): p = v
                case (nil, let m?):
                    p = RandAugment(layers: 1, magnitude: m, preset: raPreset)
                        .parameter(theOp, magnitude: m, width: image.width, height: image.height, negate: rng.unit() < 0.5)
                case (nil, nil) where [.autoContrast, .equalize, .invert].contains(theOp): p = 0
                default: throw ValidationError("give exactly one of --param and --magnitude")
                }
                var c: (x: Int, y: Int)?
                if let center {
                    let xy = center.split(separator: ",").compactMap { Int($0) }
                    guard xy.count == 2 else { throw ValidationError("--center wants x,y (got \(center))") }
                    c = (xy[0], xy[1])
                } else if theOp == .cutout {
                    c = (Int(rng.next(upperBound: UInt64(image.width))), Int(rng.next(upperBound: UInt64(image.height))))
                }
                renderer.augmenter.apply(theOp, parameter: p, to: &image, cutoutCenter: c)
                FileHandle.standardError.write(Data("\(theOp.rawValue) with parameter \(p)\n".utf8))
            }
            let png = try Codec.encodePNG(image)
            guard FileManager.default.createFile(atPath: output, contents: Data(png)) else {
                throw ValidationError("\(output): cannot write")
            }
        }
    }
}

extension AugmentCommand {
    func corrupt(_ image: Image, name: String) throws -> Image {
        guard let c = Corruption(rawValue: name) else {
            throw ValidationError("unknown corruption '\(name)'; known: \(Corruption.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard (1...5).contains(severity) else { throw ValidationError("--severity \(severity): use 1 to 5") }
        if let field {
            guard c == .elasticTransform else { throw ValidationError("--field is for elastic_transform") }
            let f = try NPYFile(path: field)
            guard f.dtype == "<f8", f.shape == [2, image.height, image.width] else {
                throw ValidationError("\(field): want float64 [2, \(image.height), \(image.width)], got \(f.dtype) \(f.shape)")
            }
            let n = image.width * image.height
            let values = Array(f.data.bindMemory(to: Double.self).prefix(2 * n))
            return Corruptions.elasticTransform(image, severity: severity, uniformX: Array(values[..<n]), uniformY: Array(values[n...]))
        }
        if let angle {
            guard c == .motionBlur else { throw ValidationError("--angle is for motion_blur") }
            return Corruptions.motionBlur(image, severity: severity, angle: angle)
        }
        do { return try Corruptions.apply(c, severity: severity, to: image, seed: seed, sample: 0) } catch let e as CorruptionError {
            throw ValidationError(e.description)
        }
    }
}
