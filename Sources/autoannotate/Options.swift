import Annotate
import ArgumentParser
import Foundation
import ModelCache
import Tensor
import YOLO

/// Detector settings shared by `detect` and the pipeline, with Ultralytics' names and `auto_annotate`'s defaults.
struct DetectionOptions: ParsableArguments {
    @Option(help: "Minimum class score for a detection, from 0 to 1.")
    var conf: Float = 0.25

    @Option(help: "IoU above which NMS drops a box of the same class, from 0 to 1.")
    var iou: Float = 0.45

    @Option(help: "Inference size, from 32 to 8192 (rounded up to a multiple of 32, as Ultralytics does).")
    var imgsz: Int = 640

    @Option(name: .customLong("max-det"), help: "Maximum detections per image, from 1 to 10000.")
    var maxDet: Int = 300

    @Option(help: "Keep only these classes, by id or by name: classes=0,2 or classes=person,car.")
    var classes: String?

    @Flag(
        name: [.customLong("agnostic"), .customLong("agnostic-nms")],
        help: "Class-agnostic NMS (Ultralytics' agnostic_nms).")
    var agnostic = false

    func validate() throws {
        try OptionRange.check("conf", conf, 0...1)
        try OptionRange.check("iou", iou, 0...1)
        try OptionRange.check("imgsz", imgsz, OptionRange.imageSize)
        try OptionRange.check("max_det", maxDet, OptionRange.detections)
    }

    /// NMS settings, with class names resolved against the model's.
    func nms(names: [Int: String]) throws -> NMSOptions {
        var selected: Set<Int>? = nil
        if let classes {
            selected = []
            let byName = Dictionary(names.map { ($0.value, $0.key) }, uniquingKeysWith: { a, _ in a })
            for item in classes.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) })
            where !item.isEmpty {
                if let id = Int(item), names.isEmpty || names[id] != nil {
                    selected!.insert(id)
                } else if let id = byName[item] {
                    selected!.insert(id)
                } else {
                    let known = names.sorted { $0.key < $1.key }.prefix(12).map { "\($0.key)=\($0.value)" }.joined(
                        separator: ", ")
                    throw ValidationError(
                        "classes: '\(item)' is not a class of this model (\(known)\(names.count > 12 ? ", …" : ""))")
                }
            }
        }
        return NMSOptions(confidence: conf, iou: iou, maxDetections: maxDet, classes: selected, agnostic: agnostic)
    }
}

/// The valid range of every numeric option, checked before any work starts (a value outside it would make the
/// job allocate without bound, trap on overflow, or silently do nothing), with messages that name the option as
/// users type it.
enum OptionRange {
    static let imageSize = JobSettings.imageSizes
    static let detections = JobSettings.detectionCounts
    static let threads = 1...1024

    static func check(_ name: String, _ value: Float, _ range: ClosedRange<Float>) throws {
        guard range.contains(value) else {
            throw ValidationError(
                "\(name)=\(value) is out of range: \(name) must be a number from \(format(range.lowerBound)) to \(format(range.upperBound))"
            )
        }
    }

    static func check(_ name: String, _ value: Int, _ range: ClosedRange<Int>) throws {
        guard range.contains(value) else {
            throw ValidationError(
                "\(name)=\(value) is out of range: \(name) must be a whole number from \(range.lowerBound) to \(range.upperBound)"
            )
        }
    }

    static func format(_ value: Float) -> String { value == value.rounded() ? String(Int(value)) : "\(value)" }
}

/// Compute settings shared by every subcommand that runs a model.
struct ComputeOptions: ParsableArguments {
    @Option(help: "Threads for BLAS and our own loops, from 1 to 1024 (default: all cores).")
    var threads: Int?

    @Option(help: "Only cpu: autoannotate runs on the CPU.")
    var device: String = "cpu"

    func validate() throws {
        guard device.lowercased() == "cpu" else {
            throw ValidationError(
                "device=\(device): autoannotate runs on the CPU only; use device=cpu (or leave it out)")
        }
        if let threads { try OptionRange.check("threads", threads, OptionRange.threads) }
    }

    func apply() { if let threads { Threading.count = threads } }
}

/// The SAM image encoder's arithmetic, shared by `segment` and the labelling job; bf16 is refused here, before any
/// model loads or job store is created, where the CPU cannot run it.
struct PrecisionOptions: ParsableArguments {
    @Option(help: "SAM image encoder arithmetic: fp32, or bf16 (bfloat16 products, fp32 sums; needs AVX512-BF16).")
    var precision: Precision = .fp32

    func validate() throws {
        if precision == .bf16, let refusal = Precision.bf16Refusal { throw ValidationError(refusal) }
    }
}

extension Precision: ExpressibleByArgument {}

/// Says on stderr, before the work starts, when bf16 will be slower than fp32 on this CPU (it still runs: the user
/// may want bf16's rounding).
func cautionAboutBF16() {
    if let caution = Precision.bf16Caution { FileHandle.standardError.write(Data("note: \(caution)\n".utf8)) }
}

/// Image files under `source` (or `source` itself), sorted, found by extension as Ultralytics' loaders do.
func imageFiles(under source: String) throws -> [String] {
    let extensions: Set<String> = ["jpg", "jpeg", "png", "bmp", "dng", "mpo", "tif", "tiff", "webp", "pfm", "heic"]
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: source, isDirectory: &isDirectory) else {
        throw ValidationError("source=\(source): no such file or folder")
    }
    guard isDirectory.boolValue else { return [source] }
    guard let walker = FileManager.default.enumerator(atPath: source) else {
        throw ValidationError("source=\(source): cannot list the folder")
    }
    var files: [String] = []
    for case let relative as String in walker
    where extensions.contains((relative as NSString).pathExtension.lowercased()) {
        files.append((source as NSString).appendingPathComponent(relative))
    }
    return files.sorted()
}

/// The file a model argument names: the path itself, the weights cache, or an official name downloaded into the
/// cache (with a progress bar on stderr) — as Ultralytics resolves `YOLO("yolov8x.pt")`.
func resolveModel(_ argument: String) throws -> String {
    let terminal = isatty(2) == 1
    let start = Date()
    var shown = -1
    var drew = false
    let path = try ModelResolver().resolve(argument) { received, total in
        let mb = Double(received) / 1e6
        let rate = mb / max(Date().timeIntervalSince(start), 1e-3)
        let percent = total.map { Int(100 * received / max($0, 1)) }
        let of = total.map { String(format: "/%.1f", Double($0) / 1e6) } ?? ""
        if terminal {
            drew = true
            FileHandle.standardError.write(
                Data(String(format: "\rDownloading %@  %.1f%@ MB  %.1f MB/s\u{1B}[K", argument, mb, of, rate).utf8))
        } else if let percent, percent / 10 != shown / 10 {
            shown = percent
            FileHandle.standardError.write(
                Data(String(format: "Downloading %@: %d %% of %@ MB\n", argument, percent, String(of.dropFirst())).utf8)
            )
        }
    }
    if drew { FileHandle.standardError.write(Data("\n".utf8)) }
    try AnnotateError.requireRegularFile(path, what: "a model is a checkpoint file")
    return path
}

/// "1 mask", "2 masks": a count with its noun (`plural` where adding an s is not it).
func counted(_ count: Int, _ noun: String, _ plural: String? = nil) -> String {
    "\(count) \(count == 1 ? noun : plural ?? noun + "s")"
}
