// Port of Ultralytics' SAM predictor (ultralytics/models/sam/predict.py: Predictor.preprocess, set_image,
// _prepare_prompts, _inference_features, postprocess; utils/ops.py scale_masks) at 8.4.190, over the model of
// segment_anything/modeling/sam.py.
import Checkpoint
import Foundation
import Imaging
import Tensor

/// A point prompt in original-image pixels: label 1 is foreground, 0 background.
public struct SamPoint: Equatable, Sendable {
    public var x: Float, y: Float, label: Int
    public init(x: Float, y: Float, label: Int = 1) { (self.x, self.y, self.label) = (x, y, label) }
}

/// A box prompt (x1, y1, x2, y2) in original-image pixels.
public struct SamBox: Equatable, Sendable {
    public var x1: Float, y1: Float, x2: Float, y2: Float
    public init(x1: Float, y1: Float, x2: Float, y2: Float) { (self.x1, self.y1, self.x2, self.y2) = (x1, y1, x2, y2) }
}

/// A binary mask at the original image's resolution, row-major.
public struct SamMask: Equatable, Sendable {
    public let width: Int, height: Int
    public var pixels: [Bool]
    public var area: Int { pixels.reduce(0) { $0 + ($1 ? 1 : 0) } }
}

public struct SamPrediction: Sendable {
    /// One entry per prompt × output: masks[i] with predicted IoU scores[i].
    public var masks: [SamMask]
    public var scores: [Float]
    /// The decoder's low-resolution logits [prompts, outputs, 256, 256] (reusable as a mask prompt).
    public var lowResLogits: Tensor
}

public enum SamError: Error, LocalizedError, Equatable {
    case noImage
    case noPrompt
    case invalidPrompt(String)
    case unsupportedPrecision(String)

    public var errorDescription: String? {
        switch self {
        case .unsupportedPrecision(let reason): reason
        case .noImage: "no image is set: call setImage(_:) before predict"
        case .noPrompt: "give at least one box or point prompt (segment-everything is not available yet)"
        case .invalidPrompt(let reason): "invalid prompt: \(reason)"
        }
    }
}

/// Segment Anything, as Ultralytics runs it: `setImage` runs the image encoder once; `predict` runs the prompt
/// encoder and mask decoder for any number of prompts on that embedding.
///
/// Where Ultralytics and Meta's `SamPredictor` differ, this follows Ultralytics: the image is letterboxed to
/// 1024 at the top-left with OpenCV's resize and padded with grey 114 *before* mean/std normalisation (Meta: PIL
/// resize, normalise, pad with 0); prompts are scaled by the unrounded ratio min(1024/h, 1024/w); the 256×256
/// low-resolution logits are cropped to the image's content and resized to the original size in one bilinear
/// step (or sampled over the exact content span when its edge falls mid-pixel), then thresholded at 0 (Meta:
/// upsample to 1024, crop, upsample again).
/// Not for concurrent use: one thread at a time sets an image and prompts it (it may move between threads).
// Unchecked: `setImage` mutates the embedding; callers order their calls, as the job's pipeline does.
public final class SamPredictor: @unchecked Sendable {
    public let architecture: SamArchitecture
    let encoder: ImageEncoderViT
    let prompts: PromptEncoder
    let decoder: MaskDecoder
    let densePE: Tensor

    public private(set) var imageEmbedding: Tensor?
    private var imageSize: (width: Int, height: Int)?

    static let mean: [Float] = [123.675, 116.28, 103.53]
    static let std: [Float] = [58.395, 57.12, 57.375]

    /// The arithmetic of the image encoder's matrix products (the prompt encoder and mask decoder run fp32).
    public let precision: Precision

    /// `precision: .bf16` runs the image encoder's products in bfloat16 (AVX512-BF16; refused where the CPU lacks it).
    public init(checkpoint: SamCheckpoint, precision: Precision = .fp32) throws {
        guard checkpoint.architecture.variant != .mobileSAM else {
            throw CheckpointError.unsupported(
                path: checkpoint.weights.path,
                reason: "MobileSAM (TinyViT encoder) is not supported yet; use sam_b.pt, sam_l.pt or sam_h.pt")
        }
        if precision == .bf16, let refusal = Precision.bf16Refusal { throw SamError.unsupportedPrecision(refusal) }
        self.precision = precision
        architecture = checkpoint.architecture
        let weights = Weights(state: checkpoint.weights)
        encoder = try ImageEncoderViT(weights, architecture, precision: precision)
        prompts = try PromptEncoder(weights, architecture)
        decoder = try MaskDecoder(weights, architecture)
        densePE = prompts.densePositionalEncoding()
    }

