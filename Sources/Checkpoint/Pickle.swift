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
    init(_ items: [PickleValue] = []) { self.items = items }
}

/// An insertion-ordered dictionary; keys are usually strings or ints.
public final class PickleDict {
    public private(set) var keys: [PickleValue] = []
    public private(set) var values: [PickleValue] = []
    private var index: [String: Int] = [:]

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
/// or loop forever.
struct Unpickler {
    let data: Data
    let file: MappedFile
    /// `BINPERSID`: turns a persistent id into a value (torch storages).
    let persistentLoad: (PickleValue) throws -> PickleValue
    /// `REDUCE` of an allowed global: returns nil to build an inert object.
    let reduce: (_ module: String, _ name: String, _ arguments: [PickleValue]) throws -> PickleValue?

    private var position = 0
    private var stack: [PickleValue] = []
    private var marks: [Int] = []
    private var memo: [UInt32: PickleValue] = [:]

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

    private mutating func pop() throws -> PickleValue {
        guard let value = stack.popLast(), stack.count >= (marks.last ?? 0) else { throw fail("stack underflow") }
        return value
    }

    private mutating func popMark() throws -> [PickleValue] {
        guard let mark = marks.popLast(), mark <= stack.count else { throw fail("no MARK to pop to") }
        defer { stack.removeSubrange(mark...) }
        return Array(stack[mark...])
    }

