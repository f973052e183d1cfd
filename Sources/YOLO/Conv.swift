// Port of ultralytics/nn/modules/conv.py (Conv, Concat) at ultralytics 8.4.190.
import Checkpoint
import Tensor

/// The shape of a feature map as the network sees it: its channels, and how many times the input's sides have been
/// halved to reach its sides (inputs are multiples of the largest stride, so every size is exact).
struct FeatureShape: Equatable {
    var channels: Int
    var halvings: Int

    /// Elements a map may have for a 640 × 640 input: 64 M, 256 MB (YOLOv8x's largest, a C2f's stack, has 10 M),
    /// so that a few cheap weights cannot size gigabytes of activations.
    static let maximumElements = 1 << 26

    /// Whether a map of `channels` at this size stays within `maximumElements`.
    func holds(channels: Int) -> Bool {
        let side = 640 >> min(max(halvings, 0), 6)
        return channels <= Self.maximumElements / (side * side)
    }
}

/// A `torch.nn.Conv2d` as stored (weight, optional bias, geometry), with a BatchNorm that follows it folded in
/// where given; its filters packed once for the product (`ConvolutionFilters`).
struct Conv2d {
    let filters: ConvolutionFilters
    let bias: Tensor?
    let geometry: Conv2dGeometry
    /// Channels the input must have (the weight's input channels × groups).
    let inputChannels: Int
    /// Where it lies: its state-dict path and the file, for errors.
    let path: String, file: String

    /// The BatchNorm is folded with the checkpoint's own eps (Ultralytics sets 1e-3), as `fuse_conv_and_bn` does
    /// before inference. Every attribute and shape is checked first: the layers YOLO builds (odd kernels up to 15
    /// with "same" padding, stride 1 or 2, groups dividing the channels), and BatchNorm's tensors one per filter.
    init(_ node: ModuleNode, batchNorm bn: ModuleNode? = nil) throws {
        let stored = try node.parameter("weight")
        guard stored.shape.count == 4, stored.shape.allSatisfy({ $0 > 0 }), stored.shape[2] == stored.shape[3],
            stored.shape[2] % 2 == 1, stored.shape[2] <= 15
        else {
            throw node.invalid("weight", "has shape \(stored.shape); a YOLO convolution's is [out, in, k, k], k odd")
        }
        let (out, kernel) = (stored.shape[0], stored.shape[2])
        let groups = try node.int("groups", in: 1...out)
        let stride = try node.pair("stride", in: 1...2)
        let dilation = try node.pair("dilation", in: 1...8)
        let padding = try node.pair("padding", in: 0...64)
        // Zeros around the map, as every Ultralytics convolution pads; another mode would compute something else.
        if let mode = node.object["padding_mode"], mode.string != "zeros" {
            throw node.attributeError("padding_mode", expected: "'zeros'")
        }
        guard out % groups == 0, stride.0 == stride.1,
            padding == (dilation.0 * (kernel - 1) / 2, dilation.1 * (kernel - 1) / 2)
        else {
            throw node.invalid(
                "padding",
                "\(padding) with stride \(stride), dilation \(dilation) and \(groups) groups does not keep "
                    + "the feature map's size, as YOLO's convolutions do")
        }
        inputChannels = stored.shape[1] * groups
        (path, file) = (String(node.path.dropLast()), node.file)
        geometry = Conv2dGeometry(stride: stride, padding: padding, dilation: dilation, groups: groups)
        var (weight, bias) = (
            stored.tensor(),
            try node.optionalParameter("bias").map { _ in
                try node.parameter("bias", shape: [out]).tensor()
            }
        )
        if let bn {
            let eps = try bn.double("eps")
            guard eps.isFinite, eps >= 0 else { throw bn.invalid("eps", "is \(eps)") }
            (weight, bias) = foldBatchNorm(
                weight: weight, bias: bias, gamma: try bn.parameter("weight", shape: [out]).tensor(),
                beta: try bn.parameter("bias", shape: [out]).tensor(),
                runningMean: try bn.parameter("running_mean", shape: [out]).tensor(),
                runningVar: try bn.parameter("running_var", shape: [out]).tensor(),
                eps: eps)
        }
        filters = ConvolutionFilters(weight, geometry: geometry)
        self.bias = bias
    }