    /// Loads a SAM checkpoint (sam_b.pt, sam_vit_h_*.pth, …).
    public convenience init(path: String, precision: Precision = .fp32) throws {
        guard case .sam(let checkpoint) = try ModelFile.open(path: path) else {
            throw CheckpointError.unsupported(
                path: path, reason: "this is a YOLO detector; sam_model needs a Segment Anything model such as sam_b.pt"
            )
        }
        try self.init(checkpoint: checkpoint, precision: precision)
    }

    /// The encoder input: letterboxed to the model's size at the top-left, grey 114, normalised, [1, 3, S, S].
    public func preprocess(_ image: Image) -> Tensor {
        let size = architecture.imageSize
        let (boxed, _) = LetterBox(height: size, width: size, auto: false, center: false)(image)
        var input = Tensor(zeros: [1, 3, size, size])
        let plane = size * size
        input.withUnsafeMutableBufferPointer { x in
            boxed.pixels.withUnsafeBufferPointer { p in
                for i in 0..<plane {
                    for c in 0..<3 { x[c * plane + i] = (Float(p[3 * i + c]) - Self.mean[c]) / Self.std[c] }
                }
            }
        }
        return input
    }

    /// Runs the image encoder and keeps the embedding for any number of `predict` calls.
    public func setImage(_ image: Image) {
        imageEmbedding = encoder(preprocess(image))
        imageSize = (image.width, image.height)
    }

    public func resetImage() {
        imageEmbedding = nil
        imageSize = nil
    }

    /// Masks for the prompts: one per box (each with all `points`, if any), or one for `points` alone. With
    /// `multimask`, three masks per prompt (Meta's choice for ambiguous prompts); otherwise one (Ultralytics'
    /// default). `maskInput`: low-resolution logits [256, 256] from an earlier prediction. `lowResLogits: false`
    /// leaves the prediction's `lowResLogits` empty and skips the logits over the letterbox's padding, which only a
    /// later mask prompt would read (a quarter of them for a 4:3 photo; the masks are the same bits).
    public func predict(
        points: [SamPoint] = [], boxes: [SamBox] = [], maskInput: Tensor? = nil, multimask: Bool = false,
        lowResLogits keep: Bool = true
    ) throws -> SamPrediction {
        guard let embedding = imageEmbedding, let (w, h) = imageSize else { throw SamError.noImage }
        guard !points.isEmpty || !boxes.isEmpty else { throw SamError.noPrompt }
        if let bad = points.first(where: { ![0, 1].contains($0.label) }) {
            throw SamError.invalidPrompt("point label \(bad.label) is neither 1 (foreground) nor 0 (background)")
        }
        let side = 4 * architecture.gridSize
        if let maskInput, maskInput.count != side * side {
            throw SamError.invalidPrompt("mask input must be \(side)×\(side) logits")
        }
        let r = Float(min(Double(architecture.imageSize) / Double(h), Double(architecture.imageSize) / Double(w)))
        let scaledPoints = points.map { (x: $0.x * r, y: $0.y * r, label: $0.label) }
        let sparse: [[[Float]]] =
            boxes.isEmpty
            ? [prompts.sparse(points: scaledPoints, box: nil)]
            : boxes.map { prompts.sparse(points: scaledPoints, box: ($0.x1 * r, $0.y1 * r, $0.x2 * r, $0.y2 * r)) }
        let dense = prompts.dense(mask: maskInput)
        let (logits, scores) = decoder(
            embedding: embedding[first: 0], pe: densePE[first: 0], sparse: sparse, dense: dense, multimask: multimask,
            content: keep ? nil : content(width: w, height: h))
        var masks = [SamMask?](repeating: nil, count: logits.shape[0] * logits.shape[1])
        masks.withUnsafeMutableBufferPointer { masks in
            logits.withUnsafeBufferPointer { logits in
                Threading.parallelItems(masks.count) { next in
                    while let i = next() {
                        masks[i] = upscale(logits.baseAddress! + i * side * side, side: side, width: w, height: h)
                    }
                }
            }
        }
        return SamPrediction(
            masks: masks.map { $0! }, scores: scores.storage,
            lowResLogits: keep ? logits : Tensor(shape: [0], storage: []))
    }

