import CKernels

/// A bias added to attention scores before the softmax, computed block by block so that the full queries × keys
/// matrix never exists.
public struct AttentionBias {
    /// Writes the bias of a block of scores, before Q·Kᵀ is added onto it: for batch-head `head`, the score rows
    /// `rows` (query indices) lie at `scores`, `leadingDimension` floats apart, one column per key, and every one
    /// of them must be written (the product then accumulates onto the bias instead of zeroing the block first).
    /// Called concurrently for different blocks: write only into `scores`.
    public typealias Fill = (
        _ head: Int, _ rows: Range<Int>, _ scores: UnsafeMutablePointer<Float>, _ leadingDimension: Int
    ) -> Void

    let fill: Fill
    /// The same bias as two parts over keys on a side × side grid, for our kernel to add as its tiles finish: query
    /// row q of batch-head bh gets h[ky] + w[kx] at key (ky, kx), h and w that query's `side` values at
    /// (bh · queries + q) · side.
    private(set) var grid: (h: UnsafePointer<Float>, w: UnsafePointer<Float>, queries: Int, side: Int)?

    public init(_ fill: @escaping Fill) { (self.fill, grid) = (fill, nil) }

    /// SAM's decomposed relative positions (`add_decomposed_rel_pos`) over keys on a side × side grid, h and w as
    /// for `grid`. The pointers must outlive the attention call.
    public static func decomposedRelativePositions(
        h: UnsafePointer<Float>, w: UnsafePointer<Float>, queries: Int, side: Int
    ) -> AttentionBias {
        var bias = AttentionBias { head, rows, scores, ld in
            let offset = (head * queries + rows.lowerBound) * side
            ck_decomposed_bias(scores, rows.count, side, ld, h + offset, w + offset)
        }
        bias.grid = (h, w, queries, side)
        return bias
    }
}

/// softmax(Q·Kᵀ/√d + bias) · V over [..., Nq, d], [..., Nk, d], [..., Nk, dv] → [..., Nq, dv].
///
/// Queries are processed `chunkRows` at a time, so the score buffer is chunkRows × Nk rather than Nq × Nk: by
/// default as many rows (at most 256) as keep it within 1 MB, where a core's L2 cache holds it through the bias, the
/// product, the softmax and the product with V — a global-attention block of SAM ViT-B (4096 queries and keys, 12
/// heads) takes 64 rows at a time, 1 MB per thread instead of 805 MB for all heads at once.
public func scaledDotProductAttention(
    query: Tensor, key: Tensor, value: Tensor, chunkRows: Int? = nil, bias: AttentionBias? = nil
) -> Tensor {
    precondition(query.rank >= 2 && key.rank == query.rank && value.rank == query.rank, "attention ranks differ")
    let (nq, d, nk, dv) = (query.dim(-2), query.dim(-1), key.dim(-2), value.dim(-1))
    let batch = query.count / max(1, nq * d)
    precondition(
        key.dim(-1) == d && value.dim(-2) == nk && key.count == batch * nk * d && value.count == batch * nk * dv,
        "attention shapes q \(query.shape), k \(key.shape), v \(value.shape)")
    var output = Tensor(uninitialized: Array(query.shape.dropLast()) + [dv])
    query.withUnsafeBufferPointer { q in
        key.withUnsafeBufferPointer { k in
            value.withUnsafeBufferPointer { v in
                output.withUnsafeMutableBufferPointer { o in
                    attendHeads(
                        q: Operand(q.baseAddress, row: d, entry: nq * d, head: d),
                        k: Operand(k.baseAddress, row: d, entry: nk * d, head: d),
                        v: Operand(v.baseAddress, row: dv, entry: nk * dv, head: dv), output: o.baseAddress,
                        batch: batch, heads: 1,
                        tq: nq, tk: nk, chunkRows: chunkRows, bias: bias)
                }
            }
        }
    }
    return output
}

