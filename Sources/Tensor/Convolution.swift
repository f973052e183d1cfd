import CKernels

/// Geometry of a 2-D convolution, in PyTorch's terms.
public struct Conv2dGeometry: Equatable, Sendable {
    public var stride: (y: Int, x: Int)
    public var padding: (y: Int, x: Int)
    public var dilation: (y: Int, x: Int)
    public var groups: Int

    public init(stride: Int = 1, padding: Int = 0, dilation: Int = 1, groups: Int = 1) {
        self.init(stride: (stride, stride), padding: (padding, padding), dilation: (dilation, dilation), groups: groups)
    }

    public init(stride: (y: Int, x: Int), padding: (y: Int, x: Int), dilation: (y: Int, x: Int), groups: Int) {
        precondition(stride.y > 0 && stride.x > 0 && dilation.y > 0 && dilation.x > 0 && groups > 0)
        precondition(padding.y >= 0 && padding.x >= 0)
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
    }

    public static func == (l: Self, r: Self) -> Bool {
        l.stride == r.stride && l.padding == r.padding && l.dilation == r.dilation && l.groups == r.groups
    }

    /// Output extent along one axis, as `torch.nn.Conv2d` documents it.
    func outputSize(input: Int, kernel: Int, stride: Int, padding: Int, dilation: Int) -> Int {
        (input + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1
    }
}

/// `torch.nn.functional.conv2d`: input [N, C, H, W], weight [O, C/groups, kH, kW], bias [O] → [N, O, Ho, Wo]; then,
/// where asked, SiLU and the addition of `residual` (the output's shape), in that order — Ultralytics' `Conv` and
/// `Bottleneck`. On our kernel the bias, SiLU and residual are steps of the product itself (the output is written
/// once, never re-read); elsewhere they are passes after it. The bits are the same either way.
///
/// Three paths, all exact: a 1×1 stride-1 convolution is one GEMM on the input as it lies; a depthwise
/// convolution (one input channel per group) is a direct loop, since its GEMMs would be 1 × k² thin; every other
/// case is one GEMM per image and group on the input's patches — gathered by our kernel as it packs them, or
/// written out first (im2col) where OpenBLAS runs the product.
public func conv2d(
    _ input: Tensor, weight: Tensor, bias: Tensor? = nil, geometry g: Conv2dGeometry = .init(), silu: Bool = false,
    adding residual: Tensor? = nil
) -> Tensor {
    conv2d(
        input, filters: ConvolutionFilters(weight, groups: g.groups, packing: false), bias: bias, geometry: g,
        silu: silu, adding: residual)
}

/// `conv2d` with filters made once (packed for our kernel where it runs: a model's layers).
public func conv2d(
    _ input: Tensor, filters: ConvolutionFilters, bias: Tensor? = nil, geometry g: Conv2dGeometry = .init(),
    silu: Bool = false,
    adding residual: Tensor? = nil
) -> Tensor {
    precondition(input.rank == 4, "conv2d wants 4-D input, got \(input.shape)")
    let shape = ConvolutionShape(input: input.shape, filters: filters, bias: bias, geometry: g)
    precondition(residual == nil || residual!.shape == shape.output, "conv2d residual must be \(shape.output)")
    var output = Tensor(uninitialized: shape.output)  // every path writes every element
    input.withUnsafeBufferPointer { x in
        output.withUnsafeMutableBufferPointer { y in
            withOptionalBuffer(residual) { r in
                runConvolution(
                    shape, x: ImagePlanes(x.baseAddress!, stride: shape.c * shape.h * shape.w), filters: filters,
                    bias: bias, silu: silu,
                    residual: r.map { ImagePlanes($0, stride: shape.outputImage) },
                    y: ImagePlanes(y.baseAddress!, stride: shape.outputImage))
            }
        }
    }
    return output
}

/// A convolution's sizes, checked: input [n, c, h, w], weight [o, c / groups, kh, kw], output [n, o, ho, wo].
struct ConvolutionShape {
    let (n, c, h, w): (Int, Int, Int, Int)
    let (o, cg, kh, kw): (Int, Int, Int, Int)
    let (ho, wo): (Int, Int)
    let geometry: Conv2dGeometry

