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
    /// The output upscaling — ConvTranspose 2×2 (stride 2) → LayerNorm2d → GELU → ConvTranspose 2×2 → GELU — on
    /// channels-last pixels: a stride-2 transposed convolution maps each input pixel's channels to its own 2×2
    /// block, so it is a linear layer whose outputs are ordered here (block pixel, channel): four runs of
    /// channels, one output pixel each. LayerNorm2d is then a norm of rows, the second convolution a product on
    /// those rows, and each mask a dot product of the last rows — no map is transposed or interleaved; only the
    /// masks' own pixels are put in place at the end.
    let upscale1: LinearLayer, upscaleNorm: Norm, upscale2: LinearLayer
    /// The first convolution for prompts with few tokens, from the image's rows and the prompt's updates.
    let upscale1Map: RowsProjection
    let hypernetworks: [MLP]
    let iouHead: MLP
    let width: Int

    init(_ w: Weights, _ a: SamArchitecture) throws {
        let p = "mask_decoder."
        iouToken = try w(p + "iou_token.weight")
        maskTokens = try w(p + "mask_tokens.weight")
        transformer = try TwoWayTransformer(w, a)
        upscale1 = Self.blockLinear(
            weight: try w(p + "output_upscaling.0.weight"), bias: try w(p + "output_upscaling.0.bias"))
        upscaleNorm = try w.norm(p + "output_upscaling.1")
        upscale1Map = RowsProjection(upscale1, addsPE: false, after: transformer.layers[...])
        upscale2 = Self.blockLinear(
            weight: try w(p + "output_upscaling.3.weight"), bias: try w(p + "output_upscaling.3.bias"))
        hypernetworks = try (0...a.multimaskOutputs).map { i in
            MLP(layers: try (0..<3).map { try w.fewRowsLinear(p + "output_hypernetworks_mlps.\(i).layers.\($0)") })
        }
        iouHead = MLP(
            layers: try (0..<a.iouHeadDepth).map { try w.fewRowsLinear(p + "iou_prediction_head.layers.\($0)") })
        width = a.promptWidth
    }

    /// A ConvTranspose2d weight [Cin, Cout, 2, 2] (stride 2) and bias [Cout] as an `nn.Linear` from a pixel's Cin
    /// channels to its 2×2 block: weight [(ky·2 + kx)·Cout + co, Cin], bias repeated per block pixel.
    static func blockLinear(weight: Tensor, bias: Tensor) -> LinearLayer {
        let (cin, cout) = (weight.shape[0], weight.shape[1])
        precondition(
            weight.shape == [cin, cout, 2, 2] && bias.shape == [cout],
            "output upscaling: weight \(weight.shape), bias \(bias.shape)")
        var reordered = [Float](repeating: 0, count: weight.count)
        for ci in 0..<cin {
            for co in 0..<cout {
                for block in 0..<4 {
                    reordered[(block * cout + co) * cin + ci] = weight.storage[(ci * cout + co) * 4 + block]
                }
            }
        }
        let weight = Tensor(shape: [4 * cout, cin], storage: reordered)
        return LinearLayer(
            weight: weight,
            bias: Tensor(shape: [4 * cout], storage: Array([[Float]](repeating: bias.storage, count: 4).joined())),
            packedFP32: PackedLinearWeight(weight))
    }

    /// embedding [E, g, g], pe [E, g, g], sparse tokens per prompt, dense [E, g, g] (one for all prompts) →
    /// logits [N, M, 4g, 4g] and predicted IoU [N, M], M = 3 (multimask: tokens 1…3) or 1 (token 0). With `content`,
    /// only the logits of the first `rows` × `columns` embedding pixels (4 × 4 logits each) are computed — the output
    /// upscaling and the masks' products are per pixel — and the others are NaN.
    func callAsFunction(
        embedding: Tensor, pe: Tensor, sparse: [[[Float]]], dense: Tensor, multimask: Bool,
        content: (rows: Int, columns: Int)? = nil
    ) -> (Tensor, Tensor) {
        let (n, e, g) = (sparse.count, width, embedding.shape[1])
        let blocks = Self.blocks(grid: g, content: content)
        let outputTokens = iouToken.storage + maskTokens.storage
        let promptCount = sparse.first?.count ?? 0
        precondition(
            sparse.allSatisfy { $0.count == promptCount }, "every prompt of a batch needs the same number of tokens")
        let t = 1 + maskTokens.shape[0] + promptCount
        // src = image embedding + dense prompt, and the positional encoding, as [1, HW, E]: shared by every prompt.
        let rows = dense.reshaped([1, e, g * g]).permuted([0, 2, 1]).adding(
            Tensor(shape: [1, e, g * g], storage: embedding.storage).permuted([0, 2, 1]))
        let image = transformer.image(
            rows: rows, pe: Tensor(shape: [1, e, g * g], storage: pe.storage).permuted([0, 2, 1]),
            tokens: t, prompts: n)
        let upscaleShared = image.centred.map { upscale1Map.shared(centredRows: $0, pe: image.pe) }

        let tokens = Tensor(
            shape: [n, t, e], storage: Array((0..<n).map { outputTokens + sparse[$0].joined() }.joined()))
        let first = transformer.firstQueries(image: image, tokens: tokens)

        let selected = multimask ? Array(1..<maskTokens.shape[0]) : [0]
        let side = 4 * g
        // `writeMasks` writes every pixel of the content; outside it (`content`), NaN: a read there would show.
        var masks =
            content == nil
            ? Tensor(uninitialized: [n, selected.count, side, side])
            : Tensor(repeating: .nan, shape: [n, selected.count, side, side])
        var scores = Tensor(zeros: [n, selected.count])
        masks.withUnsafeMutableBufferPointer { masks in
            scores.withUnsafeMutableBufferPointer { scores in
                let (masks, scores) = (masks.baseAddress!, scores.baseAddress!)
                let slice = { (x: Tensor, prompt: Int) in
                    Tensor(shape: [1, t, e], storage: Array(x.storage[(prompt * t * e)..<((prompt + 1) * t * e)]))
                }
                let decode = { (prompt: Int) in
                    let (hs, keys) = transformer(
                        image: image, tokens: slice(tokens, prompt), firstQueries: slice(first, prompt))
                    let row = { (i: Int) in Tensor(shape: [1, e], storage: Array(hs.storage[(i * e)..<((i + 1) * e)])) }
                    let iou = iouHead(row(0))
                    for (slot, m) in selected.enumerated() { scores[prompt * selected.count + slot] = iou.storage[m] }
                    let hypers = selected.flatMap { hypernetworks[$0](row(1 + $0)).storage }  // [M, c]
                    let out = masks + prompt * selected.count * side * side
                    switch keys {
                    case .rows(let keys):
                        keys.withUnsafeBufferPointer { keys in
                            writeMasks(grid: g, blocks: blocks, hypers: hypers, into: out) {
                                upscale1(keys.baseAddress! + $0.lowerBound * e, rows: $0.count, into: $1)
                            }
                        }
                    case .updates(let rows):
                        let right = upscale1Map.right(rows)
                        writeMasks(grid: g, blocks: blocks, hypers: hypers, into: out) {
                            upscale1Map.apply(rows, right: right, shared: upscaleShared!, range: $0, into: $1)
                        }
                    }
                }
                // With a prompt or more per thread, each prompt runs on one thread from start to end: its few-megabyte
                // activations stay in that core's cache and no step waits for the others. Fewer prompts share the
                // threads inside each step instead. The results are the same bits either way.
                if n >= Threading.count {
                    Threading.parallelItems(n) { next in while let prompt = next() { decode(prompt) } }
                } else {
                    (0..<n).forEach(decode)
                }
            }
        }
        return (masks, scores)
    }

    /// The embedding pixels to upscale (all g², or the first `rows` × `columns`) in blocks of up to 128 along rows
    /// in row-major order, each within one row where the rows are cut short.
    static func blocks(grid g: Int, content: (rows: Int, columns: Int)?) -> [Range<Int>] {
        let (rows, columns) = content.map { (min($0.rows, g), min($0.columns, g)) } ?? (g, g)
        let lines = columns == g ? [0..<(rows * g)] : (0..<rows).map { ($0 * g)..<($0 * g + columns) }
        return lines.flatMap { line in
            stride(from: line.lowerBound, to: line.upperBound, by: 128).map { $0..<min($0 + 128, line.upperBound) }
        }
    }

    /// Upscales one prompt's image rows (the pixels of `blocks`, each at most 128 of the g² in row-major order) and
    /// writes its M masks [M, 4g, 4g] there at `out`: mask m = Σ_c hypers[m, c] · upscaled[c]. `first` writes the
    /// first convolution of a range of pixels, [pixels, 4 · C1] (`upscale1` on the rows, or `upscale1Map`). A block of
    /// pixels at a time goes through both transposed convolutions and the masks' products while its maps (a quarter
    /// of a megabyte) are in cache.
    func writeMasks(
        grid g: Int, blocks: [Range<Int>], hypers: [Float], into out: UnsafeMutablePointer<Float>,
        first upscaled: (Range<Int>, UnsafeMutablePointer<Float>) -> Void
    ) {
        let (c1, c2) = (upscale1.weight.shape[0] / 4, upscale2.weight.shape[0] / 4)
        let (count, side, block) = (hypers.count / c2, 4 * g, blocks.map(\.count).max() ?? 0)
        hypers.withUnsafeBufferPointer { hypers in
            Threading.parallelItems(blocks.count) { next in
                var first = [Float](repeating: 0, count: block * 4 * c1)
                var second = [Float](repeating: 0, count: block * 16 * c2)
                var logits = [Float](repeating: 0, count: block * 16 * count)
                while let index = next() {
                    let (start, pixels) = (blocks[index].lowerBound, blocks[index].count)
                    // [pixels, (block pixel, c1)], then as [4 · pixels, c1] rows: norm, GELU.
                    first.withUnsafeMutableBufferPointer { upscaled(start..<(start + pixels), $0.baseAddress!) }
                    first.withUnsafeMutableBufferPointer { f in
                        layerNormRows(
                            f.baseAddress!, rows: 4 * pixels, weight: upscaleNorm.weight, bias: upscaleNorm.bias,
                            eps: 1e-6)
                        gelu(f.baseAddress!, count: 4 * pixels * c1)
                    }
                    // The second convolution with rows and channels swapped: [(q2, c2), 4 · pixels], so that each mask's
                    // dot products run down the channels, 16 of the 4 · pixels columns a vector.
                    let columns = 4 * pixels
                    first.withUnsafeBufferPointer { f in
                        second.withUnsafeMutableBufferPointer {
                            linearTransposed(
                                f.baseAddress!, rows: columns, weight: upscale2.weight, bias: upscale2.bias!,
                                into: $0.baseAddress!, ldy: columns)
                        }
                    }
                    // logits[(m · 4 + q2) · 4 · pixels + pixel · 4 + q1]: the 16 output pixels of each input pixel, M masks.
                    second.withUnsafeBufferPointer { s in
                        logits.withUnsafeMutableBufferPointer { l in
                            for q2 in 0..<4 {
                                geluDotColumns(
                                    s.baseAddress! + q2 * c2 * columns, rows: c2, columns: columns, stride: columns,
                                    hypers.baseAddress!,
                                    count: count, into: l.baseAddress! + q2 * columns, outStride: 4 * columns)
                            }
                        }
                    }
                    // Input pixel (y, x), first-block pixel q1 and second-block pixel q2 land at
                    // (4y + 2·(q1 / 2) + q2 / 2, 4x + 2·(q1 % 2) + q2 % 2).
                    for pixel in 0..<pixels {
                        let (y, x) = ((start + pixel) / g, (start + pixel) % g)
                        for q1 in 0..<4 {
                            for q2 in 0..<4 {
                                let at = (4 * y + 2 * (q1 / 2) + q2 / 2) * side + 4 * x + 2 * (q1 % 2) + q2 % 2
                                for m in 0..<count {
                                    out[m * side * side + at] = logits[(m * 4 + q2) * columns + pixel * 4 + q1]
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
