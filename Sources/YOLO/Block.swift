// Port of ultralytics/nn/modules/block.py (Bottleneck, C2f, SPPF, DFL) at ultralytics 8.4.190.
import Checkpoint
import Tensor

/// `Bottleneck`: two convolutions with a residual connection when `add` (shortcut and c1 == c2).
struct Bottleneck {
    let cv1: Conv, cv2: Conv
    let add: Bool

    init(_ node: ModuleNode) throws {
        cv1 = try Conv(try node.child("cv1"))
        cv2 = try Conv(try node.child("cv2"))
        add = node.object["add"].flatMap { if case .bool(let b) = $0 { b } else { nil } } ?? false
    }

    /// The bottleneck on channels `input` of a C2f's stack, its output written into the channels from `channel` on.
    func callAsFunction(_ stack: inout ChannelStack, from input: Range<Int>, into channel: Int) {
        cv2(cv1(stack, channels: input), into: &stack, at: channel, addingChannels: add ? input : nil)
    }

    var outputChannels: Int { cv2.outputChannels }

    /// The output's shape for `input`; the shortcut needs the same shape out as in.
    func output(_ input: FeatureShape) throws -> FeatureShape {
        let result = try cv2.output(try cv1.output(input))
        guard !add || result == input else {
            throw CheckpointError.corrupt(
                path: cv2.conv.file,
                reason: "\(cv2.conv.path) gives \(result), which its shortcut cannot add to \(input)")
        }
        return result
    }

    func operations(_ input: [Int]) -> (output: [Int], count: Double) {
        let a = cv1.operations(input)
        let b = cv2.operations(a.output)
        return (b.output, a.count + b.count)
    }
}

/// `C2f`: cv1 to 2c channels, split in halves, the last half through each bottleneck in turn, all pieces
/// concatenated and merged by cv2 — the pieces written in place in one `ChannelStack`.
struct C2f {
    let cv1: Conv, cv2: Conv
    let m: [Bottleneck]

    init(_ node: ModuleNode) throws {
        cv1 = try Conv(try node.child("cv1"))
        cv2 = try Conv(try node.child("cv2"))
        m = try (try node.child("m")).children.map(Bottleneck.init)
    }

    /// The output's shape for `input`: cv1's channels split in halves, each bottleneck on the last piece at the
    /// same size, every piece into cv2.
    func output(_ input: FeatureShape) throws -> FeatureShape {
        let first = try cv1.output(input)
        guard first.channels % 2 == 0 else {
            throw CheckpointError.corrupt(
                path: cv1.conv.file, reason: "\(cv1.conv.path) gives \(first.channels) channels, which C2f cannot halve"
            )
        }
        var last = FeatureShape(channels: first.channels / 2, halvings: first.halvings)
        var total = first.channels
        for bottleneck in m {
            last = try bottleneck.output(last)
            guard last.halvings == first.halvings else {
                throw CheckpointError.corrupt(
                    path: cv1.conv.file, reason: "a bottleneck after \(cv1.conv.path) changes the feature map's size")
            }
            total += last.channels
        }
        guard first.holds(channels: total) else {
            throw CheckpointError.corrupt(
                path: cv1.conv.file,
                reason: "the C2f of \(cv1.conv.path) stacks \(total) channels, more than a detector's")
        }
        return try cv2.output(FeatureShape(channels: total, halvings: first.halvings))
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        let shape = cv1.conv.outputShape(x.shape)
        var stack = ChannelStack(
            images: shape[0], channels: shape[1] + m.reduce(0) { $0 + $1.outputChannels }, height: shape[2],
            width: shape[3])
        cv1(x, into: &stack, at: 0)
        var last = (shape[1] / 2)..<shape[1]
        for bottleneck in m {
            let next = last.upperBound..<(last.upperBound + bottleneck.outputChannels)
            bottleneck(&stack, from: last, into: next.lowerBound)
            last = next
        }
        return cv2(stack.tensor)
    }

    func operations(_ input: [Int]) -> (output: [Int], count: Double) {
        var (shape, count) = cv1.operations(input)
        var last = shape
        last[1] /= 2
        var total = shape[1]
        for bottleneck in m {
            let step = bottleneck.operations(last)
            count += step.count
            last = step.output
            total += last[1]
        }
        shape[1] = total
        let merged = cv2.operations(shape)
        return (merged.output, count + merged.count)
    }
}

/// `SPPF`: cv1, three chained max-pools (k, stride 1, padding k/2), concatenated and merged by cv2.
struct SPPF {
    let cv1: Conv, cv2: Conv
    let kernel: Int

    init(_ node: ModuleNode) throws {
        cv1 = try Conv(try node.child("cv1"))
        cv2 = try Conv(try node.child("cv2"))
        let pool = try node.child("m")
        kernel = try pool.int("kernel_size", in: 1...31)
        guard kernel % 2 == 1, (try? pool.int("stride")) ?? 1 == 1,
            (try? pool.int("padding")) ?? kernel / 2 == kernel / 2
        else { throw pool.invalid("kernel_size", "\(kernel) with its stride and padding does not keep the size") }
    }

    /// The output's shape for `input`: cv1, its three poolings beside it, into cv2.
    func output(_ input: FeatureShape) throws -> FeatureShape {
        var pooled = try cv1.output(input)
        guard pooled.holds(channels: 4 * pooled.channels) else {
            throw CheckpointError.corrupt(
                path: cv1.conv.file, reason: "SPPF after \(cv1.conv.path) stacks too many channels")
        }
        pooled.channels *= 4
        return try cv2.output(pooled)
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        var pieces = [cv1(x)]
        for _ in 0..<3 { pieces.append(maxPool2d(pieces.last!, kernel: kernel, stride: 1, padding: kernel / 2)) }
        return cv2(concatChannels(pieces))
    }

    func operations(_ input: [Int]) -> (output: [Int], count: Double) {
        var (shape, count) = cv1.operations(input)
        shape[1] *= 4
        let merged = cv2.operations(shape)
        return (merged.output, count + merged.count)
    }
}
