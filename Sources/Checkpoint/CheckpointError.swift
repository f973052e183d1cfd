import Foundation

/// Why a model file cannot be used. Every message names the file and says what to do.
public enum CheckpointError: Error, Equatable, LocalizedError {
    case notFound(path: String)
    case unreadable(path: String, reason: String)
    /// The bytes are not any format we read; `guess` names what they look like, if anything.
    case unrecognized(path: String, guess: String)
    /// A structural fault: truncated, inconsistent offsets, bad pickle, ….
    case corrupt(path: String, reason: String)
    /// A recognised format or model we deliberately do not load (legacy torch files, TorchScript, ONNX,
    /// YOLOv8-seg given as a detector, SAM 2, …).
    case unsupported(path: String, reason: String)
    /// The pickle asks to call or import something a checkpoint never needs; nothing was run.
    case refusedUnsafe(path: String, global: String, offset: Int)
    /// A state dict that does not fit the architecture.
    case missingKey(path: String, key: String)
    case unexpectedKey(path: String, key: String)
    case shapeMismatch(path: String, key: String, got: [Int], expected: [Int])

    public var errorDescription: String? {
        switch self {
        case .notFound(let path): "\(path): no such file"
        case .unreadable(let path, let reason): "\(path): cannot be read (\(reason))"
        case .unrecognized(let path, let guess): "\(path): not a model checkpoint we can read (\(guess))"
        case .corrupt(let path, let reason): "\(path): damaged checkpoint: \(reason)"
        case .unsupported(let path, let reason): "\(path): \(reason)"
        case .refusedUnsafe(let path, let global, let offset):
            "\(path): refused: its pickle references \(global) (at byte \(offset) of data.pkl), which a model "
                + "checkpoint never needs; nothing in it was run. Only load files from sources you trust."
        case .missingKey(let path, let key): "\(path): missing tensor \(key)"
        case .unexpectedKey(let path, let key): "\(path): unexpected tensor \(key)"
        case .shapeMismatch(let path, let key, let got, let expected):
            "\(path): tensor \(key) has shape \(got), expected \(expected)"
        }
    }
}