    /// The output's shape for `input`, or why the layer cannot take it.
    func output(_ input: FeatureShape) throws -> FeatureShape {
        guard input.channels == inputChannels else {
            throw CheckpointError.corrupt(
                path: file, reason: "\(path) takes \(inputChannels) channels but is given \(input.channels)")
        }
        let output = FeatureShape(
            channels: filters.shape[0], halvings: input.halvings + (geometry.stride.y == 2 ? 1 : 0))
        guard output.halvings <= 6, output.holds(channels: output.channels) else {
            throw CheckpointError.corrupt(
                path: file,
                reason:
                    "\(path) makes a map of \(output.channels) channels at 1/2^\(output.halvings) of the input's side, more than a detector's"
            )
        }
        return output
    }

    /// The convolution, then SiLU and `residual` where given (fused into the product on our kernel).
    func callAsFunction(_ x: Tensor, silu: Bool = false, adding residual: Tensor? = nil) -> Tensor {
        conv2d(x, filters: filters, bias: bias, geometry: geometry, silu: silu, adding: residual)
    }

    func outputShape(_ input: [Int]) -> [Int] {
        let (kh, kw) = (filters.shape[2], filters.shape[3])
        let h = (input[2] + 2 * geometry.padding.y - geometry.dilation.y * (kh - 1) - 1) / geometry.stride.y + 1
        let w = (input[3] + 2 * geometry.padding.x - geometry.dilation.x * (kw - 1) - 1) / geometry.stride.x + 1
        return [input[0], filters.shape[0], h, w]
    }

    /// Multiply-adds as thop counts them: output elements × input channels per group × kernel area (no bias).
    func operations(_ input: [Int]) -> (output: [Int], count: Double) {
        let output = outputShape(input)
        return (output, Double(output.reduce(1, *)) * Double(filters.shape[1] * filters.shape[2] * filters.shape[3]))
    }
}

/// Ultralytics `Conv`: Conv2d (no bias) → BatchNorm2d → SiLU, the BatchNorm folded into the convolution at load.
struct Conv {
    let conv: Conv2d
    let activation: Bool
    /// Whether the stored model had a BatchNorm here (it is counted by `operations`, as thop does unfused).
    let hadBatchNorm: Bool

    init(_ node: ModuleNode) throws {
        hadBatchNorm = node.object.children.contains { $0.name == "bn" }
        conv = try Conv2d(try node.child("conv"), batchNorm: hadBatchNorm ? try node.child("bn") : nil)
        let act = try node.child("act").typeName
        guard act == "SiLU" || act == "Identity" else {
            throw CheckpointError.unsupported(path: node.file, reason: "\(node.path)act is \(act); YOLOv8 uses SiLU")
        }
        activation = act == "SiLU"
    }

    /// `act(bn(conv(x)))`, plus `residual` after the activation (a `Bottleneck`'s shortcut).
    func callAsFunction(_ x: Tensor, adding residual: Tensor? = nil) -> Tensor {
        conv(x, silu: activation, adding: residual)
    }

    /// The same on channels `source` of `stack`.
    func callAsFunction(_ stack: ChannelStack, channels source: Range<Int>) -> Tensor {
        stack.convolve(
            channels: source, filters: conv.filters, bias: conv.bias, geometry: conv.geometry, silu: activation)
    }

    /// The same written into `stack`'s channels from `channel` on, plus its channels `residual` where given.
    func callAsFunction(
        _ x: Tensor, into stack: inout ChannelStack, at channel: Int, addingChannels residual: Range<Int>? = nil
    ) {
        stack.convolve(
            x, filters: conv.filters, bias: conv.bias, geometry: conv.geometry, silu: activation,
            addingChannels: residual, into: channel)
    }

    var outputChannels: Int { conv.filters.shape[0] }

    func output(_ input: FeatureShape) throws -> FeatureShape { try conv.output(input) }

    func operations(_ input: [Int]) -> (output: [Int], count: Double) {
        let (output, count) = conv.operations(input)
        // thop's BatchNorm rule: 2 operations per element, doubled for the affine part.
        return (output, count + (hadBatchNorm ? 4 * Double(output.reduce(1, *)) : 0))
    }
}

/// `torch.cat(xs, dim=1)` for [N, C, H, W] tensors of equal N, H, W.
func concatChannels(_ parts: [Tensor]) -> Tensor {
    let (n, h, w) = (parts[0].shape[0], parts[0].shape[2], parts[0].shape[3])
    let channels = parts.reduce(0) { $0 + $1.shape[1] }
    var out = Tensor(uninitialized: [n, channels, h, w])  // every part is copied in
    out.withUnsafeMutableBufferPointer { y in
        var offset = 0
        for image in 0..<n {
            for part in parts {
                let block = part.shape[1] * h * w
                part.withUnsafeBufferPointer { x in
                    (y.baseAddress! + offset).update(from: x.baseAddress! + image * block, count: block)
                }
                offset += block
            }
        }
    }
    return out
}
