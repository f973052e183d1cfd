import Annotate
import ArgumentParser
import Foundation

extension AutoAnnotateCommand {
    /// `autoannotate export output_dir=JOB format=yolo|coco|labelme dataset=DIR`: a dataset to train on or correct.
    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a dataset of a job's labels: Ultralytics' YOLO layout with a val split, COCO, or LabelMe.",
            discussion: """
                Reads the job's store, not its text files, and writes a new folder: format=yolo gives \
                images/{train,val}, labels/{train,val} and data.yaml ('yolo segment train data=DIR/data.yaml' trains \
                on it); format=coco gives images/{train,val} and annotations/instances_{train,val}.json (polygons, or \
                compressed RLE with rle=True; areas and boxes as pycocotools computes them); format=labelme gives each \
                image with a LabelMe JSON file beside it, to open in LabelMe or X-AnyLabeling. The split is decided by \
                each image's path (an image keeps its split when others are added). Images without objects are kept \
                as background images; images not finished yet (pending or failed) are left out and counted.
                """)

        @Option(name: .customLong("output-dir"), help: "The job's output folder.")
        var outputDir: String

        @Option(help: "yolo, coco or labelme.")
        var format: DatasetExport.Format = .yolo

        @Option(help: "The dataset folder to make: new or empty (default: <output_dir>_<format>).")
        var dataset: String?

        @Option(help: "The share of images in the validation split, from 0 to 0.9 (0: train only).")
        var val: Double = 0.1

        @Option(help: "symlink (default), hardlink or copy: how the dataset holds the images.")
        var link: DatasetExport.Link = .symlink

        @Flag(help: "COCO masks as compressed RLE instead of polygons.")
        var rle = false

        @Option(name: .customLong("min-conf"), help: "Leave out objects whose detector confidence is below this.")
        var minConf: Float = 0

        @Option(
            name: .customLong("min-sam-score"), help: "Leave out objects whose SAM predicted IoU is below this.")
        var minSamScore: Float = 0

        func validate() throws {
            guard DatasetExport.validationShares.contains(val) else {
                throw ValidationError("val=\(val) is out of range: val must be a number from 0 to 0.9")
            }
            try OptionRange.check("min_conf", minConf, 0...1)
            try OptionRange.check("min_sam_score", minSamScore, 0...1)
            if rle && format != .coco { throw ValidationError("rle=True is for format=coco") }
        }

        func run() throws {
            let job = URL(fileURLWithPath: outputDir).standardizedFileURL.path
            var export = DatasetExport(format: format, dataset: dataset ?? job + "_" + format.rawValue)
            export.validationShare = val
            export.link = link
            export.rle = rle
            export.minimumConfidence = minConf
            export.minimumSamScore = minSamScore
            let summary = try export.run(job: job)
            var lines = [
                "\(export.dataset): \(summary.train + summary.validation) images"
                    + (format == .labelme ? "" : " (train \(summary.train), val \(summary.validation))")
                    + ", \(summary.objects) objects"
            ]
            if summary.filtered > 0 {
                lines.append("  \(summary.filtered) objects below min_conf or min_sam_score left out")
            }
            if summary.unfinished > 0 {
                lines.append(
                    "  \(summary.unfinished) images of the job are not finished (pending or failed) and are not in it: 'autoannotate status output_dir=\(job)'"
                )
            }
            switch format {
            case .yolo: lines.append("  train on it: yolo segment train data=\(summary.files.first ?? "")")
            case .coco: lines += summary.files.map { "  \($0)" }
            case .labelme: lines.append("  open it in LabelMe or X-AnyLabeling to correct the polygons")
            }
            print(lines.joined(separator: "\n"))
        }
    }
}

extension DatasetExport.Format: ExpressibleByArgument {}
extension DatasetExport.Link: ExpressibleByArgument {}
