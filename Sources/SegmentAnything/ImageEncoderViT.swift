// Port of segment_anything/modeling/image_encoder.py (ImageEncoderViT, Block, Attention, PatchEmbed,
// window_partition, window_unpartition, get_rel_pos, add_decomposed_rel_pos) at dca509f; Ultralytics'
// models/sam/modules (encoders.py, blocks.py) compute the same.
import Checkpoint
import Tensor

/// The ViT image encoder: 16×16 patches → absolute position embedding → transformer blocks (windowed or
/// global attention with decomposed relative positions) → neck to the prompt width. [1, 3, 1024, 1024] in,
/// [1, 256, 64, 64] out.
struct ImageEncoderViT {
    struct Block {
        let norm1: Norm, norm2: Norm
        let qkv: LinearLayer, proj: LinearLayer
        let relPosH: Tensor, relPosW: Tensor
        let lin1: LinearLayer, lin2: LinearLayer
        /// 0 for global attention.
        let windowSize: Int
    }

    let architecture: SamArchitecture
    let patchWeight: Tensor, patchBias: Tensor
    let positionEmbedding: Tensor  // [1, g, g, C]
    let blocks: [Block]
    let neck0: Tensor, neck1: Norm, neck2: Tensor, neck3: Norm

    init(_ w: Weights, _ a: SamArchitecture) throws {
        architecture = a
        patchWeight = try w("image_encoder.patch_embed.proj.weight")
        patchBias = try w("image_encoder.patch_embed.proj.bias")
        positionEmbedding = try w("image_encoder.pos_embed")
        blocks = try (0..<a.encoderDepth).map { i in
            let p = "image_encoder.blocks.\(i)."
            return Block(norm1: try w.norm(p + "norm1"), norm2: try w.norm(p + "norm2"), qkv: try w.linear(p + "attn.qkv"),
                         proj: try w.linear(p + "attn.proj"), relPosH: try w(p + "attn.rel_pos_h"), relPosW: try w(p + "attn.rel_pos_w"),
                         lin1: try w.linear(p + "mlp.lin1"), lin2: try w.linear(p + "mlp.lin2"),
                         windowSize: a.globalAttentionBlocks.contains(i) ? 0 : a.windowSize)
        }
        neck0 = try w("image_encoder.neck.0.weight")
        neck1 = try w.norm("image_encoder.neck.1")
        neck2 = try w("image_encoder.neck.2.weight")
        neck3 = try w.norm("image_encoder.neck.3")
    }

    func callAsFunction(_ image: Tensor) -> Tensor {
        let (g, c) = (architecture.gridSize, architecture.encoderWidth)
        // PatchEmbed: conv with kernel = stride = patch, then B C H W → B H W C.
        let patches = conv2d(image, weight: patchWeight, bias: patchBias, geometry: .init(stride: architecture.patchSize))
        var x = patches.permuted([0, 2, 3, 1]).adding(positionEmbedding)  // [1, g, g, C]
        for block in blocks { x = forward(block, x, side: g, width: c) }
        // Neck: 1×1 conv, LayerNorm2d, 3×3 conv, LayerNorm2d (eps 1e-6), on B C H W.
        var y = conv2d(x.permuted([0, 3, 1, 2]), weight: neck0)
        y = layerNorm2d(y, weight: neck1.weight, bias: neck1.bias, eps: 1e-6)
        y = conv2d(y, weight: neck2, geometry: .init(padding: 1))
        return layerNorm2d(y, weight: neck3.weight, bias: neck3.bias, eps: 1e-6)
    }

    /// Block: x + attn(norm1(x)) (windowed: partitioned with zero padding, then unpartitioned), then
    /// x + mlp(norm2(x)). `x` is [1, side, side, C].
    func forward(_ block: Block, _ x: Tensor, side: Int, width c: Int) -> Tensor {
        let normed = layerNorm(x, weight: block.norm1.weight, bias: block.norm1.bias, eps: 1e-6)
        let attended: Tensor
        if block.windowSize > 0 {
            let (windows, padded) = partition(normed, side: side, window: block.windowSize, width: c)
            let out = attention(block, windows, size: block.windowSize)
            attended = unpartition(out, side: side, padded: padded, window: block.windowSize, width: c)
        } else {
            attended = attention(block, normed, size: side)
        }
        var y = x.adding(attended)
        var hidden = block.lin1(layerNorm(y, weight: block.norm2.weight, bias: block.norm2.bias, eps: 1e-6))
        hidden.gelu()
        y = y.adding(block.lin2(hidden))
        return y
    }

