import Annotate
import Foundation
import GRDB
import XCTest
import Yams

/// Issue #30: no input crashes, hangs, over-reads or exhausts the machine, and the job folder never loses or
/// touches the user's data. Every refusal is exit 1 or 2 with a sentence naming the file or the option.
final class HardeningTests: XCTestCase {
    var work: URL!
    var cli: HardeningTests { self }

    func run(_ arguments: [String]) throws -> (status: Int32, output: String, errors: String) {
        try runCLI(arguments)
    }

    override func setUpWithError() throws {
        work = FileManager.default.temporaryDirectory.appendingPathComponent(
            "autoannotate-hardening-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        // Folders made unreadable by a test are made readable again so that they can be removed.
        if let walker = FileManager.default.enumerator(atPath: work.path) {
            for case let relative as String in walker {
                chmod(work.appendingPathComponent(relative).path, 0o755)
            }
        }
        try? FileManager.default.removeItem(at: work)
    }

    func images(_ names: [String] = ["small.png"], in folder: String = "images") throws -> URL {
        let data = work.appendingPathComponent(folder)
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        for name in names {
            try FileManager.default.copyItem(
                at: PipelineTests.fixtures.appendingPathComponent("yolo/\(name)"), to: data.appendingPathComponent(name)
            )
        }
        return data
    }

    func settings(data: URL, output: URL) throws -> JobSettings {
        JobSettings(
            data: data.path, output: output.path, detector: try .identify(path: PipelineTests.detector),
            segmenter: try .identify(path: PipelineTests.segmenter))
    }

    /// A box dataset (`dataset/images`, `dataset/labels`) and the job that segments it into `segments`.
    func boxDataset() throws -> JobSettings { try PipelineTests.boxDataset(in: work).settings }

    // MARK: - Numbers on the command line

    /// Every numeric option has a range, checked before any work (no job folder appears), and the refusal names
    /// the option as it was typed: `imgsz`, not `--imgsz`. A negative number is the option's value, not an option.
    func testNumericOptionsOutsideTheirRangesAreRefusedByName() throws {
        try CrashTests.requireCLI()
        let data = try images()
        let output = work.appendingPathComponent("labels")
        let job = [
            "data=\(data.path)", "output_dir=\(output.path)", "det_model=\(PipelineTests.detector)",
            "sam_model=\(PipelineTests.segmenter)",
        ]
        let cases: [(String, String)] = [
            ("imgsz=100000", "imgsz=100000 is out of range: imgsz must be a whole number from 32 to 8192"),
            ("imgsz=9223372036854775807", "imgsz=9223372036854775807 is out of range"),
            ("imgsz=-640", "imgsz=-640 is out of range"),
            ("imgsz=abc", "'abc' is invalid for 'imgsz'"),
            ("conf=-0.1", "conf=-0.1 is out of range: conf must be a number from 0 to 1"),
            ("conf=nan", "conf=nan is out of range"),
            ("iou=1.5", "iou=1.5 is out of range"),
            ("sam_conf=5", "sam_conf=5.0 is out of range: sam_conf must be a number from 0 to 1"),
            ("sam_conf=nan", "sam_conf=nan is out of range"),
            ("sam_conf=-inf", "sam_conf=-inf is out of range"),
            ("max_det=0", "max_det=0 is out of range: max_det must be a whole number from 1 to 10000"),
            ("max_det=1000000", "max_det=1000000 is out of range"),
            ("threads=0", "threads=0 is out of range: threads must be a whole number from 1 to 1024"),
            ("threads=100000", "threads=100000 is out of range"),
        ]
        for (argument, message) in cases {
            let result = try cli.run(job + [argument])
            XCTAssertEqual(result.status, 1, argument)
            XCTAssertTrue(result.errors.contains(message), "\(argument): \(result.errors)")
            XCTAssertFalse(result.errors.contains("'--"), "\(argument): \(result.errors)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: output.path), "\(argument): no job may be created")
        }
        let image = data.appendingPathComponent("small.png").path
        for arguments in [
            ["info", "model=\(PipelineTests.detector)", "imgsz=9223372036854775807"],
            ["info", "model=\(PipelineTests.detector)", "imgsz=100000"],
            ["detect", "model=\(PipelineTests.detector)", "source=\(image)", "imgsz=9223372036854775807"],
            ["detect", "model=\(PipelineTests.detector)", "source=\(image)", "conf=-0.5"],
            ["resume", "output_dir=\(output.path)", "threads=-1"],
        ] {
            let result = try cli.run(arguments)
            XCTAssertEqual(result.status, 1, "\(arguments)")
            XCTAssertTrue(result.errors.contains("is out of range"), "\(arguments): \(result.errors)")
        }
        let sam = PipelineTests.segmenter
        for (arguments, message) in [
            (["bboxes=nan,nan,nan,nan"], "bboxes: 'nan,nan,nan,nan' holds a coordinate that is not a number"),
            (["bboxes=-1e30,0,1e30,5"], "holds a coordinate that is not a number from -1000000 to 1000000"),
            (["points=1e38,1e38"], "points: '1e38,1e38' holds a coordinate"),
            (["bboxes=" + Array(repeating: "1,1,5,5", count: 257).joined(separator: ";")], "segment takes at most 256"),
        ] {
            let result = try cli.run(["segment", "model=\(sam)", "source=\(image)"] + arguments)
            XCTAssertEqual(result.status, 1, "\(arguments)")
            XCTAssertTrue(result.errors.contains(message), "\(arguments): \(result.errors)")
        }
        // In range, the same spellings work (a value may itself hold '=').
        XCTAssertEqual(try cli.run(["info", "model=\(PipelineTests.detector)", "imgsz=8192"]).status, 0)
        let help = try cli.run(["annotate", "--help"]).output
        for range in ["from 0 to 1", "from 32 to 8192", "from 1 to 10000", "from 1 to 1024"] {
            XCTAssertTrue(help.contains(range), "--help states the range \(range): \(help)")
        }
    }

    /// The library checks the same ranges as the command line, before anything is made.
    func testTheLibraryRefusesSettingsOutOfRange() throws {
        let data = try images()
        let output = work.appendingPathComponent("labels")
        var cases: [(JobSettings, String)] = []
        for (change, message) in [
            ({ (s: inout JobSettings) in s.imageSize = 100_000 }, "imgsz=100000 is out of range"),
            ({ (s: inout JobSettings) in s.imageSize = Int.max }, "imgsz=9223372036854775807 is out of range"),
            ({ (s: inout JobSettings) in s.samConfidence = .nan }, "sam_conf=nan is out of range"),
            ({ (s: inout JobSettings) in s.confidence = -0.1 }, "conf=-0.1 is out of range"),
            ({ (s: inout JobSettings) in s.maxDetections = 0 }, "max_det=0 is out of range"),
            ({ (s: inout JobSettings) in s.classes = [999_999_999] }, "classes=999999999 is out of range"),
            ({ (s: inout JobSettings) in s.polygon = "spline" }, "polygon=spline is out of range"),
        ] as [((inout JobSettings) -> Void, String)] {
            var s = try settings(data: data, output: output)
            change(&s)
            cases.append((s, message))
        }
        for (s, message) in cases {
            XCTAssertThrowsError(try AutoAnnotator(settings: s)) {
                XCTAssertTrue($0.localizedDescription.contains(message), $0.localizedDescription)
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: output.path))
        }
    }

    // MARK: - Box labels

    /// A class id or a row count beyond the bounds fails that image alone, naming the file and the line; the job
    /// goes on, and data.yaml names only the classes that exist.
    func testBoxLabelsBeyondTheBoundsFailTheirImageAlone() throws {
        let s = try boxDataset()
        let labels = work.appendingPathComponent("dataset/labels")
        try "0 0.5 0.5 0.2 0.2\n999999999 0.5 0.5 0.2 0.2\n".write(
            to: labels.appendingPathComponent("portrait.txt"), atomically: true, encoding: .utf8)
        let rows = (0...BoxLabels.maximumRows).map { "1 \(Double($0) / 20_000 + 0.1) 0.5 0.01 0.01\n" }.joined()
        try rows.write(to: labels.appendingPathComponent("square.txt"), atomically: true, encoding: .utf8)
        // More boxes than SAM decodes in one call: every one becomes an object.
        let many = (0..<150).map { "\($0 % 7) \(0.2 + Double($0) / 500) 0.5 0.2 0.3\n" }.joined()
        try many.write(to: labels.appendingPathComponent("landscape.txt"), atomically: true, encoding: .utf8)
        let summary = try AutoAnnotator(settings: s).run()
        XCTAssertEqual(summary.failed, 2)
        XCTAssertEqual(summary.done + summary.empty, 2, "the other images are labelled")
        XCTAssertEqual(summary.objects, 150)
        let errors = try AutoAnnotator.status(output: s.output).lastErrors.map { $0["error"]! }.sorted()
        guard errors.count == 2 else { return XCTFail("\(errors)") }
        XCTAssertTrue(
            errors[0].hasSuffix(
                "portrait.txt line 2: class 999999999 is above the highest class id autoannotate takes, 9999"),
            errors[0])
        XCTAssertTrue(
            errors[1].hasSuffix(
                "square.txt line 10001: more than 10000 rows; autoannotate takes at most 10000 objects an image"),
            errors[1])
        XCTAssertEqual(try JobStore(output: s.output).names().count, 7, "ids 0 to 6, named by number")

        // Identical rows are one object: many duplicates are not many prompts.
        let duplicates = String(repeating: "1 0.5 0.5 0.2 0.2\n", count: 50_000)
        XCTAssertEqual(
            try BoxLabels.read(path: try write(duplicates, "dup.txt"), width: 100, height: 100).rows.count, 1)
        // A file above the byte bound, a folder and a pipe in the place of a label file are refused, not read.
        let large = try write(String(repeating: " ", count: BoxLabels.maximumBytes + 1), "large.txt")
        XCTAssertThrowsError(try BoxLabels.read(path: large, width: 100, height: 100)) {
            XCTAssertTrue($0.localizedDescription.contains("a label file is at most 16 MiB"), $0.localizedDescription)
        }
        let fifo = work.appendingPathComponent("fifo.txt").path
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        XCTAssertThrowsError(try BoxLabels.read(path: fifo, width: 100, height: 100)) {
            XCTAssertTrue($0.localizedDescription.contains("not a regular file"), $0.localizedDescription)
        }
    }

    /// Numbers in a label file are decimal, as Python's float reads them (Swift alone would take `0x1` or `0x1p-1`),
    /// and a box or polygon without area is refused by line rather than prompted.
    func testBoxLabelNumbersAreDecimalAndShapesHaveArea() throws {
        func parse(_ text: String) -> String? {
            do {
                _ = try BoxLabels.parse(Data(text.utf8), path: "l.txt", width: 100, height: 100)
                return nil
            } catch { return error.localizedDescription }
        }
        XCTAssertNil(parse("0 0.5 0.5 0.2 0.2\n1 5e-1 +0.5 2E-1 .2\n2 0.1 0.1 0.3 0.1 0.2 0.4\n"))
        for (text, reason) in [
            ("0x1 0.5 0.5 0.2 0.2", "class '0x1' is not a non-negative whole number"),
            ("0 0x0.8p0 0.5 0.2 0.2", "'0x0.8p0' is not a decimal number"),
            ("0 0.5 0.5 0.2 nan", "'nan' is not a decimal number"),
            ("0 0.5 0.5 0 0.2", "the box has no width or no height"),
            ("0 0.1 0.1 0.2 0.2 0.3 0.3", "the polygon has no area (its points lie on one line)"),
            ("0 0.1 0.1 0.1 0.1 0.1 0.1 0.1 0.1", "the polygon has no area (its points lie on one line)"),
        ] {
            XCTAssertEqual(parse(text), "l.txt line 1: \(reason)", text)
        }
    }

    func write(_ text: String, _ name: String) throws -> String {
        let path = work.appendingPathComponent(name).path
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        return path
    }

    // MARK: - data.yaml

    /// data.yaml is YAML written by an emitter: names and folders with newlines, colons, '#', quotes or YAML's
    /// own words read back as the same strings, and nothing in them can add or change a key.
    func testDataYAMLReadsBackAsWritten() throws {
        let names = [
            0: "person", 1: "a\npath: /etc\ntrain: /tmp", 2: "key: value", 3: "#1 not a comment", 4: "'single'",
            5: "\"double\"", 6: "true", 7: "1.5", 8: "", 9: " spaced ", 10: "null", 11: "- item", 12: "ünïcødé",
            13: "tab\there", 14: "{a: b}", 15: "*alias", 16: "&anchor", 17: "!tag", 18: "%", 19: "@",
        ]
        let folder = "/data/imgs #1\npath: x"
        let text = try LabelWriter.dataYAML(path: folder, train: "images/train #2", val: "images/val", names: names)
        let document = try XCTUnwrap(try Yams.load(yaml: text) as? [String: Any], text)
        XCTAssertEqual(Set(document.keys), ["path", "train", "val", "names"], text)
        XCTAssertEqual(document["path"] as? String, folder)
        XCTAssertEqual(document["train"] as? String, "images/train #2")
        func byId(_ value: Any?) -> [Int: String] {
            Dictionary(
                ((value as? [AnyHashable: Any]) ?? [:]).map {
                    (Int("\($0.key)") ?? -1, ($0.value as? String) ?? "\($0.value) (\(type(of: $0.value)))")
                }, uniquingKeysWith: { a, b in a + " and " + b })
        }
        XCTAssertEqual(byId(document["names"]), names, text)

        // Through a job and its export: a dataset folder named 'set #1'.
        let data = try images(in: "imgs #1")
        let output = work.appendingPathComponent("labels")
        _ = try AutoAnnotator(settings: try settings(data: data, output: output)).run()
        let dataset = work.appendingPathComponent("set #1").path
        _ = try DatasetExport(format: .yolo, dataset: dataset).run(job: output.path)
        let written = try Yams.load(yaml: try String(contentsOfFile: dataset + "/data.yaml", encoding: .utf8))
        XCTAssertEqual((written as? [String: Any])?["path"] as? String, dataset)
    }

    // MARK: - Recipes

    /// A YAML alias bomb of a few hundred bytes, a recipe above 64 KiB, a nested value, a folder, a pipe: each is
    /// refused at once, naming the recipe.
    func testHostileRecipesAreRefusedQuickly() throws {
        try CrashTests.requireCLI()
        let data = try images()
        // The billion laughs: ten levels of nine aliases each, 9^10 strings once constructed.
        func bomb(_ keys: [String]) -> String {
            var text = "\(keys[0]): &k0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
            for level in 1..<keys.count {
                text +=
                    "\(keys[level]): &k\(level) [" + Array(repeating: "*k\(level - 1)", count: 9).joined(separator: ",")
                    + "]\n"
            }
            return text
        }
        let known = [
            "classes", "conf", "iou", "imgsz", "max_det", "sam_conf", "empty", "polygon", "precision", "threads",
        ]
        XCTAssertLessThan(bomb(known).utf8.count, 1000)
        let fifo = work.appendingPathComponent("fifo.yaml").path
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        let cases: [(String, String)] = [
            (try write(bomb((0..<10).map { "k\($0)" }), "bomb.yaml"), "unknown key 'k0'"),
            (try write(bomb(known), "known-bomb.yaml"), "conf is a list of lists or maps"),
            (try write("classes:\n  person: 1\n", "nested.yaml"), "classes is a map"),
            (
                try write("conf: 0.25\n" + String(repeating: "#", count: 70_000), "large.yaml"),
                "at most 64 KiB: a recipe is a small YAML file"
            ),
            (try write("- conf\n", "list.yaml"), "a recipe is a YAML mapping"),
            (try write("conf: [\n", "broken.yaml"), "not valid YAML"),
            (work.path, "not a regular file"),
            (fifo, "not a regular file"),
            (work.appendingPathComponent("missing.yaml").path, "no such file"),
            (try write("conf: -0.1\n", "negative.yaml"), "conf=-0.1 is out of range"),
        ]
        for (recipe, message) in cases {
            let began = Date()
            let result = try cli.run(["pipeline=\(recipe)", "data=\(data.path)"])
            XCTAssertEqual(result.status, 1, recipe)
            XCTAssertTrue(result.errors.contains(message), "\(recipe): \(result.errors)")
            XCTAssertTrue(
                result.errors.contains("pipeline=\(recipe)") || message.contains("out of range"), result.errors)
            XCTAssertLessThan(Date().timeIntervalSince(began), 5, recipe)
        }
    }
}

// MARK: - The job folder

extension HardeningTests {
    /// A planted symbolic link in the job folder is never written through: the lock, the store, a label's folder.
    func testTheJobNeverWritesThroughAPlantedSymbolicLink() throws {
        let data = try images(["small.png", "square.jpg"])
        let victim = work.appendingPathComponent("victim.txt")
        try "precious\n".write(to: victim, atomically: true, encoding: .utf8)
        let output = work.appendingPathComponent("labels")
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(
            atPath: output.appendingPathComponent("autoannotate.lock").path, withDestinationPath: victim.path)
        XCTAssertThrowsError(try AutoAnnotator(settings: try settings(data: data, output: output))) { error in
            XCTAssertTrue(
                error.localizedDescription.contains("autoannotate.lock: a symbolic link"), error.localizedDescription)
        }
        XCTAssertEqual(try String(contentsOf: victim, encoding: .utf8), "precious\n", "the link's target is untouched")

        // The store: SQLite would follow the link.
        try FileManager.default.removeItem(at: output)
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(
            atPath: output.appendingPathComponent("autoannotate.sqlite").path, withDestinationPath: victim.path)
        XCTAssertThrowsError(try AutoAnnotator(settings: try settings(data: data, output: output))) { error in
            XCTAssertTrue(error.localizedDescription.contains("autoannotate.sqlite: not a regular file"), "\(error)")
        }
        XCTAssertEqual(try String(contentsOf: victim, encoding: .utf8), "precious\n")

        // In a job's folder, a label's folder replaced by a link: that image fails, nothing is written through
        // the link; a label file replaced by a link is replaced, not written through.
        try FileManager.default.removeItem(at: output)
        _ = try AutoAnnotator(settings: try settings(data: data, output: output)).run()
        let nested = data.appendingPathComponent("sub")
        try FileManager.default.createDirectory(at: nested, withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            at: data.appendingPathComponent("small.png"), to: nested.appendingPathComponent("inner.png"))
        let outside = work.appendingPathComponent("outside")
        try FileManager.default.createDirectory(at: outside, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(
            atPath: output.appendingPathComponent("sub").path, withDestinationPath: outside.path)
        try FileManager.default.removeItem(at: output.appendingPathComponent("small.txt"))
        try FileManager.default.createSymbolicLink(
            atPath: output.appendingPathComponent("small.txt").path, withDestinationPath: victim.path)
        try FileManager.default.setAttributes(
            [.modificationDate: Date(timeIntervalSinceNow: -60)],
            ofItemAtPath: data.appendingPathComponent("small.png").path)
        let summary = try AutoAnnotator(settings: try settings(data: data, output: output)).run()
        XCTAssertEqual(summary.failed, 1)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: outside.path), [])
        XCTAssertEqual(try String(contentsOf: victim, encoding: .utf8), "precious\n")
        var info = stat()
        XCTAssertEqual(lstat(output.appendingPathComponent("small.txt").path, &info), 0)
        XCTAssertEqual(info.st_mode & S_IFMT, S_IFREG, "the planted link was replaced by the label file")
        let reason = try AutoAnnotator.status(output: output.path).lastErrors.first?["error"] ?? ""
        XCTAssertTrue(reason.contains("does not write through links"), reason)
    }

