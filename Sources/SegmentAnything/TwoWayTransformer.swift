// Port of segment_anything/modeling/transformer.py (TwoWayTransformer, TwoWayAttentionBlock, Attention) at dca509f.
import Checkpoint
import Tensor

/// Attention with projections to a (possibly downsampled) internal width, split into heads.
struct DecoderAttention {
    let q: LinearLayer, k: LinearLayer, v: LinearLayer, out: LinearLayer
    let heads: Int

    init(_ w: Weights, _ prefix: String, heads: Int) throws {
        (q, k, v, out) = (
            try w.fewRowsLinear(prefix + ".q_proj"), try w.fewRowsLinear(prefix + ".k_proj"),
            try w.fewRowsLinear(prefix + ".v_proj"),
            try w.fewRowsLinear(prefix + ".out_proj")
        )
        self.heads = heads
    }

    var width: Int { q.weight.shape[0] }

    /// q [1, Tq, E], k and v [1, Tk, E] → [1, Tq, E].
    ///
    /// Between the image (4096 rows) and a prompt's few tokens (T = 7 for a box), the attention has rank
    /// H·T, below the internal width D (8 · 7 = 56 < 128 in every released SAM), so the projections on the image
    /// side are moved to the token side (`attentionFromFewQueries` here, `attentionToFewKeys` in `imageToTokens`):
    /// the same values in less than half the multiply-adds. Elsewhere, the reference's order: project, attend,
    /// project out.
    func callAsFunction(q query: Tensor, k key: Tensor, v value: Tensor) -> Tensor {
        let (tq, tk) = (query.shape[1], key.shape[1])
        if heads * tq < width, tq < tk {
            return out(
                attentionFromFewQueries(
                    queries: q(query), key: key, value: value, heads: heads, keyWeight: k.weight,
                    valueProjection: (v.weight, v.bias!)))
        }
        return out(multiHeadAttention(query: q(query), key: k(key), value: v(value), heads: heads))
    }

    /// The same with the image rows' projections computed already (the first layer's, shared by every prompt):
    /// tokens [N, T, E] attend to projected image keys and values [1, HW, D]. All N·T token rows go as one batch
    /// entry, so each head's keys and values are packed once for all the prompts.
    func callAsFunction(q query: Tensor, projectedKeys: Tensor, projectedValues: Tensor) -> Tensor {
        let projected = q(query)
        let attended = multiHeadAttention(
            query: projected.reshaped([1, projected.count / width, width]), key: projectedKeys,
            value: projectedValues, heads: heads)
        return out(attended.reshaped(projected.shape))
    }

    /// Tokens [1, T, E] attend to a prompt's image rows given as their maps (`RowsProjection`): `keys` the map
    /// k(rows + PE), `values` v(rows), with their images' parts `shared` → out(attention) [1, T, E].
    func callAsFunction(
        q query: Tensor, keys: RowsProjection, values: RowsProjection, rows: PromptRows,
        shared: (keys: RowsProjection.Shared, values: RowsProjection.Shared)
    ) -> Tensor {
        var scores = keys.scores(Self.scaled(q(query), heads: heads), heads: heads, rows: rows, shared: shared.keys)
        let (count, stride) = (rows.scale.count, scores.shape[1])
        scores.withUnsafeMutableBufferPointer { s in
            Threading.parallelFor(s.count / stride) { range in
                softmaxRows(s.baseAddress! + range.lowerBound * stride, rows: range.count, count, stride: stride)
            }
        }
        return out(values.weighted(scores, tokens: query.shape[1], heads: heads, rows: rows, shared: shared.values))
    }

    /// The image rows' queries, projected already [1, rows, D] with each head's columns packed (`packed`), against
    /// a prompt's tokens' keys k [1, T, D]: scores [H·T, paddedStride(rows)], row h·T + t = scale · k_h[t] · Q_hᵀ.
    func scores(keys k: Tensor, projectedQueries queries: Tensor, packed: [PackedLinearWeight]) -> Tensor {
        let (t, d, rows) = (k.shape[1], k.shape[2], queries.shape[1])
        let (dh, stride) = (d / heads, paddedStride(rows))
        var scores = Tensor(uninitialized: [heads * t, stride])
        k.withUnsafeBufferPointer { k in
            queries.withUnsafeBufferPointer { q in
                scores.withUnsafeMutableBufferPointer { s in
                    let alpha = 1 / Float(dh).squareRoot()
                    let fused = [Float](repeating: alpha, count: rows).withUnsafeBufferPointer { scale in
                        headScores(
                            k.baseAddress!, tokens: t, ldz: d, heads: heads, headWidth: dh, image: packed,
                            scale: scale.baseAddress!,
                            columns: rows, into: s.baseAddress!, ldo: stride)
                    }
                    if fused { return }
                    for h in 0..<heads {
                        multiplyTransposed(
                            k.baseAddress! + h * dh, rows: t, lda: d, q.baseAddress! + h * dh, n: rows, k: dh, ldb: d,
                            packed: packed[h],
                            alpha: alpha, into: s.baseAddress! + h * t * stride, ldc: stride)
                    }
                }
            }
        }
        return scores
    }

