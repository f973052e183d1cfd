import Annotate
import Foundation
import Geometry
import XCTest
import Yams

/// `autoannotate export` (issue #31): from the job's store, a dataset in Ultralytics' layout that finds every label,
/// COCO instances whose masks are pycocotools' masks of the polygons, LabelMe files beside their images. The
/// Python side (Ultralytics' dataset check and a training epoch, pycocotools, LabelMe's loader) is
/// Tests/Fixtures/check_export.py.
final class ExportTests: XCTestCase {
    var work: URL!

    override func setUpWithError() throws {
        work = FileManager.default.temporaryDirectory.appendingPathComponent("autoannotate-export-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: work) }

    /// A job over the detector fixtures, in nested folders (one of them named `images`, as Ultralytics' label
    /// lookup cares about), plus a blank image that has no objects.
    func job() throws -> (data: URL, output: URL) {
        let data = work.appendingPathComponent("photos")
        for (folder, name) in [
            ("", "portrait.jpg"), ("street", "landscape.jpg"), ("street/images", "square.jpg"), ("", "small.png"),
        ] {
            let target = data.appendingPathComponent(folder)
            try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
            try FileManager.default.copyItem(
                at: PipelineTests.fixtures.appendingPathComponent("yolo/\(name)"),
                to: target.appendingPathComponent(name))
        }
        let output = work.appendingPathComponent("labels")
        var settings = JobSettings(
            data: data.path, output: output.path, detector: try .identify(path: PipelineTests.detector),
            segmenter: try .identify(path: PipelineTests.segmenter))
        settings.samConfidence = 0
        let summary = try AutoAnnotator(settings: settings).run()
        XCTAssertEqual(summary.failed, 0)
        return (data, output)
    }

    func jobLabels(_ output: URL) throws -> [String: String] {
        var labels: [String: String] = [:]
        for case let relative as String in FileManager.default.enumerator(atPath: output.path)!
        where relative.hasSuffix(".txt") {
            labels[relative] = try String(contentsOf: output.appendingPathComponent(relative), encoding: .utf8)
        }
        return labels
    }

    /// images/{train,val} link every finished image, each label sits where Ultralytics' img2label_paths looks for
    /// it and equals the job's label file, data.yaml names the splits and classes; the split follows the paths.
    func testYOLOExportIsWhereUltralyticsLooks() throws {
        let (data, output) = try job()
        let dataset = work.appendingPathComponent("yolo").path
        var export = DatasetExport(format: .yolo, dataset: dataset)
        export.validationShare = 0.5
        let summary = try export.run(job: output.path)
        let labels = try jobLabels(output)
        XCTAssertEqual(summary.train + summary.validation, 4)
        XCTAssertGreaterThan(summary.validation, 0)
        XCTAssertGreaterThan(summary.train, 0)
        XCTAssertGreaterThan(summary.objects, 0)
        let paths = ["portrait.jpg", "small.png", "street/images/square.jpg", "street/landscape.jpg"]
        let split = DatasetExport.split(paths, validationShare: 0.5)
        for (path, validation) in zip(paths, split) {
            let image = "\(dataset)/images/\(validation ? "val" : "train")/\(path)"
            XCTAssertEqual(
                try FileManager.default.destinationOfSymbolicLink(atPath: image), data.appendingPathComponent(path).path
            )
            let label = DatasetExport.ultralyticsLabelPath(forImage: image)
            let expected = labels[(path as NSString).deletingPathExtension + ".txt"]
            XCTAssertEqual(try String(contentsOfFile: label, encoding: .utf8), expected, path)
        }
        // The last `/images/` of the path becomes `/labels/`, as Ultralytics has it.
        XCTAssertEqual(
            DatasetExport.ultralyticsLabelPath(forImage: "/d/images/train/street/images/square.jpg"),
            "/d/images/train/street/labels/square.txt")
        XCTAssertEqual(DatasetExport.ultralyticsLabelPath(forImage: "/d/images/val/a.b.jpg"), "/d/labels/val/a.b.txt")
        let yaml = try XCTUnwrap(
            try Yams.load(yaml: try String(contentsOfFile: dataset + "/data.yaml", encoding: .utf8)) as? [String: Any])
        XCTAssertEqual(yaml["path"] as? String, dataset)
        XCTAssertEqual(yaml["train"] as? String, "images/train")
        XCTAssertEqual(yaml["val"] as? String, "images/val")
        XCTAssertEqual((yaml["names"] as? [AnyHashable: Any])?.count, 3)
        XCTAssertEqual(summary.files, [dataset + "/data.yaml"])

        // val=0: train only, and data.yaml validates on it; hard links and copies hold the same bytes.
        for (link, name) in [(DatasetExport.Link.hardlink, "hard"), (.copy, "copy")] {
            var trainOnly = DatasetExport(format: .yolo, dataset: work.appendingPathComponent(name).path)
            (trainOnly.validationShare, trainOnly.link) = (0, link)
            XCTAssertEqual(try trainOnly.run(job: output.path).validation, 0)
            let image = work.appendingPathComponent("\(name)/images/train/street/landscape.jpg").path
            XCTAssertNil(try? FileManager.default.destinationOfSymbolicLink(atPath: image))
            XCTAssertEqual(
                FileManager.default.contents(atPath: image),
                FileManager.default.contents(atPath: data.appendingPathComponent("street/landscape.jpg").path))
            XCTAssertTrue(
                try String(contentsOfFile: work.appendingPathComponent("\(name)/data.yaml").path, encoding: .utf8)
                    .contains("val: images/train"))
        }
    }

    /// An image keeps its split when others are added; a share above 0 puts at least one image in each split.
    func testTheSplitIsStable() {
        let paths = (0..<2000).map { "folder\($0 % 7)/image\($0).jpg" }
        let split = DatasetExport.split(paths, validationShare: 0.1)
        let grown = DatasetExport.split(paths + (0..<500).map { "new/\($0).jpg" }, validationShare: 0.1)
        XCTAssertEqual(Array(grown.prefix(2000)), split)
        let share = Double(split.filter { $0 }.count) / 2000
        XCTAssertEqual(share, 0.1, accuracy: 0.02)
        XCTAssertEqual(DatasetExport.split(["a.jpg", "b.jpg"], validationShare: 0.01).filter { $0 }.count, 1)
        XCTAssertEqual(DatasetExport.split(["a.jpg", "b.jpg"], validationShare: 0.9).filter { $0 }.count, 1)
        XCTAssertEqual(DatasetExport.split(["a.jpg"], validationShare: 0.5).count, 1)
        XCTAssertEqual(DatasetExport.split(paths, validationShare: 0), Array(repeating: false, count: 2000))
    }

    /// COCO: categories are class ids + 1 with the detector's names; each annotation's area and box are those of
    /// its polygons' mask as pycocotools makes it, and rle=True holds the same mask; the filters drop objects.
    func testCOCOAnnotationsAreTheMasksOfThePolygons() throws {
        let (_, output) = try job()
        func load(_ name: String, configure: (inout DatasetExport) -> Void) throws -> [String: Any] {
            var export = DatasetExport(format: .coco, dataset: work.appendingPathComponent(name).path)
            export.validationShare = 0
            configure(&export)
            let summary = try export.run(job: output.path)
            XCTAssertEqual(
                summary.files, [work.appendingPathComponent("\(name)/annotations/instances_train.json").path])
            let data = try Data(contentsOf: URL(fileURLWithPath: summary.files[0]))
            return try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        }
        let polygons = try load("coco") { _ in }
        let rle = try load("coco-rle") { $0.rle = true }
        let categories = try XCTUnwrap(polygons["categories"] as? [[String: Any]])
        XCTAssertEqual(categories.map { $0["id"] as? Int }, [1, 2, 3])
        let images = try XCTUnwrap(polygons["images"] as? [[String: Any]])
        XCTAssertEqual(images.count, 4)
        let sizes = Dictionary(
            uniqueKeysWithValues: images.map { ($0["id"] as! Int, ($0["height"] as! Int, $0["width"] as! Int)) })
        let annotations = try XCTUnwrap(polygons["annotations"] as? [[String: Any]])
        let rleAnnotations = try XCTUnwrap(rle["annotations"] as? [[String: Any]])
        XCTAssertGreaterThan(annotations.count, 0)
        XCTAssertEqual(annotations.count, rleAnnotations.count)
        for (a, b) in zip(annotations, rleAnnotations) {
            let (height, width) = try XCTUnwrap(sizes[a["image_id"] as! Int])
            let parts = try XCTUnwrap(a["segmentation"] as? [[Double]])
            let mask = try XCTUnwrap(CocoRLE.union(parts.map { CocoRLE(polygon: $0, height: height, width: width) }))
            XCTAssertEqual(a["area"] as? Int, mask.area)
            XCTAssertGreaterThan(mask.area, 0)
            XCTAssertEqual(a["bbox"] as? [Double], mask.box)
            let encoded = try XCTUnwrap(b["segmentation"] as? [String: Any])
            XCTAssertEqual(encoded["counts"] as? String, mask.compressed)
            XCTAssertEqual(encoded["size"] as? [Int], [height, width])
            XCTAssertTrue(((a["category_id"] as? Int).map { (1...3).contains($0) }) ?? false)
        }
        // Filters: min_conf above every confidence leaves no object; min_sam_score 1 leaves only perfect masks.
        let none = try load("coco-none") { $0.minimumConfidence = 1 }
        XCTAssertEqual((none["annotations"] as? [Any])?.count, 0)
        XCTAssertEqual((none["images"] as? [Any])?.count, 4, "images without objects stay as background")
        let scores = annotations.compactMap { $0["sam_score"] as? Double }.sorted()
        let median = Float(scores[scores.count / 2])
        let some = try load("coco-some") { $0.minimumSamScore = median }
        XCTAssertEqual((some["annotations"] as? [Any])?.count, scores.filter { Float($0) >= median }.count)
    }

    /// LabelMe: a JSON file beside each linked image, one polygon shape per label line, named by class.
    func testLabelMeFilesSitBesideTheirImages() throws {
        let (_, output) = try job()
        let dataset = work.appendingPathComponent("labelme").path
        let summary = try DatasetExport(format: .labelme, dataset: dataset).run(job: output.path)
        XCTAssertEqual(summary.validation, 0)
        let labels = try jobLabels(output)
        for path in ["portrait.jpg", "small.png", "street/images/square.jpg", "street/landscape.jpg"] {
            let stem = (path as NSString).deletingPathExtension
            let data = try Data(contentsOf: URL(fileURLWithPath: "\(dataset)/\(stem).json"))
            let document = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            XCTAssertEqual(document["imagePath"] as? String, (path as NSString).lastPathComponent)
            XCTAssertTrue(FileManager.default.fileExists(atPath: "\(dataset)/\(path)"))
            let shapes = try XCTUnwrap(document["shapes"] as? [[String: Any]])
            XCTAssertEqual(shapes.count, labels[stem + ".txt"]?.split(separator: "\n").count ?? 0, path)
            for shape in shapes {
                XCTAssertEqual(shape["shape_type"] as? String, "polygon")
                XCTAssertGreaterThanOrEqual((shape["points"] as? [[Double]])?.count ?? 0, 3)
            }
        }
    }

    /// The dataset is a folder of its own: not inside the data or the job, not an existing non-empty folder; a
    /// refused or failed export leaves nothing behind.
    func testTheDatasetFolderIsOfItsOwn() throws {
        let (data, output) = try job()
        let occupied = work.appendingPathComponent("occupied")
        try FileManager.default.createDirectory(at: occupied, withIntermediateDirectories: true)
        try "mine".write(to: occupied.appendingPathComponent("notes.txt"), atomically: true, encoding: .utf8)
        let blocker = work.appendingPathComponent("file")
        try "x".write(to: blocker, atomically: true, encoding: .utf8)
        for (dataset, message) in [
            (data.appendingPathComponent("export").path, "lies inside the data folder"),
            (output.appendingPathComponent("export").path, "lies inside the job folder"),
            (work.path, "holds the data folder"),
            (occupied.path, "already exists and is not an empty folder"),
            (blocker.appendingPathComponent("export").path, "the dataset folder cannot be made"),
        ] {
            XCTAssertThrowsError(try DatasetExport(format: .yolo, dataset: dataset).run(job: output.path)) {
                XCTAssertTrue($0.localizedDescription.contains(message), $0.localizedDescription)
            }
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: occupied.path), ["notes.txt"])
        XCTAssertFalse(
            try FileManager.default.contentsOfDirectory(atPath: work.path).contains { $0.contains("aa-export") })
        XCTAssertThrowsError(
            try DatasetExport(format: .yolo, dataset: work.appendingPathComponent("x").path).run(
                job: work.appendingPathComponent("nothing").path))
        // An empty folder is taken.
        let empty = work.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        XCTAssertEqual(try DatasetExport(format: .yolo, dataset: empty.path).run(job: output.path).train > 0, true)
    }

    /// A box dataset's classes are named by its own data.yaml (found beside its images folder) or by names=, in
    /// the store and so in every export; a names file that cannot be read stops the job before it starts.
    func testBoxDatasetNamesComeFromItsYAML() throws {
        var s = try PipelineTests.boxDataset(in: work).settings
        let yaml = work.appendingPathComponent("dataset/data.yaml")
        try "path: .\ntrain: images\nval: images\nnames: [zero, one, two]\n".write(
            to: yaml, atomically: true, encoding: .utf8)
        XCTAssertEqual(DatasetNames.find(forData: s.data), yaml.path)
        s.names = yaml.path
        _ = try AutoAnnotator(settings: s).run()
        XCTAssertEqual(
            try JobStore(output: s.output).names(), [0: "zero", 1: "one", 2: "two", 3: "3", 4: "4", 5: "5"])
        XCTAssertEqual(
            try DatasetNames.parse(yaml: "names:\n  3: car\n  0: person\n", path: "d.yaml"), [0: "person", 3: "car"])
        for (text, reason) in [
            ("names: {a: b}", "'a' in names is not a class id"),
            ("names: {10000: x}", "class id 10000 is outside 0…9999"),
            ("nc: 3", "no 'names:'"),
            ("names: [[a]]", "the name of class 0 is not a plain value"),
            ("names: [", "not valid YAML"),
        ] {
            XCTAssertThrowsError(try DatasetNames.parse(yaml: text, path: "d.yaml")) {
                XCTAssertTrue($0.localizedDescription.hasPrefix("names=d.yaml: \(reason)"), $0.localizedDescription)
            }
        }
        var broken = try PipelineTests.boxDataset(in: work.appendingPathComponent("second")).settings
        broken.names = work.appendingPathComponent("missing.yaml").path
        XCTAssertThrowsError(try AutoAnnotator(settings: broken))
        XCTAssertFalse(FileManager.default.fileExists(atPath: broken.output))
    }
}
