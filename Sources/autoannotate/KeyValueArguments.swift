import Foundation

/// Ultralytics' `key=value` convention on the command line, rewritten to `--key value` before
/// swift-argument-parser sees it, so that `--help`, validation messages and completion work for both spellings.
/// Underscores become dashes (`det_model=x` → `--det-model x`), `flag=True`/`False` sets or omits a flag;
/// anything else passes through untouched.
enum KeyValueArguments {
    static func rewrite(_ arguments: [String]) -> [String] {
        arguments.flatMap { argument -> [String] in
            guard !argument.hasPrefix("-"), let equals = argument.firstIndex(of: "=") else { return [argument] }
            let key = argument[..<equals]
            guard let first = key.first, first.isLetter,
                key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" })
            else { return [argument] }
            let option = "--" + key.replacingOccurrences(of: "_", with: "-")
            let value = String(argument[argument.index(after: equals)...])
            // Python-style booleans for flags: agnostic=True → --agnostic, agnostic=False → nothing.
            switch value.lowercased() {
            case "true": return [option]
            case "false": return []
            default: return [option, value]
            }
        }
    }
}
