// Part of the port of segment_anything/modeling/transformer.py (TwoWayTransformer) and mask_decoder.py (the output
// upscaling's first convolution) at dca509f: the linear maps that read a prompt's image rows, computed from the
// image's rows, shared by all its prompts, and the prompt's low-rank changes to them.
//
// Each layer changes a prompt's image rows k by an update of rank H·T (56 for a box: 8 heads, 7 tokens), and a layer
// norm is k ↦ diag(a)·k·P·Γ + β, where P = I − 11ᵀ/E removes each row's mean and Γ = diag(γ): only a depends on the
// row. So, for a linear map M of the rows k_L after L layers, with k_0 = X the image's rows (embedding + dense
// prompt), N_L = P·Γ_L·Mᵀ and N_i = P·Γ_i·N_{i+1} (S_i, W_i, b_i and a_i as in `RowUpdate`),
//
//     k_L·Mᵀ = A_1 ⊙ (X·N_1) + Σ_i A_i ⊙ (S_iᵀ·(W_i·N_i) + c_i) + β_L·Mᵀ,
//     c_i = b_i·N_i + β_{i−1}·N_i (c_1 = b_1·N_1),
//
// with A_i = a_i ⊙ … ⊙ a_L scaling rows. X·N_1 is one product per image, shared by all its prompts; each prompt
// adds a product of rank K = Σ H·T + L — [4096 × 57]·[57 × F] after one layer, [4096 × 114]·[114 × F] after two —
// in place of [4096 × 256]·[256 × F]. The statistics a_i are the prompt's own (`RowStatistics`, also without
// the rows); P keeps every term centred, as the norm's input is, and X is centred before its product, so no large
// row means cancel.
import CKernels
import Tensor

/// What one layer's image-to-token attention did to a prompt's image rows k: k ← LN(k + Sᵀ·W + b), where S
/// [H·T, paddedStride(rows)] are the attention's probabilities, `values` the tokens' values V [1, T, D], W [H·T, E]
/// those through the output projection (head h's rows V_h·W_out,hᵀ), b that projection's bias, and a [rows] the
/// norm's inverse deviations, 1 / √(var + eps) of each row it normed.
struct RowUpdate {
    let probabilities: Tensor, values: Tensor, inverseDeviations: [Float]
}

/// A prompt's image rows after L layers, kept as the updates that made them, with the left operand that every map
/// of these rows shares (`RowsProjection`): [K, paddedStride(rows)], K = Σ H·T + L, the rows A_i ⊙ S_i of each layer
/// i and then the rows A_1 … A_L, where A_i = a_i ⊙ … ⊙ a_L.
struct PromptRows {
    let updates: [RowUpdate]
    let left: Tensor
    /// A_1, the scale of the image's own rows.
    let scale: [Float]

    init(_ updates: [RowUpdate]) {
        let (rows, depth) = (updates[0].inverseDeviations.count, updates.count)
        let width = paddedStride(rows)
        let k = updates.reduce(depth) { $0 + $1.probabilities.shape[0] }
        var left = Tensor(uninitialized: [k, width])  // the padding is never read
        left.withUnsafeMutableBufferPointer { l in
            let l = l.baseAddress!
            let products = l + (k - depth) * width  // A_1 … A_L: the last rows
            for i in stride(from: depth - 1, through: 0, by: -1) {
                let a = products + i * width
                updates[i].inverseDeviations.withUnsafeBufferPointer { d in
                    if i == depth - 1 {
                        a.update(from: d.baseAddress!, count: rows)
                    } else {
                        let next = a + width
                        for r in 0..<rows { a[r] = next[r] * d[r] }
                    }
                }
            }
            var at = l
            for (i, update) in updates.enumerated() {
                let (a, stride) = (products + i * width, update.probabilities.shape[1])
                update.probabilities.withUnsafeBufferPointer { s in
                    for j in 0..<update.probabilities.shape[0] {
                        let row = s.baseAddress! + j * stride
                        for r in 0..<rows { at[r] = a[r] * row[r] }
                        at += width
                    }
                }
            }
        }
        (self.updates, self.left) = (updates, left)
        scale = Array(left.storage[((k - depth) * width)..<((k - depth) * width + rows)])
    }
}

/// A linear layer y = k_L·Mᵀ + bias (+ PE·Mᵀ, for the attentions' keys and queries) on a prompt's image rows k_L
/// after L layers, computed without those rows: k_L·Mᵀ as the file's header expands it, from X·N_1 (the image's,
/// shared by all its prompts) and a product of rank K per prompt.
struct RowsProjection {
    let weight: Tensor, addsPE: Bool
    /// N_1 … N_L, [E, F] each.
    let chain: [Tensor]
    /// W_out,iᵀ·N_i for each layer's image-to-token output projection W_out,i [E, D], [D, F] each: W_i·N_i is head
    /// by head V_h·(W_out,iᵀ·N_i)_h, T·D·F multiply-adds instead of H·T·E·F.
    let outChain: [Tensor]
    /// c_1 … c_L, [L, F].
    let constants: Tensor
    /// β_L·Mᵀ + bias, [F].
    let constant: Tensor

