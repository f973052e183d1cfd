import Foundation

/// A file mapped into memory, read through bounds-checked accessors: a checkpoint is never copied into a
/// second buffer, and no offset or size read from a header is trusted before it is checked against the file.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let data: Data

    public init(path: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw CheckpointError.notFound(path: path) }
        guard !isDirectory.boolValue else { throw CheckpointError.unreadable(path: path, reason: "it is a directory") }
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        } catch {
            throw CheckpointError.unreadable(path: path, reason: error.localizedDescription)
        }
        self.path = path
    }

    /// For bytes already in memory (tests, fuzzing).
    public init(data: Data, path: String) {
        self.data = data
        self.path = path
    }

    public var count: Int { data.count }

    func corrupt(_ reason: String) -> CheckpointError { .corrupt(path: path, reason: reason) }

    /// `count` bytes at `offset`, or a `corrupt` error naming `what` if they are not all inside the file.
    func bytes(at offset: Int, count: Int, _ what: @autoclosure () -> String) throws -> Data {
        guard offset >= 0, count >= 0, offset <= data.count - count else {
            throw corrupt("\(what()) at byte \(offset), \(count) bytes long, lies outside the \(data.count)-byte file (truncated?)")
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