/// Multi-head attention on the layout linear layers produce, with no head transposes: query [Bq, Tq, H·d],
/// key [Bk, Tk, H·d], value [Bk, Tk, H·dv] → [B, Tq, H·dv], where B = max(Bq, Bk) and an input with batch 1 is
/// shared by every batch entry (one image's keys for all of SAM's prompts, or one image's queries). Per entry and
/// head: softmax(Q·Kᵀ/√d + bias)·V, `chunkRows` query rows at a time; `bias` gets entry · H + head.
public func multiHeadAttention(
    query: Tensor, key: Tensor, value: Tensor, heads: Int, chunkRows: Int? = nil, bias: AttentionBias? = nil
) -> Tensor {
    precondition(query.rank == 3 && key.rank == 3 && value.rank == 3, "multiHeadAttention wants [B, T, H·d] tensors")
    let (bq, tq, inner) = (query.shape[0], query.shape[1], query.shape[2])
    let (bk, tk, innerV) = (key.shape[0], key.shape[1], value.shape[2])
    let batch = max(bq, bk)
    precondition(
        key.shape[2] == inner && value.shape[0] == bk && value.shape[1] == tk && inner % heads == 0
            && innerV % heads == 0
            && (bq == batch || bq == 1) && (bk == batch || bk == 1),
        "multiHeadAttention shapes q \(query.shape), k \(key.shape), v \(value.shape), \(heads) heads")
    var output = Tensor(uninitialized: [batch, tq, innerV])  // every (entry, head, chunk) writes its block
    query.withUnsafeBufferPointer { q in
        key.withUnsafeBufferPointer { k in
            value.withUnsafeBufferPointer { v in
                output.withUnsafeMutableBufferPointer { o in
                    attendHeads(
                        q: Operand(q.baseAddress, row: inner, entry: bq == 1 ? 0 : tq * inner, head: inner / heads),
                        k: Operand(k.baseAddress, row: inner, entry: bk == 1 ? 0 : tk * inner, head: inner / heads),
                        v: Operand(v.baseAddress, row: innerV, entry: bk == 1 ? 0 : tk * innerV, head: innerV / heads),
                        output: o.baseAddress, batch: batch, heads: heads, tq: tq, tk: tk, chunkRows: chunkRows,
                        bias: bias)
                }
            }
        }
    }
    return output
}

/// Self-attention straight from a fused projection: qkv [B, T, 3·H·d], each row holding the queries, keys and
/// values of all heads (PyTorch's `qkv(x).reshape(B, T, 3, H, d)`) → [B, T, H·d], heads merged as `proj` wants
/// them. No tensor is split, permuted or merged on the way; `bias` gets entry · H + head. With `.bf16`, Q·Kᵀ and
/// the product with V round their operands to bfloat16 (each head's K and V packed once per thread).
public func selfAttention(
    qkv: Tensor, heads: Int, chunkRows: Int? = nil, bias: AttentionBias? = nil, precision: Precision = .fp32
) -> Tensor {
    precondition(
        qkv.rank == 3 && qkv.shape[2] % (3 * heads) == 0, "selfAttention wants [B, T, 3·H·d], got \(qkv.shape)")
    let (batch, tokens, width) = (qkv.shape[0], qkv.shape[1], qkv.shape[2] / 3)
    var output = Tensor(uninitialized: [batch, tokens, width])
    qkv.withUnsafeBufferPointer { p in
        output.withUnsafeMutableBufferPointer { o in
            let operand = { (part: Int) in
                Operand(
                    p.baseAddress.map { $0 + part * width }, row: 3 * width, entry: tokens * 3 * width,
                    head: width / heads)
            }
            attendHeads(
                q: operand(0), k: operand(1), v: operand(2), output: o.baseAddress, batch: batch, heads: heads,
                tq: tokens, tk: tokens,
                chunkRows: chunkRows, bias: bias, precision: precision)
        }
    }
    return output
}

/// Where one attention input lies: token rows `row` floats apart, batch entries `entry` apart (0: shared by
/// every entry), `head` floats per head, heads side by side in a row.
private struct Operand {
    let base: UnsafePointer<Float>?
    let row: Int, entry: Int, head: Int
    init(_ base: UnsafePointer<Float>?, row: Int, entry: Int, head: Int) {
        (self.base, self.row, self.entry, self.head) = (base, row, entry, head)
    }
}

/// Per (entry, head, chunk of query rows), one thread each: scores = Q·Kᵀ/√d (+ bias), softmax, · V into the
/// output [batch, tq, heads · v.head], heads side by side.
private func attendHeads(
    q: Operand, k: Operand, v: Operand, output: UnsafeMutablePointer<Float>?, batch: Int, heads: Int, tq: Int, tk: Int,
    chunkRows: Int?, bias: AttentionBias?, precision: Precision = .fp32
) {
    guard let o = output, let qb = q.base, let kb = k.base, let vb = v.base, batch * tq * heads * v.head > 0 else {
        return
    }
    let outRow = heads * v.head
    guard tk > 0 else {
        o.update(repeating: 0, count: batch * tq * outRow)
        return
    }
    // Chunks of 2¹⁸ floats (1 MB) of scores, which a core's L2 holds (see `scaledDotProductAttention`).
    let chunk = max(1, min(chunkRows ?? min(256, max(16, (1 << 18) / max(1, tk))), tq))
    let chunks = (tq + chunk - 1) / chunk
    Threading.parallelItems(batch * heads * chunks) { next in
        let scratch = AttentionScratch(rows: chunk, keys: tk)
        while let item = next() {
            let (entry, head, start) = (item / (heads * chunks), item / chunks % heads, item % chunks * chunk)
            let out = o + (entry * tq + start) * outRow + head * v.head
            attend(
                rows: min(chunk, tq - start), queries: qb + entry * q.entry + start * q.row + head * q.head, lda: q.row,
                d: q.head,
                keys: kb + entry * k.entry + head * k.head, ldk: k.row, values: vb + entry * v.entry + head * v.head,
                ldv: v.row, dv: v.head,
                tk: tk, head: entry * heads + head, bias: bias, biasRows: start, scratch: scratch, precision: precision,
                out: out, ldo: outRow
            ) { out + $0 * outRow }
        }
    }
}