    /// `layer` on the rows after `layers` (their image-to-token attentions' output projections and norms).
    init(_ layer: LinearLayer, addsPE: Bool, after layers: ArraySlice<TwoWayTransformer.Layer>) {
        self.init(layer, addsPE: addsPE, norms: layers.map(\.norm4), outs: layers.map { $0.imageToToken.out })
    }

    /// `layer` after the layers whose norms and image-to-token output projections are `norms` and `outs`, in order.
    private init(_ layer: LinearLayer, addsPE: Bool, norms: [Norm], outs: [LinearLayer]) {
        let biases = outs.map { $0.bias! }
        let (f, e) = (layer.weight.shape[0], layer.weight.shape[1])
        precondition(
            !norms.isEmpty && norms.count == biases.count && norms.allSatisfy { $0.weight.shape == [e] },
            "RowsProjection: \(norms.count) norms")
        // In float64, so that each N_i's columns sum to zero (P's work) to float32's precision.
        var transposed = [Double](repeating: 0, count: e * f)  // Mᵀ
        for o in 0..<f { for c in 0..<e { transposed[c * f + o] = Double(layer.weight.storage[o * e + c]) } }
        var next = transposed  // N_{i+1}
        var chain = [[Double]]()
        for norm in norms.reversed() {
            var n = [Double](repeating: 0, count: e * f)
            var means = [Double](repeating: 0, count: f)
            for c in 0..<e {
                for o in 0..<f {
                    n[c * f + o] = Double(norm.weight.storage[c]) * next[c * f + o]
                    means[o] += n[c * f + o]
                }
            }
            for c in 0..<e { for o in 0..<f { n[c * f + o] -= means[o] / Double(e) } }
            chain.insert(n, at: 0)
            next = n
        }
        func times(_ v: Tensor, _ n: [Double]) -> [Double] {
            (0..<f).map { o in (0..<e).reduce(0.0) { $0 + Double(v.storage[$1]) * n[$1 * f + o] } }
        }
        var constants = [Float]()
        for i in 0..<norms.count {
            var c = times(biases[i], chain[i])
            if i > 0 { c = zip(c, times(norms[i - 1].bias, chain[i])).map(+) }
            constants += c.map { Float($0) }
        }
        let constant = zip(times(norms.last!.bias, transposed), layer.bias?.storage ?? [Float](repeating: 0, count: f))
            .map { Float($0 + Double($1)) }
        self.chain = chain.map { Tensor(shape: [e, f], storage: $0.map(Float.init)) }
        outChain = zip(outs, self.chain).map { out, n in
            let d = out.weight.shape[1]
            var product = Tensor(uninitialized: [d, f])
            out.weight.withUnsafeBufferPointer { w in
                n.withUnsafeBufferPointer { n in
                    product.withUnsafeMutableBufferPointer {
                        gemm(
                            transA: true, m: d, n: f, k: e, a: w.baseAddress!, lda: d, b: n.baseAddress!, ldb: f,
                            c: $0.baseAddress!, ldc: f)
                    }
                }
            }
            return product
        }
        self.constants = Tensor(shape: [norms.count, f], storage: constants)
        self.constant = Tensor(shape: [f], storage: constant)
        (weight, self.addsPE) = (layer.weight, addsPE)
    }

    var width: Int { weight.shape[0] }

    /// What one image gives every prompt: X·N_1 [rows, F] and PE·Mᵀ + β_L·Mᵀ + bias (nil without PE: the constant
    /// alone); for maps that attention reads as keys (`scores`), each head's columns of both, packed once.
    struct Shared {
        let image: Tensor, base: Tensor?
        let packedImage: [PackedLinearWeight], packedBase: [PackedLinearWeight]
    }

    /// For the image's rows, centred (each row minus its mean), and their PE, [rows, E] each; `heads`, for a map read
    /// as keys, packs each head's columns.
    func shared(centredRows: Tensor, pe: Tensor, heads: Int = 0) -> Shared {
        let (e, f) = (chain[0].shape[0], width)
        let rows = centredRows.count / e
        let image = centredRows.reshaped([rows, e]).matmul(chain[0])
        let base = addsPE ? linear(pe, weight: weight, bias: constant).reshaped([rows, f]) : nil
        func packed(_ x: Tensor?) -> [PackedLinearWeight] {
            guard let x, heads > 0 else { return [] }
            return x.withUnsafeBufferPointer { x in
                (0..<heads).map {
                    PackedLinearWeight(x.baseAddress! + $0 * f / heads, out: rows, in: f / heads, stride: f)
                }
            }
        }
        return Shared(image: image, base: base, packedImage: packed(image), packedBase: packed(base))
    }

