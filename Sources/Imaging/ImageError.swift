import Foundation

/// Why an image could not be read or written. Every case names the file, so a failed image in a folder of a
/// million is found at once.
public enum ImageError: Error, Equatable, LocalizedError {
    case notFound(path: String)
    case unreadable(path: String, reason: String)
    case empty(path: String)
    /// The bytes are not an image format we know (a text file named `.jpg`, random bytes).
    case unrecognized(path: String)
    /// A known image format that this build does not decode.
    case unsupportedFormat(path: String, format: String)
    case corrupt(path: String, format: String, reason: String)
    case truncated(path: String, format: String, reason: String)
    /// Width × height above the pixel limit; refused before any pixel buffer is allocated.
    case tooLarge(path: String, reason: String)
    case encodingFailed(format: String, reason: String)

    public var errorDescription: String? {
        switch self {
        case .notFound(let path): "\(path): no such file"
        case .unreadable(let path, let reason): "\(path): cannot be read (\(reason))"
        case .empty(let path): "\(path): the file is empty (0 bytes)"
        case .unrecognized(let path): "\(path): not an image (neither JPEG nor PNG, nor any other known image format)"
        case .unsupportedFormat(let path, let format):
            "\(path): \(format) images are not supported; convert it to JPEG or PNG"
        case .corrupt(let path, let format, let reason): "\(path): corrupt \(format) (\(reason))"
        case .truncated(let path, let format, let reason): "\(path): truncated \(format) (\(reason))"
        case .tooLarge(let path, let reason):
            "\(path): image too large: \(reason); raise the pixel limit if this image is genuine"
        case .encodingFailed(let format, let reason): "cannot encode \(format): \(reason)"
        }
    }
}
