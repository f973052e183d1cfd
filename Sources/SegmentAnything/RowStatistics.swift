// Part of the port of segment_anything/modeling/transformer.py (TwoWayAttentionBlock: norm4 after the image-to-token
// attention) at dca509f: the statistics those norms take of a prompt's image rows, from the image's rows and the
// prompt's updates, without the rows.
//
// Row by row, with ~ removing a vector's mean (as the norm does; rows of matrices each), x̃ the image's row (centred),
// s_i the row's H·T probabilities in layer i's image-to-token attention, W_i [H·T, E] the tokens' values through its
// output projection (head h: V_i,h·W_out,i,hᵀ), b_i that projection's bias and γ, β the first layer's norm4:
//
//     layer 1's norm sees  z̃_1 = x' + s_1ᵀ·W̃_1,           x' = x̃ + b̃_1
//     layer 2's norm sees  z̃_2 = a_1·c + s_2ᵀ·W̃_2 + m,     c = (z̃_1 ⊙ γ)~ = x'' + s_1ᵀ·C,  x'' = (x' ⊙ γ)~,
//                                                           C = (W̃_1 ⊙ γ)~,  m = (β + b_2)~
//     |z̃_1|² = |x'|² + 2 s_1·(W_1·x'ᵀ) + s_1ᵀ·W̃_1W̃_1ᵀ·s_1
//     |z̃_2|² = a_1²·(|x''|² + 2 s_1·(W_1·x'''ᵀ) + s_1ᵀ·CCᵀ·s_1)                           x''' = (x'' ⊙ γ)~
//            + 2 a_1·(x''·m + s_1·(C·m) + s_2·(W_2·x''ᵀ + W̃_2Cᵀ·s_1)) + |m|² + 2 s_2·(W̃_2·m) + s_2ᵀ·W̃_2W̃_2ᵀ·s_2
//
// (W_i·yᵀ = W̃_i·yᵀ for a centred y). W_i·yᵀ is, head by head, V_i,h·(y·W_out,i)_hᵀ, where y·W_out,i [rows, D] is the
// image's, shared by all its prompts: a prompt adds T·D multiply-adds a row for each, and the quadratic forms in its
// probabilities ([H·T × H·T]).
import Tensor

/// The inverse deviations a_1, a_2 that the two layers' `norm4` give a prompt's image rows (`RowUpdate`), computed
/// without forming the rows, from the expansions of |z̃_1|² and |z̃_2|² in the file's header. Every term is centred,
/// as the norm's input is; where a prompt's terms cancel, float32 rounding grows. For the two layers of every
/// released SAM's decoder.
struct RowStatistics {
    /// The two image-to-token attentions' output projections [E, D].
    let firstOut: Tensor, secondOut: Tensor
    /// γ, b̃_1, m and |m|².
    let gamma: [Float], firstBias: [Float], m: [Float], mSquared: Float
    let heads: Int

    init(_ layers: [TwoWayTransformer.Layer]) {
        precondition(layers.count == 2, "RowStatistics is for two layers, not \(layers.count)")
        let (first, second) = (layers[0].imageToToken.out, layers[1].imageToToken.out)
        (firstOut, secondOut, heads) = (first.weight, second.weight, layers[0].imageToToken.heads)
        gamma = layers[0].norm4.weight.storage
        firstBias = Self.centredRows(first.bias!).storage
        m =
            Self.centredRows(
                Tensor(
                    shape: [gamma.count],
                    storage: zip(layers[0].norm4.bias.storage, second.bias!.storage).map { $0 + $1 })
            ).storage
        mSquared = m.reduce(0) { $0 + $1 * $1 }
    }

    /// What one image gives every prompt: per row |x'|², |x''|² and x''·m, and x'·W_out,1, x'''·W_out,1 and
    /// x''·W_out,2 [rows, D], each head's columns packed.
    struct Shared {
        let first: [Float], second: [Float], cross: [Float]
        let maps: [Tensor], packed: [[PackedLinearWeight]]
    }

