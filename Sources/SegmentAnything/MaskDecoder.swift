// Port of segment_anything/modeling/mask_decoder.py (MaskDecoder, MLP) at dca509f.
import Checkpoint
import Tensor

/// A small MLP: Linear layers with ReLU between them.
struct MLP {
    let layers: [LinearLayer]
    func callAsFunction(_ x: Tensor) -> Tensor {
        var y = x
        for (i, layer) in layers.enumerated() {
            y = layer(y)
            if i < layers.count - 1 { y.relu() }
        }
        return y
    }
}

/// Predicts masks from the image embedding and prompt tokens: output tokens (IoU + mask tokens) and prompt
/// tokens go through the two-way transformer; the upscaled image embedding is weighted by per-mask
/// hypernetwork vectors; the IoU token predicts each mask's quality.
struct MaskDecoder {
    let iouToken: Tensor, maskTokens: Tensor
    let transformer: TwoWayTransformer
    let up0: (Tensor, Tensor), up1: Norm, up3: (Tensor, Tensor)
    let hypernetworks: [MLP]
    let iouHead: MLP
    let width: Int

    init(_ w: Weights, _ a: SamArchitecture) throws {
        let p = "mask_decoder."
        iouToken = try w(p + "iou_token.weight")
        maskTokens = try w(p + "mask_tokens.weight")
        transformer = try TwoWayTransformer(w, a)
        up0 = (try w(p + "output_upscaling.0.weight"), try w(p + "output_upscaling.0.bias"))
        up1 = try w.norm(p + "output_upscaling.1")
        up3 = (try w(p + "output_upscaling.3.weight"), try w(p + "output_upscaling.3.bias"))
        hypernetworks = try (0...a.multimaskOutputs).map { i in
            MLP(layers: try (0..<3).map { try w.linear(p + "output_hypernetworks_mlps.\(i).layers.\($0)") })
        }
        iouHead = MLP(layers: try (0..<a.iouHeadDepth).map { try w.linear(p + "iou_prediction_head.layers.\($0)") })
        width = a.promptWidth
    }

    /// embedding [E, g, g], pe [E, g, g], sparse tokens per prompt, dense [E, g, g] (one for all prompts) →
    /// logits [N, M, 4g, 4g] and predicted IoU [N, M], M = 3 (multimask: tokens 1…3) or 1 (token 0).
    func callAsFunction(embedding: Tensor, pe: Tensor, sparse: [[[Float]]], dense: Tensor, multimask: Bool) -> (Tensor, Tensor) {
        let (n, e, g) = (sparse.count, width, embedding.shape[1])
        let outputTokens = iouToken.storage + maskTokens.storage
        let promptCount = sparse.first?.count ?? 0
        precondition(sparse.allSatisfy { $0.count == promptCount }, "every prompt of a batch needs the same number of tokens")
        let t = 1 + maskTokens.shape[0] + promptCount
        var tokens = [Float]()
        tokens.reserveCapacity(n * t * e)
        for prompt in sparse { tokens += outputTokens; for token in prompt { tokens += token } }
        // src = image embedding + dense prompt, and the positional encoding, as [1, HW, E]: shared by every prompt.
        let image = Tensor(shape: [1, e, g * g], storage: embedding.storage).permuted([0, 2, 1])
        let src = dense.reshaped([1, e, g * g]).permuted([0, 2, 1]).adding(image)
        let pos = Tensor(shape: [1, e, g * g], storage: pe.storage).permuted([0, 2, 1])
        let (hs, keys) = transformer(image: src, imagePE: pos, tokens: Tensor(shape: [n, t, e], storage: tokens))

        // Upscale: ConvTranspose ×2 → LayerNorm2d → GELU → ConvTranspose ×2 → GELU.
        var up = convTranspose2d(keys.reshaped([n, g, g, e]), weight: up0.0, bias: up0.1, stride: 2, channelsLast: true)
        up = layerNorm2d(up, weight: up1.weight, bias: up1.bias, eps: 1e-6)
        up.gelu()
        up = convTranspose2d(up, weight: up3.0, bias: up3.1, stride: 2)
        up.gelu()
        let (c, side) = (up.shape[1], up.shape[2])

        let maskCount = maskTokens.shape[0]
        let selected = multimask ? Array(1..<maskCount) : [0]
        var masks = Tensor(uninitialized: [n, selected.count, side, side])  // every mask is written by its product
        var scores = Tensor(zeros: [n, selected.count])
        for prompt in 0..<n {
            let row = { (i: Int) in Tensor(shape: [1, e], storage: Array(hs.storage[((prompt * t + i) * e)..<((prompt * t + i + 1) * e)])) }
            let iou = iouHead(row(0))
            for (slot, m) in selected.enumerated() {
                let hyper = hypernetworks[m](row(1 + m))  // [1, c]
                // mask [1, side²] = hyper · the prompt's upscaled planes [c, side²], read and written in place.
                up.withUnsafeBufferPointer { planes in
                    hyper.withUnsafeBufferPointer { h in
                        masks.withUnsafeMutableBufferPointer { out in
                            gemm(m: 1, n: side * side, k: c, a: h.baseAddress!, lda: c, b: planes.baseAddress! + prompt * c * side * side,
                                 ldb: side * side, c: out.baseAddress! + (prompt * selected.count + slot) * side * side, ldc: side * side)
                        }
                    }
                }
                scores.storage[prompt * selected.count + slot] = iou.storage[m]
            }
        }
        return (masks, scores)
    }
}
