import Checkpoint
import Foundation
import Geometry
import Imaging
import SegmentAnything
import YOLO

/// The auto-annotation job: scan → decode → detect → SAM (all boxes of an image in one call, the image encoded
/// once) → polygons → validated label file (atomic) → state committed. Decoding runs ahead of the models on its
/// own thread through a bounded queue, so memory stays flat however many images there are.
public final class AutoAnnotator {
    public static let version = "0.1.0"

    /// A finished image, for progress reporting.
    public struct Event: Sendable {
        public var path: String
        public var state: ImageState
        public var objects: Int
        public var error: String?
        public var completed: Int
        public var total: Int
        public var seconds: Double
    }

    public struct Summary: Sendable {
        public var done = 0, empty = 0, failed = 0, objects = 0
        /// Images already finished before this run (resume).
        public var skipped = 0
        public var added = 0, removed = 0, ignored = 0
        public var seconds = 0.0
    }

    public let settings: JobSettings
    let store: JobStore
    let lock: JobLock
    let detector: Detector
    let sam: SamPredictor
    let policy: MultiPartPolicy

    /// Opens (or creates) the job in `settings.output` and loads both models. An existing job must have been
    /// started with the same settings and model files; only one process may run a job at a time.
    public init(settings: JobSettings) throws {
        try FileManager.default.createDirectory(atPath: settings.output, withIntermediateDirectories: true)
        lock = try JobLock(output: settings.output)
        store = try JobStore(output: settings.output)
        if let stored = try store.settings() {
            if stored.data != settings.data { throw AnnotateError.ownedByAnotherJob(output: settings.output, data: stored.data) }
            let differences = settings.differences(from: stored)
            if !differences.isEmpty { throw AnnotateError.settingsChanged(output: settings.output, differences: differences) }
        } else {
            try store.saveSettings(settings)
        }
        self.settings = settings
        detector = try Detector(path: settings.detector.path)
        sam = try SamPredictor(path: settings.segmenter.path)
        policy = MultiPartPolicy(rawValue: settings.polygon) ?? .merge
    }

    /// The detector's class names, by id.
    public var detectorNames: [Int: String] { detector.names }

    public func status() throws -> JobStore.Summary { try store.summary() }

    public static func status(output: String) throws -> JobStore.Summary { try JobStore(output: output).summary() }

    /// The settings of the job stored in `output`, for `resume`.
    public static func storedSettings(output: String) throws -> JobSettings {
        guard FileManager.default.fileExists(atPath: (output as NSString).appendingPathComponent(JobStore.fileName)),
              let settings = try JobStore(output: output).settings() else { throw AnnotateError.notAJob(output: output) }
        return settings
    }

    public func run(retryFailed: Bool = false, progress: (Event) -> Void = { _ in }) throws -> Summary {
        let start = Date()
        var summary = Summary()
        LabelWriter.removeTemporaries(under: settings.output)
        let scan = try ImageScanner.scan(settings.data, excluding: settings.output)
        (summary.added, summary.removed) = try store.synchronize(with: scan.images)
        summary.ignored = scan.ignored
        try LabelWriter.writeAtomically(LabelWriter.dataYAML(names: detector.names, data: settings.data),
                                        to: (settings.output as NSString).appendingPathComponent("data.yaml"))

        let work = try store.remaining(retryFailed: retryFailed)
        summary.skipped = scan.images.count - work.count
        let decoded = BoundedQueue<(Int64, String, String, Result<Image, Error>)>(capacity: 2)
        let data = settings.data
        let collisions = scan.collisions
        let producer = Thread {
            for item in work {
                let full = (data as NSString).appendingPathComponent(item.path)
                let result: Result<Image, Error>
                if let other = collisions[item.path] {
                    result = .failure(CollisionError(path: item.path, other: other))
                } else {
                    result = Result { try ImageDecoder.decode(path: full) }
                }
                decoded.put((item.id, item.path, item.label, result))
            }
            decoded.close()
        }
        producer.stackSize = 1 << 20
        producer.start()

        var completed = 0
        while let (id, path, label, image) = decoded.take() {
            let began = Date()
            var event = Event(path: path, state: .failed, objects: 0, error: nil, completed: 0, total: work.count, seconds: 0)
            do {
                let (state, objects) = try annotate(try image.get(), labelPath: (settings.output as NSString).appendingPathComponent(label))
                let seconds = Date().timeIntervalSince(began)
                try store.finish(imageId: id, state: state, objects: objects, seconds: seconds)
                (event.state, event.objects, event.seconds) = (state, objects.count, seconds)
                if state == .done { summary.done += 1 } else { summary.empty += 1 }
                summary.objects += objects.count
            } catch {
                let reason = error.localizedDescription
                let seconds = Date().timeIntervalSince(began)
                try store.fail(imageId: id, reason: reason, seconds: seconds)
                (event.error, event.seconds) = (reason, seconds)
                summary.failed += 1
            }
            completed += 1
            event.completed = completed
            progress(event)
        }
        summary.seconds = Date().timeIntervalSince(start)
        return summary
    }

