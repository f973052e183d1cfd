import CKernels

/// Attention between many rows and a few tokens with the projections moved to the tokens' side. Where H heads
/// attend to T tokens and H·T is below the internal width D, softmax(X·W_qᵀ·Kᵀ)·V·W_outᵀ can be computed through
/// [H·T, rows] products instead of projecting every row to D and back: SAM's mask decoder, between the image
/// (4096 rows) and a box prompt's 7 tokens (8 heads, D = 128), spends less than half the multiply-adds.
/// Weights are in PyTorch's `nn.Linear` layout [out, in].

/// out(multi-head attention(q(query), keys, values)) for many query rows: query [N or 1, rows, E] (1: shared by
/// the N prompts), keys and values already projected [N, T, D] → [N, rows, E_out]. Per prompt and head, scores =
/// x·(K_h·W_q,h)ᵀ + b_q,h·K_hᵀ and output = softmax(scores)·(V_h·W_out,hᵀ) + b_out: x meets one [H·T, E] matrix
/// on the way in and the softmax one [H·T, E_out] on the way out. With `queryProjection` nil, the query is q(x)
/// already, [N or 1, rows, D] (one image's rows, projected once for all the prompts that attend from them).
/// `residual` [N, rows, E_out], if given, is added to the output in the same pass as the bias.
public func attentionToFewKeys(
    query: Tensor, keys: Tensor, values: Tensor, heads: Int, queryProjection q: (weight: Tensor, bias: Tensor)?,
    outProjection out: (weight: Tensor, bias: Tensor), residual: Tensor? = nil
) -> Tensor {
    let (n, t, rows) = (keys.shape[0], keys.shape[1], query.shape[1])
    let (d, outWidth) = (keys.shape[2], out.weight.shape[0])
    let e = q?.weight.shape[1] ?? d
    precondition(
        keys.rank == 3 && values.shape == keys.shape && d % heads == 0 && query.rank == 3 && query.shape[2] == e
            && (query.shape[0] == n || query.shape[0] == 1) && (q == nil || q!.weight.shape[0] == d)
            && out.weight.shape[1] == d
            && (residual == nil || residual!.shape == [n, rows, outWidth]),
        "attentionToFewKeys: query \(query.shape), keys \(keys.shape), values \(values.shape), q \(q?.weight.shape ?? []), out \(out.weight.shape)"
    )
    let (dh, ht) = (d / heads, heads * t)
    let scale = 1 / Float(dh).squareRoot()
    var output = Tensor(uninitialized: [n, rows, outWidth])
    // The scores transposed, [H·T, rows]: every product is `rows` wide (our kernel's shape, where T columns would
    // not be), and each head's softmax runs down T rows of long contiguous runs, vectorised across the image rows.
    let stride = paddedStride(rows)
    var scores = Tensor(uninitialized: [ht, stride])
    let into = UnsafeMutablePointer<Float>.allocate(capacity: e * ht)
    defer { into.deallocate() }
    for prompt in 0..<n {
        keys.withUnsafeBufferPointer { kp in
            let kn = kp.baseAddress! + prompt * t * d
            let xn = query.shape[0] == 1 ? 0 : prompt
            guard let q else {
                // scores[h·T + t, :] = scale · K_h[t] · Q_hᵀ
                query.withUnsafeBufferPointer { sq in
                    scores.withUnsafeMutableBufferPointer { s in
                        for h in 0..<heads {
                            gemm(
                                transB: true, m: t, n: rows, k: dh, alpha: scale, a: kn + h * dh, lda: d,
                                b: sq.baseAddress! + xn * rows * d + h * dh, ldb: d, c: s.baseAddress! + h * t * stride,
                                ldc: stride)
                        }
                    }
                }
                return
            }
            // into[h·T + t, :] = scale · K_h[t] · W_q,h, so that scores[h·T + t, :] = into[h·T + t] · xᵀ + scale · b_q,h · K_h[t].
            q.weight.withUnsafeBufferPointer { wq in
                for h in 0..<heads {
                    gemm(
                        m: t, n: e, k: dh, alpha: scale, a: kn + h * dh, lda: d, b: wq.baseAddress! + h * dh * e,
                        ldb: e,
                        c: into + h * t * e, ldc: e)
                }
            }
            let bq = q.bias.storage
            query.withUnsafeBufferPointer { x in
                scores.withUnsafeMutableBufferPointer { s in
                    for h in 0..<heads {
                        for j in 0..<t {
                            var sum: Float = 0
                            for c in 0..<dh { sum += bq[h * dh + c] * kn[j * d + h * dh + c] }
                            (s.baseAddress! + (h * t + j) * stride).update(repeating: scale * sum, count: rows)
                        }
                    }
                    gemm(
                        transB: true, m: ht, n: rows, k: e, a: into, lda: e, b: x.baseAddress! + xn * rows * e, ldb: e,
                        beta: 1, c: s.baseAddress!, ldc: stride)
                }
            }
        }
        let back = fewKeyUpdate(
            scores: &scores, rows: rows,
            values: Tensor(
                shape: [1, t, d], storage: Array(values.storage[(prompt * t * d)..<((prompt + 1) * t * d)])),
            heads: heads, outWeight: out.weight)
        output.withUnsafeMutableBufferPointer { o in
            let o = o.baseAddress! + prompt * rows * outWidth
            if let residual {
                residual.withUnsafeBufferPointer {
                    fillRows(o, rows: rows, adding: $0.baseAddress! + prompt * rows * outWidth, to: out.bias.storage)
                }
            } else {
                fillRows(o, rows: rows, with: out.bias.storage)
            }
            scores.withUnsafeBufferPointer { s in
                back.withUnsafeBufferPointer { back in
                    gemm(
                        transA: true, m: rows, n: outWidth, k: ht, a: s.baseAddress!, lda: stride, b: back.baseAddress!,
                        ldb: outWidth,
                        beta: 1, c: o, ldc: outWidth)
                }
            }
        }
    }
    return output
}

