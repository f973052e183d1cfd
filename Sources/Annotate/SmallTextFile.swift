import Foundation

/// Why a small text file (a recipe, a dataset's YAML) was not read.
struct SmallTextFileError: Error {
    let reason: String
}

/// The UTF-8 text of the regular file at `path` (symbolic links followed), of at most `maximumBytes`, read without
/// ever holding more: a device or a pipe would never end. `what` ends the refusals ("a recipe is a small YAML file").
func readSmallTextFile(_ path: String, maximumBytes: Int, what: String) throws -> String {
    var info = stat()
    guard stat(path, &info) == 0 else {
        throw SmallTextFileError(reason: "no such file (\(String(cString: strerror(errno))))")
    }
    guard info.st_mode & S_IFMT == S_IFREG else { throw SmallTextFileError(reason: "not a regular file; \(what)") }
    let limit = maximumBytes >= 1 << 20 ? "\(maximumBytes >> 20) MiB" : "\(maximumBytes >> 10) KiB"
    guard info.st_size <= maximumBytes else {
        throw SmallTextFileError(reason: "\(info.st_size) bytes; at most \(limit): \(what)")
    }
    guard let handle = FileHandle(forReadingAtPath: path) else { throw SmallTextFileError(reason: "cannot be read") }
    defer { try? handle.close() }
    let data = (try? handle.read(upToCount: maximumBytes + 1)) ?? Data()
    guard data.count <= maximumBytes else {
        throw SmallTextFileError(reason: "larger than \(limit): \(what)")
    }
    guard let text = String(data: data, encoding: .utf8) else { throw SmallTextFileError(reason: "not UTF-8 text") }
    return text
}
