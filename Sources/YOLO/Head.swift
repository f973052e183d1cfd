// Port of ultralytics/nn/modules/head.py (Detect), block.py (DFL) and utils/tal.py (make_anchors, dist2bbox)
// at ultralytics 8.4.190.
import Checkpoint
import Foundation
import Tensor

/// One step of a head branch: an Ultralytics Conv (or DWConv, its depthwise form) or a plain Conv2d.
enum HeadStep {
    case conv(Conv)
    case conv2d(Conv2d)

    /// The steps of a branch, nested Sequentials flattened (newer heads nest DWConv + Conv pairs).
    static func sequence(_ node: ModuleNode) throws -> [HeadStep] {
        try node.children.flatMap { child -> [HeadStep] in
            switch child.typeName {
            case "Conv", "DWConv": [.conv(try Conv(child))]
            case "Conv2d": [.conv2d(try Conv2d(child))]
            case "Sequential": try sequence(child)
            default:
                throw CheckpointError.unsupported(
                    path: child.file, reason: "\(child.path) is a \(child.typeName), not part of a YOLOv8 head")
            }
        }
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        switch self {
        case .conv(let conv): conv(x)
        case .conv2d(let conv): conv(x)
        }
    }

    func output(_ input: FeatureShape) throws -> FeatureShape {
        switch self {
        case .conv(let conv): try conv.output(input)
        case .conv2d(let conv): try conv.output(input)
        }
    }

    func operations(_ input: [Int]) -> (output: [Int], count: Double) {
        switch self {
        case .conv(let conv): conv.operations(input)
        case .conv2d(let conv): conv.operations(input)
        }
    }
}

/// `Detect`: per level, a box branch (4 × reg_max distance bins) and a class branch; bins become distances by
/// the DFL expectation, distances become boxes around the anchor points, scores go through a sigmoid.
/// Output [N, 4 + nc, anchors]: centre x, centre y, width, height in input pixels, then class scores.
struct Detect {
    let classes: Int
    let regMax: Int
    let box: [[HeadStep]]
    let cls: [[HeadStep]]
    /// The DFL convolution's weights (arange(reg_max): the bin values).
    let binValues: [Float]
    let strides: [Float]

    /// Where it lies, for errors.
    let path: String, file: String

    /// Every attribute checked against the weights before anything runs: as many levels of box and class branches
    /// as strides, each stride a power of two up to 64, `reg_max` 1…64 bins with the DFL's weight one per bin; the
    /// branches' channels are checked against `nc` and `reg_max` by `check`.
    init(_ node: ModuleNode) throws {
        (path, file) = (String(node.path.dropLast()), node.file)
        classes = try node.int("nc", in: 1...10_000)
        regMax = try node.int("reg_max", in: 1...64)
        box = try (try node.child("cv2")).children.map(HeadStep.sequence)
        cls = try (try node.child("cv3")).children.map(HeadStep.sequence)
        guard (1...8).contains(box.count), box.count == cls.count, !box.contains(where: \.isEmpty),
            !cls.contains(where: \.isEmpty)
        else { throw node.invalid("cv2", "has \(box.count) levels and cv3 \(cls.count); a head has 1 to 8 of each") }
        if regMax > 1 {
            binValues = try (try node.child("dfl")).child("conv").parameter("weight", shape: [1, regMax, 1, 1]).floats()
        } else {
            binValues = []
        }
        guard let stride = node.object["stride"]?.tensor, stride.count == box.count else {
            throw CheckpointError.missingKey(path: node.file, key: node.path + "stride")
        }
        strides = stride.floats()
        guard strides.allSatisfy({ [1, 2, 4, 8, 16, 32, 64].contains($0) }) else {
            throw node.invalid("stride", "is \(strides); each level's must be a power of two up to 64")
        }
    }

