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
    precondition(input.rank == 4 && weight.rank == 4, "conv2d wants 4-D input and weight, got \(input.shape), \(weight.shape)")
    let (n, c, h, w) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
    let (o, cg, kh, kw) = (weight.shape[0], weight.shape[1], weight.shape[2], weight.shape[3])
    precondition(c % g.groups == 0 && o % g.groups == 0 && cg == c / g.groups,
                 "conv2d channels: input \(input.shape), weight \(weight.shape), groups \(g.groups)")
    precondition(bias == nil || bias!.shape == [o], "conv2d bias must be [\(o)]")
    let ho = g.outputSize(input: h, kernel: kh, stride: g.stride.y, padding: g.padding.y, dilation: g.dilation.y)
    let wo = g.outputSize(input: w, kernel: kw, stride: g.stride.x, padding: g.padding.x, dilation: g.dilation.x)
    precondition(ho > 0 && wo > 0, "conv2d output would be empty for input \(input.shape) and kernel \(kh)×\(kw)")
    precondition(residual == nil || residual!.shape == [n, o, ho, wo], "conv2d residual must be \([n, o, ho, wo])")
    var output = Tensor(uninitialized: [n, o, ho, wo])  // every path writes every element
    let (og, plane) = (o / g.groups, ho * wo)
    let depthwiseCase = cg == 1 && og == 1
    let fused = GEMMKernel.current == .ours && !depthwiseCase
    let pointwise = kh == 1 && kw == 1 && g.stride == (1, 1) && g.padding == (0, 0)

    input.withUnsafeBufferPointer { x in
        weight.withUnsafeBufferPointer { wt in
            output.withUnsafeMutableBufferPointer { y in
                withOptionalBuffer(bias) { b in
                    withOptionalBuffer(residual) { r in
                        let x = x.baseAddress!, wt = wt.baseAddress!, y = y.baseAddress!
                        if depthwiseCase {
                            depthwise(x, wt, y, n: n, c: c, h: h, w: w, kh: kh, kw: kw, ho: ho, wo: wo, g: g)
                            if let b { addChannelBias(y, b, n: n, c: o, plane: plane) }
                        } else if fused {
                            for image in 0..<n {
                                for group in 0..<g.groups {
                                    let first = (image * o + group * og) * plane
                                    let epilogue = ck_epilogue(row_bias: b.map { $0 + group * og }, silu: silu ? 1 : 0,
                                                               residual: r.map { $0 + first }, ldr: plane)
                                    let filters = ck_operand(data: wt + group * og * cg * kh * kw, row: cg * kh * kw, col: 1, packed: nil, patches: nil)
                                    let source = x + (image * c + group * cg) * h * w
                                    if pointwise {
                                        product(m: og, n: plane, k: cg, alpha: 1, a: filters,
                                                b: ck_operand(data: source, row: plane, col: 1, packed: nil, patches: nil),
                                                beta: 0, c: y + first, ldc: plane, epilogue: epilogue)
                                        continue
                                    }
                                    // The kernel gathers the patches straight into its packed panels: no im2col matrix.
                                    var patches = ck_patches(
                                        x: source, channels: cg, height: h, width: w, kernel_h: kh, kernel_w: kw,
                                        stride_y: g.stride.y, stride_x: g.stride.x, pad_y: g.padding.y, pad_x: g.padding.x,
                                        dilation_y: g.dilation.y, dilation_x: g.dilation.x, out_h: ho, out_w: wo)
                                    withUnsafePointer(to: &patches) { patches in
                                        product(m: og, n: plane, k: cg * kh * kw, alpha: 1, a: filters,
                                                b: ck_operand(data: nil, row: 0, col: 0, packed: nil, patches: patches),
                                                beta: 0, c: y + first, ldc: plane, epilogue: epilogue)
                                    }
                                }
                            }
                        } else {
                            openBLASConvolution(x, wt, b, y, n: n, c: c, h: h, w: w, o: o, kh: kh, kw: kw, ho: ho, wo: wo, g: g,
                                                pointwise: pointwise)
                        }
                        if !fused {
                            if silu {
                                Threading.parallelFor(n * o, grain: max(1, 16_384 / plane)) { planes in
                                    ck_silu(y + planes.lowerBound * plane, planes.count * plane)
                                }
                            }
                            if let r { for i in 0..<(n * o * plane) { y[i] += r[i] } }
                        }
                    }
                }
            }
        }
    }
    return output
}