/// The mask decoder's scores of a prompt's T token rows against an image's n rows read through a map's parts, all
/// heads in one pass (`ck_head_scores`): out[h·T + i, j] = (z_h[i]·X_h[j])·scale[j] + z_h[i]·B_h[j] + g[h·T + i]·L[:, j],
/// where z_h[i] is z[i · ldz + h · dh …], X_h and B_h the image's [n, dh] head slices packed (`PackedLinearWeight`),
/// g [H·T, rank] row-major and L [rank, n] with rows `ldl` apart; without `scale`, `base` or `g` and `left`, that term
/// is left out. The same bits as the products on our kernel and the scale between them, with out written once. False,
/// with nothing written, where our kernel cannot run it (OpenBLAS chosen, weights not packed) or, with
/// `onlyWhereFaster`, where it does not pay (`VectorInstructions.fusedKernelsPay`): the caller runs the products.
public func headScores(
    _ z: UnsafePointer<Float>, tokens t: Int, ldz: Int, heads: Int, headWidth dh: Int, image: [PackedLinearWeight],
    base: [PackedLinearWeight]? = nil, scale: UnsafePointer<Float>? = nil, g: UnsafePointer<Float>? = nil,
    rank: Int = 0,
    left: UnsafePointer<Float>? = nil, ldl: Int = 0, columns n: Int, into out: UnsafeMutablePointer<Float>, ldo: Int,
    onlyWhereFaster: Bool = true
) -> Bool {
    guard !onlyWhereFaster || VectorInstructions.fusedKernelsPay, GEMMKernel.current == .ours, dh <= Int(CK_SGEMM_KC),
        image.count == heads,
        (base?.count ?? heads) == heads,
        !(image + (base ?? [])).contains(where: \.values.isEmpty), rank == 0 || (g != nil && left != nil)
    else { return false }
    return withPackedPointers(image[...]) { x in
        withPackedPointers((base ?? [])[...]) { b in
            // 32 image rows a chunk (two panels), 512 a thread at least.
            let chunks = (n + 31) / 32
            Threading.parallelFor(chunks, grain: 16) { range in
                let status = ck_head_scores(
                    t, heads, dh, z, ldz, x, base == nil ? nil : b, scale, g, rank, left, ldl, out, ldo,
                    range.lowerBound * 32, min(n, range.upperBound * 32))
                precondition(status == 0, "ck_head_scores refused its operands")
            }
            return true
        }
    }
}

