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

    public init(_ checkpoint: YOLOCheckpoint) throws {
        let file = checkpoint.weights.path
        let root = ModuleNode(object: checkpoint.model, path: "", file: file)
        let sequential = try root.child("model")
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
                    factor == factor.rounded(), factor >= 1
                else {
                    throw CheckpointError.unsupported(
                        path: file, reason: "\(node.path)Upsample must be nearest with an integer factor")
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
