import Foundation
import XCTest

@testable import Checkpoint

/// Seeded mutation fuzzing of the zip, pickle and safetensors readers over real fixtures: byte flips,
/// overwritten integers, truncations and spliced chunks. Every case must end in a loaded model or a
/// `CheckpointError`: a crash or a hang fails the suite. Set AUTOANNOTATE_FUZZ_CASES to run more.
final class FuzzTests: XCTestCase {
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return state
        }
    }

    func mutate(_ original: [UInt8], _ random: inout Generator) -> [UInt8] {
        var bytes = original
        for _ in 0..<Int.random(in: 1...4, using: &random) {
            guard !bytes.isEmpty else { break }
            let at = Int.random(in: 0..<bytes.count, using: &random)
            switch Int.random(in: 0..<5, using: &random) {
            case 0: bytes[at] ^= UInt8(1 << Int.random(in: 0..<8, using: &random))
            case 1: bytes[at] = UInt8.random(in: 0...255, using: &random)
            case 2:  // an integer field set to an extreme
                let value: UInt32 = [0, 0xFFFF_FFFF, 0x7FFF_FFFF, 0x8000_0000, 1 << 20].randomElement(using: &random)!
                for i in 0..<4 where at + i < bytes.count {
                    bytes[at + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i)))
                }
            case 3: bytes.removeSubrange(at..<min(bytes.count, at + Int.random(in: 1...64, using: &random)))
            default:
                let from = Int.random(in: 0..<bytes.count, using: &random)
                bytes.insert(
                    contentsOf: bytes[from..<min(bytes.count, from + Int.random(in: 1...32, using: &random))], at: at)
            }
        }
        if Int.random(in: 0..<10, using: &random) == 0 {
            bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &random)))
        }
        return bytes
    }

    func fuzz(_ name: String, cases: Int, seed: UInt64) {
        let original = [UInt8](try! Data(contentsOf: URL(fileURLWithPath: Fixtures.path(name))))
        var random = Generator(state: seed)
        var loaded = 0
        var refused = 0
        for _ in 0..<cases {
            let file = MappedFile(data: Data(mutate(original, &random)), path: name)
            do {
                if name.hasSuffix(".safetensors") {
                    _ = try Safetensors.load(file)
                } else {
                    let archive = try TorchArchive(file: file)
                    if case .dict(let top) = archive.root, let model = top["model"]?.object {
                        _ = try StateDict.from(module: model, path: name, file: file)
                    }
                }
                loaded += 1
            } catch is CheckpointError {
                refused += 1
            } catch {
                XCTFail("\(name): untyped error \(error)")
            }
        }
        XCTAssertEqual(loaded + refused, cases)
        print("fuzz \(name): \(cases) cases, \(loaded) still loadable, \(refused) refused with typed errors")
    }

    var scale: Int { Int(ProcessInfo.processInfo.environment["AUTOANNOTATE_FUZZ_CASES"] ?? "") ?? 1 }

    func testFuzzSpecialTensors() { fuzz("special.pt", cases: 3000 * scale, seed: 1) }
    func testFuzzProtocolFourStateDict() { fuzz("tiny_sam_fp16_proto4.pt", cases: 300 * scale, seed: 2) }
    func testFuzzPickledModule() { fuzz("tiny_yolov8.pt", cases: 150 * scale, seed: 3) }
    func testFuzzSafetensors() { fuzz("tiny_sam.safetensors", cases: 300 * scale, seed: 4) }
    func testFuzzMaliciousFile() { fuzz("malicious_os_system.pt", cases: 1000 * scale, seed: 5) }
}
