import ArgumentParser
import Foundation
import Yams

/// Pipeline recipes (`pipeline=Pipelines/NAME.yaml`): a YAML mapping of the labelling job's options, expanded in
/// front of the command line's own arguments so that the command line wins (the last value of an option counts).
///
/// A recipe is a flat `option: value` map, and is read as one: at most `maximumBytes`, a regular file, and
/// composed into nodes (never constructed into Swift values) whose values must be scalars or lists of scalars.
/// So a YAML alias bomb — a few hundred bytes whose aliases expand to billions of nodes — is refused at its first
/// nested list, in time and memory proportional to the file.
enum Recipe {
    static let keys: Set<String> = [
        "det_model", "sam_model", "conf", "iou", "imgsz", "max_det", "classes", "sam_conf", "empty",
        "polygon", "precision", "threads", "output_dir", "device", "retry_failed", "boxes",
    ]
    static let maximumBytes = 64 * 1024

    /// `arguments` (already in `--key=value` form) with the recipe's options inserted first.
    static func expand(_ arguments: [String]) throws -> [String] {
        var path: String?
        for (index, argument) in arguments.enumerated() {
            if argument.hasPrefix("--pipeline=") {
                path = String(argument.dropFirst("--pipeline=".count))
            } else if argument == "--pipeline", index + 1 < arguments.count {
                path = arguments[index + 1]
            }
        }
        guard let path else { return arguments }
        return try options(path: path) + arguments
    }

    /// The recipe's options, as `--key=value` arguments.
    static func options(path: String) throws -> [String] {
        let text = try read(path)
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw ValidationError("pipeline=\(path): not valid YAML (\(error))")
        }
        guard let mapping = root?.mapping else {
            throw ValidationError("pipeline=\(path): a recipe is a YAML mapping of option: value")
        }
        var values: [String: String] = [:]
        for (keyNode, valueNode) in mapping {
            guard let key = keyNode.scalar?.string, keys.contains(key) else {
                throw ValidationError(
                    "pipeline=\(path): unknown key '\(keyNode.scalar?.string ?? "(not a name)")' (known: \(keys.sorted().joined(separator: ", ")))"
                )
            }
            switch valueNode {
            case .scalar(let scalar):
                if scalar.tag.rawValue == Tag.Name.null.rawValue { continue }
                // YAML's booleans (true, yes, on …) set or omit a flag, as True/False on the command line do.
                values[key] =
                    scalar.tag.rawValue == Tag.Name.bool.rawValue
                    ? Bool.construct(from: scalar).map { $0 ? "true" : "false" } ?? scalar.string : scalar.string
            case .sequence(let list):
                var items: [String] = []
                for item in list {
                    guard let scalar = item.scalar else {
                        throw ValidationError(
                            "pipeline=\(path): \(key) is a list of lists or maps; a recipe's values are plain values or lists of them"
                        )
                    }
                    items.append(scalar.string)
                }
                values[key] = items.joined(separator: ",")
            case .mapping, .alias:
                throw ValidationError(
                    "pipeline=\(path): \(key) is a map; a recipe's values are plain values or lists of them")
            }
        }
        return values.keys.sorted().flatMap { KeyValueArguments.rewrite(["\($0)=\(values[$0]!)"]) }
    }

    /// The recipe's text: a regular file of at most `maximumBytes`, read without ever holding more.
    static func read(_ path: String) throws -> String {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw ValidationError("pipeline=\(path): no such recipe file (\(String(cString: strerror(errno))))")
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw ValidationError("pipeline=\(path): not a regular file; a recipe is a small YAML file")
        }
        guard info.st_size <= maximumBytes, let handle = FileHandle(forReadingAtPath: path) else {
            throw ValidationError(
                info.st_size > maximumBytes
                    ? "pipeline=\(path): \(info.st_size) bytes; a recipe is at most \(maximumBytes / 1024) KiB"
                    : "pipeline=\(path): cannot be read")
        }
        defer { try? handle.close() }
        let data = (try? handle.read(upToCount: maximumBytes + 1)) ?? Data()
        guard data.count <= maximumBytes else {
            throw ValidationError(
                "pipeline=\(path): larger than \(maximumBytes / 1024) KiB; a recipe is a small YAML file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ValidationError("pipeline=\(path): not UTF-8 text")
        }
        return text
    }
}
