import Annotate
import Foundation
import Geometry
import Imaging
import XCTest

/// The auto-annotation job on the tiny fixture models: parity with Ultralytics' auto_annotate, bad input,
/// resume, changed settings, locking, and crash safety under kill -9.
final class PipelineTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
        "../Fixtures"
    ).standardized
    static let detector = fixtures.appendingPathComponent("yolo/tiny_yolov8_boost.pt").path
    static let segmenter = fixtures.appendingPathComponent("sam/tiny_sam_iou.pt").path

    var work: URL!

    override func setUpWithError() throws {
        work = FileManager.default.temporaryDirectory.appendingPathComponent("autoannotate-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: work) }

    func settings(data: URL, output: URL? = nil) throws -> JobSettings {
        JobSettings(
            data: data.path, output: (output ?? work.appendingPathComponent("labels")).path,
            detector: try .identify(path: Self.detector), segmenter: try .identify(path: Self.segmenter))
    }

    func copy(_ names: [String], from folder: String, to data: URL) throws {
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        for name in names {
            try FileManager.default.copyItem(
                at: Self.fixtures.appendingPathComponent("\(folder)/\(name)"),
                to: data.appendingPathComponent((name as NSString).lastPathComponent))
        }
    }

    func files(_ folder: URL) -> [String: Data] {
        var out: [String: Data] = [:]
        for case let relative as String in FileManager.default.enumerator(atPath: folder.path)!
        where relative.hasSuffix(".txt") {
            out[relative] = FileManager.default.contents(atPath: folder.appendingPathComponent(relative).path)
        }
        return out
    }

    // MARK: - Parity

    /// The same label files as Ultralytics' auto_annotate (empty=skip, as it writes none for empty images), the
    /// same lines with the same classes in order, and every object's polygon the same.
    func testLabelsMatchUltralyticsAutoAnnotate() throws {
        let data = work.appendingPathComponent("images")
        try FileManager.default.copyItem(at: Self.fixtures.appendingPathComponent("annotate/images"), to: data)
        var s = try settings(data: data)
        s.empty = .skip
        let summary = try AutoAnnotator(settings: s).run()
        XCTAssertEqual(summary.failed, 0)
        let objects = try assertSameLabels(
            work.appendingPathComponent("labels"), Self.fixtures.appendingPathComponent("annotate/ultralytics"),
            images: data)
        XCTAssertEqual(objects, 15)
    }

    /// epsilon= simplifies every polygon (fewer points, the same objects) and min_area= drops small masks, counted;
    /// both are settings of the job, so a resume with other values is refused by name.
    func testEpsilonAndMinAreaCleanThePolygons() throws {
        let data = work.appendingPathComponent("images")
        try FileManager.default.copyItem(at: Self.fixtures.appendingPathComponent("annotate/images"), to: data)
        func points(_ folder: URL) -> (lines: Int, numbers: Int) {
            let text = files(folder).values.map { String(decoding: $0, as: UTF8.self) }.joined()
            let lines = text.split(separator: "\n")
            return (lines.count, lines.reduce(0) { $0 + $1.split(separator: " ").count - 1 })
        }
        _ = try AutoAnnotator(settings: try settings(data: data)).run()
        let plain = points(work.appendingPathComponent("labels"))
        var simplified = try settings(data: data, output: work.appendingPathComponent("simplified"))
        simplified.epsilon = 2
        let summary = try AutoAnnotator(settings: simplified).run()
        XCTAssertEqual(summary.small + summary.smallParts, 0)
        let fewer = points(work.appendingPathComponent("simplified"))
        XCTAssertEqual(fewer.lines, plain.lines)
        XCTAssertLessThan(fewer.numbers * 2, plain.numbers, "epsilon=2 keeps fewer than half the points")
        var changed = simplified
        changed.epsilon = 3
        XCTAssertThrowsError(try AutoAnnotator(settings: changed)) {
            XCTAssertTrue(
                $0.localizedDescription.contains("epsilon: the job has 2.0, now 3.0"), $0.localizedDescription)
        }

        var large = try settings(data: data, output: work.appendingPathComponent("large"))
        large.minArea = 3000
        let dropped = try AutoAnnotator(settings: large).run()
        XCTAssertGreaterThan(dropped.small, 0)
        XCTAssertEqual(points(work.appendingPathComponent("large")).lines, plain.lines - dropped.small)
        large.minArea = -1
        XCTAssertThrowsError(try large.validate())
    }

    /// Compares label folders: the same files, the same lines with the same classes in order, and every line's
    /// polygon the same points within 1e-3 px (Ultralytics' yolo_bbox2segment prints 6 significant digits, so
    /// exact text equality is not the test; a polygon rasteriser is not either: noise masks' staircase contours
    /// put thousands of edges exactly through pixel centres, where 1e-5 px decides). Returns the lines compared.
    func assertSameLabels(
        _ ours: URL, _ reference: URL, images: URL, file: StaticString = #filePath, line: UInt = #line
    ) throws -> Int {
        let (mine, want) = (files(ours), files(reference))
        XCTAssertEqual(Set(mine.keys), Set(want.keys), file: file, line: line)
        var objects = 0
        for (name, expected) in want {
            let stem = (name as NSString).deletingPathExtension
            let imageName = try FileManager.default.contentsOfDirectory(atPath: images.path).first {
                ($0 as NSString).deletingPathExtension == stem
            }!
            let image = try ImageDecoder.decode(path: images.appendingPathComponent(imageName).path)
            let a = String(decoding: mine[name] ?? Data(), as: UTF8.self).split(separator: "\n")
            let b = String(decoding: expected, as: UTF8.self).split(separator: "\n")
            XCTAssertEqual(a.count, b.count, name, file: file, line: line)
            for (lineA, lineB) in zip(a, b) {
                let (fieldsA, fieldsB) = (lineA.split(separator: " "), lineB.split(separator: " "))
                XCTAssertEqual(fieldsA.first, fieldsB.first, "\(name): class", file: file, line: line)
                XCTAssertEqual(fieldsA.count, fieldsB.count, "\(name): points", file: file, line: line)
                let worst =
                    zip(fieldsA.dropFirst(), fieldsB.dropFirst()).enumerated().map { i, pair in
                        abs(Double(pair.0)! - Double(pair.1)!) * Double(i % 2 == 0 ? image.width : image.height)
                    }.max() ?? 0
                XCTAssertLessThanOrEqual(worst, 1e-3, "\(name): polygon points (px)", file: file, line: line)
                objects += 1
            }
        }
        return objects
    }

    // MARK: - Box datasets

    /// A box dataset laid out as Ultralytics expects (`work/dataset/images`, `…/labels`) and the job that segments
    /// it into `work/segments`.
    static func boxDataset(in work: URL) throws -> (data: URL, settings: JobSettings) {
        let data = work.appendingPathComponent("dataset/images")
        try FileManager.default.createDirectory(at: data.deletingLastPathComponent(), withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("annotate/images"), to: data)
        try FileManager.default.copyItem(
            at: fixtures.appendingPathComponent("annotate/boxes"), to: work.appendingPathComponent("dataset/labels"))
        var s = JobSettings(
            data: data.path, output: work.appendingPathComponent("segments").path, detector: nil,
            segmenter: try .identify(path: segmenter))
        s.boxes = BoxLabels.ultralyticsLabelFolder(forData: data.path)
        return (data, s)
    }

    func boxDataset() throws -> (data: URL, settings: JobSettings) {
        let (data, s) = try Self.boxDataset(in: work)
        XCTAssertEqual(s.boxes, work.appendingPathComponent("dataset/labels").standardizedFileURL.path)
        return (data, s)
    }

    /// The same segment labels as Ultralytics' yolo_bbox2segment (an empty file for an image without boxes or
    /// without a label file); a second run changes nothing; editing one label file redoes that image alone, and a
    /// row that already is a polygon is copied as it is.
    func testBoxDatasetMatchesUltralyticsBbox2SegmentAndIsIdempotent() throws {
        let (data, s) = try boxDataset()
        let first = try AutoAnnotator(settings: s).run()
        XCTAssertEqual([first.done, first.empty, first.failed, first.outlines], [2, 2, 0, 0])
        let output = work.appendingPathComponent("segments")
        XCTAssertEqual(
            try assertSameLabels(output, Self.fixtures.appendingPathComponent("annotate/bbox2segment"), images: data), 5
        )
        // Box labels carry no names and the dataset has no data.yaml: the classes are named by their ids.
        XCTAssertEqual(try JobStore(output: output.path).names(), [0: "0", 1: "1", 2: "2", 3: "3", 4: "4", 5: "5"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: output.appendingPathComponent("data.yaml").path))

        let before = files(output)
        let again = try AutoAnnotator(settings: s).run()
        XCTAssertEqual([again.done, again.empty, again.skipped], [0, 0, 4])
        XCTAssertEqual(files(output), before)

        let polygon = "3 0.1 0.1 0.4 0.1 0.4 0.5"
        let square = work.appendingPathComponent("dataset/labels/square.txt")
        try "\(polygon)\n0 0.5 0.5 0.5 0.5\n\(polygon)\n".write(to: square, atomically: true, encoding: .utf8)
        let edited = try AutoAnnotator(settings: s).run()
        XCTAssertEqual([edited.done, edited.empty, edited.skipped], [1, 0, 3])
        let lines = String(decoding: files(output)["square.txt"]!, as: UTF8.self).split(separator: "\n")
        XCTAssertEqual(lines.count, 2, "the duplicate row is dropped")
        XCTAssertEqual(lines.first.map(String.init), polygon)
        XCTAssertEqual(lines.last?.split(separator: " ").first, "0")
        XCTAssertEqual(files(output).filter { $0.key != "square.txt" }, before.filter { $0.key != "square.txt" })
    }

    /// Every labelled object is kept: a box whose mask SAM rejects is written as its own outline.
    func testRejectedMasksKeepTheBoxOutline() throws {
        var (_, s) = try boxDataset()
        s.samConfidence = 0.9999
        let summary = try AutoAnnotator(settings: s).run()
        XCTAssertEqual(summary.outlines, 5)
        let lines = String(decoding: files(work.appendingPathComponent("segments"))["landscape.txt"]!, as: UTF8.self)
            .split(separator: "\n")
        // "5 0.4 0.55 0.5 0.6" as corners: x 0.15…0.65, y 0.25…0.85.
        let values = lines[0].split(separator: " ").map { Double($0)! }
        XCTAssertEqual(values.count, 9)
        for (got, want) in zip(values, [5, 0.15, 0.25, 0.65, 0.25, 0.65, 0.85, 0.15, 0.85]) {
            XCTAssertEqual(got, want, accuracy: 1e-5)
        }
    }

    /// A malformed box label fails its image alone, naming the file and the line.
    func testMalformedBoxLabelsFailTheirImage() throws {
        let (_, s) = try boxDataset()
        try "0 0.5 0.5 0.2 0.2\n1 0.5 0.5 1.5 0.2\n".write(
            to: work.appendingPathComponent("dataset/labels/portrait.txt"), atomically: true, encoding: .utf8)
        try "0 0.5 0.5 0.2\n".write(
            to: work.appendingPathComponent("dataset/labels/square.txt"), atomically: true, encoding: .utf8)
        let summary = try AutoAnnotator(settings: s).run()
        XCTAssertEqual([summary.done, summary.failed], [1, 2])
        let errors = try AutoAnnotator.status(output: s.output).lastErrors.map { $0["error"]! }.sorted()
        XCTAssertTrue(errors[0].hasSuffix("portrait.txt line 2: coordinates must be normalised to [0, 1]"), errors[0])
        XCTAssertTrue(errors[1].contains("square.txt line 1: 4 columns"), errors[1])
    }

    // MARK: - Bad input

    func testBadImagesFailAloneAndGoodOnesAreLabelled() throws {
        let data = work.appendingPathComponent("images")
        try copy(
            [
                "jpeg-cmyk.jpg", "png-rgb16.png", "jpeg-gray.jpg", "png-rgba.png", "exif-6.jpg", "truncated.jpg",
                "empty.jpg",
                "text.jpg", "random-after-signature.jpg", "bad-crc.png", "bomb.png",
            ], from: "imaging/inputs", to: data)
        try copy(["portrait.jpg"], from: "yolo", to: data)
        try "not an image".write(to: data.appendingPathComponent("notes.md"), atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(
            at: data.appendingPathComponent("folder.jpg"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(
            atPath: data.appendingPathComponent("loop").path, withDestinationPath: data.path)
        try ImageEncoder.png(Image(width: 9, height: 40, fill: (50, 60, 70))).write(
            to: data.appendingPathComponent("narrow.png"))
        let annotator = try AutoAnnotator(settings: try settings(data: data))
        let summary = try annotator.run()
        XCTAssertEqual(summary.ignored, 1, "notes.md")
        XCTAssertEqual(summary.failed, 7)
        XCTAssertEqual(
            summary.done + summary.empty, 6, "CMYK, 16-bit, grey, RGBA, EXIF-rotated and the photo are labelled")
        let status = try annotator.status()
        XCTAssertEqual(status.counts["failed"], 7)
        let reasons = Dictionary(uniqueKeysWithValues: status.lastErrors.map { ($0["image"]!, $0["error"]!) })
        XCTAssertTrue(reasons["truncated.jpg"]?.contains("truncated") ?? false, "\(reasons)")
        XCTAssertTrue(reasons["bomb.png"]?.contains("too large") ?? false)
        XCTAssertTrue(reasons["narrow.png"]?.contains("10 pixels") ?? false)
        XCTAssertTrue(reasons["text.jpg"]?.contains("not an image") ?? false)
        XCTAssertEqual(
            Set(files(work.appendingPathComponent("labels")).keys).count, 6,
            "a label for every readable image, none for failed ones")
        XCTAssertEqual(try JobStore(output: work.appendingPathComponent("labels").path).names().count, 3)
    }

    func testSameStemImagesAreReportedNotOverwritten() throws {
        let data = work.appendingPathComponent("images")
        try copy(["square.jpg"], from: "yolo", to: data)
        try FileManager.default.copyItem(
            at: data.appendingPathComponent("square.jpg"), to: data.appendingPathComponent("square.png"))
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
        XCTAssertNotNil(labels["small.txt"])
        XCTAssertNil(files(work.appendingPathComponent("labels"))["small.txt"], "the removed image's label is gone")
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
            XCTAssertTrue(
                error.localizedDescription.contains("conf: the job has 0.25, now 0.3"), error.localizedDescription)
        }
        var bf16 = try settings(data: data)
        bf16.precision = .bf16
        XCTAssertThrowsError(try AutoAnnotator(settings: bf16)) { error in
            XCTAssertTrue(
                error.localizedDescription.contains("precision: the job has fp32, now bf16"), error.localizedDescription
            )
        }
        var otherModel = try settings(data: data)
        otherModel.segmenter = try .identify(path: Self.fixtures.appendingPathComponent("checkpoints/tiny_sam.pt").path)
        XCTAssertThrowsError(try AutoAnnotator(settings: otherModel)) { error in
            XCTAssertTrue(error.localizedDescription.contains("sam_model"), error.localizedDescription)
        }
        let elsewhere = work.appendingPathComponent("other")
        try copy(["small.png"], from: "yolo", to: elsewhere)
        XCTAssertThrowsError(
            try AutoAnnotator(settings: try settings(data: elsewhere, output: work.appendingPathComponent("labels")))
        ) { error in
            XCTAssertTrue(
                error.localizedDescription.contains("belongs to the job labelling"), error.localizedDescription)
        }
    }

    func testASecondRunnerOfTheSameJobIsRefused() throws {
        let data = work.appendingPathComponent("images")
        try copy(["small.png"], from: "yolo", to: data)
        let first = try AutoAnnotator(settings: try settings(data: data))
        XCTAssertThrowsError(try AutoAnnotator(settings: try settings(data: data))) { error in
            XCTAssertTrue(
                error.localizedDescription.contains("being run by another process"), error.localizedDescription)
        }
        withExtendedLifetime(first) {}
    }
}
