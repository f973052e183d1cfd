import Foundation
import Geometry
import ModelCache
import Tensor

/// Everything that decides a job's output. Stored with the job; `resume` refuses to continue when any of it
/// differs, naming what changed, so that a resumed job's labels are those of one consistent run.
public struct JobSettings: Codable, Equatable, Sendable {
    public enum EmptyPolicy: String, Codable, Sendable, CaseIterable {
        /// An empty label file for an image without objects (a negative example YOLO trains on).
        case write
        /// No file, as Ultralytics' auto_annotate does.
        case skip
    }

    public struct Model: Codable, Equatable, Sendable {
        public var path: String
        public var sha256: String
        public var size: Int
    }

    public var data: String
    public var output: String
    /// The YOLOv8 detector; nil in a box-dataset job, whose boxes come from `boxes`.
    public var detector: Model?
    public var segmenter: Model
    /// A box-dataset job: the folder of existing YOLO box labels (mirroring the data tree) that prompt SAM in
    /// place of a detector (Ultralytics' `yolo_bbox2segment`).
    public var boxes: String? = nil
    /// A box-dataset job: the YAML file that names its classes (`names:` as a list or by id), as a dataset's
    /// `data.yaml` does. It names the classes of an export; it never changes a label, so it may change on resume.
    public var names: String? = nil
    public var confidence: Float = 0.25
    public var iou: Float = 0.45
    public var imageSize = 640
    public var maxDetections = 300
    public var classes: [Int]? = nil
    /// An object whose SAM predicted IoU is not above this is dropped, mask and class together (Ultralytics
    /// drops the mask only, shifting the classes of every later line).
    public var samConfidence: Float = 0.25
    public var empty: EmptyPolicy = .write
    public var polygon: String = MultiPartPolicy.merge.rawValue
    /// Polygon simplification in pixels (`cv2.approxPolyDP`'s algorithm); nil or 0: none (Ultralytics' polygons).
    public var epsilon: Double? = nil
    /// Parts of a mask, and masks, of fewer pixels are dropped (and counted); nil or 0: none.
    public var minArea: Int? = nil
    /// The SAM image encoder's arithmetic; nil in jobs stored before the setting existed (they ran fp32).
    public var precision: Precision? = nil
    public var version: String = AutoAnnotator.version

    public init(data: String, output: String, detector: Model?, segmenter: Model) {
        (self.data, self.output, self.detector, self.segmenter) = (data, output, detector, segmenter)
    }

    /// Valid values of the numeric settings (the command line states and checks the same ranges).
    public static let imageSizes = 32...8192
    public static let detectionCounts = 1...10_000
    public static let scores: ClosedRange<Float> = 0...1
    public static let epsilons: ClosedRange<Double> = 0...1000
    public static let areas = 0...(1 << 30)

    /// Refuses a setting outside its range, naming it as the command line does: a size of 100000 would allocate
    /// without bound, a NaN threshold would compare false everywhere (and never equal itself on resume).
    public func validate() throws {
        for (name, value) in [("conf", confidence), ("iou", iou), ("sam_conf", samConfidence)]
        where !Self.scores.contains(value) {
            throw AnnotateError.outOfRange(name: name, value: "\(value)", range: "a number from 0 to 1")
        }
        if !Self.imageSizes.contains(imageSize) {
            throw AnnotateError.outOfRange(
                name: "imgsz", value: "\(imageSize)", range: "a whole number from 32 to 8192")
        }
        if !Self.detectionCounts.contains(maxDetections) {
            throw AnnotateError.outOfRange(
                name: "max_det", value: "\(maxDetections)", range: "a whole number from 1 to 10000")
        }
        if let bad = classes?.first(where: { !(0..<BoxLabels.maximumClasses).contains($0) }) {
            throw AnnotateError.outOfRange(name: "classes", value: "\(bad)", range: "a class id from 0 to 9999")
        }
        if let epsilon, !Self.epsilons.contains(epsilon) {
            throw AnnotateError.outOfRange(
                name: "epsilon", value: "\(epsilon)", range: "a number of pixels from 0 to 1000")
        }
        if let minArea, !Self.areas.contains(minArea) {
            throw AnnotateError.outOfRange(
                name: "min_area", value: "\(minArea)",
                range: "a whole number of pixels from 0 to \(Self.areas.upperBound)")
        }
        if MultiPartPolicy(rawValue: polygon) == nil {
            throw AnnotateError.outOfRange(name: "polygon", value: polygon, range: "merge, largest or separate")
        }
    }

