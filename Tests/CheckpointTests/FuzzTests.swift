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

    /// What a fuzzed file may load as: the state dict of its kind (safetensors, a pickled Ultralytics module tree,
    /// or a plain state dict).
    func load(_ file: MappedFile, name: String) throws -> StateDict {
        if name.hasSuffix(".safetensors") { return try Safetensors.load(file) }
        let archive = try TorchArchive(file: file)
        guard case .dict(let top) = archive.root else { throw file.corrupt("the pickle's root is not a dict") }
        if let model = top["model"]?.object { return try StateDict.from(module: model, path: name, file: file) }
        return try StateDict.from(dict: top, path: name, file: file)
    }

    /// A loaded state dict is usable: every key has its tensor, every view lies inside its storage (checked here
    /// independently of the reader), and the elements read back as `count` values of the stored type.
    func checkUsable(_ weights: StateDict, _ label: String) {
        for key in weights.keys {
            guard let tensor = weights[key] else { return XCTFail("\(label): key \(key) without a tensor") }
            var last = tensor.offset
            var elements = 1
            for (size, stride) in zip(tensor.shape, tensor.strides) {
                let (reach, overflow) = max(size - 1, 0).multipliedReportingOverflow(by: stride)
                let (sum, overflow2) = last.addingReportingOverflow(reach)
                let (product, overflow3) = elements.multipliedReportingOverflow(by: size)
                guard !overflow, !overflow2, !overflow3 else { return XCTFail("\(label): \(key)'s view overflows") }
                (last, elements) = (sum, product)
            }
            XCTAssertEqual(tensor.shape.count, tensor.strides.count, "\(label): \(key)")
            XCTAssertTrue(elements == 0 || last < tensor.storage.count, "\(label): \(key) reaches past its storage")
            let bytes = elements * tensor.type.byteSize
            if bytes <= 1 << 24 {
                XCTAssertEqual(tensor.contiguousBytes().count, bytes, "\(label): \(key)'s elements")
            }
        }
    }

    /// Every mutated file either loads as a usable state dict or is refused with a `CheckpointError` whose message
    /// names the file; a crash or a hang fails the suite. Some mutations must be refused, or the readers check
    /// nothing.
    /// `unsafe`: the unmutated file is refused for what its pickle calls, instead of loading.
    func fuzz(_ name: String, cases: Int, seed: UInt64, unsafe: Bool = false) throws {
        let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Fixtures.path(name))))
        let unmutated = MappedFile(data: Data(original), path: name)
        if unsafe {
            XCTAssertThrowsError(try load(unmutated, name: name)) { error in
                guard case .refusedUnsafe = error as? CheckpointError else { return XCTFail("\(name): \(error)") }
            }
        } else {
            checkUsable(try load(unmutated, name: name), name + " unmutated")
        }
        var random = Generator(state: seed)
        var loaded = 0
        var refused = 0
        for index in 0..<cases {
            let file = MappedFile(data: Data(mutate(original, &random)), path: name)
            do {
                checkUsable(try load(file, name: name), "\(name) case \(index)")
                loaded += 1
            } catch let error as CheckpointError {
                let message = error.localizedDescription
                XCTAssertTrue(
                    message.hasPrefix(name + ":"), "\(name) case \(index): the message names no file: \(message)")
                refused += 1
            } catch {
                XCTFail("\(name) case \(index): untyped error \(error)")
            }
        }
        XCTAssertGreaterThan(refused, cases / 10, "\(name): the readers refused almost no mutated file")
        print("fuzz \(name): \(cases) cases, \(loaded) still loadable, \(refused) refused with typed errors")
    }

    var scale: Int { Int(ProcessInfo.processInfo.environment["AUTOANNOTATE_FUZZ_CASES"] ?? "") ?? 1 }

    func testFuzzSpecialTensors() throws { try fuzz("special.pt", cases: 3000 * scale, seed: 1) }
    func testFuzzProtocolFourStateDict() throws { try fuzz("tiny_sam_fp16_proto4.pt", cases: 300 * scale, seed: 2) }
    func testFuzzPickledModule() throws { try fuzz("tiny_yolov8.pt", cases: 150 * scale, seed: 3) }
    func testFuzzSafetensors() throws { try fuzz("tiny_sam.safetensors", cases: 300 * scale, seed: 4) }
    func testFuzzMaliciousFile() throws {
        try fuzz("malicious_os_system.pt", cases: 1000 * scale, seed: 5, unsafe: true)
    }
}
