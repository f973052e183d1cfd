import Foundation

/// A value built by the unpickler. Nothing in it is executable: classes and functions are names, objects are
/// their class name plus the data the pickle gave them. Lists, dicts and objects are reference types because
/// the pickle memo aliases them and later opcodes mutate them in place.
// Unchecked: the reader mutates lists, dicts and objects only while it builds them; the finished value is read-only.
public indirect enum PickleValue: @unchecked Sendable {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer too large for Int: little-endian two's complement bytes.
    case bigInt([UInt8])
    case float(Double)
    case string(String)
    case bytes(Data)
    case tuple([PickleValue])
    case list(PickleList)
    case dict(PickleDict)
    case set([PickleValue])
    /// A reference to a class or function by name (`GLOBAL module name`).
    case global(module: String, name: String)
    case object(PickleObject)
    case storage(StoredStorage)
    case tensor(StoredTensor)

    public var string: String? { if case .string(let s) = self { s } else { nil } }
    public var int: Int? {
        switch self {
        case .int(let i): i
        case .bool(let b): b ? 1 : 0
        default: nil
        }
    }
    public var double: Double? {
        switch self {
        case .float(let d): d
        case .int(let i): Double(i)
        default: nil
        }
    }
    public var dict: PickleDict? { if case .dict(let d) = self { d } else { nil } }
    public var object: PickleObject? { if case .object(let o) = self { o } else { nil } }
    public var tensor: StoredTensor? { if case .tensor(let t) = self { t } else { nil } }
    public var isNone: Bool { if case .none = self { true } else { false } }

    /// What the value holds, for an error message: `None`, `'same'`, `3.0`, "a list of 2 items", "an object of
    /// ultralytics.nn.modules.conv.Conv" (texts cut at 40 characters: a hostile file's strings have any length).
    public var summary: String {
        switch self {
        case .none: "None"
        case .bool(let b): b ? "True" : "False"
        case .int(let i): "\(i)"
        case .float(let d): "\(d)"
        case .string(let text): "'\(text.prefix(40))'"
        case .dict(let d): "a dict of \(d.count) entries"
        case .object(let o): "an object of \(o.qualifiedName)"
        case .tensor(let t): "a tensor of shape \(t.shape)"
        case .list(let l): "a list of \(l.items.count) items"
        case .tuple(let t): "a tuple of \(t.count) items"
        default: "a plain value"
        }
    }
    /// The items of a tuple or list.
    public var items: [PickleValue]? {
        switch self {
        case .tuple(let items): items
        case .list(let list): list.items
        default: nil
        }
    }
}

public final class PickleList {
    public var items: [PickleValue]
    /// Levels of containers in it, itself included, and whether it lies in another (see `Unpickler`).
    var depth = 1
    var isNested = false
    init(_ items: [PickleValue] = []) { self.items = items }
}

/// An insertion-ordered dictionary; keys are usually strings or ints.
public final class PickleDict {
    public private(set) var keys: [PickleValue] = []
    public private(set) var values: [PickleValue] = []
    private var index: [String: Int] = [:]
    /// Levels of containers in it, itself included, and whether it lies in another (see `Unpickler`).
    var depth = 1
    var isNested = false

    func set(_ key: PickleValue, _ value: PickleValue) {
        let name = Self.name(key)
        if let name, let at = index[name] {
            values[at] = value
            return
        }
        if let name { index[name] = keys.count }
        keys.append(key)
        values.append(value)
    }

    public subscript(_ key: String) -> PickleValue? { index["s:" + key].map { values[$0] } }
    public subscript(int key: Int) -> PickleValue? { index["i:\(key)"].map { values[$0] } }
    public var count: Int { keys.count }
    public var entries: [(key: PickleValue, value: PickleValue)] {
        Array(zip(keys, values)).map { (key: $0.0, value: $0.1) }
    }

    private static func name(_ key: PickleValue) -> String? {
        switch key {
        case .string(let s): "s:" + s
        case .int(let i): "i:\(i)"
        default: nil
        }
    }
}

