import Annotate
import ArgumentParser
import Checkpoint
import Foundation
import Geometry
import Tensor

extension AutoAnnotateCommand {
    /// `autoannotate data=DIR det_model=… sam_model=…`: the labelling job (the default subcommand).
    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "annotate",
            abstract:
                "Label a folder of images: YOLOv8 boxes → SAM masks → YOLO segmentation labels (the default command).",
            discussion: """
                Labels mirror the input tree under output_dir (default: <data>_auto_annotate_labels beside data), one \
                .txt per image ('class x1 y1 … xn yn', normalised); 'autoannotate export' makes a dataset of them \
                to train on (Ultralytics' layout with a val split, COCO or LabelMe). Progress is kept \
                in output_dir/autoannotate.sqlite: run the same command again, or 'autoannotate resume', to go on \
                after an interruption. output_dir must be a folder of its own: not data, not inside it, not holding it, \
                and new or empty for a new job. Exit code 0: every image labelled; 2: some images failed (see \
                'autoannotate status'), or data holds no images; 1: the job could not run.
                """)

        @Option(help: "The folder of images (searched recursively).")
        var data: String

        @Option(name: .customLong("det-model"), help: "YOLOv8 detection checkpoint (default: yolov8x.pt).")
        var detModel: String?

        @Option(
            help: ArgumentHelp(
                "Segment an existing YOLO box dataset instead of detecting: the folder of its box labels, mirroring data (auto: Ultralytics' layout, …/images/… → …/labels/…).",
                discussion:
                    "Each box prompts SAM; a box whose mask SAM rejects keeps its outline, rows that are polygons already are copied."
            ))
        var boxes: String?

        @Option(
            help:
                "With boxes=: the YAML file naming the box dataset's classes (default: its data.yaml, found beside its images folder)."
        )
        var names: String?

        @Option(name: .customLong("sam-model"), help: "Segment Anything checkpoint.")
        var samModel = "sam_b.pt"

        @Option(
            name: .customLong("output-dir"),
            help: "Where labels and the job store go (default: <data>_auto_annotate_labels).")
        var outputDir: String?

        @Option(
            name: .customLong("sam-conf"),
            help: "Drop an object (mask and class) whose SAM predicted IoU is not above this, from 0 to 1.")
        var samConf: Float = 0.25

        @Option(help: "write: an empty .txt for images without objects; skip: no file (as Ultralytics).")
        var empty: JobSettings.EmptyPolicy = .write

        @Option(help: "Masks in several parts: merge (Ultralytics' default), largest, or separate (one line per part).")
        var polygon: MultiPartPolicy = .merge

        @Option(
            help:
                "Simplify polygons within this many pixels (cv2.approxPolyDP's algorithm), from 0 to 1000; 0: as Ultralytics."
        )
        var epsilon: Double = 0

        @Option(
            name: .customLong("min-area"),
            help: "Drop masks, and parts of masks, of fewer pixels than this (counted in the summary); 0: none.")
        var minArea: Int = 0

        @Flag(name: .customLong("retry-failed"), help: "Also redo images that failed before.")
        var retryFailed = false

        @Option(help: "A recipe of these settings (Pipelines/NAME.yaml); command-line values override it.")
        var pipeline: String?

        @OptionGroup var precision: PrecisionOptions

        @OptionGroup var detection: DetectionOptions
        @OptionGroup var compute: ComputeOptions

        func validate() throws {
            try OptionRange.check("sam_conf", samConf, 0...1)
            guard JobSettings.epsilons.contains(epsilon) else {
                throw ValidationError(
                    "epsilon=\(epsilon) is out of range: epsilon must be a number of pixels from 0 to 1000")
            }
            try OptionRange.check("min_area", minArea, JobSettings.areas)
        }

        func run() throws {
            compute.apply()
            guard !detection.agnostic else {
                throw ValidationError("agnostic NMS is not part of auto_annotate; leave it out")
            }
            let dataPath = URL(fileURLWithPath: data).standardizedFileURL.path
            let boxFolder = try boxes.map { try Self.boxFolder($0, data: dataPath) }
            if boxFolder != nil {
                if detModel != nil {
                    throw ValidationError(
                        "boxes= takes the boxes from label files, so no detector runs: leave out det_model=")
                }
                if detection.classes != nil {
                    throw ValidationError("classes= selects detector classes; a box dataset keeps all of its objects")
                }
            } else if names != nil {
                throw ValidationError("names= names a box dataset's classes (with boxes=); a detector names its own")
            }
            let output = URL(fileURLWithPath: outputDir ?? JobSettings.defaultOutput(for: data)).standardizedFileURL
                .path
            // The folders first: a typo in data= or an output_dir over the images is refused before any download.
            try AutoAnnotator.checkFolders(data: dataPath, output: output, boxes: boxFolder)
            let detectorPath = boxFolder == nil ? try resolveModel(detModel ?? "yolov8x.pt") : nil
            var settings = JobSettings(
                data: dataPath,
                output: output,
                detector: try detectorPath.map { try .identify(path: $0) },
                segmenter: try .identify(path: try resolveModel(samModel)))
            settings.boxes = boxFolder
            if boxFolder != nil {
                settings.names =
                    names.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
                    ?? DatasetNames.find(forData: dataPath)
            }
            settings.confidence = detection.conf
            settings.iou = detection.iou
            settings.imageSize = detection.imgsz
            settings.maxDetections = detection.maxDet
            settings.samConfidence = samConf
            settings.empty = empty
            settings.polygon = polygon.rawValue
            settings.epsilon = epsilon > 0 ? epsilon : nil
            settings.minArea = minArea > 0 ? minArea : nil
            settings.precision = precision.precision
            if detection.classes != nil {
                // Class names resolve against the detector's own names (read from the checkpoint, no weights loaded).
                guard let detectorPath, case .yolo(let checkpoint) = try ModelFile.open(path: detectorPath) else {
                    throw ValidationError("det_model=\(detModel ?? "yolov8x.pt") is not a YOLOv8 detection model")
                }
                settings.classes = try detection.nms(names: checkpoint.names).classes.map { Array($0).sorted() }
            }
            try Self.execute(try AutoAnnotator(settings: settings), retryFailed: retryFailed)
        }

        /// The box label folder: as given, or by Ultralytics' layout for `auto`.
        static func boxFolder(_ value: String, data: String) throws -> String {
            let folder: String
            if value == "auto" {
                guard let found = BoxLabels.ultralyticsLabelFolder(forData: data) else {
                    throw ValidationError(
                        "boxes=auto finds labels by Ultralytics' layout (…/images/… → …/labels/…), but data=\(data) has no 'images' folder in its path; give boxes=DIR"
                    )
                }
                folder = found
            } else {
                folder = URL(fileURLWithPath: value).standardizedFileURL.path
            }
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue
            else {
                throw ValidationError("boxes=\(value): \(folder) is not a folder of YOLO box labels")
            }
            return folder
        }

        /// Runs a job with progress on stderr and a summary; exits 2 when the job has failed images.
        static func execute(_ annotator: AutoAnnotator, retryFailed: Bool) throws {
            if annotator.settings.precision == .bf16 { cautionAboutBF16() }
            let reporter = ProgressReporter()
            let output = annotator.settings.output
            Interruption.stopGracefully(
                "finishing the image in hand, then stopping (again to stop at once); "
                    + "'autoannotate resume output_dir=\(output)' continues the job")
            let summary = try annotator.run(
                retryFailed: retryFailed, progress: { reporter.report($0) }, shouldStop: { Interruption.requested })
            reporter.finish()
            let job = try annotator.status()
            let failed = job.counts["failed"] ?? 0
            var lines = [
                "\(annotator.settings.output): \(summary.done) labelled, \(summary.empty) without objects, \(summary.failed) failed in this run "
                    + "(\(counted(summary.objects, "object")), \(String(format: "%.1f", summary.seconds)) s)"
            ]
            if summary.skipped > 0 {
                lines.append(
                    "  \(counted(summary.skipped, "image")) finished or failed before (retry_failed=True redoes failed ones)"
                )
            }
            if summary.outlines > 0 {
                lines.append(
                    "  \(counted(summary.outlines, "box", "boxes")) kept their outline: SAM's mask was empty or its score not above sam_conf"
                )
            }
            if summary.small + summary.smallParts > 0 {
                lines.append(
                    "  min_area dropped \(counted(summary.small, "mask")) and \(counted(summary.smallParts, "part")) of masks"
                        + (annotator.settings.boxes == nil ? "" : " (a box whose mask was dropped keeps its outline)"))
            }
            if summary.ignored > 0 { lines.append("  \(counted(summary.ignored, "file")) that are not images ignored") }
            if summary.skippedFiles > 0 {
                lines.append(
                    "  \(counted(summary.skippedFiles, "file or folder", "files or folders")) could not be scanned (symbolic links, unreadable folders, names that are not UTF-8): 'autoannotate status output_dir=\(annotator.settings.output)' lists them"
                )
            }
            if summary.rewritten > 0 {
                lines.append("  \(counted(summary.rewritten, "label file")) missing on disk written again")
            }
            if summary.removed > 0 {
                lines.append(
                    summary.removed == 1
                        ? "  1 image is gone from data since the last run; its label file is removed"
                        : "  \(summary.removed) images are gone from data since the last run; their label files are removed"
                )
            }
            if failed > 0 {
                lines.append(
                    "  \(counted(failed, "image")) failed in this job: 'autoannotate status output_dir=\(annotator.settings.output)' lists them"
                )
            }
            if summary.interrupted {
                lines.append("  stopped before the end: 'autoannotate resume output_dir=\(output)' continues the job")
            }
            FileHandle.standardError.write(Data((lines.joined(separator: "\n") + "\n").utf8))
            // A stop asked for ends with 1, even where the image in hand was the last one.
            if summary.interrupted || Interruption.requested { throw ExitCode.failure }
            if failed > 0 { throw ExitCode(2) }
        }
    }

    /// `autoannotate resume output_dir=DIR`: continues a job with its stored settings.
    struct Resume: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Continue an interrupted job with the settings it was started with; finished images are not redone.")

        @Option(
            name: .customLong("output-dir"),
            help: "The job's output folder (default: the one job under the current folder).")
        var outputDir: String?

        @Flag(name: .customLong("retry-failed"), help: "Also redo images that failed before.")
        var retryFailed = false

        @OptionGroup var compute: ComputeOptions

        func run() throws {
            compute.apply()
            let folder = try outputDir ?? Self.onlyJobUnderCurrentFolder()
            var settings = try AutoAnnotator.storedSettings(
                output: URL(fileURLWithPath: folder).standardizedFileURL.path)
            // The models must be the same files: identify them again where the job found them.
            let stored = settings
            settings.detector = try stored.detector.map { try .identify(path: $0.path) }
            settings.segmenter = try .identify(path: stored.segmenter.path)
            try Run.execute(try AutoAnnotator(settings: settings), retryFailed: retryFailed)
        }

        /// Without `output_dir`, as `status` looks: the job in the current folder or directly under it, if one.
        static func onlyJobUnderCurrentFolder() throws -> String {
            let jobs = try Status.jobsUnderCurrentFolder()
            guard jobs.count == 1 else {
                throw ValidationError(
                    jobs.isEmpty
                        ? "no autoannotate job in or under the current folder; give output_dir="
                        : "\(jobs.count) jobs under the current folder (\(jobs.map { ($0 as NSString).lastPathComponent }.joined(separator: ", "))); give output_dir="
                )
            }
            return jobs[0]
        }
    }

    /// `autoannotate status [output_dir=DIR] [format=json]`: what is done, failed, left.
    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show a job's progress: counts per state, objects, throughput, ETA, last errors, settings.")

        @Option(
            name: .customLong("output-dir"),
            help: "The job's output folder (default: every job under the current folder).")
        var outputDir: String?

        @Option(help: "text or json.")
        var format: Format = .text

        enum Format: String, ExpressibleByArgument, CaseIterable { case text, json }

        func run() throws {
            let folders = try outputDir.map { [$0] } ?? Self.jobsUnderCurrentFolder()
            guard !folders.isEmpty else {
                throw ValidationError("no autoannotate job under the current folder; give output_dir=")
            }
            var documents: [[String: Any]] = []
            var unreadable = 0
            for folder in folders {
                let path = URL(fileURLWithPath: folder).standardizedFileURL.path
                let settings: JobSettings
                let summary: JobStore.Summary
                do {
                    settings = try AutoAnnotator.storedSettings(output: path)
                    summary = try AutoAnnotator.status(output: path)
                } catch  where outputDir == nil {
                    // One damaged job among several is said, and the others are still shown.
                    unreadable += 1
                    FileHandle.standardError.write(Data("error: \(AnnotateError.sentence(for: error))\n".utf8))
                    continue
                }
                if format == .json {
                    let encoder = JSONEncoder()
                    encoder.keyEncodingStrategy = .convertToSnakeCase
                    let encoded = try JSONSerialization.jsonObject(with: encoder.encode(summary))
                    documents.append(["output_dir": path, "status": encoded, "settings": Self.document(settings)])
                } else {
                    print(ProgressReporter.printable(Self.text(path, settings, summary)))
                }
            }
            if format == .json {
                let value: Any = documents.count == 1 ? documents[0] : documents
                print(
                    String(
                        decoding: try JSONSerialization.data(
                            withJSONObject: value, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]),
                        as: UTF8.self))
            }
            if unreadable > 0 { throw ExitCode.failure }
        }

        /// A job's settings under the names the command line gives them.
        static func document(_ s: JobSettings) -> [String: Any] {
            func model(_ m: JobSettings.Model) -> [String: Any] {
                ["path": m.path, "sha256": m.sha256, "size": m.size]
            }
            var document: [String: Any] = [
                "data": s.data, "output_dir": s.output, "sam_model": model(s.segmenter), "conf": Double(s.confidence),
                "iou": Double(s.iou), "imgsz": s.imageSize, "max_det": s.maxDetections,
                "sam_conf": Double(s.samConfidence), "empty": s.empty.rawValue, "polygon": s.polygon,
                "epsilon": s.epsilon ?? 0, "min_area": s.minArea ?? 0, "precision": (s.precision ?? .fp32).rawValue,
                "version": s.version,
            ]
            document["det_model"] = s.detector.map(model) ?? NSNull()
            document["classes"] = s.classes ?? NSNull()
            document["boxes"] = s.boxes ?? NSNull()
            document["names"] = s.names ?? NSNull()
            return document
        }

        static func jobsUnderCurrentFolder() throws -> [String] {
            let here = FileManager.default.currentDirectoryPath
            var found: [String] = []
            if FileManager.default.fileExists(atPath: (here as NSString).appendingPathComponent("autoannotate.sqlite"))
            {
                found.append(here)
            }
            for entry in (try? FileManager.default.contentsOfDirectory(atPath: here)) ?? [] {
                let folder = (here as NSString).appendingPathComponent(entry)
                if FileManager.default.fileExists(
                    atPath: (folder as NSString).appendingPathComponent("autoannotate.sqlite"))
                {
                    found.append(folder)
                }
            }
            return found.sorted()
        }

        static func text(_ path: String, _ s: JobSettings, _ j: JobStore.Summary) -> String {
            let c = j.counts
            let total = c.values.reduce(0, +)
            var out = "\(path)\n"
            out +=
                "  images: \(total) — done \(c["done"] ?? 0), empty \(c["empty"] ?? 0), failed \(c["failed"] ?? 0), left \((c["pending"] ?? 0) + (c["detected"] ?? 0))"
            if j.removed > 0 { out += " (\(j.removed) removed from data)" }
            out += "\n  objects: \(j.objects)\n"
            if let rate = j.imagesPerSecond { out += String(format: "  throughput: %.2f images/s", rate) }
            if let left = j.secondsLeft, left > 0 { out += String(format: ", about %.0f s left", left) }
            if j.imagesPerSecond != nil { out += "\n" }
            out += "  data: \(s.data)\n"
            if let d = s.detector { out += "  det_model: \(d.path) (sha256 \(d.sha256.prefix(12))…)\n" }
            if let b = s.boxes { out += "  boxes: \(b)\n" }
            out += "  sam_model: \(s.segmenter.path) (sha256 \(s.segmenter.sha256.prefix(12))…)\n"
            out +=
                "  conf \(s.confidence), iou \(s.iou), imgsz \(s.imageSize), max_det \(s.maxDetections), classes \(s.classes.map { "\($0)" } ?? "all"), "
            out +=
                "sam_conf \(s.samConfidence), empty \(s.empty.rawValue), polygon \(s.polygon), epsilon \(s.epsilon ?? 0), min_area \(s.minArea ?? 0), precision \((s.precision ?? .fp32).rawValue)\n"
            if j.missingLabels > 0 {
                out +=
                    "  labels missing on disk: \(j.missingLabels) finished images have no label file ('autoannotate resume' writes them again)\n"
            }
            if j.skipped > 0 {
                out +=
                    "  not scanned: \(j.skipped) files or folders\n"
                    + j.skippedExamples.map { "    \($0["path"] ?? ""): \($0["reason"] ?? "")" }.joined(separator: "\n")
                    + (j.skipped > j.skippedExamples.count ? "\n    …" : "") + "\n"
            }
            if !j.lastErrors.isEmpty {
                out +=
                    "  last errors:\n"
                    + j.lastErrors.map { "    \($0["image"] ?? ""): \($0["error"] ?? "")" }.joined(separator: "\n")
                    + "\n"
            }
            return out
        }
    }
}

