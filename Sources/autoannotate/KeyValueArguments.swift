import Annotate
import ArgumentParser
import Foundation

/// Ultralytics' `key=value` convention on the command line, rewritten to `--key=value` before
/// swift-argument-parser sees it, so that `--help`, validation messages and completion work for both spellings.
/// Underscores become dashes (`det_model=x` → `--det-model=x`), `flag=True`/`False` sets or omits a flag;
/// anything else passes through untouched. The value stays attached to its option, so that a negative number
/// (`conf=-0.1`) is the option's value rather than an option of its own.
enum KeyValueArguments {
    /// The flags a bare word sets, as Ultralytics' CLI takes them (`resume retry_failed`).
    static let flags: Set<String> = ["retry_failed", "multimask", "agnostic", "agnostic_nms", "rle"]

    static func rewrite(_ arguments: [String]) -> [String] {
        arguments.flatMap { argument -> [String] in
            if flags.contains(argument) { return ["--" + argument.replacingOccurrences(of: "_", with: "-")] }
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
    /// An unknown option's message in the user's spelling, with the nearest option of the command (one whose name
    /// holds the word typed, or within a third of its letters) — ArgumentParser's own guess is often far off.
    static func unknownOption(_ message: String, options: [String]) -> String? {
        guard let start = message.range(of: "Unknown option '--"),
            let end = message[start.upperBound...].firstIndex(of: "'")
        else { return nil }
        let typed = message[start.upperBound..<end].replacingOccurrences(of: "-", with: "_")
        let known = options.map { $0.replacingOccurrences(of: "-", with: "_") }
        var near = known.filter { $0.contains(typed) || (typed.count > 3 && typed.contains($0)) }
        if near.isEmpty {
            let scored = known.map { ($0, editDistance(typed, $0)) }.filter { $0.1 <= max(1, typed.count / 3) }
            near = scored.filter { $0.1 == scored.map(\.1).min() }.map(\.0)
        }
        let guess = near.isEmpty ? "" : " (did you mean " + near.map { "'\($0)='" }.joined(separator: " or ") + "?)"
        return "Error: unknown option '\(typed)='\(guess)"
    }

    /// Levenshtein distance between two words.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let (a, b) = (Array(a), Array(b))
        var row = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var previous = row[0]
            row[0] = i
            for j in 1...max(b.count, 1) where !b.isEmpty {
                let current = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                previous = current
            }
        }
        return row[b.count]
    }

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