    /// An output folder that is the data folder, holds it or lies in it is refused before anything is written;
    /// temporary files the job did not make are never deleted.
    func testOutputOverlappingTheDataIsRefusedAndOthersTemporaryFilesStay() throws {
        let data = try images(["small.png"])
        let mine = data.appendingPathComponent("small.txt")
        try "user's own label\n".write(to: mine, atomically: true, encoding: .utf8)
        let hidden = data.appendingPathComponent(".draft.tmp")
        try "user's temporary file\n".write(to: hidden, atomically: true, encoding: .utf8)
        for (output, relation) in [
            (data, "is the data folder"), (data.appendingPathComponent("labels"), "lies inside the data folder"),
            (work!, "holds the data folder"),
        ] {
            XCTAssertThrowsError(try AutoAnnotator(settings: try settings(data: data, output: output))) { error in
                XCTAssertTrue(error.localizedDescription.contains(relation), error.localizedDescription)
                XCTAssertTrue(error.localizedDescription.contains("choose another output_dir"))
            }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: data.appendingPathComponent("labels").path))
        XCTAssertEqual(try String(contentsOf: mine, encoding: .utf8), "user's own label\n")

        // A new job in a folder that holds the user's files: refused, the files untouched.
        let output = work.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        let users = output.appendingPathComponent("small.txt")
        try "user's file\n".write(to: users, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try AutoAnnotator(settings: try settings(data: data, output: output))) { error in
            XCTAssertTrue(
                error.localizedDescription.contains("already holds files (small.txt, …) but no autoannotate job"),
                error.localizedDescription)
        }
        XCTAssertEqual(try String(contentsOf: users, encoding: .utf8), "user's file\n")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: output.path), ["small.txt"])

        // A file of the user's put in a job's folder later, with the name of a label to come: that image fails,
        // the file stays.
        try FileManager.default.removeItem(at: users)
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        _ = try AutoAnnotator(settings: try settings(data: data, output: output)).run()
        try "user's file\n".write(to: output.appendingPathComponent("square.txt"), atomically: true, encoding: .utf8)
        try copyImage("square.jpg", to: data)
        let later = try AutoAnnotator(settings: try settings(data: data, output: output)).run()
        XCTAssertEqual(later.failed, 1)
        XCTAssertEqual(
            try String(contentsOf: output.appendingPathComponent("square.txt"), encoding: .utf8), "user's file\n")
        let reason = try AutoAnnotator.status(output: output.path).lastErrors.first?["error"] ?? ""
        XCTAssertTrue(
            reason.hasSuffix(
                "square.txt: already exists and was not written by this job; move it away (the job never replaces a file it did not write)"
            ), reason)
        try FileManager.default.removeItem(at: data.appendingPathComponent("square.jpg"))
        try FileManager.default.removeItem(at: output)

        // A job beside the images: a temporary-looking file of the user's in the output folder survives runs.
        _ = try AutoAnnotator(settings: try settings(data: data, output: output)).run()
        let theirs = [output.appendingPathComponent(".notes.tmp"), output.appendingPathComponent(".aa-0.tmp")]
        for file in theirs { try "keep\n".write(to: file, atomically: true, encoding: .utf8) }
        try FileManager.default.setAttributes(
            [.modificationDate: Date(timeIntervalSinceNow: -60)],
            ofItemAtPath: data.appendingPathComponent("small.png").path)
        _ = try AutoAnnotator(settings: try settings(data: data, output: output)).run()
        for file in theirs + [hidden] { XCTAssertTrue(FileManager.default.fileExists(atPath: file.path), file.path) }
    }

    /// A start that fails (no such data folder, no images, a model of the wrong kind) leaves no job behind, so the
    /// corrected command runs; an empty data folder is exit 2 with a sentence.
    func testAFailedStartLeavesNothingBehind() throws {
        try CrashTests.requireCLI()
        let data = try images(["small.png"])
        let output = work.appendingPathComponent("labels")
        let models = ["det_model=\(PipelineTests.detector)", "sam_model=\(PipelineTests.segmenter)"]
        let typo = try cli.run(["data=\(data.path)x", "output_dir=\(output.path)"] + models)
        XCTAssertEqual(typo.status, 1)
        XCTAssertTrue(typo.errors.contains("data=\(data.path)x: not a folder of images"), typo.errors)
        XCTAssertFalse(FileManager.default.fileExists(atPath: output.path))
        let wrongModel = try cli.run(
            [
                "data=\(data.path)", "output_dir=\(output.path)/a/b", "det_model=\(PipelineTests.segmenter)",
                "sam_model=\(PipelineTests.segmenter)",
            ])
        XCTAssertEqual(wrongModel.status, 1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: output.path), wrongModel.errors)
        // An existing, empty output folder stays, empty.
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        XCTAssertEqual(
            try cli.run([
                "data=\(data.path)", "output_dir=\(output.path)", "det_model=\(PipelineTests.segmenter)",
                "sam_model=\(PipelineTests.segmenter)",
            ]).status, 1)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: output.path), [])
        XCTAssertEqual(try cli.run(["data=\(data.path)", "output_dir=\(output.path)"] + models).status, 0)

        let empty = work.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        try "notes".write(to: empty.appendingPathComponent("notes.md"), atomically: true, encoding: .utf8)
        let none = try cli.run(["data=\(empty.path)", "output_dir=\(work.path)/none"] + models)
        XCTAssertEqual(none.status, 2)
        XCTAssertTrue(none.errors.contains("data=\(empty.path) holds no images"), none.errors)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(work.path)/none"))
    }

    /// A label file deleted after its image was done: `status` reports it, and the next run writes it again.
    func testADeletedLabelIsReportedAndWrittenAgain() throws {
        let data = try images(["small.png", "square.jpg"])
        let output = work.appendingPathComponent("labels")
        _ = try AutoAnnotator(settings: try settings(data: data, output: output)).run()
        let label = output.appendingPathComponent("square.txt")
        let before = try Data(contentsOf: label)
        try FileManager.default.removeItem(at: label)
        XCTAssertEqual(try AutoAnnotator.status(output: output.path).missingLabels, 1)
        try CrashTests.requireCLI()
        let status = try cli.run(["status", "output_dir=\(output.path)"])
        XCTAssertTrue(
            status.output.contains("labels missing on disk: 1 finished images have no label file"), status.output)
        let again = try AutoAnnotator(settings: try settings(data: data, output: output)).run()
        XCTAssertEqual(again.rewritten, 1)
        XCTAssertEqual(again.done + again.empty, 1)
        XCTAssertEqual(try Data(contentsOf: label), before)
        XCTAssertEqual(try AutoAnnotator.status(output: output.path).missingLabels, 0)
    }

    /// A job folder moved elsewhere goes on in its new place (resume and run), never writing to the old path.
    func testAMovedJobFolderGoesOnWhereItIs() throws {
        try CrashTests.requireCLI()
        let data = try images(["small.png"])
        let old = work.appendingPathComponent("labels")
        let job = ["det_model=\(PipelineTests.detector)", "sam_model=\(PipelineTests.segmenter)"]
        XCTAssertEqual(try cli.run(["data=\(data.path)", "output_dir=\(old.path)"] + job).status, 0)
        let moved = work.appendingPathComponent("moved")
        try FileManager.default.moveItem(at: old, to: moved)
        try copyImage("square.jpg", to: data)
        try FileManager.default.removeItem(at: moved.appendingPathComponent("small.txt"))
        XCTAssertEqual(try cli.run(["resume", "output_dir=\(moved.path)"]).status, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: old.path), "nothing is written to the old place")
        XCTAssertTrue(FileManager.default.fileExists(atPath: moved.appendingPathComponent("square.txt").path))
        XCTAssertTrue(FileManager.default.fileExists(atPath: moved.appendingPathComponent("small.txt").path))
        let status = try cli.run(["status", "output_dir=\(moved.path)", "format=json"]).output
        let document = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(status.utf8)) as? [String: Any])
        XCTAssertEqual((document["settings"] as? [String: Any])?["output_dir"] as? String, moved.path)
        try copyImage("portrait.jpg", to: data)
        XCTAssertEqual(try cli.run(["data=\(data.path)", "output_dir=\(moved.path)"] + job).status, 0)
        XCTAssertTrue(FileManager.default.fileExists(atPath: moved.appendingPathComponent("portrait.txt").path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: old.path))
    }

    func copyImage(_ name: String, to data: URL) throws {
        try FileManager.default.copyItem(
            at: PipelineTests.fixtures.appendingPathComponent("yolo/\(name)"), to: data.appendingPathComponent(name))
    }

    /// What the scan cannot take is counted and listed, never skipped silently: a name that is not UTF-8, a
    /// symbolic link, a folder that cannot be listed. An image whose name is as long as the file system allows is
    /// labelled.
    func testTheScanReportsWhatItCannotTakeAndLongNamesAreLabelled() throws {
        try CrashTests.requireCLI()
        let data = try images(["small.png"])
        let long = String(repeating: "n", count: 251) + ".png"
        try FileManager.default.copyItem(
            at: data.appendingPathComponent("small.png"), to: data.appendingPathComponent(long))
        var name = Array((data.path + "/bad-").utf8) + [0xFF, 0xFE] + Array(".png".utf8)
        name.append(0)
        let source = try Data(contentsOf: data.appendingPathComponent("small.png"))
        let descriptor = name.withUnsafeBufferPointer {
            open(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), O_WRONLY | O_CREAT, 0o644)
        }
        XCTAssertGreaterThanOrEqual(descriptor, 0)
        _ = source.withUnsafeBytes { Foundation.write(descriptor, $0.baseAddress, $0.count) }
        close(descriptor)
        try FileManager.default.createSymbolicLink(
            atPath: data.appendingPathComponent("link.png").path,
            withDestinationPath: data.appendingPathComponent("small.png").path)
        let closed = data.appendingPathComponent("closed")
        try FileManager.default.createDirectory(at: closed, withIntermediateDirectories: true)
        try copyImage("square.jpg", to: closed)
        chmod(closed.path, 0)
        let unreadableFolders = getuid() != 0  // root lists any folder

        let output = work.appendingPathComponent("labels")
        let result = try cli.run(
            [
                "data=\(data.path)", "output_dir=\(output.path)", "det_model=\(PipelineTests.detector)",
                "sam_model=\(PipelineTests.segmenter)",
            ])
        XCTAssertEqual(result.status, 0, result.errors)
        XCTAssertTrue(
            FileManager.default.fileExists(
                atPath: output.appendingPathComponent(String(long.dropLast(4)) + ".txt").path),
            "a 255-character name is labelled")
        XCTAssertTrue(result.errors.contains("files or folders could not be scanned"), result.errors)
        let status = try cli.run(["status", "output_dir=\(output.path)"]).output
        XCTAssertTrue(status.contains("not scanned: \(unreadableFolders ? 3 : 2) files or folders"), status)
        XCTAssertTrue(status.contains("bad-??.png: name is not UTF-8"), status)
        XCTAssertTrue(status.contains("link.png: symbolic link, not followed"), status)
        if unreadableFolders { XCTAssertTrue(status.contains("closed: folder cannot be listed"), status) }
        chmod(closed.path, 0o755)
    }

    /// The scan reads the same size and time stamps as Foundation's enumerator, which earlier versions used, so
    /// that a job scanned before redoes nothing.
    func testTheScanReadsTheStampsEarlierVersionsRead() throws {
        let data = try images(["small.png", "square.jpg", "portrait.jpg"])
        let scanned = try ImageScanner.scan(data.path).images
        XCTAssertEqual(scanned.count, 3)
        let keys: [URLResourceKey] = [.isRegularFileKey, .isSymbolicLinkKey, .fileSizeKey, .contentModificationDateKey]
        let walker = try XCTUnwrap(
            FileManager.default.enumerator(at: data, includingPropertiesForKeys: keys, options: [.skipsHiddenFiles]))
        var stamps: [String: (Int, Double)] = [:]
        for case let url as URL in walker {
            let values = try url.resourceValues(forKeys: Set(keys))
            stamps[url.lastPathComponent] = (
                values.fileSize ?? -1, values.contentModificationDate?.timeIntervalSince1970 ?? -1
            )
        }
        for image in scanned {
            XCTAssertEqual(stamps[image.relativePath]?.0, image.size)
            XCTAssertEqual(stamps[image.relativePath]?.1, image.mtime)
        }
    }

    /// Errors reach the user as sentences naming the path and the cause, not Foundation's error dumps.
    func testFileErrorsAreSentences() throws {
        try CrashTests.requireCLI()
        let data = try images(["small.png"])
        let blocker = work.appendingPathComponent("file")
        try "x".write(to: blocker, atomically: true, encoding: .utf8)
        let result = try cli.run(
            [
                "data=\(data.path)", "output_dir=\(blocker.path)/labels", "det_model=\(PipelineTests.detector)",
                "sam_model=\(PipelineTests.segmenter)",
            ])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.errors.contains("\(blocker.path)/labels: the output folder cannot be made"), result.errors)
        XCTAssertFalse(result.errors.contains("NSCocoaErrorDomain"), result.errors)
        XCTAssertFalse(result.errors.contains("Code="), result.errors)
        let error = CocoaError(.fileReadNoPermission, userInfo: [NSFilePathErrorKey: "/x/y.txt"])
        XCTAssertEqual(AnnotateError.sentence(for: error), "/x/y.txt: permission denied")
        let status = try cli.run(["status", "output_dir=\(work.path)/nothing"])
        XCTAssertEqual(status.status, 1)
        XCTAssertTrue(status.errors.contains("holds no autoannotate job"), status.errors)
        // A store that is not SQLite, or whose settings are not a job's: named, with the cause.
        let broken = work.appendingPathComponent("broken")
        try FileManager.default.createDirectory(at: broken, withIntermediateDirectories: true)
        try "not a database".write(
            to: broken.appendingPathComponent("autoannotate.sqlite"), atomically: true, encoding: .utf8)
        for arguments in [["status", "output_dir=\(broken.path)"], ["resume", "output_dir=\(broken.path)"]] {
            let result = try cli.run(arguments)
            XCTAssertEqual(result.status, 1, "\(arguments)")
            XCTAssertTrue(
                result.errors.contains("\(broken.path)/autoannotate.sqlite: the job store cannot be opened"),
                result.errors)
        }
        // A model that is a device or a folder: refused at once (reading /dev/zero to its SHA-256 never ended).
        for (arguments, message) in [
            (
                [
                    "data=\(data.path)", "output_dir=\(work.path)/zero", "det_model=/dev/zero",
                    "sam_model=\(PipelineTests.segmenter)",
                ],
                "/dev/zero: a device; a model is a checkpoint file"
            ),
            (["info", "model=/dev/zero"], "/dev/zero: a device; a model is a checkpoint file"),
            (["info", "model=\(work.path)"], "\(work.path): a folder; a model is a checkpoint file"),
        ] {
            let began = Date()
            let result = try cli.run(arguments)
            XCTAssertEqual(result.status, 1, "\(arguments)")
            XCTAssertTrue(result.errors.contains(message), "\(arguments): \(result.errors)")
            XCTAssertLessThan(Date().timeIntervalSince(began), 10)
        }
        XCTAssertThrowsError(try JobSettings.Model.identify(path: "/dev/zero"))
        // A segment whose image cannot be written: a sentence, not a Foundation code.
        let overlay = try cli.run([
            "segment", "model=\(PipelineTests.segmenter)", "source=\(data.path)/small.png", "bboxes=1,1,20,20",
            "format=png", "output=\(blocker.path)/x.png",
        ])
        XCTAssertEqual(overlay.status, 1)
        XCTAssertTrue(overlay.errors.contains("\(blocker.path)/x.png"), overlay.errors)
        XCTAssertFalse(overlay.errors.contains("NSCocoaErrorDomain"), overlay.errors)
        // Settings in a store that a hand changed: the field at fault, not Swift's DecodingError dump.
        let stored = String(
            decoding: try JSONEncoder().encode(try settings(data: data, output: blocker)), as: UTF8.self)
        for (edit, sentence) in [
            (
                stored.replacingOccurrences(of: "\"imageSize\":640", with: "\"imageSize\":\"big\""),
                "'imageSize' is not a number"
            ),
            (stored.replacingOccurrences(of: "\"data\":", with: "\"dat\":"), "'data' is missing"),
            ("[1,", "it is not JSON"),
        ] {
            XCTAssertThrowsError(try JSONDecoder().decode(JobSettings.self, from: Data(edit.utf8))) {
                XCTAssertEqual(AnnotateError.sentence(for: $0), sentence, edit)
            }
        }
    }

    /// A store edited by hand (a number where text belongs, a path that is a blob, a dropped table) is refused in
    /// a sentence naming it — never a trap in a read; settings that are not a map are said in words.
    func testAStoreChangedByHandIsRefusedInASentence() throws {
        try CrashTests.requireCLI()
        let data = try images(["small.png"])
        let output = work.appendingPathComponent("labels")
        _ = try AutoAnnotator(settings: try settings(data: data, output: output)).run()
        let store = output.appendingPathComponent("autoannotate.sqlite").path
        let pristine = try Data(contentsOf: URL(fileURLWithPath: store))
        for (edit, message) in [
            (
                "UPDATE image SET mtime = 'abc'",
                "the job store was changed by hand: 1 rows hold values of the wrong type"
            ),
            ("UPDATE image SET size = 1e300", "the job store was changed by hand"),
            ("UPDATE image SET path = x'ff00fe'", "the job store was changed by hand"),
            ("DROP TABLE object", "the job store cannot be opened (no such table: object)"),
            ("UPDATE job SET settings = '[]'", "the job's settings in it cannot be read: the document is not a map"),
        ] {
            try pristine.write(to: URL(fileURLWithPath: store))
            for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: store + suffix) }
            try DatabaseQueue(path: store).write { try $0.execute(sql: edit) }
            for command in [["resume", "output_dir=\(output.path)"], ["status", "output_dir=\(output.path)"]] {
                let result = try cli.run(command)
                XCTAssertEqual(result.status, 1, "\(edit): \(result.errors)")
                XCTAssertTrue(result.errors.contains(message), "\(edit): \(result.errors)")
                XCTAssertFalse(result.errors.contains("Fatal error"), result.errors)
            }
        }
    }

    /// `segment format=png` never writes over a file: not its own source image, not anything of the user's.
    func testSegmentNeverReplacesAFile() throws {
        try CrashTests.requireCLI()
        let data = try images(["small.png"])
        let source = data.appendingPathComponent("small.png").path
        let before = try Data(contentsOf: URL(fileURLWithPath: source))
        for output in [source, try write("mine", "notes.txt")] {
            let result = try cli.run([
                "segment", "model=\(PipelineTests.segmenter)", "source=\(source)", "bboxes=1,1,20,20", "format=png",
                "output=\(output)",
            ])
            XCTAssertEqual(result.status, 1, result.errors)
            XCTAssertTrue(result.errors.contains("already exists; segment never replaces a file"), result.errors)
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: source)), before)
        XCTAssertEqual(
            try String(contentsOfFile: work.appendingPathComponent("notes.txt").path, encoding: .utf8), "mine")
    }

    /// Ctrl-C and SIGTERM end every command with exit code 1 and a sentence, never by the signal: a job finishes the
    /// image in hand and says how to resume (and resumes to the end), other commands stop at once.
    func testSignalsEndWithASentenceAndTheJobResumes() throws {
        try CrashTests.requireCLI()
        let data = try images(Array(repeating: "portrait.jpg", count: 1), in: "one")
        try FileManager.default.createDirectory(
            at: work.appendingPathComponent("many"), withIntermediateDirectories: true)
        for i in 0..<30 {
            try FileManager.default.copyItem(
                at: data.appendingPathComponent("portrait.jpg"), to: work.appendingPathComponent("many/\(i).jpg"))
        }
        let output = work.appendingPathComponent("labels")
        let job = [
            "data=\(work.path)/many", "output_dir=\(output.path)", "det_model=\(PipelineTests.detector)",
            "sam_model=\(PipelineTests.segmenter)", "threads=1",
        ]
        for (arguments, signal, said) in [
            (job, SIGINT, "interrupted (Ctrl-C): finishing the image in hand"),
            (
                ["detect", "model=\(PipelineTests.detector)", "source=\(work.path)/many", "threads=1"], SIGTERM,
                "terminated (SIGTERM): stopped"
            ),
        ] {
            let errors = work.appendingPathComponent("stderr-\(signal)")
            _ = FileManager.default.createFile(atPath: errors.path, contents: nil)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: CrashTests.cli)
            process.arguments = arguments
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle(forWritingAtPath: errors.path)
            try process.run()
            // Once the work has begun (the job's progress, detect's model read), the signal.
            let began = Date()
            func started() -> Bool {
                signal == SIGTERM || (try? String(contentsOf: errors, encoding: .utf8))?.contains(" images") == true
            }
            while process.isRunning && Date().timeIntervalSince(began) < 60 && !started() { usleep(20_000) }
            if signal == SIGTERM { usleep(300_000) }
            kill(process.processIdentifier, signal)
            process.waitUntilExit()
            let text = try String(contentsOf: errors, encoding: .utf8)
            XCTAssertEqual(process.terminationReason, .exit, text)
            XCTAssertEqual(process.terminationStatus, 1, text)
            XCTAssertTrue(text.contains(said), text)
        }
        let stopped = try AutoAnnotator.status(output: output.path).counts
        XCTAssertGreaterThan(stopped["pending"] ?? 0, 0, "the job stopped before its end: \(stopped)")
        let resumed = try cli.run(["resume", "output_dir=\(output.path)"])
        XCTAssertEqual(resumed.status, 0, resumed.errors)
        XCTAssertEqual(try AutoAnnotator.status(output: output.path).counts["done"], 30)
    }

    /// `status` over every job under the current folder shows the readable ones when one is damaged (a pipe as its
    /// store), and exits 1 naming it. `detect` never opens a pipe as an image, and prints a folder's results as a
    /// JSON array it writes as it goes.
    func testOneDamagedJobOrPipeStopsNothingElse() throws {
        try CrashTests.requireCLI()
        let data = try images(["small.png", "square.jpg"])
        let good = work.appendingPathComponent("good")
        XCTAssertEqual(try AutoAnnotator(settings: try settings(data: data, output: good)).run().failed, 0)
        let damaged = work.appendingPathComponent("damaged")
        try FileManager.default.createDirectory(at: damaged, withIntermediateDirectories: true)
        XCTAssertEqual(mkfifo(damaged.appendingPathComponent("autoannotate.sqlite").path, 0o644), 0)
        let previous = FileManager.default.currentDirectoryPath
        FileManager.default.changeCurrentDirectoryPath(work.path)
        defer { FileManager.default.changeCurrentDirectoryPath(previous) }
        let status = try cli.run(["status"])
        XCTAssertEqual(status.status, 1, status.errors)
        XCTAssertTrue(status.output.contains("\(good.path)\n  images: 2 — done"), status.output)
        XCTAssertTrue(status.errors.contains("\(damaged.path)/autoannotate.sqlite: not a regular file"), status.errors)

        let pipe = data.appendingPathComponent("pipe.jpg").path
        XCTAssertEqual(mkfifo(pipe, 0o644), 0)
        let detect = try cli.run(["detect", "model=\(PipelineTests.detector)", "source=\(pipe)"])
        XCTAssertEqual(detect.status, 2, detect.errors)
        XCTAssertTrue(detect.errors.contains("\(pipe): cannot be read (it is not a regular file"), detect.errors)
        try FileManager.default.removeItem(atPath: pipe)
        let folder = try cli.run(["detect", "model=\(PipelineTests.detector)", "source=\(data.path)"])
        XCTAssertEqual(folder.status, 0, folder.errors)
        let array = try JSONSerialization.jsonObject(with: Data(folder.output.utf8)) as? [[String: Any]]
        XCTAssertEqual(
            array?.compactMap { $0["image"] as? String }.map { ($0 as NSString).lastPathComponent },
            ["small.png", "square.jpg"])
        let none = try cli.run(["detect", "model=\(PipelineTests.detector)", "source=\(work.path)/damaged"])
        XCTAssertEqual(none.output.trimmingCharacters(in: .whitespacesAndNewlines), "[]", none.errors)
    }
}
