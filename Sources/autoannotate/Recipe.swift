import ArgumentParser
import Foundation
import Yams

/// Pipeline recipes (`pipeline=Pipelines/NAME.yaml`): a YAML mapping of the labelling job's options, expanded in
/// front of the command line's own arguments so that the command line wins (the last value of an option counts).
enum Recipe {
    static let keys: Set<String> = [
        "det_model", "sam_model", "conf", "iou", "imgsz", "max_det", "classes", "sam_conf", "empty",
        "polygon", "precision", "threads", "output_dir", "device", "retry_failed", "boxes",
    ]

    /// `arguments` (already in `--key value` form) with the recipe's options inserted first.
    static func expand(_ arguments: [String]) throws -> [String] {
        guard let at = arguments.firstIndex(of: "--pipeline"), at + 1 < arguments.count else { return arguments }
        let path = arguments[at + 1]
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ValidationError("pipeline=\(path): no such recipe file")
        }
        guard let mapping = try Yams.load(yaml: text) as? [String: Any] else {
            throw ValidationError("pipeline=\(path): a recipe is a YAML mapping of option: value")
        }
        var expanded: [String] = []
        for key in mapping.keys.sorted() {
            guard keys.contains(key) else {
                throw ValidationError(
                    "pipeline=\(path): unknown key '\(key)' (known: \(keys.sorted().joined(separator: ", ")))")
            }
            let value: String
            switch mapping[key] {
            case let list as [Any]: value = list.map { "\($0)" }.joined(separator: ",")
            case let flag as Bool: value = flag ? "true" : "false"
            case let other?: value = "\(other)"
            case nil: continue
            }
            expanded += KeyValueArguments.rewrite(["\(key)=\(value)"])
        }
        return expanded + arguments
    }
}
