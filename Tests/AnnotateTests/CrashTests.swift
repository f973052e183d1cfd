import Annotate
import Foundation
import XCTest

/// Crash safety: the `autoannotate` process is killed with SIGKILL at random moments, several times, during a run
/// over 24 images, and resumed after each kill. The final labels must be byte-identical to an uninterrupted run's,
/// no temporary file may remain, and no image may have been completed twice.
final class CrashTests: XCTestCase {
    /// The CLI built beside this test bundle (`swift test` builds every product of the package).
    static let cli = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(
        "autoannotate"
    ).path

    /// Fails, never skips, where the CLI is missing: `swift test` builds every product, so its absence is a broken
    /// build, not a reason to pass without checking.
    static func requireCLI(file: StaticString = #filePath, line: UInt = #line) throws {
        let built = FileManager.default.isExecutableFile(atPath: cli)
        _ = try XCTUnwrap(
            built ? cli : nil, "the autoannotate executable is not built at \(cli)", file: file, line: line)
    }

    func testKilledRunsResumeToTheSameBytes() throws {
        try Self.requireCLI()
        let work = FileManager.default.temporaryDirectory.appendingPathComponent(
            "autoannotate-crash-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: work) }
        let data = work.appendingPathComponent("images/nested")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        let sources = ["portrait.jpg", "landscape.jpg", "square.jpg", "small.png"]
        for i in 0..<24 {
            let name = sources[i % 4]
            try FileManager.default.copyItem(
                at: PipelineTests.fixtures.appendingPathComponent("yolo/\(name)"),
                to: data.appendingPathComponent(String(format: "%02d-", i) + name))
        }
        let images = work.appendingPathComponent("images").path
        let models = ["det_model=\(PipelineTests.detector)", "sam_model=\(PipelineTests.segmenter)", "threads=1"]

        // The uninterrupted reference.
        XCTAssertEqual(
            try run(["data=\(images)", "output_dir=\(work.appendingPathComponent("reference").path)"] + models), 0)
        let reference = labels(work.appendingPathComponent("reference"))
        XCTAssertEqual(reference.count, 24)

        // Killed at seeded random moments, resumed each time.
        var generator = SplitMix(state: 42)
        let output = work.appendingPathComponent("crashed").path
        var kills = 0
        for attempt in 0..<5 {
            let arguments =
                attempt == 0
                ? ["data=\(images)", "output_dir=\(output)"] + models : ["resume", "output_dir=\(output)", "threads=1"]
            let process = try launch(arguments)
            Thread.sleep(forTimeInterval: Double(generator.next() % 1500) / 1000 + 0.3)
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                kills += 1
            }
            process.waitUntilExit()
        }
        XCTAssertGreaterThanOrEqual(kills, 2, "the runs must actually have been killed mid-job")
        XCTAssertEqual(try run(["resume", "output_dir=\(output)"]), 0)
        XCTAssertEqual(
            labels(URL(fileURLWithPath: output)), reference,
            "labels after kills and resumes equal an uninterrupted run's")
        let leftovers = FileManager.default.enumerator(atPath: output)!.compactMap { $0 as? String }.filter {
            $0.hasSuffix(".tmp")
        }
        XCTAssertEqual(leftovers, [], "no temporary files remain")
        let completions = try JobStore(output: output).completions()
        XCTAssertEqual(completions.count, 24)
        XCTAssertTrue(
            completions.values.allSatisfy { $0 == 1 },
            "an image was completed more than once: \(completions.filter { $0.value != 1 })")
    }

    func launch(_ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.cli)
        process.arguments = arguments
        process.standardError = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        return process
    }

    func run(_ arguments: [String]) throws -> Int32 {
        let process = try launch(arguments)
        process.waitUntilExit()
        return process.terminationStatus
    }

    func labels(_ folder: URL) -> [String: Data] {
        var out: [String: Data] = [:]
        for case let relative as String in FileManager.default.enumerator(atPath: folder.path)!
        where relative.hasSuffix(".txt") {
            out[relative] = FileManager.default.contents(atPath: folder.appendingPathComponent(relative).path)
        }
        return out
    }

    struct SplitMix {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }
}

/// The CLI with `arguments` and `environment` added to this process's: exit status, stdout and stderr.
func runCLI(_ arguments: [String], environment: [String: String] = [:]) throws -> (
    status: Int32, output: String, errors: String
) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: CrashTests.cli)
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let pipe = Pipe()
    process.standardOutput = pipe
    // stderr to a file, so that it cannot fill a pipe and stall the child while stdout is read.
    let errorsPath = FileManager.default.temporaryDirectory.appendingPathComponent(
        "autoannotate-stderr-\(UUID().uuidString)"
    ).path
    _ = FileManager.default.createFile(atPath: errorsPath, contents: nil)
    defer { try? FileManager.default.removeItem(atPath: errorsPath) }
    process.standardError = FileHandle(forWritingAtPath: errorsPath)
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let errors = FileManager.default.contents(atPath: errorsPath) ?? Data()
    return (
        process.terminationStatus, String(decoding: data, as: UTF8.self), String(decoding: errors, as: UTF8.self)
    )
}
