import Foundation
import XCTest

/// The fuzz targets' inputs kept as regression tests: the fixtures they start from and every input a fuzzing run
/// saved (Tests/Fuzz), replayed through the same readers by `autoannotate-fuzz` built plainly. A crash, a trap or
/// a hang of the reader fails the test.
final class FuzzReplayTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../..")
        .standardized
    /// The replayer built beside this test bundle (`swift test` builds every product).
    static let replayer = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        .appendingPathComponent("autoannotate-fuzz").path

    func replay(_ target: String, _ folders: [String]) throws {
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: Self.replayer), "not built: \(Self.replayer)")
        let existing = folders.map { Self.root.appendingPathComponent($0).path }.filter {
            FileManager.default.fileExists(atPath: $0)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.replayer)
        process.arguments = existing
        // The test's environment passed on: under AddressSanitizer, its options (CI turns leak checks off).
        process.environment = ProcessInfo.processInfo.environment.merging(["AUTOANNOTATE_FUZZ_TARGET": target]) { $1 }
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .exit, "\(target): the reader crashed\n\(printed)")
        XCTAssertEqual(process.terminationStatus, 0, "\(target)\n\(printed)")
        XCTAssertEqual(printed.components(separatedBy: "replayed").count - 1, existing.count, printed)
        print(printed, terminator: "")
    }

    func testCheckpointInputsReplay() throws {
        try replay("checkpoint", ["Tests/Fixtures/checkpoints", "Tests/Fuzz/checkpoint"])
    }

    func testImageInputsReplay() throws {
        try replay("image", ["Tests/Fixtures/imaging/inputs", "Tests/Fuzz/image"])
    }

    func testBoxLabelInputsReplay() throws {
        try replay("boxes", ["Tests/Fixtures/annotate/boxes", "Tests/Fuzz/boxes"])
    }

    func testRecipeInputsReplay() throws {
        try replay("recipe", ["Pipelines", "Tests/Fuzz/recipe"])
    }
}