    /// Whether `inputs` are the maps this head reads: one per level, each at its stride, its branches ending in
    /// 4 × reg_max box bins and `nc` class scores.
    func check(_ inputs: [FeatureShape]) throws {
        guard inputs.count == box.count else {
            throw CheckpointError.corrupt(
                path: file, reason: "\(path) has \(box.count) levels but reads \(inputs.count) maps")
        }
        for (level, input) in inputs.enumerated() {
            guard Float(1 << input.halvings) == strides[level] else {
                throw CheckpointError.corrupt(
                    path: file,
                    reason:
                        "\(path) level \(level) has stride \(strides[level]), but its map is 1/\(1 << input.halvings) "
                        + "of the input")
            }
            let boxes = try box[level].reduce(input) { try $1.output($0) }
            let scores = try cls[level].reduce(input) { try $1.output($0) }
            guard boxes == FeatureShape(channels: 4 * regMax, halvings: input.halvings),
                scores == FeatureShape(channels: classes, halvings: input.halvings)
            else {
                throw CheckpointError.corrupt(
                    path: file,
                    reason: "\(path) level \(level) gives \(boxes.channels) box and \(scores.channels) class channels; "
                        + "reg_max \(regMax) and nc \(classes) need \(4 * regMax) and \(classes) at the map's size")
            }
        }
    }

    func callAsFunction(_ features: [Tensor]) -> Tensor {
        let n = features[0].shape[0]
        let sizes = features.map { ($0.shape[2], $0.shape[3]) }
        let anchors = sizes.reduce(0) { $0 + $1.0 * $1.1 }
        let boxChannels = 4 * regMax
        var output = Tensor(zeros: [n, 4 + classes, anchors])
        var levelStart = 0
        for (level, x) in features.enumerated() {
            let (h, w) = sizes[level]
            let distribution = box[level].reduce(x) { $1($0) }  // [N, 4·reg_max, h, w]
            var scores = cls[level].reduce(x) { $1($0) }  // [N, nc, h, w]
            scores.sigmoid()
            let stride = strides[level]
            output.withUnsafeMutableBufferPointer { out in
                distribution.withUnsafeBufferPointer { d in
                    scores.withUnsafeBufferPointer { s in
                        for image in 0..<n {
                            let o = out.baseAddress! + image * (4 + classes) * anchors
                            for c in 0..<classes {
                                (o + (4 + c) * anchors + levelStart).update(
                                    from: s.baseAddress! + (image * classes + c) * h * w, count: h * w)
                            }
                            let bins = d.baseAddress! + image * boxChannels * h * w
                            for y in 0..<h {
                                for x in 0..<w {
                                    let cell = y * w + x
                                    var side = [Float](repeating: 0, count: 4)
                                    for k in 0..<4 {
                                        side[k] = expectation(bins + k * regMax * h * w + cell, step: h * w)
                                    }
                                    // make_anchors: cell centres in grid units; dist2bbox(xywh=True), then × stride.
                                    let (ax, ay) = (Float(x) + 0.5, Float(y) + 0.5)
                                    let (x1, y1, x2, y2) = (ax - side[0], ay - side[1], ax + side[2], ay + side[3])
                                    let a = levelStart + cell
                                    o[a] = (x1 + x2) / 2 * stride
                                    o[anchors + a] = (y1 + y2) / 2 * stride
                                    o[2 * anchors + a] = (x2 - x1) * stride
                                    o[3 * anchors + a] = (y2 - y1) * stride
                                }
                            }
                        }
                    }
                }
            }
            levelStart += h * w
        }
        return output
    }

    /// DFL: the expected bin value under the softmax of `regMax` logits spaced `step` apart.
    private func expectation(_ logits: UnsafePointer<Float>, step: Int) -> Float {
        guard regMax > 1 else { return logits[0] }
        var maximum = -Float.infinity
        for k in 0..<regMax { maximum = max(maximum, logits[k * step]) }
        var sum: Float = 0
        var weighted: Float = 0
        for k in 0..<regMax {
            let e = expf(logits[k * step] - maximum)
            sum += e
            weighted += e * binValues[k]
        }
        return weighted / sum
    }

    func operations(_ inputs: [[Int]]) -> Double {
        var count = 0.0
        var anchors = 0
        for (level, input) in inputs.enumerated() {
            for branch in [box[level], cls[level]] {
                var shape = input
                for step in branch {
                    let r = step.operations(shape)
                    shape = r.output
                    count += r.count
                }
            }
            anchors += input[2] * input[3]
        }
        // The DFL 1×1 convolution over (N, reg_max, 4, anchors).
        return count + (regMax > 1 ? Double(inputs[0][0] * 4 * anchors * regMax) : 0)
    }
}