/// SAM's windowed self-attention straight from the image's qkv rows [side · side, 3·H·d] (PyTorch's
/// `window_partition` with padding, attention per window, `window_unpartition`, without the copies) → [side · side,
/// H·d]: for each window and head, a thread gathers the window's keys and values — the padding tokens' from
/// `padding`, the qkv row of a zero token (its bias) — and only its image tokens' queries into its scratch, as
/// unpartition drops the padding's. `bias` gets window · H + head and the window's image tokens in order, row by row
/// of the part of the window inside the image.
public func windowedSelfAttention(
    qkv: Tensor, side: Int, window w: Int, heads: Int, padding: [Float], bias: AttentionBias?,
    precision: Precision = .fp32
) -> Tensor {
    let row = qkv.dim(-1)
    let width = row / 3
    let d = width / heads
    let n = (side + w - 1) / w
    let tokens = w * w
    precondition(
        qkv.count == side * side * row && width % heads == 0 && padding.count == row,
        "windowedSelfAttention: qkv \(qkv.shape)")
    var output = Tensor(uninitialized: [side * side, width])  // every image token's row, every head
    qkv.withUnsafeBufferPointer { qp in
        padding.withUnsafeBufferPointer { pp in
            output.withUnsafeMutableBufferPointer { op in
                let (qp, pp, op) = (qp.baseAddress!, pp.baseAddress!, op.baseAddress!)
                Threading.parallelItems(n * n * heads) { next in
                    let scratch = AttentionScratch(rows: tokens, keys: tokens)
                    // Queries, keys, values, output.
                    let gathered = UnsafeMutablePointer<Float>.allocate(capacity: 4 * tokens * d)
                    defer { gathered.deallocate() }
                    let (queries, keys, values, out) = (
                        gathered, gathered + tokens * d, gathered + 2 * tokens * d, gathered + 3 * tokens * d
                    )
                    while let item = next() {
                        let (window, head) = (item / heads, item % heads)
                        let (top, left) = (window / n * w, window % n * w)
                        // The image's part of the window.
                        let (rows, columns) = (min(w, side - top), min(w, side - left))
                        for t in 0..<tokens {
                            let (y, x) = (t / w, t % w)
                            let image = y < rows && x < columns
                            let source = image ? qp + ((top + y) * side + left + x) * row + head * d : pp + head * d
                            if image { (queries + (y * columns + x) * d).update(from: source, count: d) }
                            (keys + t * d).update(from: source + width, count: d)
                            (values + t * d).update(from: source + 2 * width, count: d)
                        }
                        attend(
                            rows: rows * columns, queries: queries, lda: d, d: d, keys: keys, ldk: d, values: values,
                            ldv: d, dv: d, tk: tokens,
                            head: item, bias: bias, biasRows: 0, scratch: scratch, precision: precision, out: out,
                            ldo: d
                        ) { i in
                            op + ((top + i / columns) * side + left + i % columns) * width + head * d
                        }
                    }
                }
            }
        }
    }
    return output
}

/// One thread's buffers for `attend`: a chunk's scores (rows a line longer than the keys: the product with V reads a
/// dozen of them at once in place, which at 4,096 keys, 16 KB, apart would all fall in the same L1 sets) and 1 / Σ,
/// and the keys and values of the head it took last, packed once for the product that runs (a thread's items run head
/// by head, so a head's packing serves its run of chunks).
private final class AttentionScratch {
    let scores: UnsafeMutablePointer<Float>, inverse: UnsafeMutablePointer<Float>, ld: Int
    var head = -1
    var packed: (keys: [Float], values: [Float]) = ([], [])
    var packedBF16: (keys: PackedBF16, values: PackedBF16)?

    init(rows: Int, keys: Int) {
        ld = keys + 16
        (scores, inverse) = (.allocate(capacity: rows * ld), .allocate(capacity: rows))
    }
    deinit {
        scores.deallocate()
        inverse.deallocate()
    }
}