    /// For the image's rows, centred, [rows, E].
    func shared(centredRows: Tensor) -> Shared {
        let e = gamma.count
        let rows = centredRows.count / e
        var x1 = centredRows.reshaped([rows, e])
        var x2 = x1
        var x3 = x1
        var (first, second, cross) = (
            [Float](repeating: 0, count: rows), [Float](repeating: 0, count: rows), [Float](repeating: 0, count: rows)
        )
        x1.withUnsafeMutableBufferPointer { x1 in
            x2.withUnsafeMutableBufferPointer { x2 in
                x3.withUnsafeMutableBufferPointer { x3 in
                    let (x1, x2, x3) = (x1.baseAddress!, x2.baseAddress!, x3.baseAddress!)
                    Threading.parallelFor(rows, grain: 64) { range in
                        for r in range {
                            let (p1, p2, p3) = (x1 + r * e, x2 + r * e, x3 + r * e)
                            var (s1, mean2): (Float, Float) = (0, 0)
                            for c in 0..<e {
                                p1[c] += firstBias[c]
                                s1 += p1[c] * p1[c]
                                p2[c] = p1[c] * gamma[c]
                                mean2 += p2[c]
                            }
                            mean2 /= Float(e)
                            var (s2, dot, mean3): (Float, Float, Float) = (0, 0, 0)
                            for c in 0..<e {
                                p2[c] -= mean2
                                s2 += p2[c] * p2[c]
                                dot += p2[c] * m[c]
                                p3[c] = p2[c] * gamma[c]
                                mean3 += p3[c]
                            }
                            mean3 /= Float(e)
                            for c in 0..<e { p3[c] -= mean3 }
                            (first[r], second[r], cross[r]) = (s1, s2, dot)
                        }
                    }
                }
            }
        }
        let maps = [x1.matmul(firstOut), x3.matmul(firstOut), x2.matmul(secondOut)]
        let d = firstOut.shape[1]
        let packed = maps.map { map in
            map.withUnsafeBufferPointer { y in
                (0..<heads).map {
                    PackedLinearWeight(y.baseAddress! + $0 * d / heads, out: rows, in: d / heads, stride: d)
                }
            }
        }
        return Shared(first: first, second: second, cross: cross, maps: maps, packed: packed)
    }

    /// What the first layer leaves for the second: a_1, the terms of |z̃_2|² that the first layer fixes
    /// (a_1²·|c|² + 2 a_1·(x''·m + s_1·(C·m)) + |m|²), C and s_1.
    struct First {
        let inverseDeviations: [Float], partial: [Float]
        let c: Tensor, probabilities: Tensor
    }