extension JobSettings.EmptyPolicy: ExpressibleByArgument {}
extension MultiPartPolicy: ExpressibleByArgument {}

/// A live bar on a terminal, plain periodic lines otherwise.
final class ProgressReporter {
    let terminal = isatty(2) == 1
    let start = Date()
    var lastLine = Date.distantPast

    func report(_ e: AutoAnnotator.Event) {
        let elapsed = Date().timeIntervalSince(start)
        let rate = Double(e.completed) / max(elapsed, 1e-9)
        let eta = rate > 0 ? Double(e.total - e.completed) / rate : 0
        if let error = e.error {
            FileHandle.standardError.write(
                Data("\(terminal ? "\r\u{1B}[K" : "")failed: \(Self.printable(error))\n".utf8))
        }
        if terminal {
            let width = 30
            let filled = e.total > 0 ? width * e.completed / e.total : width
            let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
            let text = String(
                format: "\r%@ %d/%d  %.2f img/s  ETA %@  %@", bar, e.completed, e.total, rate, Self.duration(eta),
                Self.printable(e.path))
            FileHandle.standardError.write(Data((text.prefix(160) + "\u{1B}[K").utf8))
        } else if Date().timeIntervalSince(lastLine) >= 10 || e.completed == e.total {
            lastLine = Date()
            FileHandle.standardError.write(
                Data(
                    String(
                        format: "%d/%d images, %.2f images/s, ETA %@\n", e.completed, e.total, rate, Self.duration(eta)
                    ).utf8))
        }
    }

    func finish() { if terminal { FileHandle.standardError.write(Data("\n".utf8)) } }

    /// `text` with control characters shown as '?': a file name cannot move the cursor or retitle the terminal.
    static func printable(_ text: String) -> String {
        String(
            String.UnicodeScalarView(
                text.unicodeScalars.map { $0.properties.generalCategory == .control && $0 != "\n" ? "?" : $0 }))
    }

    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600
            ? String(format: "%dh%02dm", s / 3600, s % 3600 / 60) : String(format: "%dm%02ds", s / 60, s % 60)
    }
}