/// An instance of a class, inert: the class's name, its constructor arguments and the state BUILD gave it
/// (for an `nn.Module`, its `__dict__`: `_parameters`, `_buffers`, `_modules` and plain attributes).
public final class PickleObject {
    public let module: String
    public let name: String
    public let arguments: [PickleValue]
    public let attributes = PickleDict()
    /// Items appended or set on the object itself (list or dict subclasses).
    public var items: [PickleValue] = []
    /// Levels of containers in it, itself included, and whether it lies in another (see `Unpickler`).
    var depth = 1
    var isNested = false

    init(module: String, name: String, arguments: [PickleValue]) {
        self.module = module
        self.name = name
        self.arguments = arguments
    }

    public var qualifiedName: String { module + "." + name }
    public subscript(_ attribute: String) -> PickleValue? { attributes[attribute] }
}

/// A pickle reader for protocols 2–5 that builds values and never runs anything.
///
/// `GLOBAL` names are checked against `allowsGlobal` the moment they are read; anything else — `os.system`,
/// `builtins.exec`, `subprocess.*` — ends the load with `refusedUnsafe`. Allowed names become inert data:
/// `reduce` interprets the few calls a checkpoint needs (tensor rebuilds, OrderedDict, set, bytes) and turns
/// every other construction into a `PickleObject`. Lengths are checked against the bytes left before any
/// allocation, and every opcode consumes input, so no file can make the reader allocate beyond its own size
/// or loop forever. Values nest at most `maximumDepth` levels, so that nothing built (or freed) recurses deeper:
/// each container records its depth as it is filled, and is refused further items once it lies inside another
/// (Python's pickler fills every container before nesting it), so a recorded depth never falls behind.
struct Unpickler {
    /// Levels of nested containers a value may have: far above any checkpoint's, far below what recursing through
    /// them (freeing them included) would need of a thread's stack.
    static let maximumDepth = 200

    let data: Data
    let file: MappedFile
    /// `BINPERSID`: turns a persistent id into a value (torch storages).
    let persistentLoad: (PickleValue) throws -> PickleValue
    /// `REDUCE` of an allowed global: returns nil to build an inert object.
    let reduce: (_ module: String, _ name: String, _ arguments: [PickleValue]) throws -> PickleValue?

    private var position = 0
    private var stack: [PickleValue] = []
    /// The nesting depth of each stack entry (a container's own `depth` is read from it: it grows as it is filled).
    private var depths: [Int] = []
    private var marks: [Int] = []
    private var memo: [UInt32: (value: PickleValue, depth: Int)] = [:]

    init(
        data: Data, file: MappedFile, persistentLoad: @escaping (PickleValue) throws -> PickleValue,
        reduce: @escaping (String, String, [PickleValue]) throws -> PickleValue?
    ) {
        self.data = data
        self.file = file
        self.persistentLoad = persistentLoad
        self.reduce = reduce
    }

    private func fail(_ reason: String, at offset: Int? = nil) -> CheckpointError {
        file.corrupt("pickle: \(reason) at byte \(offset ?? position) of data.pkl")
    }

    private mutating func byte() throws -> UInt8 {
        guard position < data.count else { throw fail("unexpected end of data (truncated?)") }
        defer { position += 1 }
        return data[data.startIndex + position]
    }

    private mutating func take(_ count: Int) throws -> Data {
        guard count >= 0, count <= data.count - position else {
            throw fail("a \(count)-byte field runs past the end of the data")
        }
        let start = data.startIndex + position
        position += count
        return data[start..<(start + count)]
    }

    private mutating func uint(_ size: Int) throws -> UInt64 {
        let raw = try take(size)
        var value: UInt64 = 0
        for (shift, b) in raw.enumerated() { value |= UInt64(b) << (8 * UInt64(shift)) }
        return value
    }

