import Foundation
import Yams

/// Pipeline recipes (`pipeline=Pipelines/NAME.yaml`): a YAML mapping of the labelling job's options, expanded in
/// front of the command line's own arguments so that the command line wins (the last value of an option counts).
///
/// A recipe is a flat `option: value` map, and is read as one: at most `maximumBytes`, a regular file, and
/// composed into nodes (never constructed into Swift values) whose values must be scalars or lists of scalars.
/// So a YAML alias bomb — a few hundred bytes whose aliases expand to billions of nodes — is refused at its first
/// nested list, in time and memory proportional to the file.
public enum Recipe {
    /// Why a recipe was refused; the description names the file as the user gave it (`pipeline=PATH: …`).
    public struct Problem: Error, LocalizedError, Equatable {
        public let path: String
        public let reason: String
        public var errorDescription: String? { "pipeline=\(path): \(reason)" }
    }

    /// The labelling job's options a recipe may set, as Ultralytics-style keys.
    public static let keys: Set<String> = [
        "data",
        "det_model", "sam_model", "conf", "iou", "imgsz", "max_det", "classes", "sam_conf", "empty",
        "polygon", "precision", "threads", "output_dir", "device", "retry_failed", "boxes", "names", "epsilon",
        "min_area",
    ]
    public static let maximumBytes = 64 * 1024

    /// The options of the recipe file at `path`, sorted by key; a list's items joined by commas. A name that is no
    /// file (`auto-annotate`, `auto-annotate.yaml`) is one of the recipes that ship with autoannotate.
    public static func options(path: String) throws -> [(key: String, value: String)] {
        var info = stat()
        let name = path.hasSuffix(".yaml") ? String(path.dropLast(5)) : path
        if !path.contains("/"), stat(path, &info) != 0, let text = builtIn[name] {
            return try options(yaml: text, path: path)
        }
        return try options(yaml: try read(path), path: path)
    }

    /// The options of a recipe's text (`path` names it in errors).
    public static func options(yaml text: String, path: String) throws -> [(key: String, value: String)] {
        func problem(_ reason: String) -> Problem { Problem(path: path, reason: reason) }
        guard text.utf8.count <= maximumBytes else {
            throw problem("larger than \(maximumBytes / 1024) KiB; a recipe is a small YAML file")
        }
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw problem("not valid YAML (\(error))")
        }
        guard let mapping = root?.mapping else { throw problem("a recipe is a YAML mapping of option: value") }
        var values: [String: String] = [:]
        for (keyNode, valueNode) in mapping {
            guard let key = keyNode.scalar?.string, keys.contains(key) else {
                throw problem(
                    "unknown key '\(keyNode.scalar?.string ?? "(not a name)")' (known: \(keys.sorted().joined(separator: ", ")))"
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
                        throw problem(
                            "\(key) is a list of lists or maps; a recipe's values are plain values or lists of them")
                    }
                    items.append(scalar.string)
                }
                values[key] = items.joined(separator: ",")
            case .mapping, .alias:
                throw problem("\(key) is a map; a recipe's values are plain values or lists of them")
            }
        }
        return values.keys.sorted().map { (key: $0, value: values[$0]!) }
    }

    /// The recipe's text: a regular file of at most `maximumBytes`, read without ever holding more.
    public static func read(_ path: String) throws -> String {
        do {
            return try readSmallTextFile(path, maximumBytes: maximumBytes, what: "a recipe is a small YAML file")
        } catch let error as SmallTextFileError {
            let names = builtIn.keys.sorted().joined(separator: ", ")
            throw Problem(
                path: path,
                reason: error.reason + (path.contains("/") ? "" : "; the recipes that ship with autoannotate: \(names)")
            )
        }
    }
}
