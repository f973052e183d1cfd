/// Adds a bias to a block of attention scores in place, before the softmax: for batch-head `head`, the
/// score rows `rows` (query indices) lie at `scores`, `leadingDimension` floats apart, one column per key.
/// SAM's decomposed relative positions are such a bias; computing it per block means the full
/// queries × keys matrix never exists. Called concurrently for different blocks: write only into `scores`.
public typealias AttentionBias = (_ head: Int, _ rows: Range<Int>, _ scores: UnsafeMutablePointer<Float>, _ leadingDimension: Int) -> Void

/// softmax(scale · Q·Kᵀ + bias) · V over [..., Nq, d], [..., Nk, d], [..., Nk, dv] → [..., Nq, dv].
///
/// Queries are processed `chunkRows` at a time, so the score buffer is chunkRows × Nk rather than Nq × Nk:
/// a global-attention block of SAM ViT-B (4096 queries and keys, 12 heads) needs 4 MB per thread at 256 rows
/// instead of 805 MB for all heads at once.
public func scaledDotProductAttention(
    query: Tensor, key: Tensor, value: Tensor, scale: Float? = nil, chunkRows: Int = 256, bias: AttentionBias? = nil
) -> Tensor {
    precondition(query.rank >= 2 && key.rank == query.rank && value.rank == query.rank, "attention ranks differ")
    let (nq, d, nk, dv) = (query.dim(-2), query.dim(-1), key.dim(-2), value.dim(-1))
    let batch = query.count / max(1, nq * d)
    precondition(key.dim(-1) == d && value.dim(-2) == nk && key.count == batch * nk * d && value.count == batch * nk * dv,
                 "attention shapes q \(query.shape), k \(key.shape), v \(value.shape)")
    let alpha = scale ?? 1 / Float(d).squareRoot()
    var output = Tensor(zeros: Array(query.shape.dropLast()) + [dv])
    guard output.count > 0, nk > 0 else { return output }
    let chunk = max(1, min(chunkRows, nq))
    let chunksPerHead = (nq + chunk - 1) / chunk
    query.withUnsafeBufferPointer { q in
        key.withUnsafeBufferPointer { k in
            value.withUnsafeBufferPointer { v in
                output.withUnsafeMutableBufferPointer { o in
                    let (q, k, v, o) = (q.baseAddress!, k.baseAddress!, v.baseAddress!, o.baseAddress!)
                    // Work items are (head, query chunk) pairs, one thread each: every thread owns its score
                    // buffer, and the GEMMs inside run single-threaded (nested parallelism is serial).
                    Threading.parallelFor(batch * chunksPerHead) { items in
                        let scores = UnsafeMutablePointer<Float>.allocate(capacity: chunk * nk)
                        defer { scores.deallocate() }
                        for item in items {
                            let (head, start) = (item / chunksPerHead, (item % chunksPerHead) * chunk)
                            let rows = min(chunk, nq - start)
                            gemm(transB: true, m: rows, n: nk, k: d, alpha: alpha, a: q + (head * nq + start) * d, lda: d,
                                 b: k + head * nk * d, ldb: d, c: scores, ldc: nk)
                            bias?(head, start..<(start + rows), scores, nk)
                            softmaxRows(scores, rows: rows, nk, stride: nk)
                            gemm(m: rows, n: dv, k: nk, a: scores, lda: nk, b: v + head * nk * dv, ldb: dv,
                                 c: o + (head * nq + start) * dv, ldc: dv)
                        }
                    }
                }
            }
        }
    }
    return output
}

/// Multi-head attention on the layout linear layers produce, with no head transposes: query [Bq, Tq, H·d],
/// key [Bk, Tk, H·d], value [Bk, Tk, H·dv] → [B, Tq, H·dv], where B = max(Bq, Bk) and an input with batch 1 is
/// shared by every batch entry (one image's keys for all of SAM's prompts, or one image's queries). Per entry and
/// head: softmax(Q·Kᵀ/√d)·V, `chunkRows` query rows at a time.
public func multiHeadAttention(query: Tensor, key: Tensor, value: Tensor, heads: Int, chunkRows: Int = 256) -> Tensor {
    precondition(query.rank == 3 && key.rank == 3 && value.rank == 3, "multiHeadAttention wants [B, T, H·d] tensors")
    let (bq, tq, inner) = (query.shape[0], query.shape[1], query.shape[2])
    let (bk, tk, innerV) = (key.shape[0], key.shape[1], value.shape[2])
    let batch = max(bq, bk)
    precondition(key.shape[2] == inner && value.shape[0] == bk && value.shape[1] == tk && inner % heads == 0 && innerV % heads == 0
                 && (bq == batch || bq == 1) && (bk == batch || bk == 1),
                 "multiHeadAttention shapes q \(query.shape), k \(key.shape), v \(value.shape), \(heads) heads")
    let (d, dv) = (inner / heads, innerV / heads)
    guard tk > 0 else { return Tensor(zeros: [batch, tq, innerV]) }
    var output = Tensor(uninitialized: [batch, tq, innerV])  // every (entry, head, chunk) writes its block
    guard output.count > 0 else { return output }
    let chunk = max(1, min(chunkRows, tq))
    let chunks = (tq + chunk - 1) / chunk
    let scale = 1 / Float(d).squareRoot()
    query.withUnsafeBufferPointer { q in
        key.withUnsafeBufferPointer { k in
            value.withUnsafeBufferPointer { v in
                output.withUnsafeMutableBufferPointer { o in
                    let (q, k, v, o) = (q.baseAddress!, k.baseAddress!, v.baseAddress!, o.baseAddress!)
                    Threading.parallelFor(batch * heads * chunks) { items in
                        let scores = UnsafeMutablePointer<Float>.allocate(capacity: chunk * tk)
                        defer { scores.deallocate() }
                        for item in items {
                            let (entry, head, start) = (item / (heads * chunks), item / chunks % heads, item % chunks * chunk)
                            let rows = min(chunk, tq - start)
                            let (qe, ke) = (bq == 1 ? 0 : entry, bk == 1 ? 0 : entry)
                            gemm(transB: true, m: rows, n: tk, k: d, alpha: scale, a: q + (qe * tq + start) * inner + head * d, lda: inner,
                                 b: k + ke * tk * inner + head * d, ldb: inner, c: scores, ldc: tk)
                            softmaxRows(scores, rows: rows, tk, stride: tk)
                            gemm(m: rows, n: dv, k: tk, a: scores, lda: tk, b: v + ke * tk * innerV + head * dv, ldb: innerV,
                                 c: o + (entry * tq + start) * innerV + head * dv, ldc: innerV)
                        }
                    }
                }
            }
        }
    }
    return output
}