    private mutating func line() throws -> String {
        guard let end = data[(data.startIndex + position)...].firstIndex(of: 0x0A) else {
            throw fail("unterminated GLOBAL name")
        }
        let text = String(decoding: data[(data.startIndex + position)..<end], as: UTF8.self)
        position = end - data.startIndex + 1
        return text
    }

    /// The depth of a value whose recorded depth is `recorded`: containers carry their own, which grows.
    private static func depth(_ value: PickleValue, _ recorded: Int) -> Int {
        switch value {
        case .list(let list): list.depth
        case .dict(let dict): dict.depth
        case .object(let object): object.depth
        default: recorded
        }
    }

    /// One level above the deepest of `depths`, refused past `maximumDepth`.
    private func above(_ depths: [Int]) throws -> Int {
        let depth = 1 + (depths.max() ?? 0)
        guard depth <= Self.maximumDepth else { throw fail("values nested more than \(Self.maximumDepth) levels deep") }
        return depth
    }

    /// Marks the containers among `values` as lying inside another: they take no more items.
    private static func nest(_ values: [PickleValue]) {
        for value in values {
            switch value {
            case .list(let list): list.isNested = true
            case .dict(let dict): dict.isNested = true
            case .object(let object): object.isNested = true
            default: break
            }
        }
    }

    /// A container made by `reduce` from arguments nested `depth` levels holds them: at least that deep.
    private static func deepen(_ value: PickleValue, to depth: Int) {
        switch value {
        case .list(let list): list.depth = max(list.depth, depth)
        case .dict(let dict): dict.depth = max(dict.depth, depth)
        case .object(let object): object.depth = max(object.depth, depth)
        default: break
        }
    }

    private mutating func push(_ value: PickleValue, depth: Int = 0) {
        stack.append(value)
        depths.append(depth)
    }

    private mutating func popEntry() throws -> (value: PickleValue, depth: Int) {
        guard stack.count > (marks.last ?? 0), let value = stack.popLast(), let depth = depths.popLast() else {
            throw fail("stack underflow")
        }
        return (value, Self.depth(value, depth))
    }

    private mutating func pop() throws -> PickleValue { try popEntry().value }

    private mutating func popMark() throws -> (values: [PickleValue], depths: [Int]) {
        guard let mark = marks.popLast(), mark <= stack.count else { throw fail("no MARK to pop to") }
        defer {
            stack.removeSubrange(mark...)
            depths.removeSubrange(mark...)
        }
        return (Array(stack[mark...]), zip(stack[mark...], depths[mark...]).map { Self.depth($0, $1) })
    }

    private func top() throws -> PickleValue {
        guard let value = stack.last, stack.count > (marks.last ?? 0) else { throw fail("stack underflow") }
        return value
    }

    private func topDepth() -> Int { Self.depth(stack.last ?? .none, depths.last ?? 0) }

    /// Integers of LONG1/LONG4: little-endian two's complement of any length.
    private func long(_ bytes: Data) -> PickleValue {
        let raw = [UInt8](bytes)
        if raw.isEmpty { return .int(0) }
        guard raw.count <= 8 else { return .bigInt(raw) }
        var value: UInt64 = 0
        for (i, b) in raw.enumerated() { value |= UInt64(b) << (8 * UInt64(i)) }
        if raw.count < 8 && raw.last! & 0x80 != 0 { value |= ~0 << (8 * UInt64(raw.count)) }  // sign-extend
        return .int(Int(Int64(bitPattern: value)))
    }

    private mutating func global(_ module: String, _ name: String, at offset: Int) throws -> PickleValue {
        let module = module == "__builtin__" ? "builtins" : module == "copy_reg" ? "copyreg" : module
        guard SafeGlobals.allows(module: module, name: name) else {
            throw CheckpointError.refusedUnsafe(path: file.path, global: "\(module).\(name)", offset: offset)
        }
        return .global(module: module, name: name)
    }