    /// Ultralytics' default output folder: `<data parent>/<data name>_auto_annotate_labels`.
    public static func defaultOutput(for data: String) -> String {
        let url = URL(fileURLWithPath: data).standardizedFileURL
        return url.deletingLastPathComponent().appendingPathComponent(url.lastPathComponent + "_auto_annotate_labels")
            .path
    }

    /// Human-readable differences between the stored settings and these (empty when they agree).
    public func differences(from stored: JobSettings) -> [String] {
        var out: [String] = []
        func check<T: Equatable>(_ name: String, _ a: T, _ b: T) {
            if a != b { out.append("\(name): the job has \(a), now \(b)") }
        }
        check("data", stored.data, data)
        check("boxes", stored.boxes ?? "none (a detector)", boxes ?? "none (a detector)")
        if let old = stored.detector, let new = detector, old.sha256 != new.sha256 {
            out.append(
                "det_model: \(new.path) is not the file the job started with (\(old.path), SHA-256 \(old.sha256.prefix(12))…)"
            )
        }
        if stored.segmenter.sha256 != segmenter.sha256 {
            out.append(
                "sam_model: \(segmenter.path) is not the file the job started with (\(stored.segmenter.path), SHA-256 \(stored.segmenter.sha256.prefix(12))…)"
            )
        }
        check("conf", stored.confidence, confidence)
        check("iou", stored.iou, iou)
        check("imgsz", stored.imageSize, imageSize)
        check("max_det", stored.maxDetections, maxDetections)
        check("classes", stored.classes.map { "\($0)" } ?? "all", classes.map { "\($0)" } ?? "all")
        check("sam_conf", stored.samConfidence, samConfidence)
        check("empty", stored.empty.rawValue, empty.rawValue)
        check("polygon", stored.polygon, polygon)
        check("epsilon", stored.epsilon ?? 0, epsilon ?? 0)
        check("min_area", stored.minArea ?? 0, minArea ?? 0)
        check("precision", (stored.precision ?? .fp32).rawValue, (precision ?? .fp32).rawValue)
        return out
    }
}

extension JobSettings.Model {
    /// Identifies a model file by content: SHA-256 of its bytes (streamed, never held in memory at once).
    public static func identify(path: String) throws -> JobSettings.Model {
        try AnnotateError.requireRegularFile(path, what: "a model is a checkpoint file")
        let identified: (sha256: String, size: Int)?
        do {
            identified = try fileSHA256(path: path)
        } catch {
            throw AnnotateError.unreadable(path: path, reason: AnnotateError.cause(of: error).reason)
        }
        guard let (digest, size) = identified else {
            throw AnnotateError.unreadable(path: path, reason: "no such file, or not readable")
        }
        return .init(path: URL(fileURLWithPath: path).standardizedFileURL.path, sha256: digest, size: size)
    }
}

/// Why a job cannot start or go on.
public enum AnnotateError: Error, LocalizedError, Equatable {
    case unreadable(path: String, reason: String)
    case notAFolder(path: String)
    case settingsChanged(output: String, differences: [String])
    case locked(output: String, owner: String)
    case notAJob(output: String)
    case ownedByAnotherJob(output: String, data: String)
    case boxesOrDetector
    case noImages(data: String)
    case outputOverlaps(output: String, relation: String)
    case outputNotEmpty(output: String, example: String)
    case outOfRange(name: String, value: String, range: String)

    public var errorDescription: String? {
        switch self {
        case .unreadable(let path, let reason): "\(path): \(reason)"
        case .notAFolder(let path): "data=\(path): not a folder of images"
        case .settingsChanged(let output, let differences):
            "the job in \(output) was started with other settings, so resuming would mix two runs' labels:\n  "
                + differences.joined(separator: "\n  ")
                + "\nUse the original settings, or a new output_dir for a new job."
        case .locked(let output, let owner):
            "the job in \(output) is being run by another process (\(owner)); wait for it, or stop it first"
        case .notAJob(let output): "\(output) holds no autoannotate job (no autoannotate.sqlite)"
        case .ownedByAnotherJob(let output, let data):
            "output_dir=\(output) belongs to the job labelling \(data); choose another output_dir, or resume that job"
        case .boxesOrDetector:
            "a job takes its boxes either from a detector (det_model=) or from box labels (boxes=), one of the two"
        case .noImages(let data):
            "data=\(data) holds no images (JPEG, PNG, … by extension, searched recursively); nothing to label"
        case .outOfRange(let name, let value, let range):
            "\(name)=\(value) is out of range: \(name) must be \(range)"
        case .outputNotEmpty(let output, let example):
            "output_dir=\(output) already holds files (\(example), …) but no autoannotate job; the job would overwrite files of the same names, so give it a new or empty folder"
        case .outputOverlaps(let output, let relation):
            "output_dir=\(output) \(relation); the job writes and replaces files in its output folder, so it must be a folder of its own beside the images: choose another output_dir"
        }
    }

