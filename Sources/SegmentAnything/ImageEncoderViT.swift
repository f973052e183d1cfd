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
        /// rel_pos_h's then rel_pos_w's 2S − 1 rows, each table's in reverse order (so that the S values a query's keys
        /// need lie in order), [2 · (2S − 1), d]; and packed once as the right operand of `attention`'s products.
        let relativePositions: Tensor, packedRelativePositions: PackedLinearWeight
        let lin1: LinearLayer, lin2: LinearLayer
        /// 0 for global attention.
        let windowSize: Int
    }

    let architecture: SamArchitecture
    let patchWeight: Tensor, patchBias: Tensor
    let positionEmbedding: Tensor  // [1, g, g, C]
    let blocks: [Block]
    let neck0: Tensor, neck1: Norm, neck2: Tensor, neck3: Norm
    /// bf16: the blocks' linear layers and attention products (nearly all the FLOPs); patch embedding, neck and the
    /// relative-position terms stay fp32.
    let precision: Precision

    init(_ w: Weights, _ a: SamArchitecture, precision: Precision = .fp32) throws {
        architecture = a
        self.precision = precision
        patchWeight = try w("image_encoder.patch_embed.proj.weight")
        patchBias = try w("image_encoder.patch_embed.proj.bias")
        positionEmbedding = try w("image_encoder.pos_embed")
        blocks = try (0..<a.encoderDepth).map { i in
            let p = "image_encoder.blocks.\(i)."
            let linear = { (name: String) in try w.linear(p + name).prepared(for: precision) }
            let reversed = { (table: Tensor) in
                (0..<table.shape[0]).reversed().flatMap {
                    table.storage[($0 * table.shape[1])..<(($0 + 1) * table.shape[1])]
                }
            }
            let (h, v) = (try w(p + "attn.rel_pos_h"), try w(p + "attn.rel_pos_w"))
            let tables = Tensor(shape: [h.shape[0] + v.shape[0], h.shape[1]], storage: reversed(h) + reversed(v))
            return Block(
                norm1: try w.norm(p + "norm1"), norm2: try w.norm(p + "norm2"), qkv: try linear("attn.qkv"),
                proj: try linear("attn.proj"), relativePositions: tables,
                packedRelativePositions: PackedLinearWeight(tables),
                lin1: try linear("mlp.lin1"), lin2: try linear("mlp.lin2"),
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
        let patches = conv2d(
            image, weight: patchWeight, bias: patchBias, geometry: .init(stride: architecture.patchSize))
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
    ///
    /// A windowed block's padding tokens are zeros after the norm, so their qkv is the bias, exactly: the projection
    /// runs on the image's tokens only (ViT-B: 4,096 rows instead of 4,900), the attention reads each window's tokens
    /// from its rows and the bias for the padding, and as unpartition drops the padding queries' outputs, those are
    /// never computed. Each row's sums are those of the reference order, so the bits are the same.
    func forward(_ block: Block, _ x: Tensor, side: Int, width c: Int) -> Tensor {
        let normed = layerNorm(x, weight: block.norm1.weight, bias: block.norm1.bias, eps: 1e-6)
        let qkv = block.qkv(normed.reshaped([side * side, c]))
        let heads = attention(block, qkv: qkv, side: side)  // before `proj`, [side · side, C]
        // x + proj(heads), then y + lin2(GELU(lin1(norm2(y)))), GELU and the residuals applied as the products store
        // their sums.
        let y = block.proj(heads, residual: x.reshaped([side * side, c])).reshaped([1, side, side, c])
        let hidden = block.lin1(layerNorm(y, weight: block.norm2.weight, bias: block.norm2.bias, eps: 1e-6), gelu: true)
        return block.lin2(hidden, residual: y)
    }

    /// Multi-head attention over the block's windows of S × S tokens (one window of all tokens where it is global), from
    /// the image's qkv projection [side · side, 3C], with decomposed relative positions (added per block of score rows
    /// inside the chunked attention, never as a full tokens × tokens matrix) → [side · side, C], before `proj`. The
    /// heads are read in place from the qkv rows and written side by side: no splits or permutes.
    func attention(_ block: Block, qkv: Tensor, side: Int) -> Tensor {
        let (c, heads) = (architecture.encoderWidth, architecture.encoderHeads)
        let s = block.windowSize > 0 ? block.windowSize : side
        let n = (side + s - 1) / s
        let d = c / heads
        let tokens = s * s
        let row = 3 * c
        // get_rel_pos for equal query and key sizes: R[qi, ki] = table[qi − ki + S − 1]. rel_h[bh, (qy, qx), ky] =
        // q · Rh[qy, ky] and rel_w[bh, (qy, qx), kx] = q · Rw[qx, kx] (q unscaled, (qy, qx) its place in its window):
        // each query against all 2S − 1 rows of both tables (one product per block of a head's query rows, which are
        // read once), then the rows its keys need picked out while the block is in cache — the same dot products, in
        // one k slice, so the same bits as against the expanded tables, without S thin products per window and head.
        // Written per window and head for its image tokens in order (windowedSelfAttention's rows).
        let span = 2 * s - 1
        let rows = side * side
        let chunk = 128
        let count = n * n * heads * tokens * s
        let (tables, packed) = (block.relativePositions, block.packedRelativePositions)
        precondition(tables.shape == [2 * span, d], "relative-position tables for \(s) × \(s) tokens")
        // rel_h, then rel_w: the image tokens' rows written
        var relative = [Float](unsafeUninitializedCapacity: 2 * count) { $1 = 2 * count }
        qkv.withUnsafeBufferPointer { qp in
            tables.withUnsafeBufferPointer { tp in
                relative.withUnsafeMutableBufferPointer { rp in
                    let (qp, tp, rel) = (qp.baseAddress!, tp.baseAddress!, rp.baseAddress!)
                    Threading.parallelItems(heads * ((rows + chunk - 1) / chunk)) { next in
                        let projected = UnsafeMutablePointer<Float>.allocate(capacity: chunk * 2 * span)
                        defer { projected.deallocate() }
                        while let item = next() {
                            let (head, first) = (item % heads, item / heads * chunk)
                            multiplyTransposed(
                                qp + first * row + head * d, rows: min(chunk, rows - first), lda: row, tp, n: 2 * span,
                                k: d, ldb: d,
                                packed: packed, into: projected, ldc: 2 * span)
                            for r in first..<min(first + chunk, rows) {
                                let (y, x) = (r / side, r % side)
                                let (qy, qx, columns) = (y % s, x % s, min(s, side - x / s * s))
                                let at = projected + (r - first) * 2 * span + s - 1
                                let to = rel + (((y / s * n + x / s) * heads + head) * tokens + qy * columns + qx) * s
                                to.update(from: at - qy, count: s)
                                (to + count).update(from: at + span - qx, count: s)
                            }
                        }
                    }
                }
            }
        }
        return relative.withUnsafeBufferPointer { r in
            let bias = AttentionBias.decomposedRelativePositions(
                h: r.baseAddress!, w: r.baseAddress! + count, queries: tokens, side: s)
            guard block.windowSize > 0 else {
                return selfAttention(
                    qkv: qkv.reshaped([1, tokens, row]), heads: heads, bias: bias, precision: precision
                ).reshaped([tokens, c])
            }
            return windowedSelfAttention(
                qkv: qkv, side: side, window: s, heads: heads,
                padding: block.qkv.bias?.storage ?? [Float](repeating: 0, count: row), bias: bias, precision: precision)
        }
    }
}
