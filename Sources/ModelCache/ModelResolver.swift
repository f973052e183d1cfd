import Crypto
import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Turns a model argument into a file, as Ultralytics does with `YOLO("yolov8x.pt")`: an existing path first, then
/// the weights cache, then a download of an official name into the cache. A download goes to `NAME.partial`
/// (resumed with an HTTP range request after an interruption), is checked against the announced size and the
/// known digest, and only then renamed to `NAME` — so a file named like a model in the cache is always complete.
public struct ModelResolver: Sendable {
    /// The weights cache: `$AUTOANNOTATE_WEIGHTS`, else `~/.cache/autoannotate`.
    public var cache: String
    public var catalog: [KnownModel]
    /// Seconds without a byte before a download is abandoned (its partial file is kept for the next try).
    public var idleTimeout: Double = 60
    /// The most a download of a model whose size is not recorded may write (the largest official file, Meta's
    /// sam_vit_h, is 2.56 GB): a server that sends more, or announces more, is cut off and its bytes removed, so
    /// a wrong mirror cannot fill the disk. A model of recorded size may not exceed that size.
    public var maximumDownloadBytes: Int64 = 4 << 30

    public init(cache: String = ModelResolver.defaultCache, catalog: [KnownModel] = KnownModels.catalog()) {
        (self.cache, self.catalog) = (cache, catalog)
    }

    public static var defaultCache: String {
        if let set = ProcessInfo.processInfo.environment["AUTOANNOTATE_WEIGHTS"], !set.isEmpty { return set }
        return (NSHomeDirectory() as NSString).appendingPathComponent(".cache/autoannotate")
    }

    /// Progress of a download: bytes so far and the total, where the server announced it.
    public typealias Progress = (_ received: Int64, _ total: Int64?) -> Void

    /// The path of the model `argument` names; downloads an official model that is neither at that path nor in
    /// the cache.
    public func resolve(_ argument: String, progress: @escaping Progress = { _, _ in }) throws -> String {
        if FileManager.default.fileExists(atPath: argument) { return argument }
        let name = (argument as NSString).lastPathComponent
        let cached = (cache as NSString).appendingPathComponent(name)
        guard let model = catalog.first(where: { $0.name == name }) else {
            if FileManager.default.fileExists(atPath: cached) { return cached }
            throw ModelError.notFound(argument: argument, cache: cache, official: catalog.map(\.name))
        }
        if FileManager.default.fileExists(atPath: cached) {
            try verifyCached(model, at: cached)
            return cached
        }
        try download(model, to: cached, progress: progress)
        return cached
    }

    /// A cached file must still be the one that was downloaded (or first put there): its SHA-256 is kept beside
    /// it (`NAME.sha256`, with the size and time it had), and is computed again only when those changed.
    func verifyCached(_ model: KnownModel, at path: String) throws {
        let (size, time) = stamp(path)
        if let expected = model.size, size != expected {
            throw ModelError.corrupt(
                path: path, reason: "\(size) bytes, the official file has \(expected); delete it to download it again")
        }
        let record = try? String(contentsOfFile: path + ".sha256", encoding: .utf8).split(separator: " ").map(
            String.init)
        if let record, record.count == 3, record[1] == "\(size)", record[2] == "\(time)" { return }
        let digest = try sha256(of: path)
        if let record, let first = record.first, first != digest {
            throw ModelError.corrupt(
                path: path,
                reason:
                    "its SHA-256 changed since it was downloaded (\(first.prefix(12))… → \(digest.prefix(12))…); delete it to download it again"
            )
        }
        try check(digest, of: model, at: path)
        try remember(digest, of: path)
    }

    func check(_ digest: String, of model: KnownModel, at path: String) throws {
        if let expected = model.sha256, !digest.hasPrefix(expected.lowercased()) {
            throw ModelError.corrupt(path: path, reason: "SHA-256 \(digest), the official file's is \(expected)…")
        }
    }

    func remember(_ digest: String, of path: String) throws {
        let (size, time) = stamp(path)
        try "\(digest) \(size) \(time)".write(toFile: path + ".sha256", atomically: true, encoding: .utf8)
    }