/// softmax(Q·Kᵀ/√d + bias)·V for `rows` query rows of one head (rows `lda` apart) against its keys [tk, d] and
/// values [tk, dv] (rows `ldk` and `ldv` apart; packed into `scratch` unless `head` is the one it holds): the product
/// with V into `out` (rows `ldo` apart), then each row divided by its Σ into `destination(row)` (which may be its row
/// of `out`). The bias's rows are `biasRows` on of batch-head `head`.
private func attend(
    rows: Int, queries: UnsafePointer<Float>, lda: Int, d: Int, keys: UnsafePointer<Float>, ldk: Int,
    values: UnsafePointer<Float>,
    ldv: Int, dv: Int, tk: Int, head: Int, bias: AttentionBias?, biasRows start: Int, scratch: AttentionScratch,
    precision: Precision,
    out: UnsafeMutablePointer<Float>, ldo: Int, destination: (Int) -> UnsafeMutablePointer<Float>
) {
    let (scores, inverse, ld, scale) = (scratch.scores, scratch.inverse, scratch.ld, 1 / Float(d).squareRoot())
    let grid = bias?.grid.map { g in
        (g.h + (head * g.queries + start) * g.side, g.w + (head * g.queries + start) * g.side, g.side)
    }
    // Our kernel adds a grid's parts as its tiles finish; elsewhere the bias is written first.
    if precision == .bf16 || GEMMKernel.current != .ours || grid == nil {
        bias?.fill(head, start..<(start + rows), scores, ld)
    }
    let fresh = scratch.head != head  // one precision per call: the head's keys and values are packed for it
    scratch.head = head
    if precision == .bf16 {
        if fresh {
            scratch.packedBF16 = (
                PackedBF16(keys, ldb: ldk, transposed: true, k: d, n: tk),
                PackedBF16(values, ldb: ldv, transposed: false, k: tk, n: dv)
            )
        }
        gemmBF16(
            m: rows, a: queries, lda: lda, b: scratch.packedBF16!.keys, alpha: scale, c: scores, ldc: ld,
            accumulate: bias != nil)
        ck_softmax_numerators(scores, rows, tk, ld, inverse)
        gemmBF16(m: rows, a: scores, lda: ld, b: scratch.packedBF16!.values, c: out, ldc: ldo)
    } else if GEMMKernel.current == .ours {
        if fresh {
            scratch.packed = (
                packedB(ck_operand(data: keys, row: 1, col: ldk, packed: nil, patches: nil), k: d, n: tk),
                packedB(ck_operand(data: values, row: ldv, col: 1, packed: nil, patches: nil), k: tk, n: dv)
            )
        }
        scratch.packed.keys.withUnsafeBufferPointer { keys in
            var epilogue = ck_epilogue()
            if let (h, w, side) = grid { (epilogue.grid_h, epilogue.grid_w, epilogue.grid_side) = (h, w, side) }
            product(
                m: rows, n: tk, k: d, alpha: scale,
                a: ck_operand(data: queries, row: lda, col: 1, packed: nil, patches: nil),
                b: ck_operand(data: nil, row: 0, col: 0, packed: keys.baseAddress, patches: nil),
                beta: bias == nil ? 0 : 1, c: scores, ldc: ld,
                epilogue: grid == nil ? nil : epilogue)
        }
        ck_softmax_numerators(scores, rows, tk, ld, inverse)
        scratch.packed.values.withUnsafeBufferPointer { values in
            product(
                m: rows, n: dv, k: tk, alpha: 1,
                a: ck_operand(data: scores, row: ld, col: 1, packed: nil, patches: nil),
                b: ck_operand(data: nil, row: 0, col: 0, packed: values.baseAddress, patches: nil), beta: 0, c: out,
                ldc: ldo)
        }
    } else {
        gemm(
            transB: true, m: rows, n: tk, k: d, alpha: scale, a: queries, lda: lda, b: keys, ldb: ldk,
            beta: bias == nil ? 0 : 1, c: scores, ldc: ld)
        ck_softmax_numerators(scores, rows, tk, ld, inverse)
        gemm(m: rows, n: dv, k: tk, a: scores, lda: ld, b: values, ldb: ldv, c: out, ldc: ldo)
    }
    // The softmax's division applied to the dv outputs of a row instead of its tk scores; a row's pointers and factor
    // hoisted, so that the inner loop vectorises.
    for r in 0..<rows {
        let (from, to, factor) = (out + r * ldo, destination(r), inverse[r])
        for c in 0..<dv { to[c] = from[c] * factor }
    }
}