    private func top() throws -> PickleValue {
        guard let value = stack.last, stack.count > (marks.last ?? 0) else { throw fail("stack underflow") }
        return value
    }

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
            case UInt8(ascii: "2"): stack.append(try top())
            case UInt8(ascii: ")"): stack.append(.tuple([]))
            case UInt8(ascii: "]"): stack.append(.list(PickleList()))
            case UInt8(ascii: "}"): stack.append(.dict(PickleDict()))
            case 0x8F: stack.append(.set([]))
            case UInt8(ascii: "t"): stack.append(.tuple(try popMark()))
            case 0x85: stack.append(.tuple([try pop()]))
            case 0x86:
                let b = try pop()
                let a = try pop()
                stack.append(.tuple([a, b]))
            case 0x87:
                let c = try pop()
                let b = try pop()
                let a = try pop()
                stack.append(.tuple([a, b, c]))
            case UInt8(ascii: "l"): stack.append(.list(PickleList(try popMark())))
            case UInt8(ascii: "d"):
                let items = try popMark()
                guard items.count % 2 == 0 else { throw fail("DICT with an odd number of items", at: offset) }
                let dict = PickleDict()
                for i in stride(from: 0, to: items.count, by: 2) { dict.set(items[i], items[i + 1]) }
                stack.append(.dict(dict))
            case UInt8(ascii: "a"):
                let item = try pop()
                try append([item], to: try top(), at: offset)
            case UInt8(ascii: "e"):
                let items = try popMark()
                try append(items, to: try top(), at: offset)
            case UInt8(ascii: "s"):
                let value = try pop()
                let key = try pop()
                try setItems([key, value], on: try top(), at: offset)
            case UInt8(ascii: "u"):
                let items = try popMark()
                guard items.count % 2 == 0 else { throw fail("SETITEMS with an odd number of items", at: offset) }
                try setItems(items, on: try top(), at: offset)
            case 0x90:  // ADDITEMS
                let items = try popMark()
                guard case .set(let existing) = try pop() else { throw fail("ADDITEMS on a non-set", at: offset) }
                stack.append(.set(existing + items))
            case 0x91: stack.append(.set(try popMark()))  // FROZENSET
            case UInt8(ascii: "N"): stack.append(.none)
            case 0x88: stack.append(.bool(true))
            case 0x89: stack.append(.bool(false))
            case UInt8(ascii: "K"): stack.append(.int(Int(try byte())))
            case UInt8(ascii: "M"): stack.append(.int(Int(try uint(2))))
            case UInt8(ascii: "J"): stack.append(.int(Int(Int32(bitPattern: UInt32(try uint(4))))))
            case 0x8A:
                let n = Int(try byte())
                stack.append(long(try take(n)))
            case 0x8B:
                let n = Int(Int32(bitPattern: UInt32(try uint(4))))
                stack.append(long(try take(n)))
            case UInt8(ascii: "G"): stack.append(.float(Double(bitPattern: UInt64(bigEndian: try uint(8)))))
            case UInt8(ascii: "X"): stack.append(.string(String(decoding: try take(Int(try uint(4))), as: UTF8.self)))
            case 0x8C: stack.append(.string(String(decoding: try take(Int(try byte())), as: UTF8.self)))
            case 0x8D: stack.append(.string(String(decoding: try take(try length8()), as: UTF8.self)))
            case UInt8(ascii: "T"): stack.append(.string(latin1(try take(Int(Int32(bitPattern: UInt32(try uint(4))))))))
            case UInt8(ascii: "U"): stack.append(.string(latin1(try take(Int(try byte())))))
            case UInt8(ascii: "B"): stack.append(.bytes(Data(try take(Int(try uint(4))))))
            case UInt8(ascii: "C"): stack.append(.bytes(Data(try take(Int(try byte())))))
            case 0x8E, 0x96: stack.append(.bytes(Data(try take(try length8()))))
            case UInt8(ascii: "c"):
                let module = try line()
                let name = try line()
                stack.append(try global(module, name, at: offset))
            case 0x93:  // STACK_GLOBAL
                guard let name = try pop().string, let module = try pop().string else {
                    throw fail("STACK_GLOBAL of non-strings", at: offset)
                }
                stack.append(try global(module, name, at: offset))
            case UInt8(ascii: "R"):
                guard let arguments = try pop().items else {
                    throw fail("REDUCE arguments are not a tuple", at: offset)
                }
                stack.append(try call(try pop(), arguments, at: offset))
            case 0x81:  // NEWOBJ: cls.__new__(cls, *args) — an inert instance
                guard let arguments = try pop().items, case .global(let module, let name) = try pop() else {
                    throw fail("NEWOBJ of a non-class", at: offset)
                }
                stack.append(.object(PickleObject(module: module, name: name, arguments: arguments)))
            case 0x92:  // NEWOBJ_EX
                _ = try pop()
                guard let arguments = try pop().items, case .global(let module, let name) = try pop() else {
                    throw fail("NEWOBJ_EX of a non-class", at: offset)
                }
                stack.append(.object(PickleObject(module: module, name: name, arguments: arguments)))
            case UInt8(ascii: "b"):
                let state = try pop()
                build(try top(), state)
            case UInt8(ascii: "Q"): stack.append(try persistentLoad(try pop()))
            case UInt8(ascii: "q"): memo[UInt32(try byte())] = try top()
            case UInt8(ascii: "r"): memo[UInt32(try uint(4))] = try top()
            case 0x94: memo[UInt32(truncatingIfNeeded: memo.count)] = try top()
            case UInt8(ascii: "h"), UInt8(ascii: "j"):
                let key = opcode == UInt8(ascii: "h") ? UInt32(try byte()) : UInt32(try uint(4))
                guard let value = memo[key] else { throw fail("memo entry \(key) was never stored", at: offset) }
                stack.append(value)
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

    private func append(_ items: [PickleValue], to target: PickleValue, at offset: Int) throws {
        switch target {
        case .list(let list): list.items += items
        case .object(let object): object.items += items
        default: throw fail("APPEND to a non-list", at: offset)
        }
    }

    private func setItems(_ items: [PickleValue], on target: PickleValue, at offset: Int) throws {
        let dict: PickleDict
        switch target {
        case .dict(let d): dict = d
        case .object(let object): dict = object.attributes  // dict subclasses keep their items with the attributes
        default: throw fail("SETITEM on a non-dict", at: offset)
        }
        for i in stride(from: 0, to: items.count, by: 2) { dict.set(items[i], items[i + 1]) }
    }

    /// BUILD: an object's state dict (or `(state, slots)` pair) becomes its attributes; state given to
    /// anything else (OrderedDict `_metadata`, tensors) carries nothing a model needs and is dropped.
    private func build(_ target: PickleValue, _ state: PickleValue) {
        guard case .object(let object) = target else { return }
        var states = [state]
        if case .tuple(let pair) = state, pair.count == 2 { states = pair }
        for case .dict(let dict) in states {
            for (key, value) in dict.entries { object.attributes.set(key, value) }
        }
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