/// out[i, h·dh + c] += Σ_j p[h·T + i, j] · x[j, h·dh + c] for every head h (`ck_head_weighted`): few token rows'
/// attention output from an image's map [n, H·dh] read in place, one pass over the map for all heads, the same bits
/// as a product per head on our kernel. False, with nothing written, where our kernel cannot run it (OpenBLAS chosen,
/// heads wider than 16) or, with `onlyWhereFaster`, where it does not pay: the caller runs the products.
public func headWeighted(
    _ p: UnsafePointer<Float>, tokens t: Int, ldp: Int, heads: Int, headWidth dh: Int, rows n: Int,
    _ x: UnsafePointer<Float>, ldx: Int, into out: UnsafeMutablePointer<Float>, ldo: Int, onlyWhereFaster: Bool = true
) -> Bool {
    guard !onlyWhereFaster || VectorInstructions.fusedKernelsPay, GEMMKernel.current == .ours, dh <= Int(CK_SGEMM_NR)
    else { return false }
    Threading.parallelFor(heads) { range in
        let status = ck_head_weighted(t, range.lowerBound, range.upperBound, dh, n, p, ldp, x, ldx, out, ldo)
        precondition(status == 0, "ck_head_weighted: out of memory")
    }
    return true
}

/// `body` with the packed values of each of `weights`, in order, as a C array of pointers.
private func withPackedPointers<R>(
    _ weights: ArraySlice<PackedLinearWeight>, _ outer: [UnsafePointer<Float>?] = [],
    _ body: ([UnsafePointer<Float>?]) -> R
) -> R {
    guard let first = weights.first else { return body(outer) }
    return first.values.withUnsafeBufferPointer {
        withPackedPointers(weights.dropFirst(), outer + [$0.baseAddress], body)
    }
}

/// The stride of rows of `rows` floats that packing reads across (H·T probabilities of one image row): a cache line
/// longer, since at a power-of-two stride (4,096 rows) those values would all fall in one L1 set.
public func paddedStride(_ rows: Int) -> Int { rows + 16 }

/// The two factors of one prompt's update where its scores are known, without forming the update: `scores`
/// [H·T, paddedStride(rows)] (scaled, before the softmax) become each head's probabilities (a softmax down its T rows,
/// in place), and the tokens' values [1, T, D] through the output projection are returned, [H·T, E_out]: the
/// attention's output is probabilitiesᵀ·that + b_out.
public func fewKeyUpdate(scores: inout Tensor, rows: Int, values: Tensor, heads: Int, outWeight: Tensor) -> Tensor {
    let (t, d, outWidth, stride) = (values.shape[1], values.shape[2], outWeight.shape[0], scores.shape[1])
    let dh = d / heads
    precondition(
        values.rank == 3 && values.shape[0] == 1 && d % heads == 0 && scores.shape == [heads * t, paddedStride(rows)]
            && outWeight.shape[1] == d,
        "fewKeyUpdate: scores \(scores.shape), values \(values.shape), out \(outWeight.shape)")
    scores.withUnsafeMutableBufferPointer { s in
        let (s, columns) = (s.baseAddress!, 1024)
        let pieces = (rows + columns - 1) / columns
        Threading.parallelFor(heads * pieces) { range in
            for index in range {
                let (h, start) = (index / pieces, index % pieces * columns)
                ck_softmax_columns(s + h * t * stride + start, t, min(columns, rows - start), stride)
            }
        }
    }
    // back[h·T + t, :] = V_h[t] · W_out,hᵀ
    var back = Tensor(uninitialized: [heads * t, outWidth])
    outWeight.withUnsafeBufferPointer { wo in
        values.withUnsafeBufferPointer { v in
            back.withUnsafeMutableBufferPointer { back in
                for h in 0..<heads {
                    gemm(
                        transB: true, m: t, n: outWidth, k: dh, a: v.baseAddress! + h * dh, lda: d,
                        b: wo.baseAddress! + h * dh, ldb: d,
                        c: back.baseAddress! + h * t * outWidth, ldc: outWidth)
                }
            }
        }
    }
    return back
}