    /// The embedding pixels (4 × 4 low-resolution logits each) whose logits `upscale` reads for an image of w × h:
    /// the content's rows and columns, ⌈h · gainH⌉ and ⌈w · gainW⌉, and the next, which bilinear sampling at the
    /// content's edge reads.
    func content(width w: Int, height h: Int) -> (rows: Int, columns: Int) {
        let (gainW, gainH) = gains(width: w, height: h)
        let side = 4 * architecture.gridSize
        let (rows, columns) = (
            min(side, Int((Double(h) * gainH).rounded(.up)) + 1), min(side, Int((Double(w) * gainW).rounded(.up)) + 1)
        )
        return ((rows + 3) / 4, (columns + 3) / 4)
    }

    /// Low-resolution logits per original pixel along x and y: round(o · gain) · 256 / 1024 / o, as Ultralytics'
    /// `scale_masks` works them out.
    func gains(width w: Int, height h: Int) -> (x: Double, y: Double) {
        let (size, side) = (Double(architecture.imageSize), Double(4 * architecture.gridSize))
        let gain = min(size / Double(h), size / Double(w))
        return (
            (Double(w) * gain).rounded(.toNearestOrEven) * side / size / Double(w),
            (Double(h) * gain).rounded(.toNearestOrEven) * side / size / Double(h)
        )
    }

    /// `scale_masks(..., padding=False)` as Ultralytics' SAM postprocess calls it, then `> 0`, for one mask's logits
    /// [side, side] at `logits`.
    func upscale(_ logits: UnsafePointer<Float>, side n: Int, width w: Int, height h: Int) -> SamMask {
        let (gainW, gainH) = gains(width: w, height: h)
        let bottom = max(Int((Double(h) * gainH).rounded(.toNearestOrEven)), 1)
        let right = max(Int((Double(w) * gainW).rounded(.toNearestOrEven)), 1)
        if abs(Double(h) * gainH - Double(bottom)) + abs(Double(w) * gainW - Double(right)) > 1e-3 {
            let values = sampleContentSpan(
                logits, side: n, width: w, height: h, gainW: Float(gainW), gainH: Float(gainH))
            return SamMask(width: w, height: h, pixels: values.map { $0 > 0 })
        }
        // The content's top-left bottom × right logits, resized to the image.
        return SamMask(
            width: w, height: h,
            pixels: bilinearSigns(logits, height: bottom, width: right, stride: n, outHeight: h, outWidth: w))
    }

    /// The `F.affine_grid` + `F.grid_sample(bilinear, border, align_corners=False)` path: output pixel (x, y)
    /// samples the logits [side, side] at (gain·(x + ½) − ½), clamped to the map; h × w values, row-major.
    func sampleContentSpan(
        _ logits: UnsafePointer<Float>, side n: Int, width w: Int, height h: Int, gainW: Float, gainH: Float
    ) -> [Float] {
        func taps(_ o: Int, _ gain: Float) -> (Int, Int, Float) {
            let c = min(max(gain * (Float(o) + 0.5) - 0.5, 0), Float(n - 1))
            let i = Int(c.rounded(.down))
            return (i, min(i + 1, n - 1), c - Float(i))
        }
        let xs = (0..<w).map { taps($0, gainW) }
        var out = [Float](repeating: 0, count: h * w)
        for y in 0..<h {
            let (y0, y1, fy) = taps(y, gainH)
            for x in 0..<w {
                let (x0, x1, fx) = xs[x]
                let top = logits[y0 * n + x0] * (1 - fx) + logits[y0 * n + x1] * fx
                let bottom = logits[y1 * n + x0] * (1 - fx) + logits[y1 * n + x1] * fx
                out[y * w + x] = top * (1 - fy) + bottom * fy
            }
        }
        return out
    }
}

extension Tensor {
    /// The first slice of the leading dimension.
    subscript(first index: Int) -> Tensor {
        let slice = count / shape[0]
        return Tensor(shape: Array(shape.dropFirst()), storage: Array(storage[(index * slice)..<((index + 1) * slice)]))
    }
}
