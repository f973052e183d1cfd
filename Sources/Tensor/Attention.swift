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
