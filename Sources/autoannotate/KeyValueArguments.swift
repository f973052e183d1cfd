import Foundation

/// Ultralytics' `key=value` convention on the command line, rewritten to `--key=value` before
/// swift-argument-parser sees it, so that `--help`, validation messages and completion work for both spellings.
/// Underscores become dashes (`det_model=x` → `--det-model=x`), `flag=True`/`False` sets or omits a flag;
/// anything else passes through untouched. The value stays attached to its option, so that a negative number
/// (`conf=-0.1`) is the option's value rather than an option of its own.
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
            default: return [option + "=" + value]
            }
        }
    }

    /// ArgumentParser's messages name options as `'--max-det <max-det>'`; users type `max_det=`, so messages
    /// name them that way.
    static func userSpelling(_ message: String) -> String {
        var text = message
        for pattern in ["'--([a-z][a-z0-9-]*) <[a-z0-9-]+>'", "'--([a-z][a-z0-9-]*)'"] {
            guard let expression = try? NSRegularExpression(pattern: pattern) else { continue }
            let range = NSRange(text.startIndex..., in: text)
            var result = ""
            var last = text.startIndex
            for match in expression.matches(in: text, range: range) {
                guard let whole = Range(match.range, in: text), let name = Range(match.range(at: 1), in: text) else {
                    continue
                }
                result += text[last..<whole.lowerBound]
                result += "'" + text[name].replacingOccurrences(of: "-", with: "_") + "'"
                last = whole.upperBound
            }
            text = result + text[last...]
        }
        return text
    }
}