    /// The prompt's right operand [K, F]: W_i·N_i for each layer i, then c_1 … c_L.
    func right(_ rows: PromptRows) -> Tensor {
        precondition(
            rows.updates.count == chain.count,
            "RowsProjection: \(rows.updates.count) updates for a map after \(chain.count) layers")
        let f = width
        var right = Tensor(uninitialized: [rows.left.shape[0], f])
        right.withUnsafeMutableBufferPointer { r in
            var at = r.baseAddress!
            for (update, n) in zip(rows.updates, outChain) {
                let (t, d) = (update.values.shape[1], update.values.shape[2])
                let heads = update.probabilities.shape[0] / t
                let dh = d / heads
                update.values.withUnsafeBufferPointer { v in
                    n.withUnsafeBufferPointer { n in
                        for h in 0..<heads {
                            gemm(
                                m: t, n: f, k: dh, a: v.baseAddress! + h * dh, lda: d, b: n.baseAddress! + h * dh * f,
                                ldb: f, c: at + h * t * f, ldc: f)
                        }
                    }
                }
                at += heads * t * f
            }
            constants.withUnsafeBufferPointer { at.update(from: $0.baseAddress!, count: $0.count) }
        }
        return right
    }

    /// Rows `range` of the map on the prompt's rows into `out`, F floats a row, with `right` = `right(rows)`:
    /// A_1 ⊙ X·N_1 + the base, then the prompt's product added onto it.
    func apply(
        _ rows: PromptRows, right: Tensor, shared: Shared, range: Range<Int>, into out: UnsafeMutablePointer<Float>
    ) {
        let (f, k, stride) = (width, rows.left.shape[0], rows.left.shape[1])
        shared.image.withUnsafeBufferPointer { x in
            (shared.base ?? constant).withUnsafeBufferPointer { b in
                rows.scale.withUnsafeBufferPointer { a in
                    let stride = shared.base == nil ? 0 : f
                    Threading.parallelFor(range.count, grain: 256) { part in
                        let r = range.lowerBound + part.lowerBound
                        ck_scale_add_rows(
                            x.baseAddress! + r * f, a.baseAddress! + r, b.baseAddress! + r * stride, stride,
                            out + part.lowerBound * f, part.count, f)
                    }
                }
            }
        }
        rows.left.withUnsafeBufferPointer { l in
            right.withUnsafeBufferPointer { w in
                gemm(
                    transA: true, m: range.count, n: f, k: k, a: l.baseAddress! + range.lowerBound, lda: stride,
                    b: w.baseAddress!, ldb: f,
                    beta: 1, c: out, ldc: f)
            }
        }
    }

    /// Each of `rows` rows (`stride` apart) times `a` element by element: the image rows' scale A_1 on [H·T, rows].
    private static func scaleColumns(_ p: UnsafeMutablePointer<Float>, rows: Int, stride: Int, by a: [Float]) {
        a.withUnsafeBufferPointer { a in
            Threading.parallelFor(rows) { range in
                for row in range {
                    let x = p + row * stride
                    for r in 0..<a.count { x[r] *= a[r] }
                }
            }
        }
    }

