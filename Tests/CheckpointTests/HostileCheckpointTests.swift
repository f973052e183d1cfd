import Foundation
import XCTest

@testable import Checkpoint

/// Pickle opcodes (protocol 2) for hand-made hostile checkpoints.
struct PickleWriter {
    var bytes: [UInt8] = [0x80, 2]

    private static func little(_ value: Int, _ count: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
    }
    mutating func op(_ code: Character) { bytes.append(code.asciiValue!) }
    mutating func string(_ text: String) {
        let utf8 = Array(text.utf8)
        bytes += [UInt8(ascii: "X")] + Self.little(utf8.count, 4) + utf8
    }
    /// LONG1 with 8 bytes: any Int.
    mutating func int(_ value: Int) { bytes += [0x8A, 8] + Self.little(value, 8) }
    mutating func global(_ module: String, _ name: String) {
        bytes += [UInt8(ascii: "c")] + Array("\(module)\n\(name)\n".utf8)
    }
    mutating func put(_ index: UInt8) { bytes += [UInt8(ascii: "q"), index] }
    mutating func get(_ index: UInt8) { bytes += [UInt8(ascii: "h"), index] }
    mutating func tuple(_ items: [Int]) {
        op("(")
        for item in items { int(item) }
        op("t")
    }

    /// `torch._utils._rebuild_tensor_v2` of a float storage `key` holding `elements` floats.
    mutating func tensor(key: String, elements: Int, offset: Int = 0, sizes: [Int], strides: [Int]) {
        global("torch._utils", "_rebuild_tensor_v2")
        op("(")
        op("(")
        string("storage")
        global("torch", "FloatStorage")
        string(key)
        string("cpu")
        int(elements)
        op("t")
        op("Q")
        int(offset)
        tuple(sizes)
        tuple(strides)
        bytes.append(0x89)  // requires_grad False
        global("collections", "OrderedDict")
        op(")")
        op("R")
        op("t")
        op("R")
    }

    /// An `nn.Module` with no parameters whose `_modules` are the memo entries `children` under their names.
    mutating func module(children: [(String, UInt8)]) {
        global("torch.nn.modules.module", "Module")
        op(")")
        bytes.append(0x81)  // NEWOBJ
        op("}")
        for field in ["_parameters", "_buffers"] {
            string(field)
            op("}")
            op("s")
        }
        string("_modules")
        op("}")
        for (name, index) in children {
            string(name)
            get(index)
            op("s")
        }
        op("s")
        op("b")  // BUILD
    }

    func finished() -> [UInt8] { bytes + [UInt8(ascii: ".")] }
}

/// Hostile checkpoints built byte by byte, each with the outcome it must have: a typed error that names what is
/// wrong (or a load that stays within the file's size), never a trap, a stack overflow or gigabytes allocated.
final class HostileCheckpointTests: XCTestCase {
    func load(_ pickle: PickleWriter, storage: [UInt8] = [0, 0, 0, 0]) throws -> StateDict {
        let zip = storedZip([("archive/data.pkl", pickle.finished()), ("archive/data/0", storage)])
        let file = MappedFile(data: zip, path: "hostile.pt")
        guard case .dict(let top) = try TorchArchive(file: file).root else { throw file.corrupt("no dict") }
        return try StateDict.from(dict: top, path: file.path, file: file)
    }

    func assertRefused(_ body: @autoclosure () throws -> Any, saying words: String, line: UInt = #line) {
        XCTAssertThrowsError(try body(), line: line) { error in
            guard case .corrupt(let path, let reason) = error as? CheckpointError else {
                return XCTFail("\(error)", line: line)
            }
            XCTAssertEqual(path, "hostile.pt", line: line)
            XCTAssertTrue(reason.contains(words), reason, line: line)
        }
    }

    func stateDict(_ tensors: [(name: String, sizes: [Int], strides: [Int])], elements: Int) -> PickleWriter {
        var pickle = PickleWriter()
        pickle.op("}")
        pickle.op("(")
        for tensor in tensors {
            pickle.string(tensor.name)
            pickle.tensor(key: "0", elements: elements, sizes: tensor.sizes, strides: tensor.strides)
        }
        pickle.op("u")
        return pickle
    }

    /// A view whose last element lies past Int.max (the sum of its strides' reaches overflows), and one whose
    /// sizes' product does: refused, not trapped.
    func testViewsWhoseArithmeticOverflowsAreRefused() {
        let big = (1 << 62) - 1
        assertRefused(
            try load(stateDict([("w", [2, 2, 2], [big, big, big])], elements: 1)), saying: "overflows")
        assertRefused(try load(stateDict([("w", [1 << 40, 1 << 40], [0, 0])], elements: 1)), saying: "overflows")
    }