    func stamp(_ path: String) -> (size: Int, time: Double) {
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        return (
            (attributes?[.size] as? Int) ?? -1, (attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        )
    }

    // MARK: - Download

    func download(_ model: KnownModel, to destination: String, progress: @escaping Progress) throws {
        try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
        // One download of a file at a time, across processes; whoever waited finds the file done.
        let lock = try FileLock(path: destination + ".lock")
        defer { lock.release() }
        if FileManager.default.fileExists(atPath: destination) { return }

        let partial = destination + ".partial"
        guard let url = URL(string: model.url) else {
            throw ModelError.download(model: model, cache: cache, reason: "bad URL")
        }
        let limit = model.size.map(Int64.init) ?? maximumDownloadBytes
        let transfer = try Transfer(
            path: partial, url: url, idleTimeout: idleTimeout, limit: limit, progress: progress)
        let outcome = Result { try transfer.run() }
        if case .failure(let error as Transfer.TooLarge) = outcome {
            try? FileManager.default.removeItem(atPath: partial)
            throw ModelError.download(model: model, cache: cache, reason: error.localizedDescription)
        }
        let size = stamp(partial).size
        func failed(_ reason: String) -> ModelError {
            if size <= 0 { try? FileManager.default.removeItem(atPath: partial) }
            return .download(
                model: model, cache: cache,
                reason: reason
                    + (size > 0 ? "; \(size) bytes are kept in \(partial) and the next run resumes from there" : ""))
        }
        let (status, total): (Int, Int64?)
        switch outcome {
        case .success(let result): (status, total) = result
        case .failure(let error): throw failed(error.localizedDescription)
        }
        guard status == 200 || status == 206 else { throw failed("the server answered HTTP \(status)") }
        if let total, size != total { throw failed("the transfer stopped at \(size) of \(total) bytes") }
        do {
            if let expected = model.size, size != expected {
                throw ModelError.corrupt(path: model.url, reason: "\(size) bytes, the official file has \(expected)")
            }
            let digest = try sha256(of: partial)
            try check(digest, of: model, at: model.url)
            try durableRename(partial, to: destination)
            try remember(digest, of: destination)
        } catch ModelError.corrupt(let path, let reason) {
            // A complete download that is not the official file is never kept, nor resumed.
            try? FileManager.default.removeItem(atPath: partial)
            throw ModelError.corrupt(path: path, reason: reason + "; the download was removed")
        }
    }

    func sha256(of path: String) throws -> String {
        guard let (digest, _) = try fileSHA256(path: path) else {
            throw ModelError.corrupt(path: path, reason: "unreadable")
        }
        return digest
    }

    /// fsync the file, rename it into place, fsync the folder: after a crash the name is absent or complete.
    func durableRename(_ from: String, to: String) throws {
        let descriptor = open(from, O_RDONLY)
        if descriptor >= 0 {
            fsync(descriptor)
            close(descriptor)
        }
        guard rename(from, to) == 0 else {
            throw ModelError.corrupt(path: to, reason: String(cString: strerror(errno)))
        }
        let folder = open((to as NSString).deletingLastPathComponent, O_RDONLY)
        if folder >= 0 {
            fsync(folder)
            close(folder)
        }
    }
}

/// The SHA-256 (lower-case hex) and size of a file, streamed in 8 MB pieces, never held in memory at once; nil
/// when the file cannot be opened.
public func fileSHA256(path: String) throws -> (sha256: String, size: Int)? {
    guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
    defer { try? handle.close() }
    var hasher = SHA256()
    var size = 0
    while let chunk = try handle.read(upToCount: 8 << 20), !chunk.isEmpty {
        hasher.update(data: chunk)
        size += chunk.count
    }
    return (hasher.finalize().map { String(format: "%02x", $0) }.joined(), size)
}

/// Why a model argument does not give a file.
public enum ModelError: Error, LocalizedError, Equatable {
    case notFound(argument: String, cache: String, official: [String])
    case download(model: KnownModel, cache: String, reason: String)
    case corrupt(path: String, reason: String)

    public var errorDescription: String? {
        switch self {
        case .notFound(let argument, let cache, let official):
            "\(argument): no such file, and not in the weights cache (\(cache)); official names that download by themselves: "
                + official.joined(separator: ", ")
        case .download(let model, let cache, let reason):
            "\(model.name) is not here and could not be downloaded (\(reason)).\n  Download it yourself from \(model.url)\n"
                + "  and put it in \(cache) (or set AUTOANNOTATE_WEIGHTS to the folder that has it, or pass its path)."
        case .corrupt(let path, let reason): "\(path): not the official file (\(reason))"
        }
    }
}

/// One HTTP GET into a `.partial` file, resumed from its current size with a range request; runs synchronously.
// Unchecked: its state is touched by the session's delegate callbacks, one at a time, and read once the transfer ends.
final class Transfer: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    let path: String, url: URL, idleTimeout: Double
    /// The most bytes the file may reach.
    let limit: Int64
    let progress: ModelResolver.Progress
    let file: FileHandle
    var offset: Int64
    var status = 0
    /// Whether the response is the file (200 or 206): the body of any other answer is not written.
    var accepted = false
    var total: Int64?
    var failure: Error?
    let finished = DispatchSemaphore(value: 0)

