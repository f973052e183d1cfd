// Part of the port of segment_anything/modeling/transformer.py (TwoWayTransformer) and mask_decoder.py (the output
// upscaling's first convolution) at dca509f: the linear maps that read a prompt's image rows, computed from the
// image's rows, shared by all its prompts, and the prompt's low-rank changes to them.
import CKernels
import Tensor

/// What one layer's image-to-token attention did to a prompt's image rows k: k ← LN(k + Sᵀ·W + b), where S
/// [H·T, rows + padding] are the attention's probabilities, W [H·T, E] the tokens' values through its output projection, b that
/// projection's bias, and a [rows] the norm's inverse deviations, 1 / √(var + eps) of each row it normed.
struct RowUpdate {
    let probabilities: Tensor, values: Tensor, inverseDeviations: [Float]
}

/// A prompt's image rows after L layers, kept as the updates that made them, with the left operand that every map
/// of these rows shares (`RowsProjection`): [K, rows + 16], K = Σ H·T + L, the rows A_i ⊙ S_i of each layer i and
/// then the rows A_1 … A_L, where A_i = a_i ⊙ … ⊙ a_L. (Each row is a cache line longer than the image's rows: at a
/// power-of-two stride, the K values of an image row that packing reads would all fall in one L1 set.)
struct PromptRows {
    let updates: [RowUpdate]
    let left: Tensor
    /// A_1, the scale of the image's own rows.
    let scale: [Float]

