import Annotate
import Foundation
import XCTest

/// The `autoannotate` command as users type it: key=value arguments, recipes with overrides, exit codes, status.
final class CommandLineTests: XCTestCase {
    func run(_ arguments: [String], environment: [String: String] = [:]) throws -> (
        status: Int32, output: String, errors: String
    ) { try runCLI(arguments, environment: environment) }

    func testRecipeOverridesExitCodesAndStatus() throws {
        try CrashTests.requireCLI()
        let work = FileManager.default.temporaryDirectory.appendingPathComponent(
            "autoannotate-cli-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: work) }
        let data = work.appendingPathComponent("images")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            at: PipelineTests.fixtures.appendingPathComponent("yolo/small.png"),
            to: data.appendingPathComponent("small.png"))
        let recipe = PipelineTests.fixtures.appendingPathComponent("../../Pipelines/largest-part.yaml").standardized
            .path
        let output = work.appendingPathComponent("labels").path
        // The recipe names yolov8x.pt and sam_b.pt; the command line's models win.
        let job = [
            "pipeline=\(recipe)", "data=\(data.path)", "output_dir=\(output)", "det_model=\(PipelineTests.detector)",
            "sam_model=\(PipelineTests.segmenter)", "max_det=50",
        ]
        XCTAssertEqual(try run(job).status, 0)
        let status = try run(["status", "output_dir=\(output)", "format=json"])
        let document = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(status.output.utf8)) as? [String: Any])
        let settings = try XCTUnwrap(document["settings"] as? [String: Any])
        XCTAssertEqual(settings["polygon"] as? String, "largest", "from the recipe")
        XCTAssertEqual(settings["max_det"] as? Int, 50, "the command line overrides the recipe")
        XCTAssertEqual(settings["output_dir"] as? String, output, "the command line's names, paths as typed")
        XCTAssertFalse(status.output.contains("\\/"), "slashes are not escaped")
        XCTAssertEqual((document["status"] as? [String: Any])?["objects"] as? Int, 1)

        // A bad image: the job finishes with exit code 2; a changed setting: refused with exit code 1.
        try Data("not an image".utf8).write(to: data.appendingPathComponent("broken.jpg"))
        XCTAssertEqual(try run(job).status, 2)
        XCTAssertEqual(try run(job.dropLast() + ["max_det=60"]).status, 1)
        XCTAssertEqual(try run(["pipeline=/nonexistent.yaml", "data=\(data.path)"]).status, 1, "usage error")
        XCTAssertEqual(try run(["data=\(data.path)", "conf=2"]).status, 1, "usage error")
    }

    /// Rough edges a first try meets: a mistyped key is named as typed with the nearest keys and no usage dump;
    /// bare flags and resume without output_dir work as in Ultralytics; an inverted box is refused; info prints
    /// no empty list.
    func testFirstTryRoughEdges() throws {
        try CrashTests.requireCLI()
        let work = FileManager.default.temporaryDirectory.appendingPathComponent(
            "autoannotate-cli-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: work) }
        for (arguments, message) in [
            (["data=x", "det_modle=y"], "Error: unknown option 'det_modle=' (did you mean 'det_model='?)"),
            (["data=x", "model=y"], "(did you mean 'det_model=' or 'sam_model='?)"),
            (["detect", "model=m", "source=s", "confd=0.3"], "(did you mean 'conf='?)"),
            (["data=x", "zzzzzz=1"], "Error: unknown option 'zzzzzz='; '--help' lists them all"),
        ] {
            let result = try run(arguments)
            XCTAssertEqual(result.status, 1, "\(arguments)")
            XCTAssertTrue(result.errors.contains(message), "\(arguments): \(result.errors)")
            XCTAssertFalse(result.errors.contains("Usage:"), result.errors)
        }
        let data = work.appendingPathComponent("images")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            at: PipelineTests.fixtures.appendingPathComponent("yolo/small.png"),
            to: data.appendingPathComponent("small.png"))
        let job = [
            "data=\(data.path)", "det_model=\(PipelineTests.detector)", "sam_model=\(PipelineTests.segmenter)",
        ]
        XCTAssertEqual(try run(job).status, 0)
        let previous = FileManager.default.currentDirectoryPath
        FileManager.default.changeCurrentDirectoryPath(work.path)
        defer { FileManager.default.changeCurrentDirectoryPath(previous) }
        let resumed = try run(["resume", "retry_failed"])
        XCTAssertEqual(resumed.status, 0, resumed.errors)
        XCTAssertTrue(resumed.errors.contains("images_auto_annotate_labels: 0 labelled"), resumed.errors)
        let box = try run([
            "segment", "model=\(PipelineTests.segmenter)", "source=\(data.path)/small.png", "bboxes=20,20,10,30",
        ])
        XCTAssertEqual(box.status, 1)
        XCTAssertTrue(box.errors.contains("'20,20,10,30' is not a box"), box.errors)
        // The recipes that ship by name (the same text as Pipelines/), and a recipe that names the data.
        for (name, text) in Recipe.builtIn {
            let file = PipelineTests.fixtures.appendingPathComponent("../../Pipelines/\(name).yaml").standardized
            XCTAssertEqual(try String(contentsOf: file, encoding: .utf8), text, name)
        }
        let recipe = work.appendingPathComponent("mine.yaml")
        try "data: \(data.path)\npolygon: largest\n".write(to: recipe, atomically: true, encoding: .utf8)
        for (pipeline, output) in [("largest-part", "by-name"), (recipe.path, "with-data")] {
            let named = try run(
                [
                    "pipeline=\(pipeline)", "data=\(data.path)", "output_dir=\(work.path)/\(output)",
                    "det_model=\(PipelineTests.detector)", "sam_model=\(PipelineTests.segmenter)",
                ].filter { pipeline == recipe.path ? !$0.hasPrefix("data=") : true })
            XCTAssertEqual(named.status, 0, named.errors)
            XCTAssertTrue(
                try run(["status", "output_dir=\(work.path)/\(output)"]).output.contains("polygon largest"), pipeline)
        }
        XCTAssertTrue(try run(["pipeline=nope", "data=x"]).errors.contains("ship with autoannotate: auto-annotate"))
        // detect format=txt on a folder: a label file per image, in a folder of its own, that boxes= reads.
        let detect = try run(["detect", "model=\(PipelineTests.detector)", "source=\(data.path)", "format=txt"])
        XCTAssertEqual(detect.status, 0, detect.errors)
        let boxes = data.path + "_detect_labels"
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: boxes), ["small.txt"])
        let single = try run([
            "detect", "model=\(PipelineTests.detector)", "source=\(data.path)/small.png", "format=txt",
        ])
        XCTAssertEqual(try String(contentsOfFile: boxes + "/small.txt", encoding: .utf8), single.output)
        XCTAssertEqual(
            try run(["detect", "model=\(PipelineTests.detector)", "source=\(data.path)", "format=txt"]).status, 1,
            "the label folder is not empty any more")
        let segmented = try run([
            "data=\(data.path)", "boxes=\(boxes)", "sam_model=\(PipelineTests.segmenter)",
            "output_dir=\(work.path)/segmented",
        ])
        XCTAssertEqual(segmented.status, 0, segmented.errors)
        let info = try run(["info", "model=\(PipelineTests.detector)"])
        XCTAssertTrue(info.output.contains("YOLOv8n summary:"), info.output)
    }

    /// The box-dataset recipe through the command: boxes=auto from the recipe, an export's data.yaml naming the
    /// classes by id, and
    /// a detector alongside boxes refused as a usage error.
    func testBoxDatasetRecipe() throws {
        try CrashTests.requireCLI()
        let work = FileManager.default.temporaryDirectory.appendingPathComponent(
            "autoannotate-cli-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: work) }
        let data = work.appendingPathComponent("dataset/images")
        try FileManager.default.createDirectory(
            at: work.appendingPathComponent("dataset"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: PipelineTests.fixtures.appendingPathComponent("annotate/images"), to: data)
        try FileManager.default.copyItem(
            at: PipelineTests.fixtures.appendingPathComponent("annotate/boxes"),
            to: work.appendingPathComponent("dataset/labels"))
        let recipe = PipelineTests.fixtures.appendingPathComponent("../../Pipelines/boxes-to-segments.yaml")
            .standardized.path
        let output = work.appendingPathComponent("dataset/labels-segment").path
        let job = [
            "pipeline=\(recipe)", "data=\(data.path)", "output_dir=\(output)", "sam_model=\(PipelineTests.segmenter)",
        ]
        XCTAssertEqual(try run(job).status, 0)
        let status = try run(["status", "output_dir=\(output)"]).output
        XCTAssertTrue(
            status.contains("done 2, empty 2, failed 0")
                && status.contains("boxes: \(work.appendingPathComponent("dataset/labels").path)"), status)
        let export = try run(["export", "output_dir=\(output)", "dataset=\(work.path)/yolo"])
        XCTAssertEqual(export.status, 0, export.errors)
        XCTAssertTrue(try String(contentsOfFile: work.path + "/yolo/data.yaml", encoding: .utf8).contains("  5: '5'\n"))
        XCTAssertEqual(try run(job + ["det_model=\(PipelineTests.detector)"]).status, 1, "boxes and a detector")
        XCTAssertEqual(try run(job + ["boxes=\(work.path)/missing"]).status, 1, "no such box folder")
    }

    /// An official name that is neither a path nor in the cache, offline: exit 1 with what to download and where
    /// to put it (the mirror variable points the download at a port nobody listens on; nothing leaves the machine).
    func testAMissingOfficialModelOfflineSaysWhatToDo() throws {
        try CrashTests.requireCLI()
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent(
            "autoannotate-weights-\(UUID().uuidString)"
        ).path
        defer { try? FileManager.default.removeItem(atPath: cache) }
        let image = PipelineTests.fixtures.appendingPathComponent("yolo/small.png").path
        let result = try run(
            ["detect", "model=yolov8n.pt", "source=\(image)"],
            environment: ["AUTOANNOTATE_WEIGHTS": cache, "AUTOANNOTATE_WEIGHTS_MIRROR": "http://127.0.0.1:9/assets"])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.errors.contains("yolov8n.pt is not here and could not be downloaded"), result.errors)
        XCTAssertTrue(
            result.errors.contains(
                "Download it yourself from http://127.0.0.1:9/assets/yolov8n.pt\n  and put it in \(cache)"),
            result.errors)
    }

    func testBF16WithoutAVX512BF16IsRefusedBeforeAnythingRuns() throws {
        try CrashTests.requireCLI()
        let image = PipelineTests.fixtures.appendingPathComponent("sam/wide.jpg").path
        let output = FileManager.default.temporaryDirectory.appendingPathComponent(
            "autoannotate-bf16-\(UUID().uuidString)"
        ).path
        for arguments in [
            ["segment", "model=no-such-model.pt", "source=\(image)", "bboxes=1,1,5,5", "precision=bf16"],
            ["data=\(image)", "sam_model=no-such-model.pt", "output_dir=\(output)", "precision=bf16"],
        ] {
            // With AVX-512 turned off, as on a CPU without AVX512-BF16.
            let result = try run(arguments, environment: ["AUTOANNOTATE_NO_AVX512": "1"])
            XCTAssertNotEqual(result.status, 0)
            XCTAssertTrue(result.errors.contains("precision=bf16 needs a CPU with AVX512-BF16"), result.errors)
            XCTAssertFalse(FileManager.default.fileExists(atPath: output), "no job may be created")
        }
    }
}