    struct CollisionError: Error, LocalizedError {
        let path: String, other: String
        var errorDescription: String? { "\(path) and \(other) would write the same label file; rename one of them" }
    }

    /// One image: detections, their masks, the label file. Returns the state and the objects written.
    func annotate(_ image: Image, labelPath: String) throws -> (ImageState, [ObjectRecord]) {
        guard image.width >= 10, image.height >= 10 else {
            throw ImageTooSmall(width: image.width, height: image.height)
        }
        let options = NMSOptions(confidence: settings.confidence, iou: settings.iou, maxDetections: settings.maxDetections,
                                 classes: settings.classes.map(Set.init))
        let detections = detector.detect(image, imgsz: settings.imageSize, options: options)
        var lines: [LabelLine] = []
        var objects: [ObjectRecord] = []
        if !detections.isEmpty {
            sam.setImage(image)
            let boxes = detections.map { SamBox(x1: $0.x1, y1: $0.y1, x2: $0.x2, y2: $0.y2) }
            let prediction = try sam.predict(boxes: boxes)
            sam.resetImage()
            for (detection, (mask, score)) in zip(detections, zip(prediction.masks, prediction.scores)) where score > settings.samConfidence {
                let polygons = maskSegments(mask.pixels, width: mask.width, height: mask.height, policy: policy).filter { $0.count >= 3 }
                guard !polygons.isEmpty else { continue }
                for polygon in polygons {
                    lines.append(LabelLine(classId: detection.classId, points: normalized(polygon, width: image.width, height: image.height)))
                }
                objects.append(ObjectRecord(classId: detection.classId, confidence: detection.confidence,
                                            box: (detection.x1, detection.y1, detection.x2, detection.y2), samScore: score,
                                            points: polygons.reduce(0) { $0 + $1.count }))
            }
        }
        let classCount = max(detector.model.classCount, (detector.names.keys.max() ?? -1) + 1)
        if objects.isEmpty {
            if settings.empty == .write {
                try LabelWriter.writeAtomically("", to: labelPath)
            } else {
                try? FileManager.default.removeItem(atPath: labelPath)
            }
            return (.empty, [])
        }
        try LabelWriter.writeAtomically(LabelWriter.contents(lines, classCount: classCount), to: labelPath)
        return (.done, objects)
    }

    struct ImageTooSmall: Error, LocalizedError {
        let width: Int, height: Int
        var errorDescription: String? { "\(width)×\(height) pixels: below the 10 pixels a side Ultralytics trains on" }
    }
}

/// A first-in first-out queue of bounded size between one producer and one consumer.
final class BoundedQueue<Element>: @unchecked Sendable {
    private var items: [Element] = []
    private var closed = false
    private let capacity: Int
    private let condition = NSCondition()

    init(capacity: Int) { self.capacity = capacity }

    func put(_ item: Element) {
        condition.lock()
        while items.count >= capacity { condition.wait() }
        items.append(item)
        condition.broadcast()
        condition.unlock()
    }

    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }

    /// The next item, or nil once the producer has closed the queue and it is empty.
    func take() -> Element? {
        condition.lock()
        defer { condition.unlock() }
        while items.isEmpty && !closed { condition.wait() }
        if items.isEmpty { return nil }
        let item = items.removeFirst()
        condition.broadcast()
        return item
    }
}