    init(_ updates: [RowUpdate]) {
        let (rows, depth) = (updates[0].inverseDeviations.count, updates.count)
        let width = rows + 16
        let k = updates.reduce(depth) { $0 + $1.probabilities.shape[0] }
        var left = Tensor(zeros: [k, width])
        left.withUnsafeMutableBufferPointer { l in
            let l = l.baseAddress!
            let products = l + (k - depth) * width  // A_1 … A_L: the last rows
            for i in stride(from: depth - 1, through: 0, by: -1) {
                let (a, next) = (products + i * width, i + 1 < depth ? products + (i + 1) * width : nil)
                updates[i].inverseDeviations.withUnsafeBufferPointer { d in
                    for r in 0..<rows { a[r] = (next?[r] ?? 1) * d[r] }
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
/// after L layers, computed without those rows. Each layer changes them by an update of rank H·T (56 for a box:
/// 8 heads, 7 tokens), and a layer norm is k ↦ diag(a)·k·P·Γ + β, where P = I − 11ᵀ/E removes each row's mean and
/// Γ = diag(γ): only a depends on the row. So, with k_0 = X the image's rows (embedding + dense prompt),
/// N_L = P·Γ_L·Mᵀ and N_i = P·Γ_i·N_{i+1},
///
///     k_L·Mᵀ = A_1 ⊙ (X·N_1) + Σ_i A_i ⊙ (S_iᵀ·(W_i·N_i) + c_i) + β_L·Mᵀ,   c_i = b_i·N_i + β_{i−1}·N_i (c_1 = b_1·N_1),
///
/// with A_i = a_i ⊙ … ⊙ a_L scaling rows. X·N_1 is one product per image, shared by all its prompts; each prompt
/// adds a product of rank K = Σ H·T + L — [4096 × 57]·[57 × F] after one layer, [4096 × 114]·[114 × F] after two —
/// in place of [4096 × 256]·[256 × F]. The statistics a_i are the prompt's own, from its rows as the reference
/// forms them (the decoder still forms them, for the residuals and the norms); P keeps every term centred, as the
/// norm's input is, and X is centred before its product, so no large row means cancel.
struct RowsProjection {
    let weight: Tensor, addsPE: Bool
    /// N_1 … N_L, [E, F] each.
    let chain: [Tensor]
    /// c_1 … c_L, [L, F].
    let constants: Tensor
    /// β_L·Mᵀ + bias, [F].
    let constant: Tensor

    /// `layer` after the layers whose norms and image-to-token output biases are `norms` and `biases`, in order.
    init(_ layer: LinearLayer, addsPE: Bool, norms: [Norm], biases: [Tensor]) {
        let (f, e) = (layer.weight.shape[0], layer.weight.shape[1])
        precondition(!norms.isEmpty && norms.count == biases.count && norms.allSatisfy { $0.weight.shape == [e] }, "RowsProjection: \(norms.count) norms")
        // In float64: the chain's column means cancel exactly in exact arithmetic.
        var transposed = [Double](repeating: 0, count: e * f)  // Mᵀ
        for o in 0..<f { for c in 0..<e { transposed[c * f + o] = Double(layer.weight.storage[o * e + c]) } }
        var next = transposed  // N_{i+1}
        var chain = [[Double]]()
        for norm in norms.reversed() {
            var n = [Double](repeating: 0, count: e * f)
            var means = [Double](repeating: 0, count: f)
            for c in 0..<e { for o in 0..<f { n[c * f + o] = Double(norm.weight.storage[c]) * next[c * f + o]; means[o] += n[c * f + o] } }
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
        let constant = zip(times(norms.last!.bias, transposed), layer.bias?.storage ?? [Float](repeating: 0, count: f)).map { Float($0 + Double($1)) }
        self.chain = chain.map { Tensor(shape: [e, f], storage: $0.map(Float.init)) }
        self.constants = Tensor(shape: [norms.count, f], storage: constants)
        self.constant = Tensor(shape: [f], storage: constant)
        (weight, self.addsPE) = (layer.weight, addsPE)
    }

    var width: Int { weight.shape[0] }

    /// What one image gives every prompt: X·N_1 and PE·Mᵀ + β_L·Mᵀ + bias (nil without PE: the constant alone).
    struct Shared { let image: Tensor, base: Tensor? }

    /// For the image's rows, centred (each row minus its mean), and their PE, [rows, E] each.
    func shared(centredRows: Tensor, pe: Tensor) -> Shared {
        let rows = centredRows.count / chain[0].shape[0]
        return Shared(image: centredRows.reshaped([rows, chain[0].shape[0]]).matmul(chain[0]),
                      base: addsPE ? linear(pe, weight: weight, bias: constant).reshaped([rows, width]) : nil)
    }

    /// The prompt's right operand [K, F]: W_i·N_i for each layer i, then c_1 … c_L.
    func right(_ rows: PromptRows) -> Tensor {
        precondition(rows.updates.count == chain.count, "RowsProjection: \(rows.updates.count) updates for a map after \(chain.count) layers")
        let f = width
        var right = Tensor(uninitialized: [rows.left.shape[0], f])
        right.withUnsafeMutableBufferPointer { r in
            var at = r.baseAddress!
            for (update, n) in zip(rows.updates, chain) {
                let (ht, e) = (update.values.shape[0], update.values.shape[1])
                update.values.withUnsafeBufferPointer { w in
                    n.withUnsafeBufferPointer { n in gemm(m: ht, n: f, k: e, a: w.baseAddress!, lda: e, b: n.baseAddress!, ldb: f, c: at, ldc: f) }
                }
                at += ht * f
            }
            constants.withUnsafeBufferPointer { at.update(from: $0.baseAddress!, count: $0.count) }
        }
        return right
    }

    /// Rows `range` of the map on the prompt's rows into `out`, F floats a row, with `right` = `right(rows)`.
    func apply(_ rows: PromptRows, right: Tensor, shared: Shared, range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        let (f, k, stride) = (width, rows.left.shape[0], rows.left.shape[1])
        // out = A_1 ⊙ X·N_1 + the shared base, then the prompt's product is added onto it.
        shared.image.withUnsafeBufferPointer { x in
            (shared.base ?? constant).withUnsafeBufferPointer { b in
                rows.scale.withUnsafeBufferPointer { a in
                    let stride = shared.base == nil ? 0 : f
                    Threading.parallelFor(range.count, grain: 256) { part in
                        let r = range.lowerBound + part.lowerBound
                        ck_scale_add_rows(x.baseAddress! + r * f, a.baseAddress! + r, b.baseAddress! + r * stride, stride,
                                          out + part.lowerBound * f, part.count, f)
                    }
                }
            }
        }
        rows.left.withUnsafeBufferPointer { l in
            right.withUnsafeBufferPointer { w in
                gemm(transA: true, m: range.count, n: f, k: k, a: l.baseAddress! + range.lowerBound, lda: stride, b: w.baseAddress!, ldb: f,
                     beta: 1, c: out, ldc: f)
            }
        }
    }

    /// The map on all of the prompt's rows, [1, rows, F].
    func callAsFunction(_ rows: PromptRows, shared: Shared) -> Tensor {
        let count = rows.scale.count
        var out = Tensor(uninitialized: [1, count, width])
        let right = right(rows)
        out.withUnsafeMutableBufferPointer { apply(rows, right: right, shared: shared, range: 0..<count, into: $0.baseAddress!) }
        return out
    }
}
