import Foundation
import Yams

/// A dataset's class names from its YAML file (Ultralytics' `data.yaml`: `names:` as a list, or a map from class id
/// to name), read as a recipe is: a small regular file, composed into nodes and never expanded, so that aliases
/// cannot multiply it; ids from 0 to `BoxLabels.maximumClasses - 1`.
public enum DatasetNames {
    public static let maximumBytes = 1 << 20

    /// Why a names file was refused; the description names the file.
    public struct Problem: Error, LocalizedError, Equatable {
        public let path: String
        public let reason: String
        public var errorDescription: String? { "names=\(path): \(reason)" }
    }

    /// The names in the YAML file at `path`, by class id.
    public static func read(path: String) throws -> [Int: String] {
        let text: String
        do {
            text = try readSmallTextFile(path, maximumBytes: maximumBytes, what: "a dataset's YAML file is small")
        } catch let error as SmallTextFileError {
            throw Problem(path: path, reason: error.reason)
        }
        return try parse(yaml: text, path: path)
    }

    /// The names in a dataset YAML's text (`path` names it in errors).
    public static func parse(yaml text: String, path: String) throws -> [Int: String] {
        func problem(_ reason: String) -> Problem { Problem(path: path, reason: reason) }
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw problem("not valid YAML (\(error))")
        }
        guard let document = root?.mapping, let names = document["names"] else {
            throw problem("no 'names:' (a list of class names, or a map from class id to name)")
        }
        var result: [Int: String] = [:]
        func add(_ id: Int, _ node: Node) throws {
            guard (0..<BoxLabels.maximumClasses).contains(id) else {
                throw problem("class id \(id) is outside 0…\(BoxLabels.maximumClasses - 1)")
            }
            guard let name = node.scalar?.string else { throw problem("the name of class \(id) is not a plain value") }
            result[id] = name
        }
        switch names {
        case .sequence(let list):
            guard list.count <= BoxLabels.maximumClasses else {
                throw problem("\(list.count) names; at most \(BoxLabels.maximumClasses)")
            }
            for (id, node) in list.enumerated() { try add(id, node) }
        case .mapping(let map):
            for (key, node) in map {
                guard let id = key.scalar.flatMap({ Int($0.string) }) else {
                    throw problem("'\(key.scalar?.string ?? "(not a number)")' in names is not a class id")
                }
                try add(id, node)
            }
        default: throw problem("'names:' is neither a list nor a map")
        }
        return result
    }

    /// A box dataset's own YAML file where Ultralytics' layout puts it: `data.yaml` (or `dataset.yaml`) in the
    /// folder that holds the dataset's `images` folder, or in `data` itself. nil when there is none.
    public static func find(forData data: String) -> String? {
        let components = URL(fileURLWithPath: data).standardizedFileURL.pathComponents
        var folders = [URL(fileURLWithPath: data).standardizedFileURL.path]
        if let images = components.lastIndex(of: "images"), images > 0 {
            folders.append(NSString.path(withComponents: Array(components[..<images])))
        }
        for folder in folders {
            for name in ["data.yaml", "dataset.yaml"] {
                let path = (folder as NSString).appendingPathComponent(name)
                var info = stat()
                if stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG { return path }
            }
        }
        return nil
    }
}
