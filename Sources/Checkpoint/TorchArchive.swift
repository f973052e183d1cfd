import Foundation

/// A `torch.save` file (zip format, PyTorch ≥ 1.6) read without running any of its pickle: the object graph
/// with tensors as views into the mapped file. Port of the reading side of `torch.serialization.load`
/// (`_load`, `persistent_load`, `torch._utils._rebuild_*`); see docs/ARCHITECTURE.md, "How checkpoints are read".
public struct TorchArchive {
    public let file: MappedFile
    /// The archive's folder name (the saved file's stem, or "archive" when saved to a buffer).
    public let prefix: String
    /// The unpickled object.
    public let root: PickleValue

    public init(path: String) throws {
        try self.init(file: MappedFile(path: path))
    }

    public init(file: MappedFile) throws {
        self.file = file
        let zip = try ZipArchive(file)
        // PyTorchStreamReader takes the prefix from the first entry, whatever it is named.
        guard let first = zip.entries.first, let slash = first.name.firstIndex(of: "/") else {
            throw CheckpointError.unrecognized(
                path: file.path, guess: "a zip archive, but not one written by torch.save")
        }
        let prefix = String(first.name[..<slash])
        self.prefix = prefix
        if zip.byName["\(prefix)/constants.pkl"] != nil
            || zip.entries.contains(where: { $0.name.hasPrefix("\(prefix)/code/") })
        {
            throw CheckpointError.unsupported(
                path: file.path,
                reason: "a TorchScript archive (torch.jit.save); give the original .pt checkpoint instead")
        }
        guard let pickle = zip.byName["\(prefix)/data.pkl"] else {
            throw CheckpointError.unrecognized(
                path: file.path, guess: "a zip archive without data.pkl, not a torch.save file")
        }
        var bigEndian = false
        if let order = zip.byName["\(prefix)/byteorder"] {
            bigEndian = String(decoding: try zip.contents(of: order), as: UTF8.self) == "big"
        }
        var storages: [String: StoredStorage] = [:]
        let load: (PickleValue) throws -> PickleValue = { pid in
            // ('storage', storage_type, key, location, numel)
            guard let fields = pid.items, fields.count == 5, fields[0].string == "storage",
                case .global(_, let typeName) = fields[1], let key = fields[2].string, let numel = fields[4].int,
                numel >= 0
            else { throw file.corrupt("pickle: a persistent id that is not a torch storage reference") }
            if let known = storages[key] { return .storage(known) }
            guard let type = StorageType(torchStorage: typeName) else {
                throw CheckpointError.unsupported(
                    path: file.path, reason: "tensor storage type torch.\(typeName) is not supported")
            }
            guard let entry = zip.byName["\(prefix)/data/\(key)"] else {
                throw file.corrupt("storage record data/\(key.prefix(40)) is missing")
            }
            let (bytes, overflow) = numel.multipliedReportingOverflow(by: type.byteSize)
            guard !overflow, bytes <= entry.size else {
                throw file.corrupt(
                    "storage data/\(key) holds \(entry.size) bytes, but \(numel) \(type) elements need "
                        + (overflow || numel < 0 ? "more than any file holds" : "\(bytes)"))
            }
            let storage = StoredStorage(
                type: type, count: numel, bytes: try zip.contents(of: entry), bigEndian: bigEndian, file: file)
            storages[key] = storage
            return .storage(storage)
        }
        var unpickler = Unpickler(
            data: try zip.contents(of: pickle), file: file, persistentLoad: load,
            reduce: { try Self.rebuild($0, $1, $2, file: file) })
        root = try unpickler.load()
    }

    /// The torch and standard-library calls a checkpoint's pickle makes, interpreted as data.
    static func rebuild(_ module: String, _ name: String, _ args: [PickleValue], file: MappedFile) throws
        -> PickleValue?
    {
        switch (module, name) {
        case ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor"):
            // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
            guard args.count >= 4, case .storage(let storage) = args[0], let offset = args[1].int,
                let size = args[2].items?.compactMap(\.int), let stride = args[3].items?.compactMap(\.int),
                size.count == args[2].items?.count, stride.count == args[3].items?.count
            else { throw file.corrupt("pickle: malformed _rebuild_tensor_v2 arguments") }
            return .tensor(try StoredTensor(storage: storage, offset: offset, shape: size, strides: stride, file: file))
        case ("torch._utils", "_rebuild_tensor_v3"):
            // (storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype[, metadata]): untyped bytes
            guard args.count >= 7, case .storage(let raw) = args[0], case .global(_, let dtypeName) = args[6],
                let type = StorageType(torchDtype: dtypeName), let offset = args[1].int,
                let size = args[2].items?.compactMap(\.int), let stride = args[3].items?.compactMap(\.int)
            else { throw file.corrupt("pickle: malformed _rebuild_tensor_v3 arguments") }
            let typed = StoredStorage(
                type: type, count: raw.bytes.count / type.byteSize, bytes: raw.bytes, bigEndian: raw.bigEndian,
                file: file)
            return .tensor(try StoredTensor(storage: typed, offset: offset, shape: size, strides: stride, file: file))
        case ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"):
            // (data, requires_grad, backward_hooks[, state])
            guard var tensor = args.first?.tensor else {
                throw file.corrupt("pickle: _rebuild_parameter without a tensor")
            }
            if case .bool(true) = args.count > 1 ? args[1] : .none { tensor.requiresGrad = true }
            return .tensor(tensor)
        case ("torch._tensor", "_rebuild_from_type_v2"):
            // (func, type, args, state): a tensor subclass; the tensor is func(*args)
            guard args.count >= 3, case .global(let m, let n) = args[0], let inner = args[2].items else {
                throw file.corrupt("pickle: malformed _rebuild_from_type_v2 arguments")
            }
            return try rebuild(m, n, inner, file: file)
        case ("collections", "OrderedDict"):
            let dict = PickleDict()
            for case .tuple(let pair) in args.first?.items ?? [] where pair.count == 2 { dict.set(pair[0], pair[1]) }
            return .dict(dict)
        case ("builtins", "set"), ("builtins", "frozenset"):
            return .set(args.first?.items ?? [])
        case ("builtins", "tuple"), ("torch", "Size"):
            return .tuple(args.first?.items ?? [])
        case ("builtins", "list"):
            return .list(PickleList(args.first?.items ?? []))
        case ("_codecs", "encode"):
            // The protocol-2 spelling of bytes: encode(text, "latin1").
            guard let text = args.first?.string else { throw file.corrupt("pickle: malformed _codecs.encode") }
            return .bytes(Data(text.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) }))
        case ("copyreg", "_reconstructor"):
            guard case .global(let m, let n) = args.first else {
                throw file.corrupt("pickle: malformed copyreg._reconstructor")
            }
            return .object(PickleObject(module: m, name: n, arguments: []))
        default:
            return nil
        }
    }
}
