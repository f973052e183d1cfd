import Foundation

/// A `.safetensors` file: an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
/// shape and byte range, then the data. Read as views into the mapped file, checked as the reference reader
/// checks (header size, offsets inside the buffer, sizes matching shapes).
enum Safetensors {
    static let maximumHeader = 100_000_000
    /// JSON values and nesting a header may hold: the parser keeps each value as an object (hundreds of bytes), so
    /// a header is bounded by its values, not only its bytes. A tensor takes about 8 values; ViT-H has 600 tensors.
    static let maximumHeaderValues = 200_000
    static let maximumHeaderDepth = 16

    static func looksLikeSafetensors(_ file: MappedFile) -> Bool {
        guard file.count >= 10, let length = try? file.uint(at: 0, size: 8, "header length"),
            length >= 2, length <= UInt64(min(maximumHeader, file.count - 8))
        else { return false }
        return file.data[file.data.startIndex + 8] == UInt8(ascii: "{")
    }

    /// Counts a JSON text's values (an upper bound: separators and openings outside strings) and its deepest
    /// nesting, in one pass and without building anything.
    static func headerValuesAndDepth(_ json: Data) -> (values: Int, depth: Int) {
        var (values, depth, deepest) = (1, 0, 0)
        var (inString, escaped) = (false, false)
        for byte in json {
            if inString {
                if escaped {
                    escaped = false
                } else if byte == UInt8(ascii: "\\") {
                    escaped = true
                } else if byte == UInt8(ascii: "\"") {
                    inString = false
                }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
                deepest = max(deepest, depth)
                values += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"): depth -= 1
            case UInt8(ascii: ","), UInt8(ascii: ":"): values += 1
            default: break
            }
        }
        return (values, deepest)
    }

    static func load(_ file: MappedFile) throws -> StateDict {
        let length = Int(try file.uint(at: 0, size: 8, "safetensors header length"))
        guard length <= maximumHeader else { throw file.corrupt("safetensors header of \(length) bytes is too large") }
        let header = try file.bytes(at: 8, count: length, "safetensors header")
        let (values, depth) = headerValuesAndDepth(header)
        guard values <= maximumHeaderValues, depth <= maximumHeaderDepth else {
            throw file.corrupt(
                "safetensors header holds \(values) JSON values nested \(depth) deep; autoannotate reads at most "
                    + "\(maximumHeaderValues) values nested \(maximumHeaderDepth) deep")
        }
        guard let json = try? JSONSerialization.jsonObject(with: header) as? [String: Any] else {
            throw file.corrupt("safetensors header is not a JSON object")
        }
        let bufferStart = 8 + length
        let buffer = try file.bytes(at: bufferStart, count: file.count - bufferStart, "safetensors data")
        var tensors: [(String, StoredTensor)] = []
        for (name, value) in json where name != "__metadata__" {
            guard let entry = value as? [String: Any], let dtype = entry["dtype"] as? String,
                let shape = entry["shape"] as? [Int], let offsets = entry["data_offsets"] as? [Int], offsets.count == 2
            else { throw file.corrupt("safetensors entry \(name) is malformed") }
            guard let type = storageType(dtype) else {
                throw CheckpointError.unsupported(
                    path: file.path, reason: "tensor \(name) has dtype \(dtype), which is not supported")
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin >= 0, begin <= end, end <= buffer.count, shape.allSatisfy({ $0 >= 0 }) else {
                throw file.corrupt(
                    "safetensors entry \(name) has data offsets \(offsets) outside the \(buffer.count)-byte buffer")
            }
            var count = 1
            for size in shape {
                let (product, overflow) = count.multipliedReportingOverflow(by: size)
                guard !overflow else {
                    throw file.corrupt("safetensors entry \(name) has an overflowing shape \(shape)")
                }
                count = product
            }
            guard count.multipliedReportingOverflow(by: type.byteSize) == (end - begin, false) else {
                throw file.corrupt("safetensors entry \(name): \(end - begin) bytes for \(count) \(dtype) elements")
            }
            let start = buffer.startIndex + begin
            let storage = StoredStorage(
                type: type, count: count, bytes: buffer[start..<(buffer.startIndex + end)], bigEndian: false, file: file
            )
            // Row-major strides; a tensor with no elements has no element to reach, and zero strides.
            var strides = [Int](repeating: count == 0 ? 0 : 1, count: shape.count)
            for axis in stride(from: shape.count - 2, through: 0, by: -1) where count > 0 {
                strides[axis] = strides[axis + 1] * shape[axis + 1]
            }
            tensors.append(
                (name, try StoredTensor(storage: storage, offset: 0, shape: shape, strides: strides, file: file)))
        }
        // JSON objects are unordered: keep the file's data order, as the writer laid tensors out.
        tensors.sort {
            $0.1.storage.bytes.startIndex < $1.1.storage.bytes.startIndex
                || ($0.1.storage.bytes.startIndex == $1.1.storage.bytes.startIndex && $0.0 < $1.0)
        }
        return try StateDict.checked(path: file.path, tensors, file: file)
    }

    static func storageType(_ dtype: String) -> StorageType? {
        switch dtype {
        case "F32": .float32
        case "F16": .float16
        case "BF16": .bfloat16
        case "F64": .float64
        case "I64": .int64
        case "I32": .int32
        case "I16": .int16
        case "I8": .int8
        case "U8": .uint8
        case "BOOL": .bool
        default: nil
        }
    }
}
