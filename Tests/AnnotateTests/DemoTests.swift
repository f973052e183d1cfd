import Annotate
import Foundation
import Imaging
import XCTest

/// The shipped demo models (Examples/Demo, made by make_demo.py) label scenes neither saw, and the labels are
/// checked against the scenes' true outlines: the first two shipped demo images, and the first 10 held-out scenes
/// (Tests/Fixtures/demo), a larger sample.
final class DemoTests: XCTestCase {
    static let demo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
        "../../Examples/Demo"
    ).standardized
    static let scenes = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
        "../Fixtures/demo"
    ).standardized

    func testTwoDemoImagesMatchTheirGroundTruth() throws {
        try checkLabels(of: Self.demo, stems: ["shapes_0", "shapes_1"], minimumObjects: 8)
    }

    func testTenHeldOutScenesMatchTheirGroundTruth() throws {
        try checkLabels(of: Self.scenes, stems: (0..<10).map { String(format: "%04d", $0) }, minimumObjects: 30)
    }

    /// Runs the job with both demo models on `folder`/images/STEM.jpg and checks recall ≥ 0.9 (a true object is
    /// found when a written polygon of its class overlaps it with mask IoU ≥ 0.5, matched one to one) and mean mask
    /// IoU of the found objects ≥ 0.85 against `folder`/ground_truth/STEM.txt: the bounds of the README's claim.
    func checkLabels(of folder: URL, stems: [String], minimumObjects: Int) throws {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent(
            "autoannotate-demo-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: work) }
        let data = work.appendingPathComponent("images")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        for stem in stems {
            try FileManager.default.copyItem(
                at: folder.appendingPathComponent("images/\(stem).jpg"), to: data.appendingPathComponent("\(stem).jpg"))
        }
        var settings = JobSettings(
            data: data.path, output: work.appendingPathComponent("labels").path,
            detector: try .identify(path: Self.demo.appendingPathComponent("shapes_yolov8.pt").path),
            segmenter: try .identify(path: Self.demo.appendingPathComponent("shapes_sam.pt").path))
        settings.imageSize = 480
        let summary = try AutoAnnotator(settings: settings).run()
        XCTAssertEqual(summary.failed, 0)

        var ious: [Double] = []
        var truths = 0
        var extra = 0
        for stem in stems {
            let image = try ImageDecoder.decode(path: data.appendingPathComponent("\(stem).jpg").path)
            let truth = try segments(folder.appendingPathComponent("ground_truth/\(stem).txt"))
            let found = try segments(work.appendingPathComponent("labels/\(stem).txt"))
            let (matched, unmatched) = match(truth, found, width: image.width, height: image.height)
            ious += matched
            extra += unmatched
            truths += truth.count
        }
        XCTAssertGreaterThanOrEqual(truths, minimumObjects)
        let recall = Double(ious.count) / Double(truths)
        let meanIoU = ious.reduce(0, +) / Double(max(ious.count, 1))
        print(
            "demo \(stems.first!)…: \(ious.count) of \(truths) true objects found (\(extra) extra), mean mask IoU \(meanIoU), min \(ious.min() ?? 0)"
        )
        XCTAssertGreaterThanOrEqual(
            recall, 0.9, "recall (\(ious.count) of \(truths) true objects found, \(extra) extra)")
        XCTAssertGreaterThanOrEqual(meanIoU, 0.85, "mean mask IoU of the found objects: \(ious)")
    }

    /// (class, normalised points) of each line of a YOLO segment label file.
    func segments(_ url: URL) throws -> [(Int, [(Double, Double)])] {
        try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map { line in
            let fields = line.split(separator: " ").map { Double($0)! }
            return (Int(fields[0]), stride(from: 1, to: fields.count - 1, by: 2).map { (fields[$0], fields[$0 + 1]) })
        }
    }

    /// One-to-one matches of the same class with IoU ≥ 0.5, best first (make_demo.py's `match`): the IoU of each
    /// matched true object and the number of found objects left over.
    func match(_ truth: [(Int, [(Double, Double)])], _ found: [(Int, [(Double, Double)])], width: Int, height: Int) -> (
        [Double], Int
    ) {
        let a = truth.map { ($0.0, fill($0.1, width: width, height: height)) }
        let b = found.map { ($0.0, fill($0.1, width: width, height: height)) }
        var pairs: [(Double, Int, Int)] = []
        for (i, x) in a.enumerated() {
            for (j, y) in b.enumerated() where x.0 == y.0 {
                let inter = zip(x.1, y.1).filter { $0 && $1 }.count
                let union = zip(x.1, y.1).filter { $0 || $1 }.count
                pairs.append((Double(inter) / Double(max(union, 1)), i, j))
            }
        }
        var usedA = Set<Int>()
        var usedB = Set<Int>()
        var ious: [Double] = []
        for (iou, i, j) in pairs.sorted(by: { $0.0 > $1.0 })
        where iou >= 0.5 && !usedA.contains(i) && !usedB.contains(j) {
            usedA.insert(i)
            usedB.insert(j)
            ious.append(iou)
        }
        return (ious, b.count - usedB.count)
    }

    /// Pixels of a polygon (normalised points), pixel centres at integer coordinates as OpenCV's fillPoly draws:
    /// per row, the spans between pairs of edge crossings (even-odd rule), their end pixels included.
    func fill(_ polygon: [(Double, Double)], width: Int, height: Int) -> [Bool] {
        let points = polygon.map { ($0.0 * Double(width), $0.1 * Double(height)) }
        var mask = [Bool](repeating: false, count: width * height)
        for y in 0..<height {
            let row = Double(y)
            var crossings: [Double] = []
            for (k, p) in points.enumerated() {
                let q = points[(k + 1) % points.count]
                if (p.1 <= row) != (q.1 <= row) { crossings.append(p.0 + (row - p.1) / (q.1 - p.1) * (q.0 - p.0)) }
            }
            crossings.sort()
            for pair in stride(from: 0, to: crossings.count - 1, by: 2) {
                let from = max(0, Int(crossings[pair].rounded()))
                let to = min(width - 1, Int(crossings[pair + 1].rounded()))
                if from <= to { for x in from...to { mask[y * width + x] = true } }
            }
        }
        return mask
    }
}
