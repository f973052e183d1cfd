// Detect objects with a YOLOv8 checkpoint from Swift: load once, detect many.
//
//     swift run detect-only yolov8n.pt photo1.jpg photo2.png
import Foundation
import Imaging
import YOLO

let arguments = CommandLine.arguments.dropFirst()
guard arguments.count >= 2, let modelPath = arguments.first else {
    print("usage: detect-only MODEL.pt IMAGE [IMAGE ...]")
    exit(1)
}
do {
    let detector = try Detector(path: modelPath)  // parses the checkpoint and folds BatchNorm once
    let options = NMSOptions(confidence: 0.25, iou: 0.45)  // Ultralytics auto_annotate's defaults
    for path in arguments.dropFirst() {
        let image = try ImageDecoder.decode(path: path)  // same pixels as cv2.imread
        for d in detector.detect(image, imgsz: 640, options: options) {
            let name = detector.names[d.classId] ?? "\(d.classId)"
            print(
                String(
                    format: "%@  %@ %.3f  [%.1f, %.1f, %.1f, %.1f]", path, name, d.confidence, d.x1, d.y1, d.x2, d.y2))
        }
    }
} catch {
    print("error: \(error.localizedDescription)")
    exit(1)
}
