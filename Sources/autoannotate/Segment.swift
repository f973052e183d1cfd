import ArgumentParser
import Foundation
import Geometry
import Imaging
import SegmentAnything

extension AutoAnnotateCommand {
    /// `autoannotate segment model=sam_b.pt source=IMG bboxes=… | points=… labels=…`: Segment Anything on one image.
    struct Segment: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Segment objects in one image with Segment Anything, prompted by boxes and/or points.",
            discussion: """
                bboxes=x1,y1,x2,y2;x1,y1,x2,y2 gives one mask per box. points=x,y;x,y with labels=1,0 (1 foreground, \
                0 background; default all 1) prompt one object together, or every box when given with boxes. \
                format=json prints, per mask, its predicted IoU, box, polygon (Ultralytics' merged contour, pixels) \
                and COCO RLE; format=png writes the image with the masks drawn over it to output (default \
                <image>_sam.png). Without prompts there is nothing to do: segment-everything is not available yet.
                """)

        @Option(help: "A SAM checkpoint (sam_b.pt, sam_l.pt, sam_h.pt, sam_vit_*.pth).")
        var model: String

        @Option(help: "The image.")
        var source: String

        @Option(help: "Boxes in pixels: x1,y1,x2,y2[;x1,y1,x2,y2 …], at most 256.")
        var bboxes: String?

        @Option(help: "Points in pixels: x,y[;x,y …], at most 256.")
        var points: String?

        @Option(help: "Point labels: 1 foreground, 0 background, one per point (default: all 1).")
        var labels: String?

        @Flag(help: "Three masks per prompt instead of one.")
        var multimask = false

        @Option(help: "json or png.")
        var format: Format = .json

        @Option(help: "Where format=png writes the overlay (default: <image stem>_sam.png beside the current folder).")
        var output: String?

        @OptionGroup var precision: PrecisionOptions

        @OptionGroup var compute: ComputeOptions

        enum Format: String, ExpressibleByArgument, CaseIterable { case json, png }

        func validate() throws {
            guard bboxes != nil || points != nil else {
                throw ValidationError(
                    "give bboxes= and/or points=: segment-everything (no prompts) is not available yet")
            }
            if labels != nil && points == nil { throw ValidationError("labels= needs points=") }
            _ = try parseList(bboxes, arity: 4, name: "bboxes")
            _ = try parseList(points, arity: 2, name: "points")
        }

        func run() throws {
            compute.apply()
            let boxes = try parseList(bboxes, arity: 4, name: "bboxes").map {
                SamBox(x1: $0[0], y1: $0[1], x2: $0[2], y2: $0[3])
            }
            let coordinates = try parseList(points, arity: 2, name: "points")
            let pointLabels =
                try labels.map { text in
                    try text.split(separator: ",").map { item -> Int in
                        guard let label = Int(item.trimmingCharacters(in: .whitespaces)), label == 0 || label == 1
                        else {
                            throw ValidationError("labels: '\(item)' is neither 1 (foreground) nor 0 (background)")
                        }
                        return label
                    }
                } ?? Array(repeating: 1, count: coordinates.count)
            guard pointLabels.count == coordinates.count else {
                throw ValidationError("\(coordinates.count) points but \(pointLabels.count) labels")
            }
            let prompts = zip(coordinates, pointLabels).map { SamPoint(x: $0.0[0], y: $0.0[1], label: $0.1) }

            if precision.precision == .bf16 { cautionAboutBF16() }
            let predictor = try SamPredictor(path: try resolveModel(model), precision: precision.precision)
            let image = try ImageDecoder.decode(path: source)
            // Every mask lives at the image's size until it is written: a bounded number, and pixels in all.
            let masks = max(boxes.count, prompts.isEmpty ? 0 : 1) * (multimask ? 3 : 1)
            guard masks <= Self.maximumMasks, masks * image.width * image.height <= Self.maximumMaskPixels else {
                throw ValidationError(
                    "\(masks) masks of \(image.width) × \(image.height) pixels are more than segment makes at once "
                        + "(at most \(Self.maximumMasks), and \(Self.maximumMaskPixels >> 20) M pixels in all): "
                        + "give fewer prompts")
            }
            predictor.setImage(image)
            let prediction = try predictor.predict(
                points: prompts, boxes: boxes, multimask: multimask, lowResLogits: false)
            switch format {
            case .json: try printJSON(prediction, image)
            case .png: try writeOverlay(prediction, image)
            }
        }

        /// Prompts `segment` takes at once: each box's mask is held at the image's size until printed.
        static let maximumPrompts = 256
        static let maximumMasks = 64
        static let maximumMaskPixels = 1 << 30
        /// Coordinates are pixels; a prompt may reach outside the image, but not to float32's overflow.
        static let coordinateRange: ClosedRange<Float> = -1_000_000...1_000_000

        func parseList(_ text: String?, arity: Int, name: String) throws -> [[Float]] {
            guard let text else { return [] }
            let groups = text.split(separator: ";")
            guard groups.count <= Self.maximumPrompts else {
                throw ValidationError(
                    "\(name): \(groups.count) prompts; segment takes at most \(Self.maximumPrompts) at once (the job, with boxes=, takes any number)"
                )
            }
            return try groups.map { group in
                let values = group.split(separator: ",").compactMap { Float($0.trimmingCharacters(in: .whitespaces)) }
                guard values.count == arity, group.split(separator: ",").count == arity else {
                    throw ValidationError("\(name): '\(group)' should be \(arity) numbers separated by commas")
                }
                guard values.allSatisfy({ Self.coordinateRange.contains($0) }) else {
                    throw ValidationError(
                        "\(name): '\(group)' holds a coordinate that is not a number from -1000000 to 1000000 pixels")
                }
                if arity == 4, !(values[2] > values[0] && values[3] > values[1]) {
                    throw ValidationError(
                        "\(name): '\(group)' is not a box: x2 must be right of x1 and y2 below y1 (x1,y1,x2,y2 in pixels)"
                    )
                }
                return values
            }
        }

        func printJSON(_ prediction: SamPrediction, _ image: Image) throws {
            let records: [[String: Any]] = zip(prediction.masks, prediction.scores).map { mask, score in
                let polygon = maskSegments(mask.pixels, width: mask.width, height: mask.height).first ?? []
                let box = maskBox(mask.pixels, width: mask.width, height: mask.height)
                return [
                    // A network with NaN or infinite weights predicts scores JSON cannot hold: null says so.
                    "score": score.isFinite ? Double(score) : NSNull(), "area": mask.area,
                    "box": box.map { [$0.x1, $0.y1, $0.x2, $0.y2] } ?? [],
                    "polygon": polygon.map { [Int($0.x), Int($0.y)] },
                    "rle": [
                        "size": [mask.height, mask.width],
                        "counts": runLengthEncoding(mask.pixels, width: mask.width, height: mask.height),
                    ],
                ]
            }
            let document: [String: Any] = [
                "image": source, "width": image.width, "height": image.height, "masks": records,
            ]
            print(
                String(
                    decoding: try JSONSerialization.data(
                        withJSONObject: document, options: [.sortedKeys, .withoutEscapingSlashes]),
                    as: UTF8.self))
        }

        func writeOverlay(_ prediction: SamPrediction, _ image: Image) throws {
            var canvas = image
            for (i, mask) in prediction.masks.enumerated() {
                canvas.tint(mask: mask.pixels, color: Image.paletteColor(i))
                if let b = maskBox(mask.pixels, width: mask.width, height: mask.height) {
                    canvas.strokeBox(x1: b.x1, y1: b.y1, x2: b.x2, y2: b.y2, color: Image.paletteColor(i))
                }
            }
            let path =
                output ?? (((source as NSString).lastPathComponent as NSString).deletingPathExtension + "_sam.png")
            // Never over a file that exists (the source image itself, or anything of the user's); never through a link.
            var info = stat()
            guard lstat(path, &info) != 0 else {
                throw ValidationError(
                    "output=\(path) already exists; segment never replaces a file: remove it or give another output=")
            }
            try ImageEncoder.png(canvas).write(to: URL(fileURLWithPath: path), options: .withoutOverwriting)
            print(
                "wrote \(path): \(prediction.masks.count) masks, IoU scores \(prediction.scores.map { String(format: "%.3f", $0) }.joined(separator: ", "))"
            )
        }
    }
}