    /// x · 1/√(D/H), the attention's scale applied to one side.
    static func scaled(_ x: Tensor, heads: Int) -> Tensor {
        let scale = 1 / Float(x.dim(-1) / heads).squareRoot()
        return Tensor(shape: x.shape, storage: x.storage.map { $0 * scale })
    }

    /// residual + the image rows' attention to the tokens k and v, the rows given as they are (`image`) or projected
    /// already (`projectedQueries`, q(image)).
    func imageToTokens(
        image: Tensor? = nil, projectedQueries: Tensor? = nil, k key: Tensor, v value: Tensor, residual: Tensor
    ) -> Tensor {
        if heads * key.shape[1] < width {
            return attentionToFewKeys(
                query: projectedQueries ?? image!, keys: k(key), values: v(value), heads: heads,
                queryProjection: projectedQueries == nil ? (q.weight, q.bias!) : nil,
                outProjection: (out.weight, out.bias!), residual: residual)
        }
        return residual.adding(
            out(multiHeadAttention(query: projectedQueries ?? q(image!), key: k(key), value: v(value), heads: heads)))
    }
}

/// What the decoder computes from the image alone, once for all the prompts of a `predict`: the image rows
/// (embedding plus dense prompt) and their positional encoding, [1, HW, E], and the first layer's projections of
/// them — until the first image-to-token attention, the image side is the same for every prompt.
struct DecoderImage {
    let rows: Tensor, pe: Tensor
    /// The first layer's token-to-image keys k(rows + PE) and values v(rows), and image-to-token queries q(rows + PE).
    let keys: Tensor, values: Tensor, queries: Tensor
    /// Where prompts have few tokens: the rows, each minus its mean, the image's parts of the later layers' maps
    /// (`TwoWayTransformer.layerMaps`, `finalMaps`) and of the norms' statistics (`RowStatistics`), and each head's
    /// columns of `queries`, packed.
    let centred: Tensor?, layerMaps: [[RowsProjection.Shared]], finalMaps: [RowsProjection.Shared]
    let statistics: RowStatistics.Shared?, packedQueries: [PackedLinearWeight]
}

/// A prompt's image rows at the decoder's end, as the output upscaling reads them: formed, or as the image's rows and
/// the prompt's updates (`PromptRows`).
enum DecodedRows {
    case rows(Tensor)
    case updates(PromptRows)
}

/// Two-way transformer: tokens attend to themselves and to the image, the image attends to the tokens.
struct TwoWayTransformer {
    struct Layer {
        let selfAttention: DecoderAttention
        let tokenToImage: DecoderAttention, imageToToken: DecoderAttention
        let norm1: Norm, norm2: Norm, norm3: Norm, norm4: Norm
        let lin1: LinearLayer, lin2: LinearLayer
        let skipFirstPositionalEncoding: Bool
    }

    let layers: [Layer]
    let finalAttention: DecoderAttention
    let finalNorm: Norm
    /// For prompts with few tokens, the maps of their image rows that the cross attentions read, computed from the
    /// image's rows and each prompt's updates (`RowsProjection`): for each layer after the first, the token-to-image
    /// keys k(rows + PE) and values v(rows) and the image-to-token queries q(rows + PE); after the last layer, the
    /// final attention's keys and values.
    let layerMaps: [[RowsProjection]], finalMaps: [RowsProjection]
    /// Their norms' statistics, for a decoder of two layers (every released SAM's); nil otherwise.
    let statistics: RowStatistics?

