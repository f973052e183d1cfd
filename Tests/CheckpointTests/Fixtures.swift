import Checkpoint
import Foundation
import XCTest

/// The committed fixtures of Tests/Fixtures/checkpoints (made by Tests/Fixtures/make_checkpoint_fixtures.py).
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../Fixtures/checkpoints").standardized

    struct Manifest: Decodable {
        struct Tensor: Decodable {
            let dtype: String
            let shape: [Int]
            let bytes: String
            let float32: String
        }
        struct Layer: Decodable {
            let i: Int
            let f: From
            let type: String
        }
        enum From: Decodable, Equatable {
            case one(Int)
            case many([Int])
            init(from decoder: Decoder) throws {
                let c = try decoder.singleValueContainer()
                if let i = try? c.decode(Int.self) { self = .one(i) } else { self = .many(try c.decode([Int].self)) }
            }
        }
        // The fields mirror the manifest's JSON keys.
        // swift-format-ignore: AlwaysUseLowerCamelCase
        struct File: Decodable {
            let file: String
            let kind: String
            let state_dict: [String: Tensor]
            let keys: [String]
            let task: String?
            let names: [String: String]?
            let stride: [Double]?
            let yaml_file: String?
            let nc: Int?
            let reg_max: Int?
            let layers: [Layer]?
            let bn_eps: [Double]?
            let leaf_modules: Int?
            let parameters: Int?
        }
        struct Refused: Decodable {
            let file: String
            let contains: String
        }
        let files: [File]
        let refused: [Refused]
        let marker: String
    }

    static let manifest: Manifest = {
        let data = try! Data(contentsOf: directory.appendingPathComponent("manifest.json"))
        return try! JSONDecoder().decode(Manifest.self, from: data)
    }()

    static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
}

/// FNV-1a 64-bit, as the fixture script hashes tensor bytes.
func fnv1a64(_ data: Data) -> String {
    var hash: UInt64 = 0xCBF2_9CE4_8422_2325
    for byte in data { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
    return String(format: "%016llx", hash)
}

func fnv1a64(_ floats: [Float]) -> String {
    fnv1a64(floats.withUnsafeBufferPointer { Data(buffer: $0) })
}

/// Asserts a loaded tensor is bit for bit what torch loaded: dtype, shape, bytes, and its float32 conversion.
func assertTensor(
    _ tensor: StoredTensor?, equals expected: Fixtures.Manifest.Tensor, _ what: String,
    file: StaticString = #filePath, line: UInt = #line
) {
    guard let tensor else { return XCTFail("\(what): missing", file: file, line: line) }
    XCTAssertEqual(tensor.type.rawValue, expected.dtype, "\(what): dtype", file: file, line: line)
    XCTAssertEqual(tensor.shape, expected.shape, "\(what): shape", file: file, line: line)
    XCTAssertEqual(fnv1a64(tensor.contiguousBytes()), expected.bytes, "\(what): bytes", file: file, line: line)
    XCTAssertEqual(fnv1a64(tensor.floats()), expected.float32, "\(what): float32 values", file: file, line: line)
}
