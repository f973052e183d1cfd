import Annotate
import ArgumentParser
import Foundation

/// The `autoannotate` command. Thin by design: every subcommand parses its options and calls a library.
@main
struct AutoAnnotateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "autoannotate",
        abstract:
            "Turn a folder of images into a YOLO instance-segmentation dataset: YOLO boxes → SAM masks → polygons.",
        discussion: """
            Arguments follow Ultralytics' key=value convention; --key value works too.
            """,
        version: "0.1.0",
        subcommands: [Run.self, Resume.self, Status.self, Detect.self, Segment.self, Info.self],
        defaultSubcommand: Run.self
    )

    /// Exit codes (docs/ARCHITECTURE.md): 0 all done, 1 usage or fatal error, 2 finished with failed images (or a
    /// data folder without images).
    /// ArgumentParser's own code for a usage error (64) is mapped to 1.
    static func main() {
        Interruption.install()
        do {
            let arguments = try RecipeArguments.expand(
                KeyValueArguments.rewrite(Array(CommandLine.arguments.dropFirst())))
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                FileHandle.standardError.write(
                    Data((KeyValueArguments.userSpelling(fullMessage(for: error)) + "\n").utf8))
                Self.exit(withError: ExitCode.failure)
            }
            if error is ExitCode || error is CleanExit || code == .success { exit(withError: error) }
            // Every other failure: a sentence naming the file and the cause, exit code 1 (2 for no images).
            if case AnnotateError.noImages = error {
                FileHandle.standardError.write(Data("Error: \(AnnotateError.sentence(for: error))\n".utf8))
                Self.exit(withError: ExitCode(2))
            }
            FileHandle.standardError.write(Data("Error: \(AnnotateError.sentence(for: error))\n".utf8))
            Self.exit(withError: ExitCode.failure)
        }
    }
}
