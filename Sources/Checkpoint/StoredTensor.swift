import Foundation
import Tensor

/// Element types of stored tensors (torch storages and safetensors dtypes).
public enum StorageType: String, Sendable, CaseIterable {
    case float32, float16, bfloat16, float64, int64, int32, int16, int8, uint8, bool

    public var byteSize: Int {
        switch self {
        case .float64, .int64: 8
        case .float32, .int32: 4
        case .float16, .bfloat16, .int16: 2
        case .int8, .uint8, .bool: 1
        }
    }

    /// From a torch storage class name (`torch.storage._dtype_to_storage_type_map`).
    init?(torchStorage name: String) {
        switch name {
        case "FloatStorage": self = .float32
        case "HalfStorage": self = .float16
        case "BFloat16Storage": self = .bfloat16
        case "DoubleStorage": self = .float64
        case "LongStorage": self = .int64
        case "IntStorage": self = .int32
        case "ShortStorage": self = .int16
        case "CharStorage": self = .int8
        case "ByteStorage", "UntypedStorage": self = .uint8
        case "BoolStorage": self = .bool
        default: return nil
        }
    }

    /// From a torch dtype name (`torch.bfloat16`, as `_rebuild_tensor_v3` passes it).
    init?(torchDtype name: String) {
        switch name {
        case "float32", "float": self = .float32
        case "float16", "half": self = .float16
        case "bfloat16": self = .bfloat16
        case "float64", "double": self = .float64
        case "int64", "long": self = .int64
        case "int32", "int": self = .int32
        case "int16", "short": self = .int16
        case "int8": self = .int8
        case "uint8": self = .uint8
        case "bool": self = .bool
        default: return nil
        }
    }
}

/// The raw bytes of one storage, a slice of the mapped file (never copied).
public struct StoredStorage: Sendable {
    public let type: StorageType
    public let count: Int
    let bytes: Data
    let bigEndian: Bool
    /// The file `bytes` lies in, whose pages are handed back once a tensor's floats are copied.
    let file: MappedFile
}

/// A tensor as the file stores it: a strided view into a storage, in its own element type. Converting to
/// Float32 (`floats`, `tensor`) is the only copy, made when the model prepares its weights.
public struct StoredTensor: Sendable {
    public let storage: StoredStorage
    public let offset: Int
    public let shape: [Int]
    public let strides: [Int]
    /// Whether the tensor was pickled as an `nn.Parameter` with `requires_grad` (Ultralytics' "gradients").
    public internal(set) var requiresGrad = false

    public var type: StorageType { storage.type }
    public var count: Int { shape.reduce(1, *) }

    /// Elements a view may have beyond its storage's own (an expanded or overlapping view repeats stored
    /// elements): a few stored bytes cannot make the model copy gigabytes.
    static let maximumRepeatedElements = 1 << 24
    /// Dimensions a tensor may have (PyTorch allows 64).
    static let maximumRank = 64

    /// Checks the view against its storage before anything reads through it: every size, stride and sum in range,
    /// the last element inside the storage, and no more elements than it stores unless the excess is small.
    init(storage: StoredStorage, offset: Int, shape: [Int], strides: [Int], file: MappedFile) throws {
        guard shape.count == strides.count, shape.count <= Self.maximumRank, offset >= 0,
            shape.allSatisfy({ $0 >= 0 }), strides.allSatisfy({ $0 >= 0 })
        else {
            throw file.corrupt("tensor view with shape \(shape), strides \(strides), offset \(offset) is malformed")
        }
        var elements = 1
        var last = offset
        for (size, stride) in zip(shape, strides) {
            let (product, overflow) = elements.multipliedReportingOverflow(by: size)
            let (reach, overflow2) = (size > 0 ? size - 1 : 0).multipliedReportingOverflow(by: stride)
            let (sum, overflow3) = last.addingReportingOverflow(reach)
            guard !overflow, !overflow2, !overflow3 else { throw file.corrupt("tensor shape \(shape) overflows") }
            elements = product
            last = sum
        }
        guard elements == 0 || last < storage.count else {
            throw file.corrupt(
                "tensor view \(shape) at offset \(offset) reaches element \(last) of a \(storage.count)-element storage"
            )
        }
        guard elements <= storage.count || elements <= Self.maximumRepeatedElements else {
            throw file.corrupt(
                "tensor view \(shape) with strides \(strides) repeats a \(storage.count)-element storage as "
                    + "\(elements) elements")
        }
        self.storage = storage
        self.offset = offset
        self.shape = shape
        self.strides = strides
    }

