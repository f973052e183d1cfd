// Port of the detection path of ultralytics/engine/predictor.py and models/yolo/detect/predict.py at 8.4.190.
import Checkpoint
import Imaging
import Tensor

/// A YOLOv8 detector: load once, detect many. Pre-processing, network and post-processing are those of
/// Ultralytics' `YOLO(model).predict(image, conf, iou, imgsz, max_det, classes, agnostic_nms)` for a PyTorch
/// model: minimal-rectangle letterbox to a multiple of the stride (pad 114, OpenCV-exact resize), RGB / 255,
/// NMS, boxes scaled back to the image and clipped.
public final class Detector: Sendable {
    public let model: DetectionModel
    public let names: [Int: String]

    public init(checkpoint: YOLOCheckpoint) throws {
        model = try DetectionModel(checkpoint)
        names = checkpoint.names
    }

    /// Loads a YOLOv8 detection checkpoint; any other model file is refused with a message saying what it is.
    public convenience init(path: String) throws {
        switch try ModelFile.open(path: path) {
        case .yolo(let checkpoint): try self.init(checkpoint: checkpoint)
        case .sam:
            throw CheckpointError.unsupported(
                path: path,
                reason: "this is a Segment Anything model; a detector needs a YOLOv8 detection model such as yolov8x.pt"
            )
        }
    }

    /// Ultralytics' `check_imgsz`: a size that is not a multiple of the stride is rounded up to one.
    public func inputSize(_ requested: Int) -> Int {
        let stride = model.maxStride
        return max((requested + stride - 1) / stride * stride, stride)
    }

    /// The network input for `image`: letterboxed to `imgsz` (rounded up to the stride) as a [1, 3, H, W] tensor.
    public func preprocess(_ image: Image, imgsz: Int = 640) -> Tensor {
        let size = inputSize(imgsz)
        let (boxed, _) = LetterBox(height: size, width: size, auto: true, stride: model.maxStride)(image)
        var input = Tensor(zeros: [1, 3, boxed.height, boxed.width])
        let plane = boxed.width * boxed.height
        input.withUnsafeMutableBufferPointer { x in
            boxed.pixels.withUnsafeBufferPointer { p in
                for i in 0..<plane { for c in 0..<3 { x[c * plane + i] = Float(p[3 * i + c]) / 255 } }
            }
        }
        return input
    }

    public func detect(_ image: Image, imgsz: Int = 640, options: NMSOptions = NMSOptions()) -> [Detection] {
        let input = preprocess(image, imgsz: imgsz)
        let prediction = model(input)
        let (inputH, inputW) = (input.shape[2], input.shape[3])
        let detections = prediction.withUnsafeBufferPointer { p in
            nonMaxSuppression(p.baseAddress!, classes: model.classCount, anchors: prediction.shape[2], options: options)
        }
        return detections.map { $0.scaled(from: inputW, inputH, to: image.width, image.height) }
    }
}
