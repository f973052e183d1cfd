// Port of ultralytics/utils/nms.py (non_max_suppression, TorchNMS.nms) and utils/ops.py (xywh2xyxy,
// scale_boxes, clip_boxes) at ultralytics 8.4.190.
import Tensor

/// One detected object, in the original image's pixel coordinates.
public struct Detection: Equatable, Sendable {
    public var x1: Float, y1: Float, x2: Float, y2: Float
    public var confidence: Float
    public var classId: Int

    public init(x1: Float, y1: Float, x2: Float, y2: Float, confidence: Float, classId: Int) {
        (self.x1, self.y1, self.x2, self.y2, self.confidence, self.classId) = (x1, y1, x2, y2, confidence, classId)
    }
}

/// Settings of non-maximum suppression, with Ultralytics' meanings and `auto_annotate`'s defaults.
public struct NMSOptions: Sendable {
    /// Minimum class score (strictly greater passes).
    public var confidence: Float = 0.25
    /// Boxes of the same class overlapping a kept one by more than this IoU are dropped.
    public var iou: Float = 0.45
    public var maxDetections = 300
    /// Keep only these class ids (nil: all).
    public var classes: Set<Int>? = nil
    /// Suppress across classes too.
    public var agnostic = false
    /// Candidates kept before NMS (by score).
    public var maxCandidates = 30_000

    public init(
        confidence: Float = 0.25, iou: Float = 0.45, maxDetections: Int = 300, classes: Set<Int>? = nil,
        agnostic: Bool = false
    ) {
        (self.confidence, self.iou, self.maxDetections, self.classes, self.agnostic) = (
            confidence, iou, maxDetections, classes, agnostic
        )
    }
}

/// `non_max_suppression` on one image's raw predictions [4 + nc, anchors] (centre-size boxes, class scores):
/// best class per anchor, score above the threshold, class filter, then greedy NMS per class — done as
/// Ultralytics does it, on boxes offset by class × 7680 so that classes never overlap — in score order.
/// Coordinates stay in the network input's pixels.
public func nonMaxSuppression(_ prediction: UnsafePointer<Float>, classes nc: Int, anchors: Int, options: NMSOptions)
    -> [Detection]
{
    var candidates: [Detection] = []
    for a in 0..<anchors {
        var best: Float = -.infinity
        var bestClass = 0
        for c in 0..<nc {
            let score = prediction[(4 + c) * anchors + a]
            if score > best {
                best = score
                bestClass = c
            }  // first maximum wins, as torch.max
        }
        guard best > options.confidence, options.classes?.contains(bestClass) ?? true else { continue }
        let (x, y) = (prediction[a], prediction[anchors + a])
        let (halfW, halfH) = (prediction[2 * anchors + a] / 2, prediction[3 * anchors + a] / 2)
        // A box or score that is not a number (a network with NaN or infinite weights) is no detection.
        guard best.isFinite, x.isFinite, y.isFinite, halfW.isFinite, halfH.isFinite else { continue }
        candidates.append(
            Detection(x1: x - halfW, y1: y - halfH, x2: x + halfW, y2: y + halfH, confidence: best, classId: bestClass))
    }
    // Score order, stable (torch's argsort is not guaranteed stable; exact ties are vanishingly rare in float scores).
    var order = candidates.indices.sorted { candidates[$0].confidence > candidates[$1].confidence }
    if order.count > options.maxCandidates { order = Array(order.prefix(options.maxCandidates)) }
    let maxWH: Float = 7680
    let offset = candidates.map { options.agnostic ? 0 : Float($0.classId) * maxWH }
    let boxes = candidates.indices.map { i -> (Float, Float, Float, Float) in
        let d = candidates[i]
        let o = offset[i]
        return (d.x1 + o, d.y1 + o, d.x2 + o, d.y2 + o)
    }
    let areas = boxes.map { ($0.2 - $0.0) * ($0.3 - $0.1) }
    var kept: [Detection] = []
    var suppressed = [Bool](repeating: false, count: candidates.count)
    for (rank, i) in order.enumerated() where !suppressed[i] {
        kept.append(candidates[i])
        if kept.count == options.maxDetections { break }
        let b = boxes[i]
        for j in order[(rank + 1)...] where !suppressed[j] {
            let o = boxes[j]
            let w = max(min(b.2, o.2) - max(b.0, o.0), 0)
            let h = max(min(b.3, o.3) - max(b.1, o.1), 0)
            let inter = w * h
            if inter > 0 && inter / (areas[i] + areas[j] - inter) > options.iou { suppressed[j] = true }
        }
    }
    return kept
}

extension Detection {
    /// `scale_boxes` from the letterboxed input back to the original image, then `clip_boxes`: per-axis gain of
    /// the rounded resized sides, padding `round(pad/2 − 0.1)`, float32 arithmetic as the tensors use.
    func scaled(from inputWidth: Int, _ inputHeight: Int, to width: Int, _ height: Int) -> Detection {
        let gain = min(Double(inputHeight) / Double(height), Double(inputWidth) / Double(width))
        let newH = max(Int((Double(height) * gain).rounded(.toNearestOrEven)), 1)
        let newW = max(Int((Double(width) * gain).rounded(.toNearestOrEven)), 1)
        let (gainY, gainX) = (Float(Double(newH) / Double(height)), Float(Double(newW) / Double(width)))
        let padX = Float(Int((Double(inputWidth - newW) / 2 - 0.1).rounded(.toNearestOrEven)))
        let padY = Float(Int((Double(inputHeight - newH) / 2 - 0.1).rounded(.toNearestOrEven)))
        let (w, h) = (Float(width), Float(height))
        func clip(_ v: Float, _ limit: Float) -> Float { min(max(v, 0), limit) }
        return Detection(
            x1: clip((x1 - padX) / gainX, w), y1: clip((y1 - padY) / gainY, h),
            x2: clip((x2 - padX) / gainX, w), y2: clip((y2 - padY) / gainY, h), confidence: confidence, classId: classId
        )
    }
}
