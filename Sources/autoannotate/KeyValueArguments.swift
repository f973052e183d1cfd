import Annotate
import ArgumentParser
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

/// `pipeline=RECIPE` on the command line: the recipe's options (Annotate's `Recipe`) inserted in front of the
/// command line's own arguments, so that the command line wins (the last value of an option counts).
enum RecipeArguments {
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
        do {
            let options = try Recipe.options(path: path)
            return options.flatMap { KeyValueArguments.rewrite(["\($0.key)=\($0.value)"]) } + arguments
        } catch let problem as Recipe.Problem {
            throw ValidationError(problem.errorDescription ?? problem.reason)
        }
    }
}
