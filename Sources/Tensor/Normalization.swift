import CKernels

/// `torch.nn.LayerNorm` over the last dimension: (x − mean) / √(var + eps) · γ + β, biased variance.
public func layerNorm(_ input: Tensor, weight: Tensor, bias: Tensor, eps: Float) -> Tensor {
    let c = input.dim(-1)
    precondition(weight.shape == [c] && bias.shape == [c], "layerNorm parameters must be [\(c)] for \(input.shape)")
    var output = Tensor(uninitialized: input.shape)
    let rows = input.count / max(1, c)
    input.withUnsafeBufferPointer { x in
        output.withUnsafeMutableBufferPointer { y in
            weight.withUnsafeBufferPointer { g in
                bias.withUnsafeBufferPointer { b in
                    let (x, y, g, b) = (x.baseAddress!, y.baseAddress!, g.baseAddress!, b.baseAddress!)
                    Threading.parallelFor(rows, grain: max(1, 4096 / max(1, c))) { range in
                        ck_layer_norm_rows(
                            x + range.lowerBound * c, y + range.lowerBound * c, range.count, c, g, b, eps)
                    }
                }
            }
        }
    }
    return output
}

/// `layerNorm` in place on `rows` rows of `weight.count` floats at `x`, on the calling thread (for loops that are
/// parallel already).
public func layerNormRows(_ x: UnsafeMutablePointer<Float>, rows: Int, weight: Tensor, bias: Tensor, eps: Float) {
    precondition(
        bias.shape == weight.shape && weight.rank == 1, "layerNormRows parameters \(weight.shape), \(bias.shape)")
    weight.withUnsafeBufferPointer { g in
        bias.withUnsafeBufferPointer { b in
            ck_layer_norm_rows(x, x, rows, weight.count, g.baseAddress!, b.baseAddress!, eps)
        }
    }
}

/// SAM's `LayerNorm2d`: layer norm across the channels of each pixel of an [N, C, H, W] map.
public func layerNorm2d(_ input: Tensor, weight: Tensor, bias: Tensor, eps: Float) -> Tensor {
    precondition(input.rank == 4, "layerNorm2d wants [N, C, H, W], got \(input.shape)")
    let (n, c, plane) = (input.shape[0], input.shape[1], input.shape[2] * input.shape[3])
    precondition(weight.shape == [c] && bias.shape == [c], "layerNorm2d parameters must be [\(c)]")
    var output = input
    output.withUnsafeMutableBufferPointer { y in
        weight.withUnsafeBufferPointer { g in
            bias.withUnsafeBufferPointer { b in
                let (y, g, b) = (y.baseAddress!, g.baseAddress!, b.baseAddress!)
                // Channel-strided access: accumulate whole rows of pixels at a time so memory runs contiguously.
                Threading.parallelFor(n * ((plane + 255) / 256)) { blocks in
                    var mean = [Float](repeating: 0, count: 256)
                    var variance = [Float](repeating: 0, count: 256)
                    for block in blocks {
                        let image = block / ((plane + 255) / 256)
                        let start = (block % ((plane + 255) / 256)) * 256
                        let width = min(256, plane - start)
                        let base = y + image * c * plane + start
                        for i in 0..<width {
                            mean[i] = 0
                            variance[i] = 0
                        }
                        for channel in 0..<c {
                            let v = base + channel * plane
                            for i in 0..<width { mean[i] += v[i] }
                        }
                        for i in 0..<width { mean[i] /= Float(c) }
                        for channel in 0..<c {
                            let v = base + channel * plane
                            for i in 0..<width {
                                let d = v[i] - mean[i]
                                variance[i] += d * d
                            }
                        }
                        for i in 0..<width { variance[i] = 1 / (variance[i] / Float(c) + eps).squareRoot() }
                        for channel in 0..<c {
                            let v = base + channel * plane
                            for i in 0..<width { v[i] = (v[i] - mean[i]) * variance[i] * g[channel] + b[channel] }
                        }
                    }
                }
            }
        }
    }
    return output
}
