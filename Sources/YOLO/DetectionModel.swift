// Port of ultralytics/nn/tasks.py (DetectionModel, BaseModel._predict_once) at ultralytics 8.4.190.
import Checkpoint
import Foundation
import Tensor

/// A YOLOv8 detection network built from the module tree pickled in the checkpoint: its layers, their
/// routing (`f`: where each layer's input comes from) and every hyper-parameter are read from the file, so
/// every scale (n…x) and class count loads without a configuration of our own.
// Unchecked: its layers' weights (packed filters among them) are written at load and only read after.
public final class DetectionModel: @unchecked Sendable {
    enum Layer {
        case conv(Conv)
        case c2f(C2f)
        case sppf(SPPF)
        case upsample(Int)
        case concat
        case detect(Detect)

        /// Whether the layer reads several maps (the others read one).
        var readsSeveral: Bool {
            switch self {
            case .concat, .detect: true
            default: false
            }
        }
    }

    struct Step {
        let layer: Layer
        /// Input layers: -1 is the previous layer.
        let from: [Int]
    }

    let steps: [Step]
    /// Layers whose outputs later layers read.
    let saved: Set<Int>
    public let names: [Int: String]
    public let classCount: Int
    /// Largest stride (32): input sides are multiples of it.
    public let maxStride: Int

    /// Layers a network may have (YOLOv8x has 23).
    static let maximumLayers = 1000
    /// Stride-2 layers a path through the network may pass (a stride of 64).
    static let maximumHalvings = 6

    public init(_ checkpoint: YOLOCheckpoint) throws {
        let file = checkpoint.weights.path
        let root = ModuleNode(object: checkpoint.model, path: "", file: file)
        let sequential = try root.child("model")
        guard sequential.children.count <= Self.maximumLayers else {
            throw CheckpointError.corrupt(path: file, reason: "model has more than \(Self.maximumLayers) layers")
        }
        var steps: [Step] = []
        for (index, node) in sequential.children.enumerated() {
            let from: [Int]
            if let single = node.object["f"]?.int {
                from = [single]
            } else if let many = node.object["f"]?.items?.compactMap(\.int) {
                from = many
            } else {
                throw CheckpointError.missingKey(path: file, key: node.path + "f")
            }
            guard from.allSatisfy({ $0 == -1 || (0..<index).contains($0) }) else {
                throw CheckpointError.corrupt(
                    path: file, reason: "layer \(index) reads from \(from), which is not an earlier layer")
            }
            let layer: Layer
            switch node.typeName {
            case "Conv": layer = .conv(try Conv(node))
            case "C2f": layer = .c2f(try C2f(node))
            case "SPPF": layer = .sppf(try SPPF(node))
            case "Upsample":
                guard node.object["mode"]?.string == "nearest", let factor = node.object["scale_factor"]?.double,
                    [2.0, 4, 8].contains(factor)
                else {
                    throw CheckpointError.unsupported(
                        path: file, reason: "\(node.path)Upsample must be nearest with a factor of 2, 4 or 8")
                }
                layer = .upsample(Int(factor))
            case "Concat":
                guard (try? node.int("d")) ?? 1 == 1 else {
                    throw CheckpointError.unsupported(path: file, reason: "\(node.path)Concat must join channels")
                }
                layer = .concat
            case "Detect": layer = .detect(try Detect(node))
            default:
                throw CheckpointError.unsupported(
                    path: file, reason: "layer \(index) is a \(node.typeName), which YOLOv8 does not have")
            }
            steps.append(Step(layer: layer, from: from))
        }
        guard case .detect(let head) = steps.last?.layer else {
            throw CheckpointError.unsupported(path: file, reason: "the last layer is not a Detect head")
        }
        self.steps = steps
        saved = Set((checkpoint.model["save"]?.items ?? []).compactMap(\.int))
        names = checkpoint.names
        classCount = head.classes
        maxStride = Int(head.strides.max() ?? 32)
        try checkShapes(file: file)
    }