    private mutating func call(_ callable: PickleValue, _ arguments: [PickleValue], at offset: Int) throws
        -> PickleValue
    {
        guard case .global(let module, let name) = callable else { throw fail("REDUCE of a non-global", at: offset) }
        if let value = try reduce(module, name, arguments) { return value }
        return .object(PickleObject(module: module, name: name, arguments: arguments))
    }

    mutating func load() throws -> PickleValue {
        while true {
            let offset = position
            let opcode = try byte()
            switch opcode {
            case 0x80: _ = try byte()  // PROTO
            case 0x95: _ = try uint(8)  // FRAME: a length hint only
            case UInt8(ascii: "."):  // STOP
                guard stack.count == 1, marks.isEmpty else {
                    throw fail("STOP with \(stack.count) values on the stack", at: offset)
                }
                return stack[0]
            case UInt8(ascii: "("): marks.append(stack.count)
            case UInt8(ascii: "0"): _ = try pop()
            case UInt8(ascii: "1"): _ = try popMark()
            case UInt8(ascii: "2"): push(try top(), depth: topDepth())
            case UInt8(ascii: ")"): push(.tuple([]), depth: 1)
            case UInt8(ascii: "]"): push(.list(PickleList()))
            case UInt8(ascii: "}"): push(.dict(PickleDict()))
            case 0x8F: push(.set([]), depth: 1)
            case UInt8(ascii: "t"):
                let items = try popMark()
                try pushTuple(items.values, items.depths)
            case 0x85:
                let a = try popEntry()
                try pushTuple([a.value], [a.depth])
            case 0x86:
                let b = try popEntry()
                let a = try popEntry()
                try pushTuple([a.value, b.value], [a.depth, b.depth])
            case 0x87:
                let c = try popEntry()
                let b = try popEntry()
                let a = try popEntry()
                try pushTuple([a.value, b.value, c.value], [a.depth, b.depth, c.depth])
            case UInt8(ascii: "l"):
                let items = try popMark()
                Self.nest(items.values)
                let list = PickleList(items.values)
                list.depth = try above(items.depths)
                push(.list(list))
            case UInt8(ascii: "d"):
                let items = try popMark()
                guard items.values.count % 2 == 0 else {
                    throw fail("DICT with an odd number of items", at: offset)
                }
                Self.nest(items.values)
                let dict = PickleDict()
                for i in stride(from: 0, to: items.values.count, by: 2) {
                    dict.set(items.values[i], items.values[i + 1])
                }
                dict.depth = try above(items.depths)
                push(.dict(dict))
            case UInt8(ascii: "a"):
                let item = try popEntry()
                try append([item.value], depth: item.depth, to: try top(), at: offset)
            case UInt8(ascii: "e"):
                let items = try popMark()
                try append(items.values, depth: items.depths.max() ?? 0, to: try top(), at: offset)
            case UInt8(ascii: "s"):
                let value = try popEntry()
                let key = try popEntry()
                try setItems([key.value, value.value], depth: max(key.depth, value.depth), on: try top(), at: offset)
            case UInt8(ascii: "u"):
                let items = try popMark()
                guard items.values.count % 2 == 0 else {
                    throw fail("SETITEMS with an odd number of items", at: offset)
                }
                try setItems(items.values, depth: items.depths.max() ?? 0, on: try top(), at: offset)
            case 0x90:  // ADDITEMS
                let items = try popMark()
                let target = try popEntry()
                guard case .set(let existing) = target.value else { throw fail("ADDITEMS on a non-set", at: offset) }
                Self.nest(items.values)
                push(.set(existing + items.values), depth: try above(items.depths + [target.depth - 1]))
            case 0x91:  // FROZENSET
                let items = try popMark()
                Self.nest(items.values)
                push(.set(items.values), depth: try above(items.depths))
            case UInt8(ascii: "N"): push(.none)
            case 0x88: push(.bool(true))
            case 0x89: push(.bool(false))
            case UInt8(ascii: "K"): push(.int(Int(try byte())))
            case UInt8(ascii: "M"): push(.int(Int(try uint(2))))
            case UInt8(ascii: "J"): push(.int(Int(Int32(bitPattern: UInt32(try uint(4))))))
            case 0x8A:
                let n = Int(try byte())
                push(long(try take(n)))
            case 0x8B:
                let n = Int(Int32(bitPattern: UInt32(try uint(4))))
                push(long(try take(n)))
            case UInt8(ascii: "G"): push(.float(Double(bitPattern: UInt64(bigEndian: try uint(8)))))
            case UInt8(ascii: "X"): push(.string(String(decoding: try take(Int(try uint(4))), as: UTF8.self)))
            case 0x8C: push(.string(String(decoding: try take(Int(try byte())), as: UTF8.self)))
            case 0x8D: push(.string(String(decoding: try take(try length8()), as: UTF8.self)))
            case UInt8(ascii: "T"): push(.string(latin1(try take(Int(Int32(bitPattern: UInt32(try uint(4))))))))
            case UInt8(ascii: "U"): push(.string(latin1(try take(Int(try byte())))))
            case UInt8(ascii: "B"): push(.bytes(Data(try take(Int(try uint(4))))))
            case UInt8(ascii: "C"): push(.bytes(Data(try take(Int(try byte())))))
            case 0x8E, 0x96: push(.bytes(Data(try take(try length8()))))
            case UInt8(ascii: "c"):
                let module = try line()
                let name = try line()
                push(try global(module, name, at: offset))
            case 0x93:  // STACK_GLOBAL
                guard let name = try pop().string, let module = try pop().string else {
                    throw fail("STACK_GLOBAL of non-strings", at: offset)
                }
                push(try global(module, name, at: offset))
            case UInt8(ascii: "R"):
                let arguments = try popEntry()
                guard let items = arguments.value.items else {
                    throw fail("REDUCE arguments are not a tuple", at: offset)
                }
                let value = try call(try pop(), items, at: offset)
                let depth = try above([arguments.depth])
                Self.deepen(value, to: depth)
                push(value, depth: depth)
            case 0x81:  // NEWOBJ: cls.__new__(cls, *args) — an inert instance
                let arguments = try popEntry()
                guard let items = arguments.value.items, case .global(let module, let name) = try pop() else {
                    throw fail("NEWOBJ of a non-class", at: offset)
                }
                try pushObject(module, name, items, argumentsDepth: arguments.depth)
            case 0x92:  // NEWOBJ_EX
                _ = try pop()
                let arguments = try popEntry()
                guard let items = arguments.value.items, case .global(let module, let name) = try pop() else {
                    throw fail("NEWOBJ_EX of a non-class", at: offset)
                }
                try pushObject(module, name, items, argumentsDepth: arguments.depth)
            case UInt8(ascii: "b"):
                let state = try popEntry()
                try build(try top(), state.value, depth: state.depth)
            case UInt8(ascii: "Q"): push(try persistentLoad(try pop()), depth: 1)
            case UInt8(ascii: "q"): memo[UInt32(try byte())] = (try top(), topDepth())
            case UInt8(ascii: "r"): memo[UInt32(try uint(4))] = (try top(), topDepth())
            case 0x94: memo[UInt32(truncatingIfNeeded: memo.count)] = (try top(), topDepth())
            case UInt8(ascii: "h"), UInt8(ascii: "j"):
                let key = opcode == UInt8(ascii: "h") ? UInt32(try byte()) : UInt32(try uint(4))
                guard let entry = memo[key] else { throw fail("memo entry \(key) was never stored", at: offset) }
                push(entry.value, depth: entry.depth)
            default:
                throw fail(String(format: "unsupported opcode 0x%02x", opcode), at: offset)
            }
        }
    }

