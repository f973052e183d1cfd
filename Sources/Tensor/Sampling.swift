/// `nn.MaxPool2d(kernel, stride, padding)` on [N, C, H, W]; padding counts as −∞, as in PyTorch. Separable: the
/// maximum along each input row's windows first, then down the columns of those (2k comparisons per output, not k²;
/// a maximum is exact in any order).
public func maxPool2d(_ input: Tensor, kernel: Int, stride: Int, padding: Int) -> Tensor {
    precondition(
        input.rank == 4 && padding <= kernel / 2,
        "maxPool2d: input \(input.shape), kernel \(kernel), padding \(padding)")
    let (n, c, h, w) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
    let ho = (h + 2 * padding - kernel) / stride + 1
    let wo = (w + 2 * padding - kernel) / stride + 1
    var output = Tensor(uninitialized: [n, c, ho, wo])  // every window holds at least one input (padding ≤ kernel / 2)
    input.withUnsafeBufferPointer { x in
        output.withUnsafeMutableBufferPointer { y in
            let (x, y) = (x.baseAddress!, y.baseAddress!)
            Threading.parallelFor(n * c) { planes in
                let rows = UnsafeMutablePointer<Float>.allocate(capacity: h * wo)
                defer { rows.deallocate() }
                for plane in planes {
                    let source = x + plane * h * w
                    let out = y + plane * ho * wo
                    for iy in 0..<h {
                        let line = source + iy * w
                        for ox in 0..<wo {
                            let x0 = max(0, ox * stride - padding)
                            let x1 = min(w, ox * stride - padding + kernel)
                            var best = line[x0]
                            for ix in (x0 + 1)..<x1 { best = max(best, line[ix]) }
                            rows[iy * wo + ox] = best
                        }
                    }
                    for oy in 0..<ho {
                        let y0 = max(0, oy * stride - padding)
                        let y1 = min(h, oy * stride - padding + kernel)
                        let line = out + oy * wo
                        line.update(from: rows + y0 * wo, count: wo)
                        for iy in (y0 + 1)..<y1 {
                            let row = rows + iy * wo
                            for ox in 0..<wo { line[ox] = max(line[ox], row[ox]) }
                        }
                    }
                }
            }
        }
    }
    return output
}

/// `nn.Upsample(scale_factor=s, mode="nearest")` on [N, C, H, W] for an integer factor.
public func upsampleNearest(_ input: Tensor, factor: Int) -> Tensor {
    precondition(input.rank == 4 && factor >= 1)
    let (n, c, h, w) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
    var output = Tensor(uninitialized: [n, c, h * factor, w * factor])  // every element is written
    input.withUnsafeBufferPointer { x in
        output.withUnsafeMutableBufferPointer { y in
            let (x, y) = (x.baseAddress!, y.baseAddress!)
            Threading.parallelFor(n * c) { planes in
                for plane in planes {
                    let source = x + plane * h * w
                    let out = y + plane * h * w * factor * factor
                    for iy in 0..<h {
                        let line = out + iy * factor * w * factor
                        for ix in 0..<w { for f in 0..<factor { line[ix * factor + f] = source[iy * w + ix] } }
                        for f in 1..<factor { (line + f * w * factor).update(from: line, count: w * factor) }
                    }
                }
            }
        }
    }
    return output
}

/// `F.interpolate(x, size=(outH, outW), mode="bilinear", align_corners=False)` on [N, C, H, W] float maps.
/// Source coordinates are computed in Float as PyTorch's CPU kernel does (scale = in/out, negative
/// coordinates clamped to 0), so results agree to float rounding.
public func resizeBilinear(_ input: Tensor, height outH: Int, width outW: Int) -> Tensor {
    precondition(input.rank == 4 && outH > 0 && outW > 0)
    let (n, c, h, w) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
    let resize = BilinearResize(height: h, width: w, outHeight: outH, outWidth: outW)
    var output = Tensor(uninitialized: [n, c, outH, outW])  // every element is written
    input.withUnsafeBufferPointer { x in
        output.withUnsafeMutableBufferPointer { y in
            let (x, y) = (x.baseAddress!, y.baseAddress!)
            Threading.parallelFor(n * c) { planes in
                var across = [Float](repeating: 0, count: h * outW)
                for plane in planes {
                    let out = y + plane * outH * outW
                    across.withUnsafeMutableBufferPointer { across in
                        resize.across(x + plane * h * w, stride: w, into: across.baseAddress!)
                        for oy in 0..<outH { resize.row(oy, from: across.baseAddress!, into: out + oy * outW) { $0 } }
                    }
                }
            }
        }
    }
    return output
}

