/// Named tensors, in the order and with the keys PyTorch's `state_dict()` gives.
public struct StateDict: Sendable {
    public let path: String
    public let keys: [String]
    private let tensors: [String: StoredTensor]

    init(path: String, _ items: [(String, StoredTensor)]) {
        self.path = path
        keys = items.map(\.0)
        tensors = Dictionary(items, uniquingKeysWith: { first, _ in first })
    }

    /// A file's state dict, refused where its tensors hold more elements than the file could store (views that
    /// share or repeat storage): a model copies every element as a float, so this bounds what loading it costs by
    /// the file's own size.
    static func checked(path: String, _ items: [(String, StoredTensor)], file: MappedFile) throws -> StateDict {
        let budget = file.count + StoredTensor.maximumRepeatedElements
        var total = 0
        for (_, tensor) in items {
            total += tensor.count
            guard total <= budget else {
                throw file.corrupt(
                    "its tensors hold more than \(budget) elements, more than a \(file.count)-byte file stores")
            }
        }
        return StateDict(path: path, items)
    }

    public var count: Int { keys.count }
    public subscript(_ key: String) -> StoredTensor? { tensors[key] }
    public func contains(_ key: String) -> Bool { tensors[key] != nil }

    /// Total number of elements (the parameter count, when buffers are excluded by the caller).
    public var elementCount: Int { keys.reduce(0) { $0 + (tensors[$1]?.count ?? 0) } }

    /// The tensor named `key`, which must exist with exactly `shape`.
    public func require(_ key: String, shape: [Int]) throws -> StoredTensor {
        guard let tensor = tensors[key] else { throw CheckpointError.missingKey(path: path, key: key) }
        guard tensor.shape == shape else {
            throw CheckpointError.shapeMismatch(path: path, key: key, got: tensor.shape, expected: shape)
        }
        return tensor
    }

    /// Strict check against an architecture's full list: every expected key present with its shape, and
    /// nothing else (as `load_state_dict(strict=True)`).
    public func check(against expected: [(key: String, shape: [Int])]) throws {
        for (key, shape) in expected { _ = try require(key, shape: shape) }
        let known = Set(expected.map(\.key))
        if let extra = keys.first(where: { !known.contains($0) }) {
            throw CheckpointError.unexpectedKey(path: path, key: extra)
        }
    }

    /// A state dict from a top-level dict of name → tensor (Meta's and Ultralytics' SAM files).
    static func from(dict: PickleDict, path: String, file: MappedFile) throws -> StateDict {
        var items: [(String, StoredTensor)] = []
        for (key, value) in dict.entries {
            guard let name = key.string, let tensor = value.tensor else {
                throw file.corrupt("state dict entry \(key) is not a named tensor")
            }
            items.append((name, tensor))
        }
        return try checked(path: path, items, file: file)
    }

    /// Modules a state dict's walk may visit, counting a module shared by several parents once per parent (as
    /// `state_dict()` does): a file whose modules share children level after level cannot make it walk forever.
    static let maximumModuleVisits = 1_000_000

    /// The state dict of a pickled `nn.Module` tree, walked as `Module.state_dict()` does: each module's
    /// `_parameters`, then its persistent `_buffers`, then its `_modules` recursively, keys joined by dots.
    static func from(module: PickleObject, path: String, file: MappedFile) throws -> StateDict {
        var items: [(String, StoredTensor)] = []
        var visiting = Set<ObjectIdentifier>()
        var visits = 0
        func walk(_ module: PickleObject, _ prefix: String, depth: Int) throws {
            visits += 1
            guard depth < 64, visits <= maximumModuleVisits, visiting.insert(ObjectIdentifier(module)).inserted else {
                throw file.corrupt("module tree is cyclic, too deep or too large at \(prefix)")
            }
            defer { visiting.remove(ObjectIdentifier(module)) }
            var nonPersistent = Set<String>()
            if case .set(let names) = module["_non_persistent_buffers_set"] {
                nonPersistent = Set(names.compactMap(\.string))
            }
            for (field, skip) in [("_parameters", Set<String>()), ("_buffers", nonPersistent)] {
                for (key, value) in module[field]?.dict?.entries ?? [] {
                    guard let name = key.string, !skip.contains(name), !value.isNone else { continue }
                    guard let tensor = value.tensor else { throw file.corrupt("\(prefix)\(name) is not a tensor") }
                    items.append((prefix + name, tensor))
                }
            }
            for (key, value) in module["_modules"]?.dict?.entries ?? [] {
                guard let name = key.string, let child = value.object else { continue }
                try walk(child, prefix + name + ".", depth: depth + 1)
            }
        }
        try walk(module, "", depth: 0)
        return try checked(path: path, items, file: file)
    }
}

extension PickleObject {
    /// Child modules in registration order (`_modules`), for walking a pickled `nn.Module`.
    public var children: [(name: String, module: PickleObject)] {
        (self["_modules"]?.dict?.entries ?? []).compactMap { key, value in
            guard let name = key.string, let module = value.object else { return nil }
            return (name, module)
        }
    }

    /// Distinct leaf modules reachable from this one, each counted once even when shared (Ultralytics'
    /// "layers" in `model.info()`: `named_modules()` without children; one SiLU instance serves every Conv).
    public var leafModules: [PickleObject] {
        var seen = Set<ObjectIdentifier>()
        var leaves: [PickleObject] = []
        func visit(_ module: PickleObject) {
            guard seen.insert(ObjectIdentifier(module)).inserted else { return }
            let children = module.children
            if children.isEmpty { leaves.append(module) }
            for child in children { visit(child.module) }
        }
        visit(self)
        return leaves
    }

    /// Distinct modules reachable from this one, this one first (`Module.modules()`).
    public var allModules: [PickleObject] {
        var seen = Set<ObjectIdentifier>()
        var modules: [PickleObject] = []
        func visit(_ module: PickleObject) {
            guard seen.insert(ObjectIdentifier(module)).inserted else { return }
            modules.append(module)
            for child in module.children { visit(child.module) }
        }
        visit(self)
        return modules
    }

    /// Parameter tensors of every distinct module (`m.parameters()`).
    public var parameters: [StoredTensor] {
        allModules.flatMap { ($0["_parameters"]?.dict?.values ?? []).compactMap(\.tensor) }
    }

    /// Number of parameter elements (`sum(p.numel() for p in m.parameters())`).
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.count } }

    /// Number of trainable parameter elements (Ultralytics' "gradients": parameters with requires_grad).
    public var gradientCount: Int { parameters.filter(\.requiresGrad).reduce(0) { $0 + $1.count } }
}
