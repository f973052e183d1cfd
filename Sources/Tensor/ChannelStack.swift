/// An [N, C, H, W] tensor built by convolutions that write runs of its channels and read others in place: Ultralytics'
/// `C2f` splits cv1's output in halves, runs bottlenecks on the last piece in turn and concatenates every piece for
/// cv2 — here each step writes its piece where the concatenation has it, so nothing is split or copied.
public struct ChannelStack {
    private var values: Tensor
    private var written: [Bool]

    /// Room for `channels` channels, none written yet.
    public init(images: Int, channels: Int, height: Int, width: Int) {
        values = Tensor(uninitialized: [images, channels, height, width])
        written = [Bool](repeating: false, count: channels)
    }

    /// The stack as one tensor; every channel must have been written.
    public var tensor: Tensor {
        precondition(
            !written.contains(false),
            "ChannelStack read with channels \(written.indices.filter { !written[$0] }) never written")
        return values
    }

    /// `conv2d(input, …)` written into the channels from `channel` on, with channels `residual` of this stack added
    /// after the SiLU (a bottleneck's shortcut, which must not overlap the channels written).
    public mutating func convolve(
        _ input: Tensor, filters: ConvolutionFilters, bias: Tensor? = nil, geometry: Conv2dGeometry = .init(),
        silu: Bool = false,
        addingChannels residual: Range<Int>? = nil, into channel: Int
    ) {
        precondition(input.rank == 4, "conv2d wants 4-D input, got \(input.shape)")
        let shape = ConvolutionShape(input: input.shape, filters: filters, bias: bias, geometry: geometry)
        let target = channel..<(channel + shape.o)
        precondition(
            [shape.n, shape.ho, shape.wo] == [values.shape[0], values.shape[2], values.shape[3]] && channel >= 0
                && target.upperBound <= values.shape[1],
            "conv2d output \(shape.output) does not fit channels from \(channel) of \(values.shape)")
        precondition(
            residual == nil
                || (residual!.count == shape.o && residual!.lowerBound >= 0 && residual!.upperBound <= values.shape[1]
                    && !residual!.overlaps(target) && residual!.allSatisfy { written[$0] }),
            "residual channels \(residual!) must be \(shape.o) written channels apart from \(target)")
        let (image, plane) = (values.count / values.shape[0], shape.ho * shape.wo)
        input.withUnsafeBufferPointer { x in
            values.withUnsafeMutableBufferPointer { t in
                let t = t.baseAddress!
                runConvolution(
                    shape, x: ImagePlanes(x.baseAddress!, stride: shape.c * shape.h * shape.w), filters: filters,
                    bias: bias, silu: silu,
                    residual: residual.map { ImagePlanes(UnsafePointer(t + $0.lowerBound * plane), stride: image) },
                    y: ImagePlanes(t + channel * plane, stride: image))
            }
        }
        for c in target { written[c] = true }
    }

    /// `conv2d` of channels `source` of this stack, into a new tensor.
    public func convolve(
        channels source: Range<Int>, filters: ConvolutionFilters, bias: Tensor? = nil,
        geometry: Conv2dGeometry = .init(), silu: Bool = false
    ) -> Tensor {
        precondition(
            source.lowerBound >= 0 && source.upperBound <= values.shape[1] && source.allSatisfy { written[$0] },
            "channels \(source) of \(values.shape) are not all written")
        let (n, h, w) = (values.shape[0], values.shape[2], values.shape[3])
        let shape = ConvolutionShape(input: [n, source.count, h, w], filters: filters, bias: bias, geometry: geometry)
        var output = Tensor(uninitialized: shape.output)
        values.withUnsafeBufferPointer { x in
            output.withUnsafeMutableBufferPointer { y in
                runConvolution(
                    shape, x: ImagePlanes(x.baseAddress! + source.lowerBound * h * w, stride: values.count / n),
                    filters: filters,
                    bias: bias, silu: silu, residual: nil, y: ImagePlanes(y.baseAddress!, stride: shape.outputImage))
            }
        }
        return output
    }
}