    /// One stored float expanded to 2^30 elements (stride 0) would make the model copy 4 GB.
    func testExpandedViewsBeyondTheBoundAreRefused() throws {
        assertRefused(
            try load(stateDict([("w", [1 << 20, 1 << 10], [0, 0])], elements: 1)), saying: "repeats a 1-element")
        // A small expansion, as torch.save writes for `expand`, still loads.
        let small = try load(
            stateDict([("w", [3, 4], [0, 1])], elements: 4), storage: [UInt8](repeating: 0, count: 16))
        XCTAssertEqual(small["w"]?.floats().count, 12)
    }

    /// 200 full views of one 100,000-float storage are 20 M elements from a 0.4 MB file: refused as a whole.
    func testManyViewsOfOneStorageCannotOutgrowTheFile() {
        let views = (0..<200).map { (name: "w\($0)", sizes: [100_000], strides: [1]) }
        assertRefused(
            try load(stateDict(views, elements: 100_000), storage: [UInt8](repeating: 0, count: 400_000)),
            saying: "more than a")
    }

    /// 50,000 nested tuples: refused at the depth bound, not a stack overflow while building or freeing them.
    func testDeepNestingIsRefused() {
        var pickle = PickleWriter()
        pickle.bytes += [UInt8(ascii: "K"), 1] + [UInt8](repeating: 0x85, count: 50_000)
        assertRefused(try load(pickle), saying: "nested more than \(Unpickler.maximumDepth) levels")
        // Lists nested through the memo after their parents hold them: refused at the first such append.
        var chain = PickleWriter()
        chain.op("]")
        chain.put(0)
        chain.op("]")
        chain.put(1)
        chain.op("a")  // list 1 into list 0
        chain.get(1)
        chain.op("]")
        chain.op("a")  // a list into list 1, which list 0 already holds
        assertRefused(try load(chain), saying: "already lies inside another")
    }

    /// A module tree of 60 levels whose every module has the next one as both of its children: 2^60 paths. The
    /// state-dict walk (which follows paths, as `state_dict()` does) stops at its bound; the walks that count
    /// modules visit each once.
    func testSharedChildrenDoNotMakeTheWalkExplode() throws {
        var pickle = PickleWriter()
        pickle.op("}")
        pickle.string("model")
        pickle.module(children: [])
        pickle.put(0)
        for level in 1...60 {
            pickle.op("0")  // POP: the previous level lives on in the memo
            pickle.module(children: [("a", UInt8(level - 1)), ("b", UInt8(level - 1))])
            pickle.put(UInt8(level))
        }
        pickle.op("s")
        let zip = storedZip([("archive/data.pkl", pickle.finished())])
        let file = MappedFile(data: zip, path: "hostile.pt")
        let start = Date()
        guard case .dict(let top) = try TorchArchive(file: file).root, let model = top["model"]?.object else {
            return XCTFail("no model")
        }
        assertRefused(try StateDict.from(module: model, path: file.path, file: file), saying: "too large")
        XCTAssertEqual(model.allModules.count, 61)
        XCTAssertEqual(model.leafModules.count, 1)
        XCTAssertLessThan(Date().timeIntervalSince(start), 10, "the walks must stop long before 2^60 steps")
    }

    /// Safetensors shapes whose byte count overflows are refused; an empty tensor with huge later sides loads.
    func testSafetensorsShapesThatOverflow() throws {
        func file(_ header: String) -> MappedFile {
            let json = Array(header.utf8)
            let length = (0..<8).map { UInt8(truncatingIfNeeded: json.count >> (8 * $0)) }
            return MappedFile(data: Data(length + json), path: "hostile.pt")
        }
        assertRefused(
            try Safetensors.load(
                file(#"{"a": {"dtype": "F64", "shape": [4611686018427387904], "data_offsets": [0, 0]}}"#)),
            saying: "bytes for")
        let empty = try Safetensors.load(
            file(#"{"a": {"dtype": "F32", "shape": [0, 1099511627776, 1099511627776], "data_offsets": [0, 0]}}"#))
        XCTAssertEqual(empty["a"]?.count, 0)
        XCTAssertEqual(empty["a"]?.floats(), [])
    }

    /// The sizes a SAM's tensors imply are bounded before any is used: widths that do not divide into the
    /// decoder's heads, encoder heads that do not divide the width, an encoder larger than ViT-H's.
    func testSamSizesOutOfRangeAreNamed() throws {
        let base = try XCTUnwrap(SamArchitecture.published(.vitB))
        XCTAssertNil(base.outOfRange)
        var narrow = base
        narrow.promptWidth = 7
        XCTAssertEqual(narrow.outOfRange, "the prompt width is 7; it must lie in 16…4096 and be a multiple of 16")
        var heads = base
        heads.encoderHeads = 7
        XCTAssertEqual(heads.outOfRange, "the image encoder's heads do not divide its width")
        var huge = base
        huge.gridSize = 128
        XCTAssertEqual(huge.outOfRange, "the image grid's side is 128; it must lie in 1…64")
        XCTAssertNil(SamArchitecture.published(.vitH)?.outOfRange, "ViT-H is the largest SAM there is")
    }
}
