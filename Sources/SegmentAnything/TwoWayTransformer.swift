// Port of segment_anything/modeling/transformer.py (TwoWayTransformer, TwoWayAttentionBlock, Attention) at dca509f.
import Checkpoint
import Tensor

/// Attention with projections to a (possibly downsampled) internal width, split into heads.
struct DecoderAttention {
    let q: LinearLayer, k: LinearLayer, v: LinearLayer, out: LinearLayer
    let heads: Int

    init(_ w: Weights, _ prefix: String, heads: Int) throws {
        (q, k, v, out) = (try w.linear(prefix + ".q_proj"), try w.linear(prefix + ".k_proj"), try w.linear(prefix + ".v_proj"),
                          try w.linear(prefix + ".out_proj"))
        self.heads = heads
    }

    /// q [Nq, Tq, E], k and v [Nk, Tk, E] → [N, Tq, E]; an input with N = 1 is shared by all prompts, and its
    /// projection is computed once.
    ///
    /// Between the image (4096 rows) and a prompt's few tokens (T = 7 for a box), the attention has rank
    /// H·T per prompt, below the internal width D (8 · 7 = 56 < 128 in every released SAM), so the projections on
    /// the image side are moved to the token side (`attentionToFewKeys`, `attentionFromFewQueries`): the same
    /// values in less than half the multiply-adds. Elsewhere, the reference's order: project, attend, project out.
    func callAsFunction(q query: Tensor, k key: Tensor, v value: Tensor) -> Tensor {
        let (tq, tk, width) = (query.shape[1], key.shape[1], q.weight.shape[0])
        if heads * tk < width, tk < tq {
            return attentionToFewKeys(query: query, keys: k(key), values: v(value), heads: heads, queryProjection: (q.weight, q.bias!),
                                      outProjection: (out.weight, out.bias!))
        }
        if heads * tq < width, tq < tk, key.shape[0] == query.shape[0] {
            return out(attentionFromFewQueries(queries: q(query), key: key, value: value, heads: heads, keyWeight: k.weight,
                                               valueProjection: (v.weight, v.bias!)))
        }
        return out(multiHeadAttention(query: q(query), key: k(key), value: v(value), heads: heads))
    }
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

    init(_ w: Weights, _ a: SamArchitecture) throws {
        let p = "mask_decoder.transformer."
        layers = try (0..<a.decoderDepth).map { i in
            let l = p + "layers.\(i)."
            return Layer(selfAttention: try DecoderAttention(w, l + "self_attn", heads: a.decoderHeads),
                         tokenToImage: try DecoderAttention(w, l + "cross_attn_token_to_image", heads: a.decoderHeads),
                         imageToToken: try DecoderAttention(w, l + "cross_attn_image_to_token", heads: a.decoderHeads),
                         norm1: try w.norm(l + "norm1"), norm2: try w.norm(l + "norm2"), norm3: try w.norm(l + "norm3"),
                         norm4: try w.norm(l + "norm4"), lin1: try w.linear(l + "mlp.lin1"), lin2: try w.linear(l + "mlp.lin2"),
                         skipFirstPositionalEncoding: i == 0)
        }
        finalAttention = try DecoderAttention(w, p + "final_attn_token_to_image", heads: a.decoderHeads)
        finalNorm = try w.norm(p + "norm_final_attn")
    }

    static func norm(_ x: Tensor, _ n: Norm) -> Tensor { layerNorm(x, weight: n.weight, bias: n.bias, eps: 1e-5) }

    /// image [1, HW, E] (already plus the dense prompt) and imagePE [1, HW, E], shared by the N prompts, and
    /// tokens [N, T, E] → (queries [N, T, E], keys [N, HW, E]). The image side is the same for every prompt until
    /// the first image-to-token attention, so until then its projections are computed once, not per prompt.
    func callAsFunction(image: Tensor, imagePE: Tensor, tokens: Tensor) -> (Tensor, Tensor) {
        var queries = tokens, keys = image
        for layer in layers {
            if layer.skipFirstPositionalEncoding {
                queries = layer.selfAttention(q: queries, k: queries, v: queries)
            } else {
                let q = queries.adding(tokens)
                queries = queries.adding(layer.selfAttention(q: q, k: q, v: queries))
            }
            queries = Self.norm(queries, layer.norm1)
            // keys + PE serves both cross attentions: the keys change only at the end of the layer.
            let k = keys.adding(imagePE)
            var q = queries.adding(tokens)
            queries = Self.norm(queries.adding(layer.tokenToImage(q: q, k: k, v: keys)), layer.norm2)
            var hidden = layer.lin1(queries)
            hidden.relu()
            queries = Self.norm(queries.adding(layer.lin2(hidden)), layer.norm3)
            q = queries.adding(tokens)
            keys = Self.norm(keys.adding(layer.imageToToken(q: k, k: q, v: queries)), layer.norm4)
        }
        let q = queries.adding(tokens), k = keys.adding(imagePE)
        queries = Self.norm(queries.adding(finalAttention(q: q, k: k, v: keys)), finalNorm)
        return (queries, keys)
    }
}
