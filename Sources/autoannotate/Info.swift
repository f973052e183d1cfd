import ArgumentParser
import Checkpoint
import Foundation
import YOLO

extension AutoAnnotateCommand {
    /// `autoannotate info model=FILE`: what a model file is, and Ultralytics' `model.info()` summary for it.
    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Describe a model file: kind, variant, layers, parameters, GFLOPs (as Ultralytics' model.info())."
        )

        @Option(
            help:
                "A checkpoint: sam_b.pt, sam_vit_h_4b8939.pth, mobile_sam.pt, yolov8x.pt, a .safetensors state dict, …")
        var model: String

        @Option(
            help:
                "Input size for the GFLOPs count, from 32 to 8192 (default: 640 for YOLO, the image encoder's own 1024 for SAM)."
        )
        var imgsz: Int?

        func validate() throws { if let imgsz { try OptionRange.check("imgsz", imgsz, OptionRange.imageSize) } }

        func run() throws {
            print(try Self.describe(path: try resolveModel(model), imageSize: imgsz))
        }

        static func describe(path: String, imageSize: Int?) throws -> String {
            let name = (path as NSString).lastPathComponent
            switch try ModelFile.open(path: path) {
            case .yolo(let yolo):
                let network = try DetectionModel(yolo)
                let size = imageSize ?? 640
                // The file name alone: the checkpoint may record a path on the machine that trained it.
                let title = (((yolo.yamlFile ?? "yolov8") as NSString).lastPathComponent as NSString)
                    .deletingPathExtension.replacingOccurrences(of: "yolo", with: "YOLO")
                return """
                    \(name): Ultralytics YOLOv8 detection model, \(network.classCount) classes\(yolo.scale.map { ", scale \($0)" } ?? "")\
                    \(yolo.version.map { ", saved by ultralytics \($0)" } ?? "")
                    \(title) summary: \(grouped(yolo.model.leafModules.count)) layers, \(grouped(yolo.model.parameterCount)) parameters, \
                    \(grouped(yolo.model.gradientCount)) gradients, \(String(format: "%.1f", network.gflops(height: size, width: size))) GFLOPs \
                    (at \(size)×\(size))
                    """
            case .sam(let sam):
                let a = sam.architecture
                let encoder =
                    a.variant == .mobileSAM
                    ? "TinyViT image encoder"
                    : "ViT image encoder \(a.encoderWidth) wide, \(a.encoderDepth) blocks, \(a.encoderHeads) heads"
                        + (a.globalAttentionBlocks.isEmpty
                            ? ", windowed attention only"
                            : ", global attention in blocks \(a.globalAttentionBlocks.map(String.init).joined(separator: ", "))")
                let flops =
                    a.variant == .mobileSAM
                    ? ""
                    : String(
                        format: ", %.1f GFLOPs (image encoder at %d×%d)", a.encoderGFLOPs, a.imageSize, a.imageSize)
                return """
                    \(name): Segment Anything \(a.variant.rawValue), \(encoder); prompt width \(a.promptWidth)
                    SAM summary: \(grouped(a.ultralyticsLayerCount)) layers, \(grouped(sam.parameterCount)) parameters, \
                    \(grouped(sam.parameterCount)) gradients\(flops)
                    """
            }
        }

        static func grouped(_ value: Int) -> String {
            let digits = String(value)
            return String(
                digits.reversed().enumerated().map {
                    $0.offset > 0 && $0.offset % 3 == 0 ? ",\($0.element)" : "\($0.element)"
                }
                .joined().reversed())
        }
    }
}