    private mutating func length8() throws -> Int {
        let n = try uint(8)
        guard n <= UInt64(data.count - position) else { throw fail("a \(n)-byte field runs past the end of the data") }
        return Int(n)
    }

    private func latin1(_ bytes: Data) -> String { String(bytes.map { Character(Unicode.Scalar($0)) }) }

    private mutating func pushTuple(_ values: [PickleValue], _ depths: [Int]) throws {
        Self.nest(values)
        push(.tuple(values), depth: try above(depths))
    }

    private mutating func pushObject(
        _ module: String, _ name: String, _ arguments: [PickleValue], argumentsDepth: Int
    ) throws {
        let object = PickleObject(module: module, name: name, arguments: arguments)
        object.depth = try above([argumentsDepth])
        push(.object(object))
    }

    private func refuseIfNested(_ target: PickleValue, at offset: Int) throws {
        let nested =
            switch target {
            case .list(let list): list.isNested
            case .dict(let dict): dict.isNested
            case .object(let object): object.isNested
            default: false
            }
        if nested { throw fail("items added to a container that already lies inside another", at: offset) }
    }

    /// `items` (nested at most `depth` levels) appended to a list, or to a list subclass's object.
    private func append(_ items: [PickleValue], depth: Int, to target: PickleValue, at offset: Int) throws {
        try refuseIfNested(target, at: offset)
        Self.nest(items)
        switch target {
        case .list(let list):
            list.items += items
            list.depth = max(list.depth, try above([depth]))
        case .object(let object):
            object.items += items
            object.depth = max(object.depth, try above([depth]))
        default: throw fail("APPEND to a non-list", at: offset)
        }
    }