    init(_ w: Weights, _ a: SamArchitecture) throws {
        let p = "mask_decoder.transformer."
        layers = try (0..<a.decoderDepth).map { i in
            let l = p + "layers.\(i)."
            return Layer(
                selfAttention: try DecoderAttention(w, l + "self_attn", heads: a.decoderHeads),
                tokenToImage: try DecoderAttention(w, l + "cross_attn_token_to_image", heads: a.decoderHeads),
                imageToToken: try DecoderAttention(w, l + "cross_attn_image_to_token", heads: a.decoderHeads),
                norm1: try w.norm(l + "norm1"), norm2: try w.norm(l + "norm2"), norm3: try w.norm(l + "norm3"),
                norm4: try w.norm(l + "norm4"), lin1: try w.fewRowsLinear(l + "mlp.lin1"),
                lin2: try w.fewRowsLinear(l + "mlp.lin2"),
                skipFirstPositionalEncoding: i == 0)
        }
        finalAttention = try DecoderAttention(w, p + "final_attn_token_to_image", heads: a.decoderHeads)
        finalNorm = try w.norm(p + "norm_final_attn")
        let (layers, final) = (layers, finalAttention)
        layerMaps = layers.indices.dropFirst().map { i in
            let (layer, before) = (layers[i], layers[..<i])
            return [
                RowsProjection(layer.tokenToImage.k, addsPE: true, after: before),
                RowsProjection(layer.tokenToImage.v, addsPE: false, after: before),
                RowsProjection(layer.imageToToken.q, addsPE: true, after: before),
            ]
        }
        finalMaps = [
            RowsProjection(final.k, addsPE: true, after: layers[...]),
            RowsProjection(final.v, addsPE: false, after: layers[...]),
        ]
        statistics = layers.count == 2 ? RowStatistics(layers) : nil
    }

    /// Whether `prompts` prompts of t tokens each go through `RowsProjection`: where the image-to-token attentions'
    /// updates have rank H·T below their width (a box: 8 · 7 = 56 < 128), and the prompts are enough to repay the
    /// image's part of the maps (for ViT-B, about what four prompts' maps cost formed).
    /// The two ways differ by float rounding only; a prompt's bits can depend on how many share its call.
    func expands(tokens t: Int, prompts: Int) -> Bool {
        let attention = layers[0].imageToToken
        return statistics != nil && attention.heads * t < attention.width && prompts >= 5
    }

    static func norm(_ x: Tensor, _ n: Norm) -> Tensor { layerNorm(x, weight: n.weight, bias: n.bias, eps: 1e-5) }

    /// The prompt-independent part for image rows [1, HW, E] (already plus the dense prompt) and their PE [1, HW, E],
    /// for `prompts` prompts of `tokens` tokens.
    func image(rows: Tensor, pe: Tensor, tokens: Int, prompts: Int) -> DecoderImage {
        let first = layers[0]
        let rowsPlusPE = rows.adding(pe)
        let centred = expands(tokens: tokens, prompts: prompts) ? RowStatistics.centredRows(rows) : nil
        // Keys and queries (with PE) are read as attention keys, each head's columns packed; values as values.
        let shared = { (map: RowsProjection) in
            map.shared(centredRows: centred!, pe: pe, heads: map.addsPE ? first.imageToToken.heads : 0)
        }
        let queries = first.imageToToken.q(rowsPlusPE)
        let (d, heads) = (queries.shape[2], first.imageToToken.heads)
        let packedQueries =
            centred == nil
            ? []
            : queries.withUnsafeBufferPointer { q in
                (0..<heads).map {
                    PackedLinearWeight(q.baseAddress! + $0 * d / heads, out: queries.shape[1], in: d / heads, stride: d)
                }
            }
        return DecoderImage(
            rows: rows, pe: pe, keys: first.tokenToImage.k(rowsPlusPE), values: first.tokenToImage.v(rows),
            queries: queries, centred: centred,
            layerMaps: centred == nil ? [] : layerMaps.map { $0.map(shared) },
            finalMaps: centred == nil ? [] : finalMaps.map(shared),
            statistics: centred.map { statistics!.shared(centredRows: $0) }, packedQueries: packedQueries)
    }

    /// The tokens' half of a layer — self-attention, attention to the image (`attend`, given queries + PE), MLP —
    /// on queries [N, T, E] with their PE `tokens`.
    private func tokenHalf(_ layer: Layer, queries: Tensor, tokens: Tensor, attend: (Tensor) -> Tensor) -> Tensor {
        var queries = queries
        if layer.skipFirstPositionalEncoding {
            queries = layer.selfAttention(q: queries, k: queries, v: queries)
        } else {
            let q = queries.adding(tokens)
            queries = queries.adding(layer.selfAttention(q: q, k: q, v: queries))
        }
        queries = Self.norm(queries, layer.norm1)
        queries = Self.norm(queries.adding(attend(queries.adding(tokens))), layer.norm2)
        var hidden = layer.lin1(queries)
        hidden.relu()
        return Self.norm(queries.adding(layer.lin2(hidden)), layer.norm3)
    }

