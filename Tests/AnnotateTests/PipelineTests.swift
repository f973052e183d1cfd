import Annotate
import Foundation
import Geometry
import Imaging
import XCTest

/// The auto-annotation job on the tiny fixture models: parity with Ultralytics' auto_annotate, bad input,
/// resume, changed settings, locking, and crash safety under kill -9.
final class PipelineTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../Fixtures").standardized
    static let detector = fixtures.appendingPathComponent("yolo/tiny_yolov8_boost.pt").path
    static let segmenter = fixtures.appendingPathComponent("sam/tiny_sam_iou.pt").path

    var work: URL!

    override func setUpWithError() throws {
        work = FileManager.default.temporaryDirectory.appendingPathComponent("autoannotate-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: work) }

    func settings(data: URL, output: URL? = nil) throws -> JobSettings {
        JobSettings(data: data.path, output: (output ?? work.appendingPathComponent("labels")).path,
                    detector: try .identify(path: Self.detector), segmenter: try .identify(path: Self.segmenter))
    }

    func copy(_ names: [String], from folder: String, to data: URL) throws {
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        for name in names {
            try FileManager.default.copyItem(at: Self.fixtures.appendingPathComponent("\(folder)/\(name)"), to: data.appendingPathComponent((name as NSString).lastPathComponent))
        }
    }

    func files(_ folder: URL) -> [String: Data] {
        var out: [String: Data] = [:]
        for case let relative as String in FileManager.default.enumerator(atPath: folder.path)! where relative.hasSuffix(".txt") {
            out[relative] = FileManager.default.contents(atPath: folder.appendingPathComponent(relative).path)
        }
        return out
    }

    // MARK: - Parity

    /// The same label files as Ultralytics' auto_annotate (empty=skip, as it writes none for empty images), the
    /// same lines with the same classes in order, and every object's polygon covering the same pixels (IoU ≥ 0.98).
    func testLabelsMatchUltralyticsAutoAnnotate() throws {
        let data = work.appendingPathComponent("images")
        try FileManager.default.copyItem(at: Self.fixtures.appendingPathComponent("annotate/images"), to: data)
        var s = try settings(data: data)
        s.empty = .skip
        let summary = try AutoAnnotator(settings: s).run()
        XCTAssertEqual(summary.failed, 0)
        let ours = files(work.appendingPathComponent("labels"))
        let reference = files(Self.fixtures.appendingPathComponent("annotate/ultralytics"))
        XCTAssertEqual(Set(ours.keys), Set(reference.keys))
        var objects = 0
        for (name, want) in reference {
            let image = try ImageDecoder.decode(path: data.appendingPathComponent((name as NSString).deletingPathExtension + (name == "small.txt" ? ".png" : ".jpg")).path)
            let a = String(decoding: ours[name] ?? Data(), as: UTF8.self).split(separator: "\n"), b = String(decoding: want, as: UTF8.self).split(separator: "\n")
            XCTAssertEqual(a.count, b.count, name)
            for (lineA, lineB) in zip(a, b) {
                XCTAssertEqual(lineA.split(separator: " ").first, lineB.split(separator: " ").first, "\(name): class")
                let iou = polygonIoU(String(lineA), String(lineB), width: image.width, height: image.height)
                XCTAssertGreaterThanOrEqual(iou, 0.98, "\(name): polygon mask IoU")
                objects += 1
            }
        }
        XCTAssertEqual(objects, 15)
    }

    /// Rasterises two label lines' polygons (even-odd fill at pixel centres) and returns their IoU.
    func polygonIoU(_ a: String, _ b: String, width: Int, height: Int) -> Double {
        func raster(_ line: String) -> [Bool] {
            let values = line.split(separator: " ").dropFirst().compactMap { Double($0) }
            let points = stride(from: 0, to: values.count - 1, by: 2).map { (values[$0] * Double(width), values[$0 + 1] * Double(height)) }
            var mask = [Bool](repeating: false, count: width * height)
            for y in 0..<height {
                let cy = Double(y) + 0.5
                var crossings: [Double] = []
                for i in 0..<points.count {
                    let (p, q) = (points[i], points[(i + 1) % points.count])
                    if (p.1 <= cy) != (q.1 <= cy) { crossings.append(p.0 + (cy - p.1) / (q.1 - p.1) * (q.0 - p.0)) }
                }
                crossings.sort()
                for k in stride(from: 0, to: crossings.count - 1, by: 2) {
                    for x in 0..<width where Double(x) + 0.5 >= crossings[k] && Double(x) + 0.5 < crossings[k + 1] { mask[y * width + x] = true }
                }
            }
            return mask
        }
        let (ma, mb) = (raster(a), raster(b))
        let inter = zip(ma, mb).filter { $0 && $1 }.count, union = zip(ma, mb).filter { $0 || $1 }.count
        return union == 0 ? 1 : Double(inter) / Double(union)
    }

    // MARK: - Bad input

    func testBadImagesFailAloneAndGoodOnesAreLabelled() throws {
        let data = work.appendingPathComponent("images")
        try copy(["jpeg-cmyk.jpg", "png-rgb16.png", "jpeg-gray.jpg", "png-rgba.png", "exif-6.jpg", "truncated.jpg", "empty.jpg",
                  "text.jpg", "random-after-signature.jpg", "bad-crc.png", "bomb.png"], from: "imaging/inputs", to: data)
        try copy(["portrait.jpg"], from: "yolo", to: data)
        try "not an image".write(to: data.appendingPathComponent("notes.md"), atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(at: data.appendingPathComponent("folder.jpg"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: data.appendingPathComponent("loop").path, withDestinationPath: data.path)
        try ImageEncoder.png(Image(width: 9, height: 40, fill: (50, 60, 70))).write(to: data.appendingPathComponent("narrow.png"))
        let annotator = try AutoAnnotator(settings: try settings(data: data))
        let summary = try annotator.run()
        XCTAssertEqual(summary.ignored, 1, "notes.md")
        XCTAssertEqual(summary.failed, 7)
        XCTAssertEqual(summary.done + summary.empty, 6, "CMYK, 16-bit, grey, RGBA, EXIF-rotated and the photo are labelled")
        let status = try annotator.status()
        XCTAssertEqual(status.counts["failed"], 7)
        let reasons = Dictionary(uniqueKeysWithValues: status.lastErrors.map { ($0["image"]!, $0["error"]!) })
        XCTAssertTrue(reasons["truncated.jpg"]?.contains("truncated") ?? false, "\(reasons)")
        XCTAssertTrue(reasons["bomb.png"]?.contains("too large") ?? false)
        XCTAssertTrue(reasons["narrow.png"]?.contains("10 pixels") ?? false)
        XCTAssertTrue(reasons["text.jpg"]?.contains("not an image") ?? false)
        XCTAssertEqual(Set(files(work.appendingPathComponent("labels")).keys).count, 6, "a label for every readable image, none for failed ones")
        XCTAssertTrue(FileManager.default.fileExists(atPath: work.appendingPathComponent("labels/data.yaml").path))
    }

    func testSameStemImagesAreReportedNotOverwritten() throws {
        let data = work.appendingPathComponent("images")
        try copy(["square.jpg"], from: "yolo", to: data)
        try FileManager.default.copyItem(at: data.appendingPathComponent("square.jpg"), to: data.appendingPathComponent("square.png"))
        let summary = try AutoAnnotator(settings: try settings(data: data)).run()
        XCTAssertEqual(summary.failed, 1)
        XCTAssertEqual(summary.done + summary.empty, 1)
    }

    // MARK: - Resume

    func testResumeRedoesNothingPicksUpNewImagesAndNotesRemovedOnes() throws {
        let data = work.appendingPathComponent("images")
        try copy(["small.png", "square.jpg"], from: "yolo", to: data)
        let first = try AutoAnnotator(settings: try settings(data: data)).run()
        XCTAssertEqual(first.done + first.empty, 2)
        let labels = files(work.appendingPathComponent("labels"))
        try copy(["portrait.jpg"], from: "yolo", to: data)
        try FileManager.default.removeItem(at: data.appendingPathComponent("small.png"))
        let second = try AutoAnnotator(settings: try settings(data: data)).run()
        XCTAssertEqual(second.added, 1)
        XCTAssertEqual(second.removed, 1)
        XCTAssertEqual(second.done + second.empty, 1, "only the new image")
        XCTAssertEqual(files(work.appendingPathComponent("labels"))["square.txt"], labels["square.txt"])
        let third = try AutoAnnotator(settings: try settings(data: data)).run()
        XCTAssertEqual(third.done + third.empty + third.failed, 0)
    }

    func testChangedSettingsOrModelsAreRefusedByName() throws {
        let data = work.appendingPathComponent("images")
        try copy(["small.png"], from: "yolo", to: data)
        _ = try AutoAnnotator(settings: try settings(data: data)).run()
        var changed = try settings(data: data)
        changed.confidence = 0.3
        XCTAssertThrowsError(try AutoAnnotator(settings: changed)) { error in
            XCTAssertTrue(error.localizedDescription.contains("conf: the job has 0.25, now 0.3"), error.localizedDescription)
        }
        var otherModel = try settings(data: data)
        otherModel.segmenter = try .identify(path: Self.fixtures.appendingPathComponent("checkpoints/tiny_sam.pt").path)
        XCTAssertThrowsError(try AutoAnnotator(settings: otherModel)) { error in
            XCTAssertTrue(error.localizedDescription.contains("sam_model"), error.localizedDescription)
        }
        let elsewhere = work.appendingPathComponent("other")
        try copy(["small.png"], from: "yolo", to: elsewhere)
        XCTAssertThrowsError(try AutoAnnotator(settings: try settings(data: elsewhere, output: work.appendingPathComponent("labels")))) { error in
            XCTAssertTrue(error.localizedDescription.contains("belongs to the job labelling"), error.localizedDescription)
        }
    }

    func testASecondRunnerOfTheSameJobIsRefused() throws {
        let data = work.appendingPathComponent("images")
        try copy(["small.png"], from: "yolo", to: data)
        let first = try AutoAnnotator(settings: try settings(data: data))
        XCTAssertThrowsError(try AutoAnnotator(settings: try settings(data: data))) { error in
            XCTAssertTrue(error.localizedDescription.contains("being run by another process"), error.localizedDescription)
        }
        withExtendedLifetime(first) {}
    }
}
