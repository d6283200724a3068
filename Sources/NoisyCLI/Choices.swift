import ArgumentParser
import Augment
import DatasetStore

// Every choice option is an enum: ArgumentParser refuses a value outside it with the
// list of valid ones, and `--help` shows them, so no command checks strings by hand.

/// `--view`: the student's noised view or the teacher's clean one.
enum ViewChoice: String, ExpressibleByArgument, CaseIterable { case train, teacher }

/// `--crop`: RandomResizedCrop, or zero padding then a random crop (small images).
enum CropChoice: String, ExpressibleByArgument, CaseIterable { case rrc, pad }

/// `--channels`: 1, 3, or what most labeled samples are.
enum ChannelsChoice: String, ExpressibleByArgument, CaseIterable {
    case one = "1", three = "3", auto
}

/// `--layout`: NHWC bytes, or ImageNet-normalised NCHW floats (PyTorch's layout).
enum LayoutChoice: String, ExpressibleByArgument, CaseIterable { case uint8, float32 }

/// `--model`: the MLP or the residual CNN.
enum ModelChoice: String, ExpressibleByArgument, CaseIterable { case mlp, cnn }

/// `noisy run --batch-norm`: which models of the loop normalise their batches.
enum BatchNormChoice: String, ExpressibleByArgument, CaseIterable { case none, students, all }

extension RandAugment.Preset: ExpressibleByArgument {}
extension LabelExportFormat: ExpressibleByArgument {}
extension Split: ExpressibleByArgument {}
extension AugmentOp: ExpressibleByArgument {
    public init?(argument: String) { self.init(name: argument) }
    /// The 16 names go in --op's help; listed in a refusal they would take 17 lines.
    public static var allValueStrings: [String] { [] }
    static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }
}
extension LabelPrecision: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
    public static var defaultCompletionKind: CompletionKind { .list(["f16", "f32", "topk:32"]) }
}
