import Annotate
import ArgumentParser
import Foundation
import Imaging
import YOLO

extension AutoAnnotateCommand {
    /// `autoannotate detect model=yolov8x.pt source=IMG|DIR`: YOLOv8 detections, as Ultralytics' predict gives them.
    struct Detect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Detect objects with a YOLOv8 model in an image or a folder of images.",
            discussion: """
                format=json prints, per image, each box's class id, class name, confidence and xyxy pixel corners.
                format=txt prints YOLO box labels (class x_center y_center width height, normalised), one block per
                image headed by '# <path>' when the source is a folder. Exit code 2 if some images could not be read.
                """)

        @Option(help: "A YOLOv8 detection checkpoint (yolov8n.pt … yolov8x.pt).")
        var model: String

        @Option(help: "An image file or a folder of images (searched recursively).")
        var source: String

        @Option(help: "json or txt.")
        var format: OutputFormat = .json

        @OptionGroup var detection: DetectionOptions
        @OptionGroup var compute: ComputeOptions

        enum OutputFormat: String, ExpressibleByArgument, CaseIterable { case json, txt }

        func run() throws {
            compute.apply()
            let detector = try Detector(path: try resolveModel(model))
            let options = try detection.nms(names: detector.names)
            let files = try imageFiles(under: source)
            var failed = 0
            var printed = 0
            // A folder's results are printed as they come, one element of a JSON array each: nothing accumulates.
            func printRecord(_ record: [String: Any]) throws {
                let data = try JSONSerialization.data(withJSONObject: record, options: [.prettyPrinted, .sortedKeys])
                print(printed == 0 ? "[" : ",", String(decoding: data, as: UTF8.self), separator: "\n", terminator: "")
                printed += 1
            }
            for file in files {
                do {
                    let image = try ImageDecoder.decode(path: file)
                    let detections = detector.detect(image, imgsz: detection.imgsz, options: options)
                    switch format {
                    case .json: try printRecord(json(file, image, detections, names: detector.names))
                    case .txt:
                        if files.count > 1 { print("# \(file)") }
                        for d in detections { print(yoloLine(d, image)) }
                    }
                } catch {
                    failed += 1
                    FileHandle.standardError.write(Data("error: \(AnnotateError.sentence(for: error))\n".utf8))
                }
            }
            if format == .json { print(printed == 0 ? "[]" : "\n]") }
            if failed > 0 { throw ExitCode(2) }
        }

        func json(_ file: String, _ image: Image, _ detections: [Detection], names: [Int: String]) -> [String: Any] {
            [
                "image": file, "width": image.width, "height": image.height,
                "detections": detections.map { d -> [String: Any] in
                    [
                        "class_id": d.classId, "name": names[d.classId] ?? String(d.classId),
                        "confidence": Double(d.confidence),
                        "xyxy": [d.x1, d.y1, d.x2, d.y2].map(Double.init),
                    ]
                },
            ]
        }

        func yoloLine(_ d: Detection, _ image: Image) -> String {
            let (w, h) = (Float(image.width), Float(image.height))
            let values = [(d.x1 + d.x2) / 2 / w, (d.y1 + d.y2) / 2 / h, (d.x2 - d.x1) / w, (d.y2 - d.y1) / h]
            return "\(d.classId) " + values.map { String(format: "%.6f", $0) }.joined(separator: " ")
        }
    }
}
