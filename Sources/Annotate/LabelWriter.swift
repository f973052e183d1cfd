import Foundation
import Yams

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

    /// Writes `text` to `path` so that the file is either absent, the old one, or complete: a temporary file in
    /// the same folder, flushed to disk, then renamed over the target.
    public static func writeAtomically(_ text: String, to path: String) throws {
        try writeAtomically(
            text, to: (path as NSString).lastPathComponent, in: (path as NSString).deletingLastPathComponent)
    }

    /// Writes `text` to `relative` inside the folder `root` atomically, never through a symbolic link: each folder
    /// on the way is made or must be a real folder, the temporary file (`.aa-TOKEN-RANDOM.tmp`, short whatever the
    /// target's name, so that any name the file system allows can be written) is created exclusively and without
    /// following links, and the rename replaces a link at the target rather than writing through it.
    public static func writeAtomically(_ text: String, to relative: String, in root: String, token: String = "")
        throws
    {
        var directory = root
        for component in (relative as NSString).deletingLastPathComponent.split(separator: "/") where component != "." {
            directory = (directory as NSString).appendingPathComponent(String(component))
            var info = stat()
            if lstat(directory, &info) == 0 {
                guard info.st_mode & S_IFMT == S_IFDIR else {
                    throw AnnotateError.unreadable(
                        path: directory,
                        reason: "not a folder (a symbolic link or a file); autoannotate does not write through links")
                }
            } else if mkdir(directory, 0o755) != 0 && errno != EEXIST {
                throw AnnotateError.unreadable(
                    path: directory, reason: "the folder cannot be made: \(String(cString: strerror(errno)))")
            }
        }
        let path = (root as NSString).appendingPathComponent(relative)
        let random = String(UInt64.random(in: 0...UInt64.max) >> 32, radix: 16)
        let temporary = (directory as NSString).appendingPathComponent(
            temporaryPrefix(token: token) + String(repeating: "0", count: 8 - random.count) + random + ".tmp")
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw AnnotateError.unreadable(
                path: temporary, reason: "cannot be created: \(String(cString: strerror(errno)))")
        }
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeBufferPointer { write(descriptor, $0.baseAddress, $0.count) }
            if n <= 0 {
                let reason = n < 0 ? String(cString: strerror(errno)) : "nothing written"
                close(descriptor)
                unlink(temporary)
                throw AnnotateError.unreadable(path: path, reason: "cannot be written: \(reason)")
            }
            written += n
        }
        fsync(descriptor)
        close(descriptor)
        guard rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw AnnotateError.unreadable(path: path, reason: "cannot be written: \(reason)")
        }
    }

    /// The name every temporary file of the job with `token` starts with.
    static func temporaryPrefix(token: String) -> String { token.isEmpty ? ".aa-" : ".aa-\(token)-" }

    /// Removes the temporary files a killed run of the job with `token` left behind under `output`, and nothing
    /// else: no other file, not through a symbolic link.
    public static func removeTemporaries(under output: String, token: String) {
        guard !token.isEmpty else { return }
        let prefix = temporaryPrefix(token: token)
        var folders = [output]
        while let folder = folders.popLast() {
            guard let directory = opendir(folder) else { continue }
            defer { closedir(directory) }
            while let entry = readdir(directory) {
                let bytes = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
                guard let name = String(validating: bytes, as: UTF8.self), name != ".", name != ".." else { continue }
                let path = (folder as NSString).appendingPathComponent(name)
                var info = stat()
                guard lstat(path, &info) == 0 else { continue }
                if info.st_mode & S_IFMT == S_IFDIR {
                    folders.append(path)
                } else if info.st_mode & S_IFMT == S_IFREG, name.hasPrefix(prefix), name.hasSuffix(".tmp") {
                    unlink(path)
                }
            }
        }
    }

    /// Ultralytics' `data.yaml` for a dataset in `path` whose image folders are `train` and `val` (relative to
    /// it), naming the classes by id. Written by Yams' emitter, never by string concatenation: a name or folder
    /// holding a newline, a colon or a `#` reads back as itself and cannot add or change a key.
    public static func dataYAML(path: String, train: String, val: String, names: [Int: String]) throws -> String {
        let document = Node.mapping(
            Node.Mapping([
                ("path", try path.represented()), ("train", try train.represented()), ("val", try val.represented()),
                (
                    "names",
                    Node.mapping(
                        Node.Mapping(
                            try names.keys.sorted().map { (try $0.represented(), try names[$0]!.represented()) }))
                ),
            ]))
        return "# Written by autoannotate export: YOLO segmentation labels beside the images\n"
            + (try Yams.serialize(node: document, width: -1, allowUnicode: true))
    }

    /// A label file's contents from its checked lines: each once, in order, newline-terminated (Ultralytics'
    /// checker drops duplicates).
    public static func contents(lines: [String]) -> String {
        var seen = Set<String>()
        return lines.filter { seen.insert($0).inserted }.map { $0 + "\n" }.joined()
    }
}

/// The one-process-per-job lock: an advisory lock on a file in the output folder, released by the system when
/// the process ends in any way (kill -9 included), so a crashed run never leaves a job locked.
final class JobLock {
    let descriptor: Int32

    static let fileName = "autoannotate.lock"

    init(output: String) throws {
        let path = (output as NSString).appendingPathComponent(Self.fileName)
        // Never through a link: a planted `autoannotate.lock` → somewhere would have the lock truncate its target.
        descriptor = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw AnnotateError.unreadable(
                path: path,
                reason: errno == ELOOP
                    ? "a symbolic link; autoannotate does not follow links in a job folder (remove it)"
                    : "the job's lock file cannot be opened: \(String(cString: strerror(errno)))")
        }
        var info = stat()
        guard fstat(descriptor, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            close(descriptor)
            throw AnnotateError.unreadable(path: path, reason: "not a regular file; remove it")
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