    /// The elements in row-major order, as little-endian bytes of the stored type (what `tensor.contiguous()`
    /// holds in memory).
    public func contiguousBytes() -> Data {
        let size = type.byteSize
        var out = Data(count: count * size)
        guard count > 0 else { return out }
        if isContiguous && !storage.bigEndian {
            let start = storage.bytes.startIndex + offset * size
            return Data(storage.bytes[start..<(start + count * size)])
        }
        storage.bytes.withUnsafeBytes { (source: UnsafeRawBufferPointer) in
            out.withUnsafeMutableBytes { (target: UnsafeMutableRawBufferPointer) in
                let swap = storage.bigEndian
                forEachStridedElement(shape: shape, strides: strides, offset: offset) { position, element in
                    let from = element * size
                    for b in 0..<size {
                        // Storages written on a big-endian machine are swapped to little-endian here.
                        target[position * size + b] = source[from + (swap ? size - 1 - b : b)]
                    }
                }
            }
        }
        return out
    }

    /// Row-major strides for the shape (dimensions of size 1 may have any stride).
    public var isContiguous: Bool {
        var expected = 1
        for (size, stride) in zip(shape, strides).reversed() {
            if size != 1 && stride != expected { return false }
            expected *= size
        }
        return true
    }

    /// The elements converted to Float32 (exactly, for every type but float64 and large integers). The storage's
    /// pages of the file are handed back after the copy (a weight is copied once, as its model loads).
    public func floats() -> [Float] {
        defer { storage.file.releasePages(storage.bytes) }
        // The common cases — float32 and float16, contiguous, little-endian — straight from the mapped file.
        if isContiguous && !storage.bigEndian && count > 0 && (type == .float32 || type == .float16) {
            let start = storage.bytes.startIndex + offset * type.byteSize
            return storage.bytes[start..<(start + count * type.byteSize)].withUnsafeBytes { p in
                type == .float32
                    ? [Float](unsafeUninitializedCapacity: count) { out, initialized in
                        UnsafeMutableRawBufferPointer(out).copyMemory(from: p)
                        initialized = count
                    } : floatsFromHalves(p.baseAddress!, count: count)
            }
        }
        let raw = contiguousBytes()
        return raw.withUnsafeBytes { (p: UnsafeRawBufferPointer) -> [Float] in
            switch type {
            case .float32:
                return (0..<count).map { Float(bitPattern: p.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) }
            case .float16: return floatsFromHalves(p.baseAddress!, count: count)
            case .bfloat16:
                return (0..<count).map {
                    Float(bitPattern: UInt32(p.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) << 16)
                }
            case .float64:
                return (0..<count).map {
                    Float(Double(bitPattern: p.loadUnaligned(fromByteOffset: 8 * $0, as: UInt64.self)))
                }
            case .int64: return (0..<count).map { Float(p.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) }
            case .int32: return (0..<count).map { Float(p.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
            case .int16: return (0..<count).map { Float(p.loadUnaligned(fromByteOffset: 2 * $0, as: Int16.self)) }
            case .int8: return (0..<count).map { Float(p.loadUnaligned(fromByteOffset: $0, as: Int8.self)) }
            case .uint8, .bool: return (0..<count).map { Float(p[$0]) }
            }
        }
    }

    /// As a Float32 `Tensor` of the same shape.
    public func tensor() -> Tensor { Tensor(shape: shape, storage: floats()) }
}