    /// A prompt's few token rows against this map of its image rows Y, as attention keys: z [1, T, F] (scaled
    /// already) → scores [H·T, paddedStride(rows)], row h·T + t = z_h[t] · Y_hᵀ for each head h's columns. Y is never formed:
    /// z_h·Y_hᵀ = (z_h·(X·N_1)_hᵀ) ⊙ A_1 + z_h·base_hᵀ + (z_h·right_hᵀ)·left — the image's parts packed once per
    /// image (`shared(…, heads:)`), the prompt's part of rank K.
    func scores(_ z: Tensor, heads: Int, rows: PromptRows, shared: Shared) -> Tensor {
        let (t, f, k, stride) = (z.shape[1], width, rows.left.shape[0], rows.left.shape[1])
        let (dh, count) = (f / heads, rows.scale.count)
        precondition(
            z.rank == 3 && z.shape[0] == 1 && z.shape[2] == f && shared.base != nil
                && shared.packedImage.count == heads,
            "RowsProjection.scores: z \(z.shape), \(heads) heads, \(shared.packedImage.count) packed")
        let right = right(rows)
        var scores = Tensor(uninitialized: [heads * t, stride])
        var g = Tensor(uninitialized: [heads * t, k])
        z.withUnsafeBufferPointer { z in
            scores.withUnsafeMutableBufferPointer { s in
                let (z, s) = (z.baseAddress!, s.baseAddress!)
                g.withUnsafeMutableBufferPointer { g in
                    // g[h·T + t] = z_h[t] · right_hᵀ
                    right.withUnsafeBufferPointer { w in
                        for h in 0..<heads {
                            gemm(
                                transB: true, m: t, n: k, k: dh, a: z + h * dh, lda: f, b: w.baseAddress! + h * dh,
                                ldb: f,
                                c: g.baseAddress! + h * t * k, ldc: k)
                        }
                    }
                    let fused = rows.scale.withUnsafeBufferPointer { a in
                        rows.left.withUnsafeBufferPointer { l in
                            headScores(
                                z, tokens: t, ldz: f, heads: heads, headWidth: dh, image: shared.packedImage,
                                base: shared.packedBase,
                                scale: a.baseAddress!, g: g.baseAddress!, rank: k, left: l.baseAddress!, ldl: stride,
                                columns: count,
                                into: s, ldo: stride)
                        }
                    }
                    if fused { return }
                    shared.image.withUnsafeBufferPointer { x in
                        for h in 0..<heads {
                            multiplyTransposed(
                                z + h * dh, rows: t, lda: f, x.baseAddress! + h * dh, n: count, k: dh, ldb: f,
                                packed: shared.packedImage[h], into: s + h * t * stride, ldc: stride)
                        }
                    }
                    Self.scaleColumns(s, rows: heads * t, stride: stride, by: rows.scale)
                    shared.base!.withUnsafeBufferPointer { b in
                        for h in 0..<heads {
                            multiplyTransposed(
                                z + h * dh, rows: t, lda: f, b.baseAddress! + h * dh, n: count, k: dh, ldb: f,
                                packed: shared.packedBase[h], beta: 1, into: s + h * t * stride, ldc: stride)
                        }
                    }
                    // scores += g · left
                    rows.left.withUnsafeBufferPointer { l in
                        gemm(
                            m: heads * t, n: count, k: k, a: g.baseAddress!, lda: k, b: l.baseAddress!, ldb: stride,
                            beta: 1, c: s, ldc: stride)
                    }
                }
            }
        }
        return scores
    }

    /// A prompt's few token rows' attention output from this map of its image rows Y, as attention values: `p`
    /// [H·T, paddedStride(rows)], each head's probabilities (rows summing to one) → [1, T, F], row t's head-h columns =
    /// p_h[t] · Y_h. Y is never formed: p_h·Y_h = (p_h ⊙ A_1)·(X·N_1)_h + (p_h·leftᵀ)·right_h + the constant row's
    /// head-h part (a map without PE: p_h's rows sum to one).
    func weighted(_ p: Tensor, tokens t: Int, heads: Int, rows: PromptRows, shared: Shared) -> Tensor {
        let (f, k, stride, count) = (width, rows.left.shape[0], rows.left.shape[1], rows.scale.count)
        let dh = f / heads
        precondition(
            p.shape == [heads * t, stride] && shared.base == nil,
            "RowsProjection.weighted: p \(p.shape), \(heads) heads")
        let right = right(rows)
        var out = Tensor(shape: [1, t, f], storage: Array([[Float]](repeating: constant.storage, count: t).joined()))
        var scaled = p
        var q = Tensor(uninitialized: [heads * t, k])
        scaled.withUnsafeMutableBufferPointer {
            Self.scaleColumns($0.baseAddress!, rows: heads * t, stride: stride, by: rows.scale)
        }
        out.withUnsafeMutableBufferPointer { o in
            let o = o.baseAddress!
            scaled.withUnsafeBufferPointer { s in
                shared.image.withUnsafeBufferPointer { x in
                    if headWeighted(
                        s.baseAddress!, tokens: t, ldp: stride, heads: heads, headWidth: dh, rows: count,
                        x.baseAddress!, ldx: f,
                        into: o, ldo: f)
                    {
                        return
                    }
                    for h in 0..<heads {
                        gemm(
                            m: t, n: dh, k: count, a: s.baseAddress! + h * t * stride, lda: stride,
                            b: x.baseAddress! + h * dh, ldb: f,
                            beta: 1, c: o + h * dh, ldc: f)
                    }
                }
            }
            q.withUnsafeMutableBufferPointer { q in
                p.withUnsafeBufferPointer { p in
                    rows.left.withUnsafeBufferPointer { l in
                        gemm(
                            transB: true, m: heads * t, n: k, k: count, a: p.baseAddress!, lda: stride,
                            b: l.baseAddress!, ldb: stride,
                            c: q.baseAddress!, ldc: k)
                    }
                }
                right.withUnsafeBufferPointer { w in
                    for h in 0..<heads {
                        gemm(
                            m: t, n: dh, k: k, a: q.baseAddress! + h * t * k, lda: k, b: w.baseAddress! + h * dh,
                            ldb: f, beta: 1,
                            c: o + h * dh, ldc: f)
                    }
                }
            }
        }
        return out
    }
}
