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
        /// Box-dataset objects written as their box's outline because SAM's mask was rejected (`sam_conf`) or empty.
        public var outlines = 0
        /// Finished images whose label file was missing on disk, written again by this run.
        public var rewritten = 0
        /// Masks of fewer pixels than `min_area` (dropped, or a box dataset's box kept as its outline), and parts
        /// of masks below it (left out of their polygon).
        public var small = 0, smallParts = 0
        /// Files and folders the scan could not take (`status` lists them).
        public var skippedFiles = 0
        /// The run stopped early because `shouldStop` said so; the images left are still pending.
        public var interrupted = false
        public var seconds = 0.0
    }

    public let settings: JobSettings
    let store: JobStore
    let lock: JobLock
    /// The job's token: its temporary files are `.aa-TOKEN-RANDOM.tmp`.
    let token: String
    /// nil in a box-dataset job.
    let detector: Detector?
    let sam: SamPredictor
    let policy: MultiPartPolicy

    /// Opens (or creates) the job in `settings.output` and loads its models. An existing job must have been
    /// started with the same settings and model files; only one process may run a job at a time. A job that
    /// cannot start (no such data folder, no images in it, a model that does not load) leaves nothing behind.
    /// An existing job found in `settings.output` goes on there, wherever it was started (a moved job folder).
    public init(settings: JobSettings) throws {
        guard (settings.detector == nil) != (settings.boxes == nil) else {
            throw AnnotateError.boxesOrDetector
        }
        try settings.validate()
        try Self.checkFolders(settings)
        if let names = settings.names { _ = try DatasetNames.read(path: names) }
        let storePath = (settings.output as NSString).appendingPathComponent(JobStore.fileName)
        var info = stat()
        let existing = lstat(storePath, &info) == 0
        var models: (Detector?, SamPredictor)? = nil
        if !existing {
            // A new job: everything that can fail is checked before the job folder is made.
            if try ImageScanner.scan(
                settings.data, excluding: settings.output, boxes: settings.boxes, firstImageOnly: true
            ).images.isEmpty {
                throw AnnotateError.noImages(data: settings.data)
            }
            models = try Self.loadModels(settings)
        }
        // The folders this init makes (the output folder and any missing parents), removed again on a failed start.
        var created: [String] = []
        var folder = URL(fileURLWithPath: settings.output).standardizedFileURL
        while folder.path != "/", lstat(folder.path, &info) != 0 {
            created.append(folder.path)
            folder.deleteLastPathComponent()
        }
        do {
            try FileManager.default.createDirectory(atPath: settings.output, withIntermediateDirectories: true)
        } catch {
            throw AnnotateError.unreadable(
                path: settings.output,
                reason: "the output folder cannot be made (\(AnnotateError.cause(of: error).reason))"
            )
        }
        lock = try JobLock(output: settings.output)
        let isNew = lstat(storePath, &info) != 0
        do {
            store = try JobStore(output: settings.output)
            if let stored = try store.settings() {
                if stored.data != settings.data {
                    throw AnnotateError.ownedByAnotherJob(output: settings.output, data: stored.data)
                }
                let differences = settings.differences(from: stored)
                if !differences.isEmpty {
                    throw AnnotateError.settingsChanged(output: settings.output, differences: differences)
                }
                // A job folder moved elsewhere goes on where it is now.
                if stored.output != settings.output { try store.saveSettings(settings) }
            } else {
                try store.saveSettings(settings)
            }
            token = try store.token()
            let (detector, sam) = try models ?? Self.loadModels(settings)
            (self.detector, self.sam) = (detector, sam)
        } catch {
            if isNew { Self.discard(output: settings.output, folders: created) }
            throw error
        }
        self.settings = settings
        policy = MultiPartPolicy(rawValue: settings.polygon) ?? .merge
    }

    static func loadModels(_ settings: JobSettings) throws -> (Detector?, SamPredictor) {
        (
            try settings.detector.map { try Detector(path: $0.path) },
            try SamPredictor(path: settings.segmenter.path, precision: settings.precision ?? .fp32)
        )
    }

    /// Removes what a job that could not start made: its store, its lock, and the folders it made (deepest first;
    /// a folder that holds anything else stays).
    static func discard(output: String, folders: [String]) {
        for name in [JobStore.fileName, JobStore.fileName + "-wal", JobStore.fileName + "-shm", JobLock.fileName] {
            unlink((output as NSString).appendingPathComponent(name))
        }
        for folder in folders { rmdir(folder) }
    }

    /// The data folder must exist, and the output folder may neither be it, nor hold it, nor lie inside it (nor
    /// the box label folder), nor, for a new job, hold files already: the job writes and replaces files in its
    /// output folder, and must never touch the user's images, labels or other files.
    static func checkFolders(_ settings: JobSettings) throws {
        try checkFolders(data: settings.data, output: settings.output, boxes: settings.boxes)
    }

    /// `checkFolders` before the settings are complete (the CLI checks the folders before it resolves models).
    public static func checkFolders(data: String, output outputFolder: String, boxes: String?) throws {
        var info = stat()
        guard stat(data, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            throw AnnotateError.notAFolder(path: data)
        }
        for (name, folder) in [("data", data), ("boxes", boxes)] {
            guard let folder else { continue }
            if let relation = overlap(of: outputFolder, with: folder, named: name) {
                throw AnnotateError.outputOverlaps(output: outputFolder, relation: relation)
            }
        }
        // A new job in a folder of the user's would overwrite whatever has a label's name there.
        let jobFiles: Set<String> = [
            JobLock.fileName, JobStore.fileName, JobStore.fileName + "-wal", JobStore.fileName + "-shm",
        ]
        if lstat((outputFolder as NSString).appendingPathComponent(JobStore.fileName), &info) != 0,
            let other = try? FileManager.default.contentsOfDirectory(atPath: outputFolder).sorted().first(where: {
                !jobFiles.contains($0)
            })
        {
            throw AnnotateError.outputNotEmpty(output: outputFolder, example: other)
        }
    }

    /// How `folder` overlaps `other` (the `name` folder), symbolic links resolved: "is the data folder", "lies
    /// inside …", "holds …"; nil when neither holds the other.
    static func overlap(of folder: String, with other: String, named name: String) -> String? {
        let (a, b) = (resolved(folder), resolved(other))
        func inside(_ a: String, _ b: String) -> Bool { a.hasPrefix(b.hasSuffix("/") ? b : b + "/") }
        if a == b { return "is the \(name) folder" }
        if inside(a, b) { return "lies inside the \(name) folder \(other)" }
        return inside(b, a) ? "holds the \(name) folder \(other)" : nil
    }

    /// `path` with symbolic links resolved, as far as it exists (the rest appended as given).
    static func resolved(_ path: String) -> String {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        if let real = realpath(url.path, nil) {
            defer { free(real) }
            return String(cString: real)
        }
        let parent = url.deletingLastPathComponent().path
        guard parent != url.path else { return url.path }
        return (resolved(parent) as NSString).appendingPathComponent(url.lastPathComponent)
    }

    /// The detector's class names, by id (empty in a box-dataset job).
    public var detectorNames: [Int: String] { detector?.names ?? [:] }

    public func status() throws -> JobStore.Summary { try store.summary() }

    public static func status(output: String) throws -> JobStore.Summary {
        guard FileManager.default.fileExists(atPath: (output as NSString).appendingPathComponent(JobStore.fileName))
        else { throw AnnotateError.notAJob(output: output) }
        return try JobStore(output: output).summary()
    }

    /// The settings of the job stored in `output`, for `resume`; `output` is where the job is now (a job folder
    /// may have been moved since it was started).
    public static func storedSettings(output: String) throws -> JobSettings {
        guard FileManager.default.fileExists(atPath: (output as NSString).appendingPathComponent(JobStore.fileName)),
            var settings = try JobStore(output: output).settings()
        else { throw AnnotateError.notAJob(output: output) }
        settings.output = URL(fileURLWithPath: output).standardizedFileURL.path
        return settings
    }

    /// Labels every image not finished yet. `shouldStop` is asked after each image: a run that stops leaves the
    /// job as a kill would, minus the image in hand (finished first), and `resume` continues it.
    public func run(
        retryFailed: Bool = false, progress: (Event) -> Void = { _ in }, shouldStop: () -> Bool = { false }
    ) throws -> Summary {
        let start = Date()
        var summary = Summary()
        LabelWriter.removeTemporaries(under: settings.output, token: token)
        let scan = try ImageScanner.scan(settings.data, excluding: settings.output, boxes: settings.boxes)
        let removedLabels: [String]
        (summary.added, summary.removed, removedLabels) = try store.synchronize(with: scan.images)
        // The labels of images gone from data go too (the job wrote them; a link there is removed, not followed).
        for label in removedLabels { unlink((settings.output as NSString).appendingPathComponent(label)) }
        try store.recordSkipped(scan.skipped)
        summary.ignored = scan.ignored
        summary.skippedFiles = scan.skipped.count
        summary.rewritten = try store.requeueMissingLabels(
            output: settings.output, emptyFiles: settings.empty == .write)
        try store.saveNames(try classNames())

        let work = try store.remaining(retryFailed: retryFailed)
        summary.skipped = scan.images.count - work.count
        let decoded = BoundedQueue<(Int64, String, String, Bool, Result<(Image, BoxLabels?), Error>)>(capacity: 2)
        let (data, boxes) = (settings.data, settings.boxes)
        let collisions = scan.collisions
        let producer = Thread {
            for item in work where !decoded.isClosed {
                let full = (data as NSString).appendingPathComponent(item.path)
                let result: Result<(Image, BoxLabels?), Error>
                if let other = collisions[item.path] {
                    result = .failure(CollisionError(path: item.path, other: other))
                } else {
                    result = Result {
                        let image = try ImageDecoder.decode(path: full)
                        let prompts = try boxes.map {
                            try BoxLabels.read(
                                path: BoxLabels.path(forImage: item.path, in: $0), width: image.width,
                                height: image.height)
                        }
                        return (image, prompts)
                    }
                }
                decoded.put((item.id, item.path, item.label, item.completions > 0, result))
            }
            decoded.close()
        }
        producer.stackSize = 1 << 20
        producer.start()

        var completed = 0
        while let (id, path, label, written, input) = decoded.take() {
            let began = Date()
            var event = Event(
                path: path, state: .failed, objects: 0, error: nil, completed: 0, total: work.count, seconds: 0)
            do {
                let (image, prompts) = try input.get()
                let (state, objects, small) = try annotate(image, boxes: prompts, label: label, written: written)
                (summary.small, summary.smallParts) = (summary.small + small.masks, summary.smallParts + small.parts)
                let seconds = Date().timeIntervalSince(began)
                try store.finish(
                    imageId: id, state: state, objects: objects, width: image.width, height: image.height,
                    seconds: seconds)
                (event.state, event.objects, event.seconds) = (state, objects.count, seconds)
                if state == .done { summary.done += 1 } else { summary.empty += 1 }
                summary.objects += objects.count
                summary.outlines += objects.filter { $0.source == .boxOutline }.count
            } catch {
                let reason = AnnotateError.sentence(for: error)
                let seconds = Date().timeIntervalSince(began)
                try store.fail(imageId: id, reason: reason, seconds: seconds)
                (event.error, event.seconds) = (reason, seconds)
                summary.failed += 1
            }
            completed += 1
            event.completed = completed
            progress(event)
            if completed < work.count && shouldStop() {
                summary.interrupted = true
                decoded.close()
                break
            }
        }
        if detector == nil { try store.saveNames(try classNames()) }
        summary.seconds = Date().timeIntervalSince(start)
        return summary
    }

    /// The names of the classes the labels use: the detector's; for a box dataset, those of its names file
    /// (`names=`, or the dataset's own data.yaml) with any id it does not name named by its number.
    func classNames() throws -> [Int: String] {
        if let detector { return detector.names }
        var names = try settings.names.map { try DatasetNames.read(path: $0) } ?? [:]
        if let highest = try store.highestClass() {
            for id in 0...min(highest, BoxLabels.maximumClasses - 1) where names[id] == nil { names[id] = String(id) }
        }
        return names
    }

    /// Polygon points an image's label may hold: ragged masks (noise, a model that is not trained) give contours of
    /// millions of points, whose text would take gigabytes.
    public static let maximumPointsPerImage = 5_000_000

    struct TooManyPoints: Error, LocalizedError {
        var errorDescription: String? {
            "the masks' polygons hold more than \(maximumPointsPerImage) points: SAM's masks are ragged (epsilon=, min_area= or polygon=largest make fewer)"
        }
    }

    /// Masks and parts of masks that `min_area` dropped in one image.
    struct SmallCounts {
        var masks = 0, parts = 0
    }

    struct CollisionError: Error, LocalizedError {
        let path: String, other: String
        var errorDescription: String? { "\(path) and \(other) would write the same label file; rename one of them" }
    }

    /// One image: boxes (the detector's, or the box dataset's), their masks, the label file. Returns the state and
    /// the objects written.
    /// `label`: the label file's path relative to the output folder; `written`: whether the job has written it
    /// before (so that empty=skip removes a label file only where the job wrote one).
    func annotate(_ image: Image, boxes: BoxLabels?, label: String, written: Bool = false) throws -> (
        ImageState, [ObjectRecord], SmallCounts
    ) {
        guard image.width >= 10, image.height >= 10 else {
            throw ImageTooSmall(width: image.width, height: image.height)
        }
        // A box dataset's class ids are its own: any id is valid there.
        let classCount = detector.map { max($0.model.classCount, ($0.names.keys.max() ?? -1) + 1) } ?? Int.max
        var small = SmallCounts()
        let found =
            if let boxes { try segment(boxes, in: image, small: &small) } else {
                try segmentDetections(in: image, small: &small)
            }
        let objects = found.map { object, lines in
            var object = object
            object.lines = lines.filter { LabelWriter.problem($0, classCount: classCount) == nil }.map(\.text)
            return object
        }
        if objects.isEmpty {
            if settings.empty == .write {
                try writeLabel("", to: label, written: written)
            } else if written {
                unlink((settings.output as NSString).appendingPathComponent(label))
            }
            return (.empty, [], small)
        }
        // The objects' lines are checked and printed already: the file is them, each once.
        try writeLabel(LabelWriter.contents(lines: objects.flatMap(\.lines)), to: label, written: written)
        return (.done, objects, small)
    }

    /// Writes an image's label file. Where the job has not written it before (`written` false) but a file is
    /// there, it must hold these very bytes (a run killed between writing the file and recording it writes the
    /// same bytes again); any other file is the user's, and the image fails rather than replace it.
    func writeLabel(_ text: String, to relative: String, written: Bool) throws {
        let path = (settings.output as NSString).appendingPathComponent(relative)
        var info = stat()
        if !written, lstat(path, &info) == 0 {
            let bytes = Data(text.utf8)
            let same =
                info.st_mode & S_IFMT == S_IFREG && Int(info.st_size) == bytes.count
                && FileManager.default.contents(atPath: path) == bytes
            guard same else {
                throw AnnotateError.unreadable(
                    path: path,
                    reason:
                        "already exists and was not written by this job; move it away (the job never replaces a file it did not write)"
                )
            }
        }
        try write(text, to: relative)
    }

    /// Writes a file of the job (`relative` to the output folder) atomically, never through a symbolic link.
    func write(_ text: String, to relative: String) throws {
        try LabelWriter.writeAtomically(text, to: relative, in: settings.output, token: token)
    }

    /// SAM's masks for `boxes` (all in one call, the image encoded once) as polygons by the job's policy.
    /// `small` counts the masks and parts that `min_area` drops.
    func masks(for boxes: [SamBox], in image: Image, small: inout SmallCounts) throws -> [(
        polygons: [[(x: Float, y: Float)]], score: Float
    )] {
        guard !boxes.isEmpty else { return [] }
        sam.setImage(image)
        defer { sam.resetImage() }
        // Masks at the image's size exist for one call's boxes at a time, however many boxes an image has.
        let perCall = Self.promptsPerCall(width: image.width, height: image.height)
        var results: [(polygons: [[(x: Float, y: Float)]], score: Float)] = []
        var points = 0
        for start in stride(from: 0, to: boxes.count, by: perCall) {
            let chunk = Array(boxes[start..<min(start + perCall, boxes.count)])
            let prediction = try sam.predict(boxes: chunk, lowResLogits: false)
            for (mask, score) in zip(prediction.masks, prediction.scores) {
                let minArea = settings.minArea ?? 0
                if minArea > 0, case let area = mask.area, area > 0, area < minArea {
                    small.masks += 1
                    results.append(([], score))
                    continue
                }
                let (found, dropped) = maskPolygons(
                    mask.pixels, width: mask.width, height: mask.height, policy: policy,
                    minimumPartArea: Double(minArea), epsilon: settings.epsilon ?? 0)
                small.parts += dropped
                let polygons = found.filter { $0.count >= 3 }
                points += polygons.reduce(0) { $0 + $1.count }
                guard points <= Self.maximumPointsPerImage else { throw TooManyPoints() }
                results.append((polygons.map { normalized($0, width: image.width, height: image.height) }, score))
            }
        }
        return results
    }

    /// Boxes SAM decodes in one call: each box's mask is held at the image's size until it becomes polygons, so a
    /// call holds at most 64 masks and about 256 MB of them (4 for a 64-megapixel image, 1 above), whatever the
    /// number of boxes. It depends on the image's size alone, so a resumed job writes the same bytes.
    static func promptsPerCall(width: Int, height: Int) -> Int {
        max(1, min(64, (256 << 20) / max(width * height, 1)))
    }

    /// The auto-annotation job: detections → SAM; an object whose SAM score is not above `sam_conf` is dropped.
    func segmentDetections(in image: Image, small: inout SmallCounts) throws -> [(
        object: ObjectRecord, lines: [LabelLine]
    )] {
        guard let detector else { return [] }
        let options = NMSOptions(
            confidence: settings.confidence, iou: settings.iou, maxDetections: settings.maxDetections,
            classes: settings.classes.map(Set.init))
        let detections = detector.detect(image, imgsz: settings.imageSize, options: options)
        let results = try masks(
            for: detections.map { SamBox(x1: $0.x1, y1: $0.y1, x2: $0.x2, y2: $0.y2) }, in: image, small: &small)
        return zip(detections, results).filter { $1.score > settings.samConfidence && !$1.polygons.isEmpty }.map {
            detection, result in
            (
                ObjectRecord(
                    classId: detection.classId, confidence: detection.confidence,
                    box: (detection.x1, detection.y1, detection.x2, detection.y2), samScore: result.score,
                    points: result.polygons.reduce(0) { $0 + $1.count }),
                result.polygons.map { LabelLine(classId: detection.classId, points: $0) }
            )
        }
    }

    /// The box-dataset job: every labelled object is kept. A box becomes SAM's polygon, or its own outline when
    /// SAM's score is not above `sam_conf` or its mask is empty (a labelled object is never lost); a row that
    /// already is a polygon is copied as it is.
    func segment(_ labels: BoxLabels, in image: Image, small: inout SmallCounts) throws -> [(
        object: ObjectRecord, lines: [LabelLine]
    )] {
        let boxes = labels.rows.compactMap { row -> SamBox? in
            if case .box(_, let x1, let y1, let x2, let y2) = row {
                SamBox(x1: x1, y1: y1, x2: x2, y2: y2)
            } else {
                nil
            }
        }
        var results = try masks(for: boxes, in: image, small: &small)[...]
        var objects: [(object: ObjectRecord, lines: [LabelLine])] = []
        for row in labels.rows {
            switch row {
            case .box(let classId, let x1, let y1, let x2, let y2):
                let (polygons, score) = results.removeFirst()
                let kept = score > settings.samConfidence && !polygons.isEmpty
                let outline =
                    kept
                    ? polygons
                    : [
                        [(x1, y1), (x2, y1), (x2, y2), (x1, y2)].map {
                            (
                                x: min(max($0.0 / Float(image.width), 0), 1),
                                y: min(max($0.1 / Float(image.height), 0), 1)
                            )
                        }
                    ]
                objects.append(
                    (
                        ObjectRecord(
                            classId: classId, confidence: 1, box: (x1, y1, x2, y2), samScore: score,
                            points: outline.reduce(0) { $0 + $1.count }, source: kept ? .sam : .boxOutline),
                        outline.map { LabelLine(classId: classId, points: $0) }
                    ))
            case .polygon(let classId, let points, let text):
                let (xs, ys) = (points.map { $0.x * Float(image.width) }, points.map { $0.y * Float(image.height) })
                objects.append(
                    (
                        ObjectRecord(
                            classId: classId, confidence: 1, box: (xs.min()!, ys.min()!, xs.max()!, ys.max()!),
                            samScore: 0, points: points.count, source: .label),
                        [LabelLine(classId: classId, points: points, verbatim: text)]
                    ))
            }
        }
        return objects
    }

    struct ImageTooSmall: Error, LocalizedError {
        let width: Int, height: Int
        var errorDescription: String? { "\(width)×\(height) pixels: below the 10 pixels a side Ultralytics trains on" }
    }
}

/// A first-in first-out queue of bounded size between one producer and one consumer.
// Unchecked: every access to `items` and `closed` holds `condition`.
final class BoundedQueue<Element>: @unchecked Sendable {
    private var items: [Element] = []
    private var closed = false
    private let capacity: Int
    private let condition = NSCondition()

    init(capacity: Int) { self.capacity = capacity }

    /// Adds an item, waiting while the queue is full; an item put after `close` is dropped.
    func put(_ item: Element) {
        condition.lock()
        while items.count >= capacity && !closed { condition.wait() }
        if !closed { items.append(item) }
        condition.broadcast()
        condition.unlock()
    }

    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }

    var isClosed: Bool {
        condition.lock()
        defer { condition.unlock() }
        return closed
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