/// Multi-head attention(queries, k(key), v(value)) for few queries, before any output projection: queries already
/// projected [N, T, D], key and value rows [N, rows, E] (a prompt's own image rows) → [N, T, D]. Per head, scores
/// = (Q_h·W_k,h)·keyᵀ — b_k adds the same to every score of a query and cancels in the softmax — and, as softmax
/// rows sum to one, output = (softmax · value)·W_v,hᵀ + b_v,h: the image rows are never projected.
public func attentionFromFewQueries(
    queries: Tensor, key: Tensor, value: Tensor, heads: Int, keyWeight: Tensor,
    valueProjection v: (weight: Tensor, bias: Tensor)
) -> Tensor {
    let (n, t, rows, e) = (queries.shape[0], queries.shape[1], key.shape[1], key.shape[2])
    let d = queries.shape[2]
    precondition(
        queries.rank == 3 && key.rank == 3 && value.shape == key.shape && key.shape[0] == n && d % heads == 0
            && keyWeight.shape == [d, e] && v.weight.shape == [d, e],
        "attentionFromFewQueries: queries \(queries.shape), key \(key.shape), value \(value.shape), k \(keyWeight.shape), v \(v.weight.shape)"
    )
    let (dh, ht) = (d / heads, heads * t)
    let scale = 1 / Float(dh).squareRoot()
    var attended = Tensor(uninitialized: [n, t, d])
    var scores = Tensor(uninitialized: [ht, rows])
    let folded = UnsafeMutablePointer<Float>.allocate(capacity: ht * e)
    let mixed = UnsafeMutablePointer<Float>.allocate(capacity: ht * e)
    defer {
        folded.deallocate()
        mixed.deallocate()
    }
    for prompt in 0..<n {
        queries.withUnsafeBufferPointer { qp in
            keyWeight.withUnsafeBufferPointer { wk in
                for h in 0..<heads {  // folded[h·T + t, :] = scale · Q_h[t] · W_k,h
                    gemm(
                        m: t, n: e, k: dh, alpha: scale, a: qp.baseAddress! + prompt * t * d + h * dh, lda: d,
                        b: wk.baseAddress! + h * dh * e, ldb: e, c: folded + h * t * e, ldc: e)
                }
            }
        }
        key.withUnsafeBufferPointer { kx in
            scores.withUnsafeMutableBufferPointer { s in
                gemm(
                    transB: true, m: ht, n: rows, k: e, a: folded, lda: e, b: kx.baseAddress! + prompt * rows * e,
                    ldb: e,
                    c: s.baseAddress!, ldc: rows)
            }
        }
        scores.softmaxLastDim()
        value.withUnsafeBufferPointer { vx in
            scores.withUnsafeBufferPointer { s in
                gemm(
                    m: ht, n: e, k: rows, a: s.baseAddress!, lda: rows, b: vx.baseAddress! + prompt * rows * e, ldb: e,
                    c: mixed, ldc: e)
            }
        }
        attended.withUnsafeMutableBufferPointer { a in
            let a = a.baseAddress! + prompt * t * d
            fillRows(a, rows: t, with: v.bias.storage)
            v.weight.withUnsafeBufferPointer { wv in
                for h in 0..<heads {  // attended[t, h-th slice] = mixed[h·T + t] · W_v,hᵀ + b_v,h
                    gemm(
                        transB: true, m: t, n: dh, k: e, a: mixed + h * t * e, lda: e,
                        b: wv.baseAddress! + h * dh * e, ldb: e, beta: 1, c: a + h * dh, ldc: d)
                }
            }
        }
    }
    return attended
}
