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
        subcommands: [Run.self, Resume.self, Status.self, Export.self, Detect.self, Segment.self, Info.self],
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
            // A mistyped key: the user's spelling and the nearest key, without the generic usage after it.
            if let message = KeyValueArguments.unknownOption(
                fullMessage(for: error), options: options(of: CommandLine.arguments.dropFirst().first))
            {
                FileHandle.standardError.write(Data((message + "; '--help' lists them all\n").utf8))
                Self.exit(withError: ExitCode.failure)
            }
            if code == .validationFailure {
                FileHandle.standardError.write(
                    Data((KeyValueArguments.userSpelling(fullMessage(for: error)) + "\n").utf8))
                Self.exit(withError: ExitCode.failure)
            }
            if error is ExitCode || error is CleanExit || code == .success { exit(withError: error) }
            // Every other failure: a sentence naming the file and the cause, exit code 1 (2 for no images).
            FileHandle.standardError.write(Data("Error: \(said(AnnotateError.sentence(for: error)))\n".utf8))
            if case AnnotateError.noImages = error { Self.exit(withError: ExitCode(2)) }
            Self.exit(withError: ExitCode.failure)
        }
    }

    /// An error as printed: control characters (a NUL in a hostile file's key) shown as '?', and at most 2,000
    /// characters (a hostile file can make a reason of any length).
    static func said(_ sentence: String) -> String {
        let printable = ProgressReporter.printable(sentence)
        return printable.count > 2000 ? printable.prefix(2000) + "… (\(printable.count) characters)" : printable
    }

    /// The long option names of the subcommand the arguments name (the labelling job by default), from its help.
    static func options(of first: String?) -> [String] {
        let command =
            configuration.subcommands.first { $0._commandName == first } ?? configuration.defaultSubcommand ?? Self.self
        let help = command.helpMessage(columns: 10_000)
        guard let expression = try? NSRegularExpression(pattern: "--([a-z][a-z0-9-]*)") else { return [] }
        let names = expression.matches(in: help, range: NSRange(help.startIndex..., in: help)).compactMap {
            Range($0.range(at: 1), in: help).map { String(help[$0]) }
        }
        return Array(Set(names).subtracting(["help", "version"])).sorted()
    }
}