    /// After the first layer: its probabilities [H·T, paddedStride(rows)], the tokens' values [1, T, D] and those
    /// through the output projection [H·T, E] (`fewKeyUpdate`).
    func first(probabilities s: Tensor, values v: Tensor, back w: Tensor, shared: Shared) -> First {
        let (ht, e, stride, rows) = (w.shape[0], w.shape[1], s.shape[1], shared.first.count)
        let w1 = Self.centredRows(w)
        let c = Self.centredRows(w1, scaledBy: gamma)
        // [W̃_1W̃_1ᵀ; CCᵀ] · s_1 → [2·H·T, rows]
        var forms = Tensor(uninitialized: [2 * ht, ht])
        var quadratic = Tensor(uninitialized: [2 * ht, stride])
        forms.withUnsafeMutableBufferPointer { f in
            for (i, x) in [w1, c].enumerated() {
                x.withUnsafeBufferPointer { x in
                    gemm(
                        transB: true, m: ht, n: ht, k: e, a: x.baseAddress!, lda: e, b: x.baseAddress!, ldb: e,
                        c: f.baseAddress! + i * ht * ht, ldc: ht)
                }
            }
        }
        forms.withUnsafeBufferPointer { f in
            s.withUnsafeBufferPointer { s in
                quadratic.withUnsafeMutableBufferPointer { q in
                    gemm(
                        m: 2 * ht, n: rows, k: ht, a: f.baseAddress!, lda: ht, b: s.baseAddress!, ldb: stride,
                        c: q.baseAddress!, ldc: stride)
                }
            }
        }
        let linear1 = headProducts(v, map: 0, shared: shared, stride: stride)
        let linear2 = headProducts(v, map: 1, shared: shared, stride: stride)
        var n1 = shared.first
        var n2 = shared.second
        var cross = shared.cross
        let cm = c.withUnsafeBufferPointer { c in
            (0..<ht).map { j in (0..<e).reduce(Float(0)) { $0 + c[j * e + $1] * m[$1] } }
        }
        quadratic.withUnsafeBufferPointer { q in
            Self.accumulate(&n1, s, twice: linear1, plus: q.baseAddress!)
            Self.accumulate(&n2, s, twice: linear2, plus: q.baseAddress! + ht * stride)
        }
        Self.accumulate(&cross, s, constant: cm)
        let a = Self.inverseDeviations(n1, width: e)
        let partial = (0..<rows).map { a[$0] * a[$0] * n2[$0] + 2 * a[$0] * cross[$0] + mSquared }
        return First(inverseDeviations: a, partial: partial, c: c, probabilities: s)
    }

    /// a_2, after the second layer: its probabilities, the tokens' values and those through its output projection.
    func second(probabilities s: Tensor, values v: Tensor, back w: Tensor, after first: First, shared: Shared)
        -> [Float]
    {
        let (ht, e, stride, rows) = (w.shape[0], w.shape[1], s.shape[1], shared.first.count)
        let w2 = Self.centredRows(w)
        // y = W_2·x''ᵀ + W̃_2Cᵀ·s_1, scaled by a_1 row by row; g = W̃_2W̃_2ᵀ·s_2
        var y = headProducts(v, map: 2, shared: shared, stride: stride)
        var forms = Tensor(uninitialized: [2, ht, ht])
        var g = Tensor(uninitialized: [ht, stride])
        forms.withUnsafeMutableBufferPointer { f in
            w2.withUnsafeBufferPointer { left in
                for (i, x) in [first.c, w2].enumerated() {
                    x.withUnsafeBufferPointer { x in
                        gemm(
                            transB: true, m: ht, n: ht, k: e, a: left.baseAddress!, lda: e, b: x.baseAddress!, ldb: e,
                            c: f.baseAddress! + i * ht * ht, ldc: ht)
                    }
                }
            }
        }
        forms.withUnsafeBufferPointer { f in
            y.withUnsafeMutableBufferPointer { y in
                first.probabilities.withUnsafeBufferPointer { s1 in
                    gemm(
                        m: ht, n: rows, k: ht, a: f.baseAddress!, lda: ht, b: s1.baseAddress!, ldb: stride, beta: 1,
                        c: y.baseAddress!, ldc: stride)
                }
                first.inverseDeviations.withUnsafeBufferPointer { a in
                    Threading.parallelFor(ht) { range in
                        for j in range { for r in 0..<rows { y[j * stride + r] *= a[r] } }
                    }
                }
            }
            g.withUnsafeMutableBufferPointer { g in
                s.withUnsafeBufferPointer { s in
                    gemm(
                        m: ht, n: rows, k: ht, a: f.baseAddress! + ht * ht, lda: ht, b: s.baseAddress!, ldb: stride,
                        c: g.baseAddress!, ldc: stride)
                }
            }
        }
        var n = first.partial
        let wm = w2.withUnsafeBufferPointer { w in
            (0..<ht).map { j in 2 * (0..<e).reduce(Float(0)) { $0 + w[j * e + $1] * m[$1] } }
        }
        g.withUnsafeBufferPointer { g in Self.accumulate(&n, s, twice: y, plus: g.baseAddress!, constant: wm) }
        return Self.inverseDeviations(n, width: e)
    }

