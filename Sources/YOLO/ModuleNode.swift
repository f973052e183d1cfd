import Checkpoint
import Tensor

/// A pickled `nn.Module` with its state-dict path, so every weight and attribute is read by the name the
/// reference gives it, and a missing or mis-shaped one is reported by that name.
struct ModuleNode {
    let object: PickleObject
    let path: String
    let file: String

    var typeName: String { object.name }

    func child(_ name: String) throws -> ModuleNode {
        guard let child = object.children.first(where: { $0.name == name })?.module else {
            throw CheckpointError.missingKey(path: file, key: path + name)
        }
        return ModuleNode(object: child, path: path + name + ".", file: file)
    }

    var children: [ModuleNode] {
        object.children.map { ModuleNode(object: $0.module, path: path + $0.name + ".", file: file) }
    }

    func parameter(_ name: String) throws -> StoredTensor {
        for field in ["_parameters", "_buffers"] {
            if let tensor = object[field]?.dict?[name]?.tensor { return tensor }
        }
        throw CheckpointError.missingKey(path: file, key: path + name)
    }

    func optionalParameter(_ name: String) -> StoredTensor? { try? parameter(name) }

    /// An attribute that does not fit the network, named as the reference names it.
    func invalid(_ name: String, _ reason: String) -> CheckpointError {
        .corrupt(path: file, reason: "\(path)\(name) \(reason)")
    }

    /// An integer attribute within `range`, or the first element of a tuple attribute (`stride=(2, 2)`).
    func int(_ name: String, in range: ClosedRange<Int>) throws -> Int {
        let value = try int(name)
        guard range.contains(value) else {
            throw invalid(name, "is \(value), outside \(range.lowerBound)…\(range.upperBound)")
        }
        return value
    }

    /// A pair attribute whose two values lie in `range`.
    func pair(_ name: String, in range: ClosedRange<Int>) throws -> (Int, Int) {
        let value = try pair(name)
        guard range.contains(value.0), range.contains(value.1) else {
            throw invalid(name, "is \(value), outside \(range.lowerBound)…\(range.upperBound)")
        }
        return value
    }

    /// A parameter whose shape is `shape` (checked before any of its elements is read).
    func parameter(_ name: String, shape: [Int]) throws -> StoredTensor {
        let tensor = try parameter(name)
        guard tensor.shape == shape else {
            throw CheckpointError.shapeMismatch(path: file, key: path + name, got: tensor.shape, expected: shape)
        }
        return tensor
    }

    /// An integer attribute, or the first element of a tuple attribute (`stride=(2, 2)`).
    func int(_ name: String) throws -> Int {
        if let value = object[name]?.int { return value }
        if let first = object[name]?.items?.first?.int { return first }
        throw attributeError(name, expected: "a whole number")
    }

    /// A missing attribute, or one of another type (`padding='same'`), named with what it holds.
    func attributeError(_ name: String, expected: String) -> CheckpointError {
        guard let value = object[name] else { return invalid(name, "is missing (\(expected) is needed)") }
        return invalid(name, "is \(value.summary), not \(expected)")
    }

    func pair(_ name: String) throws -> (Int, Int) {
        if let items = object[name]?.items?.compactMap(\.int), items.count == 2 { return (items[0], items[1]) }
        let value = try int(name)
        return (value, value)
    }

    func double(_ name: String) throws -> Double {
        guard let value = object[name]?.double else { throw attributeError(name, expected: "a number") }
        return value
    }
}
