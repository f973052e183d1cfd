import CKernels
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
    public mutating func gelu() { mapInPlace { ck_gelu($0, $1) } }

    /// SiLU: x · σ(x).
    public mutating func silu() { mapInPlace { ck_silu($0, $1) } }

    public mutating func sigmoid() { mapInPlace { ck_sigmoid($0, $1) } }

    public mutating func relu() { mapInPlace { p, n in for i in 0..<n { p[i] = max(p[i], 0) } } }

    /// Softmax over the last dimension, max-subtracted for stability.
    public mutating func softmaxLastDim() {
        let c = dim(-1)
        let rows = count / max(1, c)
        withUnsafeMutableBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return }
            Threading.parallelFor(rows, grain: max(1, 8192 / max(1, c))) { range in
                softmaxRows(base + range.lowerBound * c, rows: range.count, c, stride: c)
            }
        }
    }
}

/// GELU (exact erf form) in place on `count` floats at `p`, on the calling thread.
public func gelu(_ p: UnsafeMutablePointer<Float>, count: Int) { ck_gelu(p, count) }

/// out[m · outStride + j] = Σ_i GELU(x[i · stride + j]) · h[m · rows + i] for the `columns` columns j of `rows` rows
/// at `x` and `count` vectors of `rows` floats at `h`: each vector dotted with the GELU of every column, on the
/// calling thread.
public func geluDotColumns(
    _ x: UnsafePointer<Float>, rows: Int, columns: Int, stride: Int, _ h: UnsafePointer<Float>, count: Int,
    into out: UnsafeMutablePointer<Float>, outStride: Int
) {
    ck_gelu_dot_columns(x, rows, columns, stride, h, count, out, outStride)
}

/// In-place softmax of `rows` rows of `n` values, `stride` floats apart.
@inline(__always)
public func softmaxRows(_ p: UnsafeMutablePointer<Float>, rows: Int, _ n: Int, stride: Int) {
    ck_softmax_rows(p, rows, n, stride)
}