/// `resizeBilinear` of one plane, h × w floats with rows `stride` apart, to outH × outW, as its signs: value > 0,
/// row-major. The same sums (the same bits before the comparison), each compared as it is made: no float plane, on the
/// calling thread.
public func bilinearSigns(
    _ plane: UnsafePointer<Float>, height h: Int, width w: Int, stride: Int, outHeight outH: Int, outWidth outW: Int
) -> [Bool] {
    precondition(h > 0 && w > 0 && outH > 0 && outW > 0)
    let resize = BilinearResize(height: h, width: w, outHeight: outH, outWidth: outW)
    let across = UnsafeMutablePointer<Float>.allocate(capacity: h * outW)
    defer { across.deallocate() }
    resize.across(plane, stride: stride, into: across)
    return [Bool](unsafeUninitializedCapacity: outH * outW) { signs, count in
        for oy in 0..<outH { resize.row(oy, from: across, into: signs.baseAddress! + oy * outW) { $0 > 0 } }
        count = outH * outW
    }
}

/// A bilinear resize in two passes: each source row interpolated across once, then every output row blends two of
/// those — the same sums as blending four taps per output pixel, with the gathers done once per source row.
struct BilinearResize {
    let xs: [BilinearTap], ys: [BilinearTap]

    init(height h: Int, width w: Int, outHeight: Int, outWidth: Int) {
        (xs, ys) = (bilinearTaps(input: w, output: outWidth), bilinearTaps(input: h, output: outHeight))
    }

    /// The source's rows (`stride` apart) across, into `across` [h, outW].
    func across(_ source: UnsafePointer<Float>, stride: Int, into across: UnsafeMutablePointer<Float>) {
        let outW = xs.count
        xs.withUnsafeBufferPointer { xs in
            for row in 0..<(ys.last.map { $0.index + $0.step + 1 } ?? 0) {
                let (from, to) = (source + row * stride, across + row * outW)
                for ox in 0..<outW {
                    let tx = xs[ox]
                    to[ox] = tx.w0 * from[tx.index] + tx.w1 * from[tx.index + tx.step]
                }
            }
        }
    }

    /// Output row `oy` from the rows across, each value stored as `store` makes it (the value, or its sign).
    @inline(__always)
    func row<T>(_ oy: Int, from across: UnsafePointer<Float>, into to: UnsafeMutablePointer<T>, _ store: (Float) -> T) {
        let (ty, outW) = (ys[oy], xs.count)
        let (top, bottom) = (across + ty.index * outW, across + (ty.index + ty.step) * outW)
        for ox in 0..<outW { to[ox] = store(ty.w0 * top[ox] + ty.w1 * bottom[ox]) }
    }
}

/// One output coordinate's two source taps: index, offset to the second tap (0 at the edge), weights.
struct BilinearTap {
    var index: Int
    var step: Int
    var w0: Float
    var w1: Float
}

func bilinearTaps(input: Int, output: Int) -> [BilinearTap] {
    let scale = Float(input) / Float(output)
    return (0..<output).map { o in
        let source = max(scale * (Float(o) + 0.5) - 0.5, 0)
        let index = min(Int(source), input - 1)
        let lambda = source - Float(index)
        return BilinearTap(index: index, step: index < input - 1 ? 1 : 0, w0: 1 - lambda, w1: lambda)
    }
}
