import Foundation

/// Ultralytics' `key=value` convention on the command line, rewritten to `--key value` before
/// swift-argument-parser sees it, so that `--help`, validation messages and completion work for both spellings.
/// Underscores become dashes (`det_model=x` → `--det-model x`); anything else passes through untouched.
enum KeyValueArguments {
    static func rewrite(_ arguments: [String]) -> [String] {
        arguments.flatMap { argument -> [String] in
            guard !argument.hasPrefix("-"), let equals = argument.firstIndex(of: "=") else { return [argument] }
            let key = argument[..<equals]
            guard let first = key.first, first.isLetter,
                  key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) else { return [argument] }
            return ["--" + key.replacingOccurrences(of: "_", with: "-"), String(argument[argument.index(after: equals)...])]
        }
    }
}