    /// Refuses anything but a regular file (symbolic links followed): reading a folder fails obscurely, and a
    /// device (/dev/zero) or a pipe never ends. `what`: what the file should be, for the message.
    public static func requireRegularFile(_ path: String, what: String) throws {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw AnnotateError.unreadable(path: path, reason: String(cString: strerror(errno)))
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            let kind =
                switch info.st_mode & S_IFMT {
                case S_IFDIR: "a folder"
                case S_IFIFO: "a pipe"
                case S_IFCHR, S_IFBLK: "a device"
                default: "not a regular file"
                }
            throw AnnotateError.unreadable(path: path, reason: "\(kind); \(what)")
        }
    }

    /// `error` as a sentence naming the file and the cause. Foundation's file errors otherwise read as
    /// "The operation could not be completed (NSCocoaErrorDomain error 4)".
    public static func sentence(for error: Error) -> String {
        if let error = error as? AnnotateError { return error.errorDescription ?? "\(error)" }
        let (path, reason) = cause(of: error)
        return path.map { "\($0): \(reason)" } ?? reason
    }

    /// The file an error names (if it names one) and its cause, in words.
    public static func cause(of error: Error) -> (path: String?, reason: String) {
        // Foundation's file errors are codes below 1024; others (property lists, JSON, …) describe themselves.
        if let cocoa = error as? CocoaError, cocoa.code.rawValue < 1024 {
            let path = cocoa.filePath ?? cocoa.url?.path
            var reason: String
            if let underlying = cocoa.underlying as NSError?, underlying.domain == NSPOSIXErrorDomain {
                reason = String(cString: strerror(Int32(underlying.code)))
            } else {
                switch cocoa.code {
                case .fileNoSuchFile, .fileReadNoSuchFile: reason = "no such file or folder"
                case .fileReadNoPermission, .fileWriteNoPermission: reason = "permission denied"
                case .fileWriteOutOfSpace: reason = "no space left on the device"
                case .fileWriteVolumeReadOnly: reason = "the file system is read-only"
                case .fileWriteFileExists: reason = "a file is in the way"
                case .fileReadCorruptFile, .fileReadUnknownStringEncoding, .fileReadInapplicableStringEncoding:
                    reason = "cannot be read as text"
                case .fileReadTooLarge: reason = "too large to read"
                default: reason = "cannot be read or written (file error \(cocoa.code.rawValue))"
                }
            }
            return (path, reason)
        }
        if let decoding = error as? DecodingError { return (nil, decodingSentence(decoding)) }
        let ns = error as NSError
        if ns.domain == NSPOSIXErrorDomain {
            return (ns.userInfo[NSFilePathErrorKey] as? String, String(cString: strerror(Int32(ns.code))))
        }
        return (nil, error.localizedDescription)
    }

    /// A stored document that does not decode, said by the field at fault (never Swift's `DecodingError` dump).
    static func decodingSentence(_ error: DecodingError) -> String {
        func field(_ path: [CodingKey]) -> String {
            let name = path.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return name.isEmpty ? "the document" : "'\(name.dropFirst(name.hasPrefix(".") ? 1 : 0))'"
        }
        switch error {
        case .keyNotFound(let key, let context): return "\(field(context.codingPath + [key])) is missing"
        case .valueNotFound(_, let context): return "\(field(context.codingPath)) is missing (null)"
        case .typeMismatch(let type, let context):
            let kind =
                switch "\(type)" {
                case let name where name.hasPrefix("Dictionary"): "a map of names to values"
                case let name where name.hasPrefix("Array"): "a list"
                case "String": "text"
                case "Bool": "true or false"
                default: "a number"
                }
            return "\(field(context.codingPath)) is not \(kind)"
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty ? "it is not JSON" : "\(field(context.codingPath)) holds an invalid value"
        @unknown default: return "it cannot be decoded"
        }
    }
}
