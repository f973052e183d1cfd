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
                format=json prints, per image, each box's class id, class name, confidence and xyxy pixel corners. \
                format=txt prints YOLO box labels (class x_center y_center width height, normalised) for an image; for \
                a folder it writes one label file per image, mirroring the folder, into output_dir (default: \
                <source>_detect_labels; new or empty) — a box dataset that 'boxes=' reads. Exit code 2 if some \
                images could not be read.
                """)

        @Option(help: "A YOLOv8 detection checkpoint (yolov8n.pt … yolov8x.pt).")
        var model: String

        @Option(help: "An image file or a folder of images (searched recursively).")
        var source: String

        @Option(help: "json or txt.")
        var format: OutputFormat = .json

        @Option(
            name: .customLong("output-dir"),
            help: "format=txt with a folder: where the label files go (default: <source>_detect_labels).")
        var outputDir: String?

        @OptionGroup var detection: DetectionOptions
        @OptionGroup var compute: ComputeOptions

        enum OutputFormat: String, ExpressibleByArgument, CaseIterable { case json, txt }

        func run() throws {
            compute.apply()
            let detector = try Detector(path: try resolveModel(model))
            let options = try detection.nms(names: detector.names)
            let files = try imageFiles(under: source)
            let root = URL(fileURLWithPath: source).standardizedFileURL.path
            var isFolder: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: root, isDirectory: &isFolder)
            // A folder's box labels go to files of their own, in a folder that holds nothing else.
            let labels = format == .txt && isFolder.boolValue ? try labelFolder(for: root) : nil
            var written: [String: String] = [:]
            var failed = 0
            var printed = 0
            // A folder's results are printed as they come, one element of a JSON array each: nothing accumulates.
            func printRecord(_ record: [String: Any]) throws {
                let data = try JSONSerialization.data(
                    withJSONObject: record, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
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
                        let lines = detections.map { yoloLine($0, image) + "\n" }.joined()
                        guard let labels else {
                            print(lines, terminator: "")
                            continue
                        }
                        let relative = String(
                            URL(fileURLWithPath: file).standardizedFileURL.path.dropFirst(root.count + 1))
                        let label = (relative as NSString).deletingPathExtension + ".txt"
                        if let other = written[label] {
                            throw ValidationError("\(file) and \(other) would write the same label file \(label)")
                        }
                        written[label] = file
                        try LabelWriter.writeAtomically(lines, to: label, in: labels)
                    }
                } catch {
                    failed += 1
                    FileHandle.standardError.write(Data("error: \(AnnotateError.sentence(for: error))\n".utf8))
                }
            }
            if format == .json { print(printed == 0 ? "[]" : "\n]") }
            if let labels {
                FileHandle.standardError.write(Data("wrote \(written.count) label files to \(labels)\n".utf8))
            }
            if failed > 0 { throw ExitCode(2) }
        }

        /// `output_dir` (default `<source>_detect_labels`), made, after the checks a job's output folder passes.
        func labelFolder(for source: String) throws -> String {
            let folder = URL(fileURLWithPath: outputDir ?? source + "_detect_labels").standardizedFileURL.path
            try AutoAnnotator.checkFolders(data: source, output: folder, boxes: nil)
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            return folder
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
