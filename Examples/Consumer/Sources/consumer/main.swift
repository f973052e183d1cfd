// One call into each library product, on the demo's models and images:
//
//     swift run consumer DETECTOR.pt SAM.pt IMAGES
import Annotate
import Checkpoint
import Foundation
import Geometry
import Imaging
import ModelCache
import SegmentAnything
import Tensor
import YOLO

let arguments = Array(CommandLine.arguments.dropFirst())
guard arguments.count == 3 else {
    print("usage: consumer DETECTOR.pt SAM.pt IMAGES")
    exit(1)
}
let (detectorPath, samPath, images) = (arguments[0], arguments[1], arguments[2])
do {
    Threading.count = 2
    var logits: [Float] = [1, 2, 3, 4]
    softmaxRows(&logits, rows: 1, 4, stride: 4)
    print("Tensor: softmax [1, 2, 3, 4] → \(logits.map { String(format: "%.3f", $0) })")

    let resolved = try ModelResolver().resolve(detectorPath)
    print("ModelCache: \(detectorPath) resolves to \(resolved)")

    guard case .yolo(let checkpoint) = try ModelFile.open(path: resolved) else {
        throw CocoaError(.fileReadCorruptFile)
    }
    print("Checkpoint: a detector of \(checkpoint.names.count) classes")

    let first = try FileManager.default.contentsOfDirectory(atPath: images).sorted().first { $0.hasSuffix(".jpg") }
    let image = try ImageDecoder.decode(path: (images as NSString).appendingPathComponent(first ?? ""))
    print("Imaging: \(first ?? "?") is \(image.width) × \(image.height)")

    let detector = try Detector(path: resolved)
    let boxes = detector.detect(image, imgsz: 480, options: NMSOptions(confidence: 0.25, iou: 0.45))
    print("YOLO: \(boxes.count) objects")

    let predictor = try SamPredictor(path: samPath)
    predictor.setImage(image)
    let prediction = try predictor.predict(boxes: boxes.map { SamBox(x1: $0.x1, y1: $0.y1, x2: $0.x2, y2: $0.y2) })
    print("SegmentAnything: \(prediction.masks.count) masks")

    let polygons = prediction.masks.map { maskSegments($0.pixels, width: image.width, height: image.height) }
    print("Geometry: \(polygons.map(\.count).reduce(0, +)) polygons")

    let output = NSTemporaryDirectory() + "consumer-\(UUID().uuidString)"
    var settings = JobSettings(
        data: images, output: output, detector: try .identify(path: resolved), segmenter: try .identify(path: samPath))
    settings.imageSize = 480  // the demo detector's training size
    let summary = try AutoAnnotator(settings: settings).run()
    try FileManager.default.removeItem(atPath: output)
    print("Annotate: \(summary.done) images labelled, \(summary.failed) failed")
    exit(boxes.isEmpty || summary.done == 0 || summary.failed > 0 ? 1 : 0)
} catch {
    print("error: \(error.localizedDescription)")
    exit(1)
}