    /// Every prompt's queries after the first layer's tokens' half, all prompts at once: tokens [N, T, E] → [N, T, E].
    /// Until the first image-to-token attention the image is the same for every prompt (projected once, `image`).
    func firstQueries(image: DecoderImage, tokens: Tensor) -> Tensor {
        let layer = layers[0]
        return tokenHalf(layer, queries: tokens, tokens: tokens) {
            layer.tokenToImage(q: $0, projectedKeys: image.keys, projectedValues: image.values)
        }
    }

    /// One prompt from there on: its tokens [1, T, E] and `firstQueries` [1, T, E] → (queries [1, T, E], its image rows).
    func callAsFunction(image: DecoderImage, tokens: Tensor, firstQueries: Tensor) -> (Tensor, DecodedRows) {
        if image.centred != nil { return expanded(image: image, tokens: tokens, firstQueries: firstQueries) }
        var queries = firstQueries
        // The first layer's image half: the image rows, projected once, attend to this prompt's tokens.
        var keys = Self.norm(
            layers[0].imageToToken.imageToTokens(
                projectedQueries: image.queries, k: queries.adding(tokens), v: queries,
                residual: image.rows), layers[0].norm4)
        for layer in layers.dropFirst() {
            // keys + PE serves both cross attentions: the keys change only at the end of the layer.
            let k = keys.adding(image.pe)
            queries = tokenHalf(layer, queries: queries, tokens: tokens) { layer.tokenToImage(q: $0, k: k, v: keys) }
            keys = Self.norm(
                layer.imageToToken.imageToTokens(image: k, k: queries.adding(tokens), v: queries, residual: keys),
                layer.norm4)
        }
        let q = queries.adding(tokens)
        let k = keys.adding(image.pe)
        queries = Self.norm(queries.adding(finalAttention(q: q, k: k, v: keys)), finalNorm)
        return (queries, .rows(keys))
    }

    /// The same where the prompt's tokens are few: the attentions read the image rows through their maps'
    /// `RowsProjection`s, and the norms take their statistics through `RowStatistics` (the image's parts of both
    /// computed once, in `image`): the prompt's image rows are never formed.
    private func expanded(image: DecoderImage, tokens: Tensor, firstQueries: Tensor) -> (Tensor, DecodedRows) {
        var queries = firstQueries
        var updates = [RowUpdate]()
        var first: RowStatistics.First?
        let count = image.rows.shape[1]
        for (i, layer) in layers.enumerated() {
            let attention = layer.imageToToken
            var scores: Tensor
            if i == 0 {
                scores = attention.scores(
                    keys: attention.k(queries.adding(tokens)), projectedQueries: image.queries,
                    packed: image.packedQueries)
            } else {
                let rows = PromptRows(updates)
                let maps = layerMaps[i - 1]
                let shared = image.layerMaps[i - 1]
                queries = tokenHalf(layer, queries: queries, tokens: tokens) {
                    layer.tokenToImage(
                        q: $0, keys: maps[0], values: maps[1], rows: rows, shared: (shared[0], shared[1]))
                }
                // The image rows' queries q(rows + PE) against the tokens' keys: scores = scale · K_h[t] · Q_hᵀ.
                scores = maps[2].scores(
                    DecoderAttention.scaled(attention.k(queries.adding(tokens)), heads: attention.heads),
                    heads: attention.heads, rows: rows, shared: shared[2])
            }
            let values = attention.v(queries)
            let back = fewKeyUpdate(
                scores: &scores, rows: count, values: values, heads: attention.heads, outWeight: attention.out.weight)
            let inverses: [Float]
            if i == 0 {
                first = statistics!.first(probabilities: scores, values: values, back: back, shared: image.statistics!)
                inverses = first!.inverseDeviations
            } else {
                inverses = statistics!.second(
                    probabilities: scores, values: values, back: back, after: first!, shared: image.statistics!)
            }
            updates.append(RowUpdate(probabilities: scores, values: values, inverseDeviations: inverses))
        }
        let rows = PromptRows(updates)
        let attended = finalAttention(
            q: queries.adding(tokens), keys: finalMaps[0], values: finalMaps[1], rows: rows,
            shared: (image.finalMaps[0], image.finalMaps[1]))
        queries = Self.norm(queries.adding(attended), finalNorm)
        return (queries, .updates(rows))
    }
}
