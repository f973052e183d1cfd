import Foundation

/// Elementwise functions, in place, over the whole tensor.
extension Tensor {
    /// Applies `body` to the storage in parallel contiguous slices.
    mutating func mapInPlace(_ body: @escaping (UnsafeMutablePointer<Float>, Int) -> Void) {
        let n = count
        withUnsafeMutableBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return }
            Threading.parallelFor(n, grain: 32_768) { range in body(base + range.lowerBound, range.count) }
        }
    }

    /// GELU with the exact erf form (`nn.GELU()` default): x · ½ · (1 + erf(x/√2)).
    public mutating func gelu() {
        mapInPlace { p, n in for i in 0..<n { p[i] = 0.5 * p[i] * (1 + erff(p[i] * 0.70710678118654752)) } }
    }

    /// SiLU: x · σ(x).
    public mutating func silu() { mapInPlace { p, n in for i in 0..<n { p[i] = p[i] / (1 + expf(-p[i])) } } }

    public mutating func sigmoid() { mapInPlace { p, n in for i in 0..<n { p[i] = 1 / (1 + expf(-p[i])) } } }

    public mutating func relu() { mapInPlace { p, n in for i in 0..<n { p[i] = max(p[i], 0) } } }

    /// Softmax over the last dimension, max-subtracted for stability.
    public mutating func softmaxLastDim() {
        let c = dim(-1)
        let rows = count / max(1, c)
        withUnsafeMutableBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return }
            Threading.parallelFor(rows, grain: max(1, 8192 / max(1, c))) { range in
                for row in range { softmaxRow(base + row * c, c) }
            }
        }
    }
}

/// In-place softmax of `n` contiguous values.
@inline(__always)
func softmaxRow(_ p: UnsafeMutablePointer<Float>, _ n: Int) {
    var maximum = -Float.infinity
    for i in 0..<n { maximum = max(maximum, p[i]) }
    var sum: Float = 0
    for i in 0..<n { let e = expf(p[i] - maximum); p[i] = e; sum += e }
    let inv = 1 / sum
    for i in 0..<n { p[i] *= inv }
}
