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
        XCTAssertEqual(settings["maxDetections"] as? Int, 50, "the command line overrides the recipe")
        XCTAssertEqual((document["status"] as? [String: Any])?["objects"] as? Int, 1)

        // A bad image: the job finishes with exit code 2; a changed setting: refused with exit code 1.
        try Data("not an image".utf8).write(to: data.appendingPathComponent("broken.jpg"))
        XCTAssertEqual(try run(job).status, 2)
        XCTAssertEqual(try run(job.dropLast() + ["max_det=60"]).status, 1)
        XCTAssertEqual(try run(["pipeline=/nonexistent.yaml", "data=\(data.path)"]).status, 1, "usage error")
        XCTAssertEqual(try run(["data=\(data.path)", "conf=2"]).status, 1, "usage error")
    }

    /// The box-dataset recipe through the command: boxes=auto from the recipe, data.yaml naming classes by id, and
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
        XCTAssertTrue(try String(contentsOfFile: output + "/data.yaml", encoding: .utf8).contains("  5: 5\n"))
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