    /// W_i·yᵀ for the image's map y (`Shared.maps[map]`, y·W_out,i): head h's rows V_h[t]·(y·W_out,i)_hᵀ, [H·T, stride].
    private func headProducts(_ v: Tensor, map: Int, shared: Shared, stride: Int) -> Tensor {
        let (t, d, rows) = (v.shape[1], v.shape[2], shared.first.count)
        let dh = d / heads
        var out = Tensor(uninitialized: [heads * t, stride])
        v.withUnsafeBufferPointer { v in
            shared.maps[map].withUnsafeBufferPointer { y in
                out.withUnsafeMutableBufferPointer { o in
                    if headScores(
                        v.baseAddress!, tokens: t, ldz: d, heads: heads, headWidth: dh, image: shared.packed[map],
                        columns: rows,
                        into: o.baseAddress!, ldo: stride)
                    {
                        return
                    }
                    for h in 0..<heads {
                        multiplyTransposed(
                            v.baseAddress! + h * dh, rows: t, lda: d, y.baseAddress! + h * dh, n: rows, k: dh, ldb: d,
                            packed: shared.packed[map][h], into: o.baseAddress! + h * t * stride, ldc: stride)
                    }
                }
            }
        }
        return out
    }

    /// 1 / √(var + eps) from each centred row's squared norm |z̃|² = width · var (rounding can take a sum of
    /// cancelling terms just below zero; the norm's eps is nn.LayerNorm's default).
    private static func inverseDeviations(_ squares: [Float], width: Int) -> [Float] {
        squares.map { 1 / (max($0, 0) / Float(width) + 1e-5).squareRoot() }
    }

    /// x with each row (along its last axis) minus its mean, after scaling it by `scale` element by element if given.
    static func centredRows(_ x: Tensor, scaledBy scale: [Float]? = nil) -> Tensor {
        let e = x.dim(-1)
        var out = x
        out.withUnsafeMutableBufferPointer { p in
            for start in stride(from: 0, to: p.count, by: e) {
                let row = UnsafeMutableBufferPointer(rebasing: p[start..<(start + e)])
                if let scale { for c in 0..<e { row[c] *= scale[c] } }
                let mean = row.reduce(0, +) / Float(e)
                for c in 0..<e { row[c] -= mean }
            }
        }
        return out
    }

    /// sums[r] += Σ_k s[k, r]·(2·twice[k, r] + plus[k, r] + constant[k]) for each row r, over the H·T rows k of s
    /// (rows `stride` apart, as `twice` and `plus`; each term optional): in the same order whatever the threads.
    private static func accumulate(
        _ sums: inout [Float], _ s: Tensor, twice: Tensor? = nil, plus: UnsafePointer<Float>? = nil,
        constant: [Float]? = nil
    ) {
        let (k, stride, rows) = (s.shape[0], s.shape[1], sums.count)
        let zeros = [Float](repeating: 0, count: stride)
        let block = 256
        sums.withUnsafeMutableBufferPointer { out in
            s.withUnsafeBufferPointer { s in
                (twice?.storage ?? zeros).withUnsafeBufferPointer { u in
                    zeros.withUnsafeBufferPointer { z in
                        let (out, s, u, z) = (out.baseAddress!, s.baseAddress!, u.baseAddress!, z.baseAddress!)
                        let uStride = twice == nil ? 0 : stride
                        let pStride = plus == nil ? 0 : stride
                        let p = plus ?? z
                        Threading.parallelFor((rows + block - 1) / block) { range in
                            for b in range {
                                let (r0, r1) = (b * block, min(rows, (b + 1) * block))
                                for j in 0..<k {
                                    let (sj, uj, pj, cj) = (
                                        s + j * stride, u + j * uStride, p + j * pStride, constant?[j] ?? 0
                                    )
                                    for r in r0..<r1 { out[r] += sj[r] * (2 * uj[r] + pj[r] + cj) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
