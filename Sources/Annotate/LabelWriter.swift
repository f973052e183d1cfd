import Foundation

/// One polygon line of a YOLO segmentation label.
public struct LabelLine: Sendable, Equatable {
    public var classId: Int
    /// Normalised (x, y) points.
    public var points: [(x: Float, y: Float)]
    /// The line as read from an existing label file, written back unchanged.
    public var verbatim: String? = nil

    public static func == (a: Self, b: Self) -> Bool {
        a.classId == b.classId && a.verbatim == b.verbatim && a.points.count == b.points.count
            && zip(a.points, b.points).allSatisfy { $0.x == $1.x && $0.y == $1.y }
    }

    /// `class x1 y1 … xn yn` with each coordinate printed as Ultralytics prints it: the float32 value widened to
    /// a double and written as Python's repr (the shortest text that reads back to the same double).
    public var text: String {
        verbatim ?? "\(classId) " + points.flatMap { [$0.x, $0.y] }.map { "\(Double($0))" }.joined(separator: " ")
    }
}

/// Writes label files atomically and checks every line as Ultralytics' dataset checker would before it is written.
public enum LabelWriter {
    /// Why a line cannot be written (a bug upstream: the pipeline never produces these on purpose).
    public static func problem(_ line: LabelLine, classCount: Int) -> String? {
        if line.points.count < 3 { return "a polygon of \(line.points.count) points (at least 3 are needed)" }
        if line.classId < 0 || line.classId >= classCount { return "class \(line.classId) outside 0..<\(classCount)" }
        if line.points.contains(where: { !(0...1).contains($0.x) || !(0...1).contains($0.y) }) {
            return "coordinates outside [0, 1]"
        }
        return nil
    }

    /// The file's contents: valid lines, one per object, duplicates dropped (Ultralytics' checker removes them).
    public static func contents(_ lines: [LabelLine], classCount: Int) -> String {
        var seen = Set<String>()
        var out = ""
        for line in lines where problem(line, classCount: classCount) == nil {
            let text = line.text
            if seen.insert(text).inserted { out += text + "\n" }
        }
        return out
    }

    /// Writes `text` to `path` so that the file is either absent, the old one, or complete: a temporary file in
    /// the same folder, flushed to disk, then renamed over the target.
    public static func writeAtomically(_ text: String, to path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let temporary = (directory as NSString).appendingPathComponent(
            ".\((path as NSString).lastPathComponent).\(getpid()).tmp")
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard descriptor >= 0 else {
            throw AnnotateError.unreadable(path: temporary, reason: String(cString: strerror(errno)))
        }
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeBufferPointer { write(descriptor, $0.baseAddress, $0.count) }
            if n < 0 {
                close(descriptor)
                unlink(temporary)
                throw AnnotateError.unreadable(path: temporary, reason: String(cString: strerror(errno)))
            }
            written += n
        }
        fsync(descriptor)
        close(descriptor)
        guard rename(temporary, path) == 0 else {
            unlink(temporary)
            throw AnnotateError.unreadable(path: path, reason: String(cString: strerror(errno)))
        }
    }

    /// Removes temporary files a killed run left behind.
    public static func removeTemporaries(under output: String) {
        guard let walker = FileManager.default.enumerator(atPath: output) else { return }
        for case let relative as String in walker
        where (relative as NSString).lastPathComponent.hasPrefix(".") && relative.hasSuffix(".tmp") {
            try? FileManager.default.removeItem(atPath: (output as NSString).appendingPathComponent(relative))
        }
    }

    /// `data.yaml` for training on the output as is: the class names of the detector (by id).
    public static func dataYAML(names: [Int: String], data: String) -> String {
        var out = "# Written by autoannotate: YOLO segmentation labels for the images in \(data)\n"
        out += "path: \(data)\ntrain: .\nval: .\n"
        out += "names:\n"
        for id in names.keys.sorted() { out += "  \(id): \(names[id]!)\n" }
        return out
    }
}

/// The one-process-per-job lock: an advisory lock on a file in the output folder, released by the system when
/// the process ends in any way (kill -9 included), so a crashed run never leaves a job locked.
final class JobLock {
    let descriptor: Int32

    init(output: String) throws {
        let path = (output as NSString).appendingPathComponent("autoannotate.lock")
        descriptor = open(path, O_RDWR | O_CREAT, 0o644)
        guard descriptor >= 0 else {
            throw AnnotateError.unreadable(path: path, reason: String(cString: strerror(errno)))
        }
        if flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            var buffer = [UInt8](repeating: 0, count: 64)
            let n = pread(descriptor, &buffer, 64, 0)
            close(descriptor)
            let owner =
                n > 0
                ? String(decoding: buffer.prefix(n), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                : "unknown"
            throw AnnotateError.locked(output: output, owner: owner)
        }
        let text = Array("pid \(getpid())\n".utf8)
        ftruncate(descriptor, 0)
        _ = pwrite(descriptor, text, text.count, 0)
    }

    deinit {
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }
}