/// The GEMM paths on OpenBLAS: C filled with the bias and accumulated onto (beta = 1), the patches written out
/// (none for a `pointwise` convolution: the input is B as it lies).
private func openBLASConvolution(
    _ x: UnsafePointer<Float>, _ wt: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?, _ y: UnsafeMutablePointer<Float>,
    n: Int, c: Int, h: Int, w: Int, o: Int, kh: Int, kw: Int, ho: Int, wo: Int, g: Conv2dGeometry, pointwise: Bool
) {
    let (og, cg, rows) = (o / g.groups, c / g.groups, c / g.groups * kh * kw)
    if let bias { fillChannels(y, bias, n: n, c: o, plane: ho * wo) }
    let beta: Float = bias == nil ? 0 : 1
    let columns = pointwise ? nil : UnsafeMutablePointer<Float>.allocate(capacity: rows * ho * wo)
    defer { columns?.deallocate() }
    for image in 0..<n {
        for group in 0..<g.groups {
            var b = x + (image * c + group * cg) * h * w
            if let columns {
                im2col(b, columns, c: cg, h: h, w: w, kh: kh, kw: kw, ho: ho, wo: wo, g: g)
                b = UnsafePointer(columns)
            }
            gemm(m: og, n: ho * wo, k: rows, a: wt + group * og * rows, lda: rows, b: b, ldb: ho * wo,
                 beta: beta, c: y + (image * o + group * og) * ho * wo, ldc: ho * wo)
        }
    }
}

private func withOptionalBuffer<R>(_ tensor: Tensor?, _ body: (UnsafePointer<Float>?) -> R) -> R {
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

/// One filter per channel (groups = C = O): y[c] = Σ w[c, ky, kx] · x[c, shifted].
private func depthwise(
    _ x: UnsafePointer<Float>, _ wt: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
    n: Int, c: Int, h: Int, w: Int, kh: Int, kw: Int, ho: Int, wo: Int, g: Conv2dGeometry
) {
    Threading.parallelFor(n * c) { planes in
        for planeIndex in planes {
            let filter = wt + (planeIndex % c) * kh * kw
            let source = x + planeIndex * h * w
            let out = y + planeIndex * ho * wo
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

/// Sets each of the n · c planes of y to its channel's bias (the start a GEMM with beta = 1 accumulates onto).
func fillChannels(_ y: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, n: Int, c: Int, plane: Int) {
    Threading.parallelFor(n * c, grain: max(1, 16_384 / max(1, plane))) { planes in
        for index in planes { (y + index * plane).update(repeating: bias[index % c], count: plane) }
    }
}

func addChannelBias(_ y: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, n: Int, c: Int, plane: Int) {
    Threading.parallelFor(n * c, grain: max(1, 16_384 / max(1, plane))) { planes in
        for index in planes {
            let value = bias[index % c]
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
    precondition([gamma, beta, runningMean, runningVar].allSatisfy { $0.shape == [o] }, "BatchNorm parameters must be [\(o)]")
    let perFilter = weight.count / max(1, o)
    var folded = weight
    var foldedBias = Tensor(zeros: [o])
    for channel in 0..<o {
        let rsqrt = 1 / (runningVar.storage[channel] + Float(eps)).squareRoot()
        let scale = gamma.storage[channel] * rsqrt
        for i in 0..<perFilter { folded.storage[channel * perFilter + i] = weight.storage[channel * perFilter + i] * scale }
        let b = bias?.storage[channel] ?? 0
        foldedBias.storage[channel] = (b - runningMean.storage[channel]) * rsqrt * gamma.storage[channel] + beta.storage[channel]
    }
    return (folded, foldedBias)
}
