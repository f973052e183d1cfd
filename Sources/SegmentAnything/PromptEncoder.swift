// Port of segment_anything/modeling/prompt_encoder.py (PromptEncoder, PositionEmbeddingRandom) at dca509f.
import Checkpoint
import Foundation
import Tensor

/// Embeds point and box prompts as sparse tokens (random Fourier features of their coordinates plus learned
/// type embeddings) and a mask prompt as a dense map (or the learned "no mask" embedding).
struct PromptEncoder {
    let width: Int
    let gaussian: Tensor  // [2, width/2]
    let pointEmbeddings: [Tensor]  // 4 × [1, width]: negative, positive, box corner 1, box corner 2
    let notAPoint: Tensor
    let noMask: Tensor
    let down0: (Tensor, Tensor), down1: Norm, down3: (Tensor, Tensor), down4: Norm, down6: (Tensor, Tensor)
    let imageSize: Int
    let grid: Int

    init(_ w: Weights, _ a: SamArchitecture) throws {
        width = a.promptWidth
        gaussian = try w("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix")
        pointEmbeddings = try (0..<4).map { try w("prompt_encoder.point_embeddings.\($0).weight") }
        notAPoint = try w("prompt_encoder.not_a_point_embed.weight")
        noMask = try w("prompt_encoder.no_mask_embed.weight")
        let p = "prompt_encoder.mask_downscaling."
        down0 = (try w(p + "0.weight"), try w(p + "0.bias"))
        down1 = try w.norm(p + "1")
        down3 = (try w(p + "3.weight"), try w(p + "3.bias"))
        down4 = try w.norm(p + "4")
        down6 = (try w(p + "6.weight"), try w(p + "6.bias"))
        imageSize = a.imageSize
        grid = a.gridSize
    }

    /// `_pe_encoding` of coordinates already normalised to [0, 1]: [sin(2π·(2c−1)·G), cos(…)].
    func encode(_ x: Float, _ y: Float) -> [Float] {
        let half = width / 2
        var out = [Float](repeating: 0, count: width)
        let (cx, cy) = (2 * x - 1, 2 * y - 1)
        for j in 0..<half {
            let v = 2 * Float.pi * (cx * gaussian.storage[j] + cy * gaussian.storage[half + j])
            out[j] = sin(v)
            out[half + j] = cos(v)
        }
        return out
    }

    /// `get_dense_pe`: the encoding of every grid cell centre, [1, width, grid, grid].
    func densePositionalEncoding() -> Tensor {
        var pe = Tensor(zeros: [1, width, grid, grid])
        for y in 0..<grid {
            for x in 0..<grid {
                let e = encode((Float(x) + 0.5) / Float(grid), (Float(y) + 0.5) / Float(grid))
                for c in 0..<width { pe.storage[(c * grid + y) * grid + x] = e[c] }
            }
        }
        return pe
    }

    /// Sparse tokens of one prompt: its points (label 1 foreground, 0 background; a padding point with
    /// label −1 is appended when there is no box, as `_embed_points(pad=boxes is None)`), then its box corners.
    /// Coordinates are in the 1024-pixel input frame.
    func sparse(points: [(x: Float, y: Float, label: Int)], box: (Float, Float, Float, Float)?) -> [[Float]] {
        var tokens: [[Float]] = []
        var all = points
        if !points.isEmpty && box == nil { all.append((0, 0, -1)) }
        let size = Float(imageSize)
        for p in all {
            var e = encode((p.x + 0.5) / size, (p.y + 0.5) / size)
            switch p.label {
            case -1: e = notAPoint.storage  // zeroed, then the not-a-point embedding added
            case 0, 1, 2, 3: for c in 0..<width { e[c] += pointEmbeddings[p.label].storage[c] }
            default: break
            }
            tokens.append(e)
        }
        if let (x1, y1, x2, y2) = box {
            for (corner, (x, y)) in [(x1, y1), (x2, y2)].enumerated() {
                var e = encode((x + 0.5) / size, (y + 0.5) / size)
                for c in 0..<width { e[c] += pointEmbeddings[2 + corner].storage[c] }
                tokens.append(e)
            }
        }
        return tokens
    }

    /// Dense embedding [width, grid, grid]: the downscaled mask input (1 × 4grid × 4grid logits), or no-mask.
    func dense(mask: Tensor?) -> Tensor {
        guard let mask else {
            var out = Tensor(zeros: [width, grid, grid])
            for c in 0..<width { for i in 0..<(grid * grid) { out.storage[c * grid * grid + i] = noMask.storage[c] } }
            return out
        }
        var x = conv2d(
            mask.reshaped([1, 1, 4 * grid, 4 * grid]), weight: down0.0, bias: down0.1, geometry: .init(stride: 2))
        x = layerNorm2d(x, weight: down1.weight, bias: down1.bias, eps: 1e-6)
        x.gelu()
        x = conv2d(x, weight: down3.0, bias: down3.1, geometry: .init(stride: 2))
        x = layerNorm2d(x, weight: down4.weight, bias: down4.bias, eps: 1e-6)
        x.gelu()
        x = conv2d(x, weight: down6.0, bias: down6.1)
        return x.reshaped([width, grid, grid])
    }
}