    /// Key-value pairs (nested at most `depth` levels) set on a dict, or on a dict subclass's object.
    private func setItems(_ items: [PickleValue], depth: Int, on target: PickleValue, at offset: Int) throws {
        try refuseIfNested(target, at: offset)
        Self.nest(items)
        let dict: PickleDict
        switch target {
        case .dict(let d): dict = d
        case .object(let object):
            dict = object.attributes  // dict subclasses keep their items with the attributes
            object.depth = max(object.depth, try above([depth + 1]))
        default: throw fail("SETITEM on a non-dict", at: offset)
        }
        for i in stride(from: 0, to: items.count, by: 2) { dict.set(items[i], items[i + 1]) }
        dict.depth = max(dict.depth, try above([depth]))
    }

    /// BUILD: an object's state dict (or `(state, slots)` pair) becomes its attributes; state given to
    /// anything else (OrderedDict `_metadata`, tensors) carries nothing a model needs and is dropped.
    private func build(_ target: PickleValue, _ state: PickleValue, depth: Int) throws {
        guard case .object(let object) = target else { return }
        try refuseIfNested(target, at: position - 1)
        Self.nest([state])
        var states = [state]
        if case .tuple(let pair) = state, pair.count == 2 { states = pair }
        for case .dict(let dict) in states {
            for (key, value) in dict.entries { object.attributes.set(key, value) }
        }
        object.attributes.depth = max(object.attributes.depth, depth)
        object.depth = max(object.depth, try above([depth]))
    }
}

/// The names a checkpoint may mention. Modules whose classes make up models and their metadata are allowed
/// as a whole (their names only ever become inert data here); from the standard library, only plain data
/// types. Everything else — os, posix, subprocess, builtins.eval/exec/getattr/__import__, … — is refused.
enum SafeGlobals {
    static let modulePrefixes = ["torch", "ultralytics", "numpy", "collections"]
    static let names: [String: Set<String>] = [
        "builtins": [
            "set", "frozenset", "dict", "list", "tuple", "int", "float", "bool", "str", "bytes", "bytearray",
            "complex", "slice", "range", "object",
        ],
        "_codecs": ["encode"],
        "copyreg": ["_reconstructor"],
        "pathlib": ["Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath"],
        "types": ["SimpleNamespace"],
        "argparse": ["Namespace"],
        "datetime": ["datetime", "date", "time", "timedelta", "timezone"],
    ]

    static func allows(module: String, name: String) -> Bool {
        if let allowed = names[module] { return allowed.contains(name) }
        return modulePrefixes.contains { module == $0 || module.hasPrefix($0 + ".") }
    }
}
