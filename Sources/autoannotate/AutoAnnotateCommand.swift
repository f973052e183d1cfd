import ArgumentParser

/// The `autoannotate` command. Thin by design: every subcommand parses its options and calls a library.
@main
struct AutoAnnotateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "autoannotate",
        abstract: "Turn a folder of images into a YOLO instance-segmentation dataset: YOLO boxes → SAM masks → polygons.",
        discussion: """
            Arguments follow Ultralytics' key=value convention; --key value works too.
            """,
        version: "0.1.0",
        subcommands: [Run.self, Resume.self, Status.self, Detect.self, Segment.self, Info.self],
        defaultSubcommand: Run.self
    )

    static func main() {
        main(KeyValueArguments.rewrite(Array(CommandLine.arguments.dropFirst())))
    }
}