    struct TooLarge: Error, LocalizedError {
        let limit: Int64
        var errorDescription: String? {
            "the server sent or announced more than \(limit) bytes, more than the model has; the download was removed"
        }
    }

    init(path: String, url: URL, idleTimeout: Double, limit: Int64, progress: @escaping ModelResolver.Progress)
        throws
    {
        self.limit = limit
        if !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
        }
        guard let file = FileHandle(forUpdatingAtPath: path) else {
            throw ModelError.corrupt(path: path, reason: "cannot be written")
        }
        (self.path, self.url, self.idleTimeout, self.progress, self.file) = (path, url, idleTimeout, progress, file)
        offset = Int64(try file.seekToEnd())
    }

    /// The final HTTP status and the file's total size (where the server said it).
    func run() throws -> (status: Int, total: Int64?) {
        defer { try? file.close() }
        var request = URLRequest(url: url)
        if offset > 0 { request.setValue("bytes=\(offset)-", forHTTPHeaderField: "Range") }
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = idleTimeout
        let session = URLSession(configuration: configuration, delegate: self, delegateQueue: nil)
        session.dataTask(with: request).resume()
        finished.wait()
        session.finishTasksAndInvalidate()
        if let failure { throw failure }
        return (status, total)
    }

    func urlSession(
        _ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
        completionHandler: @escaping (URLSession.ResponseDisposition) -> Void
    ) {
        status = (response as? HTTPURLResponse)?.statusCode ?? 0
        switch status {
        case 206 where contentRangeStart(response) == offset:
            total = contentRangeTotal(response)
        case 200, 206:
            // The whole file (the server ignored the range, or answered another one): start over.
            status = 200
            offset = 0
            try? file.truncate(atOffset: 0)
            total = response.expectedContentLength >= 0 ? response.expectedContentLength : nil
        default:
            completionHandler(.cancel)
            return
        }
        if let total, total > limit {
            failure = TooLarge(limit: limit)
            completionHandler(.cancel)
            return
        }
        accepted = true
        completionHandler(.allow)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        guard accepted, failure == nil else { return }
        guard offset + Int64(data.count) <= limit else {
            failure = TooLarge(limit: limit)
            dataTask.cancel()
            return
        }
        do {
            try file.write(contentsOf: data)
            offset += Int64(data.count)
            progress(offset, total)
        } catch {
            failure = error
            dataTask.cancel()
        }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        // A refused status cancels the task on purpose: the status is the answer, not the cancellation.
        if let error, failure == nil, (200...299).contains(status) || status == 0 { failure = error }
        finished.signal()
    }

    /// `Content-Range: bytes START-END/TOTAL`.
    func contentRange(_ response: URLResponse) -> (start: Int64, total: Int64?)? {
        guard let value = (response as? HTTPURLResponse)?.value(forHTTPHeaderField: "Content-Range"),
            value.hasPrefix("bytes ")
        else { return nil }
        let parts = value.dropFirst(6).split(separator: "/")
        guard let range = parts.first, let start = range.split(separator: "-").first.flatMap({ Int64($0) }) else {
            return nil
        }
        return (start, parts.count > 1 ? Int64(parts[1]) : nil)
    }

    func contentRangeStart(_ response: URLResponse) -> Int64? { contentRange(response)?.start }
    func contentRangeTotal(_ response: URLResponse) -> Int64? { contentRange(response)?.total ?? nil }
}

/// An exclusive advisory lock on a file, held until `release` (or the process ends).
final class FileLock {
    let descriptor: Int32

    init(path: String) throws {
        descriptor = open(path, O_RDWR | O_CREAT, 0o644)
        guard descriptor >= 0 else { throw ModelError.corrupt(path: path, reason: String(cString: strerror(errno))) }
        flock(descriptor, LOCK_EX)
    }

    func release() {
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }
}