    /// Multi-head attention over [B, S, S, C] tokens with decomposed relative positions (added per block of
    /// score rows inside the chunked attention, never as a full tokens × tokens matrix).
    func attention(_ block: Block, _ x: Tensor, size s: Int) -> Tensor {
        let (b, c, heads) = (x.shape[0], architecture.encoderWidth, architecture.encoderHeads)
        let d = c / heads, tokens = s * s
        // qkv: [B, S·S, 3, heads, d] → [3, B·heads, S·S, d]
        let qkv = block.qkv(x.reshaped([b * tokens, c])).reshaped([b, tokens, 3, heads, d]).permuted([2, 0, 3, 1, 4])
        let part = b * heads * tokens * d
        let q = Tensor(shape: [b * heads, tokens, d], storage: Array(qkv.storage[0..<part]))
        let k = Tensor(shape: [b * heads, tokens, d], storage: Array(qkv.storage[part..<(2 * part)]))
        let v = Tensor(shape: [b * heads, tokens, d], storage: Array(qkv.storage[(2 * part)..<(3 * part)]))
        // get_rel_pos for equal query and key sizes: R[qi, ki] = table[qi − ki + S − 1], expanded to [S, S, d].
        // rel_h[bh, qy, qx, ky] = Σ_c q[bh, (qy, qx), c] · Rh[qy, ky, c]: for one query row qy, the S queries
        // (qy, ·) times Rh[qy]ᵀ, a GEMM; rel_w likewise for one column qx, its queries S·d floats apart (q unscaled).
        let (expandedH, expandedW) = (Self.expand(block.relPosH, size: s, d: d), Self.expand(block.relPosW, size: s, d: d))
        var relH = [Float](repeating: 0, count: b * heads * tokens * s), relW = relH
        q.withUnsafeBufferPointer { qp in
            expandedH.withUnsafeBufferPointer { th in
                expandedW.withUnsafeBufferPointer { tw in
                    relH.withUnsafeMutableBufferPointer { rh in
                        relW.withUnsafeMutableBufferPointer { rw in
                            let (qp, th, tw, rh, rw) = (qp.baseAddress!, th.baseAddress!, tw.baseAddress!, rh.baseAddress!, rw.baseAddress!)
                            Threading.parallelFor(b * heads * s) { items in
                                for item in items {
                                    let (bh, i) = (item / s, item % s)
                                    let (queries, h, w) = (qp + bh * tokens * d, rh + bh * tokens * s, rw + bh * tokens * s)
                                    gemm(transB: true, m: s, n: s, k: d, a: queries + i * s * d, lda: d, b: th + i * s * d, ldb: d,
                                         c: h + i * s * s, ldc: s)
                                    gemm(transB: true, m: s, n: s, k: d, a: queries + i * d, lda: s * d, b: tw + i * s * d, ldb: d,
                                         c: w + i * s, ldc: s * s)
                                }
                            }
                        }
                    }
                }
            }
        }
        let out = relH.withUnsafeBufferPointer { rh in
            relW.withUnsafeBufferPointer { rw in
                let (rh, rw) = (rh.baseAddress!, rw.baseAddress!)
                return scaledDotProductAttention(query: q, key: k, value: v) { head, rows, scores, ld in
                    for (r, row) in rows.enumerated() {
                        let h = rh + (head * tokens + row) * s, w = rw + (head * tokens + row) * s
                        let line = scores + r * ld
                        for ky in 0..<s { let bias = h[ky]; for kx in 0..<s { line[ky * s + kx] += bias + w[kx] } }
                    }
                }
            }
        }
        // [B·heads, S·S, d] → [B, S·S, heads, d] → proj
        let merged = out.reshaped([b, heads, tokens, d]).permuted([0, 2, 1, 3]).reshaped([b * tokens, c])
        return block.proj(merged).reshaped([b, s, s, c])
    }

    /// R[qi, ki, :] = table[qi − ki + S − 1] for qi, ki < S, as [S, S, d] (`get_rel_pos` for equal sizes).
    static func expand(_ table: Tensor, size s: Int, d: Int) -> [Float] {
        var out = [Float](repeating: 0, count: s * s * d)
        for qi in 0..<s {
            for ki in 0..<s { out.replaceSubrange(((qi * s + ki) * d)..<((qi * s + ki + 1) * d), with: table.storage[((qi - ki + s - 1) * d)..<((qi - ki + s) * d)]) }
        }
        return out
    }

    /// window_partition: [1, side, side, C] zero-padded to a multiple of the window → [windows, w, w, C].
    func partition(_ x: Tensor, side: Int, window w: Int, width c: Int) -> (Tensor, Int) {
        let padded = (side + w - 1) / w * w, n = padded / w
        var out = Tensor(zeros: [n * n, w, w, c])
        for y in 0..<side {
            for xx in 0..<side {
                let window = (y / w) * n + xx / w, inner = (y % w) * w + xx % w
                let src = (y * side + xx) * c, dst = (window * w * w + inner) * c
                for i in 0..<c { out.storage[dst + i] = x.storage[src + i] }
            }
        }
        return (out, padded)
    }

    /// window_unpartition: the inverse, cropping the padding.
    func unpartition(_ windows: Tensor, side: Int, padded: Int, window w: Int, width c: Int) -> Tensor {
        let n = padded / w
        var out = Tensor(zeros: [1, side, side, c])
        for y in 0..<side {
            for xx in 0..<side {
                let window = (y / w) * n + xx / w, inner = (y % w) * w + xx % w
                let dst = (y * side + xx) * c, src = (window * w * w + inner) * c
                for i in 0..<c { out.storage[dst + i] = windows.storage[src + i] }
            }
        }
        return out
    }
}