    init(input: [Int], filters: ConvolutionFilters, bias: Tensor?, geometry g: Conv2dGeometry) {
        let weight = filters.shape
        (n, c, h, w) = (input[0], input[1], input[2], input[3])
        (o, cg, kh, kw) = (weight[0], weight[1], weight[2], weight[3])
        precondition(
            c % g.groups == 0 && o % g.groups == 0 && cg == c / g.groups && filters.groups == g.groups,
            "conv2d channels: input \(input), weight \(weight) in \(filters.groups) groups, groups \(g.groups)")
        precondition(bias == nil || bias!.shape == [o], "conv2d bias must be [\(o)]")
        ho = g.outputSize(input: h, kernel: kh, stride: g.stride.y, padding: g.padding.y, dilation: g.dilation.y)
        wo = g.outputSize(input: w, kernel: kw, stride: g.stride.x, padding: g.padding.x, dilation: g.dilation.x)
        precondition(ho > 0 && wo > 0, "conv2d output would be empty for input \(input) and kernel \(kh)×\(kw)")
        geometry = g
    }

    var output: [Int] { [n, o, ho, wo] }
    var outputImage: Int { o * ho * wo }
}

/// Where a batch's [C, H, W] images lie: image i at `base + i · stride` — a whole tensor's, or a run of channels of a
/// wider one (`ChannelStack`).
struct ImagePlanes<Pointer> {
    let base: Pointer
    let stride: Int
    init(_ base: Pointer, stride: Int) { (self.base, self.stride) = (base, stride) }
}

/// `conv2d` on its operands in place (see there).
func runConvolution(
    _ s: ConvolutionShape, x: ImagePlanes<UnsafePointer<Float>>, filters: ConvolutionFilters, bias: Tensor?, silu: Bool,
    residual: ImagePlanes<UnsafePointer<Float>>?, y: ImagePlanes<UnsafeMutablePointer<Float>>
) {
    let g = s.geometry
    if filters.winograd {
        precondition(g == Conv2dGeometry(padding: 1), "Winograd filters are for 3×3, stride-1, padding-1 convolutions")
        return winogradConvolution(s, x: x, filters: filters, bias: bias, silu: silu, residual: residual, y: y)
    }
    let (og, plane) = (s.o / g.groups, s.ho * s.wo)
    let depthwiseCase = s.cg == 1 && og == 1
    let fused = GEMMKernel.current == .ours && !depthwiseCase
    let pointwise = s.kh == 1 && s.kw == 1 && g.stride == (1, 1) && g.padding == (0, 0)
    // The plain filters for the paths that read them (packed ones are unpacked for OpenBLAS chosen after packing).
    let plain = fused ? nil : filters.weight!
    withOptionalBuffer(plain) { wt in
        withOptionalBuffer(bias) { b in
            for image in 0..<s.n {
                let (x, y, r) = (
                    x.base + image * x.stride, y.base + image * y.stride, residual.map { $0.base + image * $0.stride }
                )
                if depthwiseCase {
                    depthwise(x, wt!, y, s)
                    if let b { addChannelBias(y, b, c: s.o, plane: plane) }
                } else if fused {
                    for group in 0..<g.groups {
                        let first = group * og * plane
                        var epilogue = ck_epilogue()
                        (epilogue.row_bias, epilogue.silu, epilogue.residual, epilogue.ldr) = (
                            b.map { $0 + group * og }, silu ? 1 : 0, r.map { $0 + first }, plane
                        )
                        let source = x + group * s.cg * s.h * s.w
                        filters.withOperand(group: group) { a in
                            if pointwise {
                                product(
                                    m: og, n: plane, k: s.cg, alpha: 1, a: a,
                                    b: ck_operand(data: source, row: plane, col: 1, packed: nil, patches: nil),
                                    beta: 0, c: y + first, ldc: plane, epilogue: epilogue)
                                return
                            }
                            // The kernel gathers the patches straight into its packed panels: no im2col matrix.
                            var patches = ck_patches(
                                x: source, channels: s.cg, height: s.h, width: s.w, kernel_h: s.kh, kernel_w: s.kw,
                                stride_y: g.stride.y, stride_x: g.stride.x, pad_y: g.padding.y, pad_x: g.padding.x,
                                dilation_y: g.dilation.y, dilation_x: g.dilation.x, out_h: s.ho, out_w: s.wo)
                            withUnsafePointer(to: &patches) { patches in
                                product(
                                    m: og, n: plane, k: s.cg * s.kh * s.kw, alpha: 1, a: a,
                                    b: ck_operand(data: nil, row: 0, col: 0, packed: nil, patches: patches),
                                    beta: 0, c: y + first, ldc: plane, epilogue: epilogue)
                            }
                        }
                    }
                } else {
                    openBLASConvolution(x, wt!, b, y, s, pointwise: pointwise)
                }
                if !fused {
                    if silu {
                        Threading.parallelFor(s.o, grain: max(1, 16_384 / plane)) { planes in
                            ck_silu(y + planes.lowerBound * plane, planes.count * plane)
                        }
                    }
                    if let r { for i in 0..<(s.o * plane) { y[i] += r[i] } }
                }
            }
        }
    }
}

/// A 3×3, stride-1, padding-1 convolution by Winograd's F(2×2, 3×3) (`ck_winograd_conv3x3`): each image's blocks
/// of 2 × 2 output tiles × output channels taken by the threads as they go (any split gives the same bits), bias,
/// SiLU and residual in its epilogue.
private func winogradConvolution(
    _ s: ConvolutionShape, x: ImagePlanes<UnsafePointer<Float>>, filters: ConvolutionFilters, bias: Tensor?, silu: Bool,
    residual: ImagePlanes<UnsafePointer<Float>>?, y: ImagePlanes<UnsafeMutablePointer<Float>>
) {
    filters.withWinogradFilters { u in
        withOptionalBuffer(bias) { b in
            for image in 0..<s.n {
                var epilogue = ck_epilogue()
                (epilogue.row_bias, epilogue.silu, epilogue.residual, epilogue.ldr) = (
                    b, silu ? 1 : 0, residual.map { $0.base + image * $0.stride }, s.h * s.w
                )
                withUnsafePointer(to: epilogue) { e in
                    Threading.parallelWork(ck_winograd_items(s.o, s.c, s.h, s.w)) { work, thread in
                        let status = ck_winograd_conv3x3(
                            u, s.o, s.c, s.h, s.w, x.base + image * x.stride, y.base + image * y.stride, e, work, thread
                        )
                        precondition(status == 0, "Winograd convolution failed: out of memory")
                    }
                }
            }
        }
    }
}

/// The GEMM paths on OpenBLAS for one image: C filled with the bias and accumulated onto (beta = 1), the patches
/// written out (none for a `pointwise` convolution: the input is B as it lies).
private func openBLASConvolution(
    _ x: UnsafePointer<Float>, _ wt: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
    _ y: UnsafeMutablePointer<Float>,
    _ s: ConvolutionShape, pointwise: Bool
) {
    let g = s.geometry
    let (og, rows, plane) = (s.o / g.groups, s.cg * s.kh * s.kw, s.ho * s.wo)
    if let bias { fillChannels(y, bias, c: s.o, plane: plane) }
    let beta: Float = bias == nil ? 0 : 1
    let columns = pointwise ? nil : UnsafeMutablePointer<Float>.allocate(capacity: rows * plane)
    defer { columns?.deallocate() }
    for group in 0..<g.groups {
        var b = x + group * s.cg * s.h * s.w
        if let columns {
            im2col(b, columns, c: s.cg, h: s.h, w: s.w, kh: s.kh, kw: s.kw, ho: s.ho, wo: s.wo, g: g)
            b = UnsafePointer(columns)
        }
        gemm(
            m: og, n: plane, k: rows, a: wt + group * og * rows, lda: rows, b: b, ldb: plane,
            beta: beta, c: y + group * og * plane, ldc: plane)
    }
}

/// `body` with the tensor's storage, or with nil for no tensor.
public func withOptionalBuffer<R>(_ tensor: Tensor?, _ body: (UnsafePointer<Float>?) -> R) -> R {
    guard let tensor else { return body(nil) }
    return tensor.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// Patches of one group's input, laid out [C·kH·kW, Ho·Wo] so the weight multiplies them in one GEMM.
private func im2col(
    _ x: UnsafePointer<Float>, _ columns: UnsafeMutablePointer<Float>, c: Int, h: Int, w: Int,
    kh: Int, kw: Int, ho: Int, wo: Int, g: Conv2dGeometry
) {
    let stride = g.stride.x
    Threading.parallelFor(c * kh * kw, grain: 4) { rows in
        for row in rows {
            let (channel, ky, kx) = (row / (kh * kw), (row / kw) % kh, row % kw)
            let plane = x + channel * h * w
            let out = columns + row * ho * wo
            // ix = ox · stride + offset: the outputs [lo, hi) read inside the row, the rest is padding.
            let offset = kx * g.dilation.x - g.padding.x
            let lo = min(wo, offset >= 0 ? 0 : (-offset + stride - 1) / stride)
            let hi = max(lo, w - 1 - offset < 0 ? 0 : min(wo, (w - 1 - offset) / stride + 1))
            for oy in 0..<ho {
                let iy = oy * g.stride.y - g.padding.y + ky * g.dilation.y
                let line = out + oy * wo
                guard iy >= 0 && iy < h else {
                    line.update(repeating: 0, count: wo)
                    continue
                }
                let source = plane + iy * w + offset
                line.update(repeating: 0, count: lo)
                if stride == 1 {
                    (line + lo).update(from: source + lo, count: hi - lo)
                } else {
                    for ox in lo..<hi { line[ox] = source[ox * stride] }
                }
                (line + hi).update(repeating: 0, count: wo - hi)
            }
        }
    }
}

/// One filter per channel (groups = C = O), one image: y[c] = Σ w[c, ky, kx] · x[c, shifted].
private func depthwise(
    _ x: UnsafePointer<Float>, _ wt: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ s: ConvolutionShape
) {
    let (g, h, w, kh, kw, ho, wo) = (s.geometry, s.h, s.w, s.kh, s.kw, s.ho, s.wo)
    Threading.parallelFor(s.c) { planes in
        for channel in planes {
            let filter = wt + channel * kh * kw
            let source = x + channel * h * w
            let out = y + channel * ho * wo
            for oy in 0..<ho {
                for ox in 0..<wo {
                    var sum: Float = 0
                    for ky in 0..<kh {
                        let iy = oy * g.stride.y - g.padding.y + ky * g.dilation.y
                        guard iy >= 0 && iy < h else { continue }
                        for kx in 0..<kw {
                            let ix = ox * g.stride.x - g.padding.x + kx * g.dilation.x
                            if ix >= 0 && ix < w { sum += filter[ky * kw + kx] * source[iy * w + ix] }
                        }
                    }
                    out[oy * wo + ox] = sum
                }
            }
        }
    }
}

/// Sets each of the c planes of y to its channel's bias (the start a GEMM with beta = 1 accumulates onto).
private func fillChannels(_ y: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, c: Int, plane: Int) {
    Threading.parallelFor(c, grain: max(1, 16_384 / max(1, plane))) { planes in
        for index in planes { (y + index * plane).update(repeating: bias[index], count: plane) }
    }
}

private func addChannelBias(_ y: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, c: Int, plane: Int) {
    Threading.parallelFor(c, grain: max(1, 16_384 / max(1, plane))) { planes in
        for index in planes {
            let value = bias[index]
            let p = y + index * plane
            for i in 0..<plane { p[i] += value }
        }
    }
}

/// Folds an inference-mode BatchNorm that follows a convolution into the convolution's weight and bias, in
/// float32 with the operation order of `torch.nn.utils.fusion.fuse_conv_bn_weights` (what Ultralytics' `fuse()`
/// calls), so the folded weights are bit-identical to the reference's:
/// r = 1/√(var + eps), W' = W · (γ·r), b' = (b − mean) · r · γ + β.
public func foldBatchNorm(
    weight: Tensor, bias: Tensor?, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVar: Tensor, eps: Double
) -> (weight: Tensor, bias: Tensor) {
    let o = weight.shape[0]
    precondition(
        [gamma, beta, runningMean, runningVar].allSatisfy { $0.shape == [o] }, "BatchNorm parameters must be [\(o)]")
    let perFilter = weight.count / max(1, o)
    var folded = weight
    var foldedBias = Tensor(zeros: [o])
    for channel in 0..<o {
        let rsqrt = 1 / (runningVar.storage[channel] + Float(eps)).squareRoot()
        let scale = gamma.storage[channel] * rsqrt
        for i in 0..<perFilter {
            folded.storage[channel * perFilter + i] = weight.storage[channel * perFilter + i] * scale
        }
        let b = bias?.storage[channel] ?? 0
        foldedBias.storage[channel] =
            (b - runningMean.storage[channel]) * rsqrt * gamma.storage[channel] + beta.storage[channel]
    }
    return (folded, foldedBias)
}