    /// Follows the feature maps' shapes through the network, as an input of any size that is a multiple of the
    /// largest stride would take them, and refuses a layer that cannot take its input — before anything runs: every
    /// convolution's channels, C2f's halves, the shortcuts, concatenations of maps of one size, upsampling back to
    /// no more than the input's size, the head's levels at their strides, and every map a later layer reads kept.
    private func checkShapes(file: String) throws {
        var shapes: [FeatureShape] = []
        var shape = FeatureShape(channels: 3, halvings: 0)
        for (index, step) in steps.enumerated() {
            guard step.from.allSatisfy({ $0 == -1 || saved.contains($0) }) else {
                throw CheckpointError.corrupt(
                    path: file, reason: "layer \(index) reads from \(step.from), which the model does not keep (save)")
            }
            let inputs = step.from.map { $0 == -1 ? shape : shapes[$0] }
            guard step.from.count == 1 || step.layer.readsSeveral, !step.from.isEmpty else {
                throw CheckpointError.corrupt(path: file, reason: "layer \(index) reads \(step.from.count) maps")
            }
            switch step.layer {
            case .conv(let conv): shape = try conv.output(inputs[0])
            case .c2f(let block): shape = try block.output(inputs[0])
            case .sppf(let block): shape = try block.output(inputs[0])
            case .upsample(let factor):
                shape = inputs[0]
                shape.halvings -= factor.trailingZeroBitCount
            case .concat:
                guard inputs.allSatisfy({ $0.halvings == inputs[0].halvings }) else {
                    throw CheckpointError.corrupt(
                        path: file, reason: "layer \(index) joins maps of different sizes (\(inputs))")
                }
                shape = FeatureShape(channels: inputs.reduce(0) { $0 + $1.channels }, halvings: inputs[0].halvings)
                guard shape.holds(channels: shape.channels) else {
                    throw CheckpointError.corrupt(path: file, reason: "layer \(index) joins \(shape.channels) channels")
                }
            case .detect(let head): try head.check(inputs)
            }
            guard (0...Self.maximumHalvings).contains(shape.halvings) else {
                throw CheckpointError.corrupt(
                    path: file, reason: "layer \(index)'s map would be 1/2^\(shape.halvings) of the input's size")
            }
            shapes.append(shape)
        }
    }

    /// Raw predictions for a batch [N, 3, H, W] of RGB in 0…1: [N, 4 + nc, anchors] (centre x, centre y, width,
    /// height in input pixels, then class scores) — what `model(im)[0]` gives in Ultralytics.
    public func callAsFunction(_ input: Tensor) -> Tensor {
        var outputs: [Tensor?] = []
        var x = input
        for (index, step) in steps.enumerated() {
            let inputs = step.from.map { $0 == -1 ? x : outputs[$0]! }
            switch step.layer {
            case .conv(let conv): x = conv(inputs[0])
            case .c2f(let block): x = block(inputs[0])
            case .sppf(let block): x = block(inputs[0])
            case .upsample(let factor): x = upsampleNearest(inputs[0], factor: factor)
            case .concat: x = concatChannels(inputs)
            case .detect(let head): x = head(inputs)
            }
            outputs.append(saved.contains(index) ? x : nil)
        }
        return x
    }

    /// GFLOPs for one image of `height` × `width`, counted as Ultralytics' `get_flops` (thop) counts the
    /// unfused model: 2 × (convolution multiply-adds + 4 per BatchNorm element).
    public func gflops(height: Int = 640, width: Int = 640) -> Double {
        var shapes: [[Int]?] = []
        var shape = [1, 3, height, width]
        var total = 0.0
        for (index, step) in steps.enumerated() {
            let inputs = step.from.map { $0 == -1 ? shape : shapes[$0]! }
            switch step.layer {
            case .conv(let conv):
                let r = conv.operations(inputs[0])
                shape = r.output
                total += r.count
            case .c2f(let block):
                let r = block.operations(inputs[0])
                shape = r.output
                total += r.count
            case .sppf(let block):
                let r = block.operations(inputs[0])
                shape = r.output
                total += r.count
            case .upsample(let factor):
                shape = [inputs[0][0], inputs[0][1], inputs[0][2] * factor, inputs[0][3] * factor]
            case .concat: shape = [inputs[0][0], inputs.reduce(0) { $0 + $1[1] }, inputs[0][2], inputs[0][3]]
            case .detect(let head): total += head.operations(inputs)
            }
            shapes.append(saved.contains(index) ? shape : nil)
        }
        return total * 2 / 1e9
    }
}
