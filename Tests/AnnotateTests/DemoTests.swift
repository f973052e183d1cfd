import Annotate
import Foundation
import Imaging
import XCTest

/// The shipped demo models (Examples/Demo, made by make_demo.py) label the first 10 held-out scenes
/// (Tests/Fixtures/demo), and the labels are checked against the scenes' true outlines.
final class DemoTests: XCTestCase {
    static let demo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Examples/Demo").standardized
    static let scenes = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../Fixtures/demo").standardized

    /// Recall ≥ 0.9 (a true object is found when a written polygon of its class overlaps it with mask IoU ≥ 0.5,
    /// matched one to one) and mean mask IoU of the found objects ≥ 0.85: the bounds of the README's claim.
    func testDemoLabelsMatchGroundTruth() throws {
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("autoannotate-demo-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: work) }
        let data = work.appendingPathComponent("images")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: Self.scenes.appendingPathComponent("images"), to: data)
        let stems = try FileManager.default.contentsOfDirectory(atPath: data.path).map { ($0 as NSString).deletingPathExtension }.sorted()
        XCTAssertEqual(stems.count, 10)
        var settings = JobSettings(data: data.path, output: work.appendingPathComponent("labels").path,
                                   detector: try .identify(path: Self.demo.appendingPathComponent("shapes_yolov8.pt").path),
                                   segmenter: try .identify(path: Self.demo.appendingPathComponent("shapes_sam.pt").path))
        settings.imageSize = 480
        let summary = try AutoAnnotator(settings: settings).run()
        XCTAssertEqual(summary.failed, 0)

        var ious: [Double] = []
        var truths = 0, extra = 0
        for stem in stems {
            let image = try ImageDecoder.decode(path: data.appendingPathComponent("\(stem).jpg").path)
            let size = (width: image.width, height: image.height)
            let truth = try segments(Self.scenes.appendingPathComponent("ground_truth/\(stem).txt"))
            let found = try segments(work.appendingPathComponent("labels/\(stem).txt"))
            let (matched, unmatched) = match(truth, found, width: size.width, height: size.height)
            ious += matched
            extra += unmatched
            truths += truth.count
        }
        XCTAssertGreaterThan(truths, 30)
        let recall = Double(ious.count) / Double(truths), meanIoU = ious.reduce(0, +) / Double(max(ious.count, 1))
        print("demo: \(ious.count) of \(truths) true objects found (\(extra) extra), mean mask IoU \(meanIoU), min \(ious.min() ?? 0)")
        XCTAssertGreaterThanOrEqual(recall, 0.9, "recall (\(ious.count) of \(truths) true objects found, \(extra) extra)")
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
    func match(_ truth: [(Int, [(Double, Double)])], _ found: [(Int, [(Double, Double)])], width: Int, height: Int) -> ([Double], Int) {
        let a = truth.map { ($0.0, fill($0.1, width: width, height: height)) }, b = found.map { ($0.0, fill($0.1, width: width, height: height)) }
        var pairs: [(Double, Int, Int)] = []
        for (i, x) in a.enumerated() {
            for (j, y) in b.enumerated() where x.0 == y.0 {
                let inter = zip(x.1, y.1).filter { $0 && $1 }.count, union = zip(x.1, y.1).filter { $0 || $1 }.count
                pairs.append((Double(inter) / Double(max(union, 1)), i, j))
            }
        }
        var usedA = Set<Int>(), usedB = Set<Int>(), ious: [Double] = []
        for (iou, i, j) in pairs.sorted(by: { $0.0 > $1.0 }) where iou >= 0.5 && !usedA.contains(i) && !usedB.contains(j) {
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
                let from = max(0, Int(crossings[pair].rounded())), to = min(width - 1, Int(crossings[pair + 1].rounded()))
                if from <= to { for x in from...to { mask[y * width + x] = true } }
            }
        }
        return mask
    }
}
