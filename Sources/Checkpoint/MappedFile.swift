import Foundation

/// A file mapped into memory, read through bounds-checked accessors: a checkpoint is never copied into a
/// second buffer, and no offset or size read from a header is trusted before it is checked against the file.
/// The mapping is private and read-only, so pages whose tensors have been copied can be handed back
/// (`releasePages`): the model's weights are then in memory once while it loads, not twice.
// Unchecked: the mapping is read-only; handing pages back only drops them, and a later read maps them again.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let data: Data
    /// The mapped bytes; nil for bytes already in memory (their pages are never handed back).
    private let mapping: UnsafeRawBufferPointer?

    public init(path: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw CheckpointError.notFound(path: path)
        }
        guard !isDirectory.boolValue else { throw CheckpointError.unreadable(path: path, reason: "it is a directory") }
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw CheckpointError.unreadable(path: path, reason: String(cString: strerror(errno)))
        }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            throw CheckpointError.unreadable(path: path, reason: String(cString: strerror(errno)))
        }
        let size = Int(status.st_size)
        self.path = path
        guard size > 0 else {  // mmap refuses an empty range; an empty file is refused by its readers
            (data, mapping) = (Data(), nil)
            return
        }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, descriptor, 0), base != MAP_FAILED else {
            // A file system that cannot map files: read it into memory instead.
            do {
                (data, mapping) = (try Data(contentsOf: URL(fileURLWithPath: path)), nil)
            } catch {
                throw CheckpointError.unreadable(path: path, reason: error.localizedDescription)
            }
            return
        }
        mapping = UnsafeRawBufferPointer(start: base, count: size)
        data = Data(bytesNoCopy: base, count: size, deallocator: .custom { pointer, count in munmap(pointer, count) })
    }

    /// For bytes already in memory (tests, fuzzing).
    public init(data: Data, path: String) {
        self.data = data
        self.path = path
        mapping = nil
    }

    /// Hands back the pages under `bytes` (a slice of `data`) once they have been copied: they leave this process's
    /// memory, and a later read maps them again from the file (the mapping is private and never written).
    func releasePages(_ bytes: Data) {
        guard let mapping, let base = mapping.baseAddress, !bytes.isEmpty else { return }
        bytes.withUnsafeBytes { (view: UnsafeRawBufferPointer) in
            guard let start = view.baseAddress, start >= base, start + view.count <= base + mapping.count else {
                return
            }
            let page = Int(sysconf(Int32(_SC_PAGESIZE)))
            let first = (start - base) / page * page
            let end = min(mapping.count, (start - base + view.count + page - 1) / page * page)
            madvise(UnsafeMutableRawPointer(mutating: base + first), end - first, MADV_DONTNEED)
        }
    }

    public var count: Int { data.count }

    func corrupt(_ reason: String) -> CheckpointError { .corrupt(path: path, reason: reason) }

    /// `count` bytes at `offset`, or a `corrupt` error naming `what` if they are not all inside the file.
    func bytes(at offset: Int, count: Int, _ what: @autoclosure () -> String) throws -> Data {
        guard offset >= 0, count >= 0, offset <= data.count - count else {
            throw corrupt(
                "\(what()) at byte \(offset), \(count) bytes long, lies outside the \(data.count)-byte file (truncated?)"
            )
        }
        let start = data.startIndex + offset
        return data[start..<(start + count)]
    }

    /// A little-endian unsigned integer of `size` bytes.
    func uint(at offset: Int, size: Int, _ what: @autoclosure () -> String) throws -> UInt64 {
        let raw = try bytes(at: offset, count: size, what())
        var value: UInt64 = 0
        for (shift, byte) in raw.enumerated() { value |= UInt64(byte) << (8 * UInt64(shift)) }
        return value
    }
}
