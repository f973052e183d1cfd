import Foundation
import XCTest

@testable import Checkpoint

/// A minimal zip writer for hand-made archives (stored entries, no alignment): enough to wrap a crafted
/// data.pkl the way torch.save does.
func storedZip(_ entries: [(String, [UInt8])]) -> Data {
    var out = [UInt8]()
    var directory = [UInt8]()
    func le(_ v: Int, _ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
    for (name, data) in entries {
        let offset = out.count
        let nameBytes = Array(name.utf8)
        out +=
            le(0x0403_4b50, 4) + le(20, 2) + le(0, 2) + le(0, 2) + le(0, 4) + le(0, 4) + le(data.count, 4)
            + le(data.count, 4)
        out += le(nameBytes.count, 2) + le(0, 2) + nameBytes + data
        directory += le(0x0201_4b50, 4) + le(20, 2) + le(20, 2) + le(0, 2) + le(0, 2) + le(0, 4) + le(0, 4)
        directory +=
            le(data.count, 4) + le(data.count, 4) + le(nameBytes.count, 2) + le(0, 2) + le(0, 2) + le(0, 2) + le(0, 2)
        directory += le(0, 4) + le(offset, 4) + nameBytes
    }
    let start = out.count
    out += directory + le(0x0605_4b50, 4) + le(0, 2) + le(0, 2) + le(entries.count, 2) + le(entries.count, 2)
    out += le(directory.count, 4) + le(start, 4) + le(0, 2)
    return Data(out)
}

func archive(pickle: [UInt8]) throws -> TorchArchive {
    try TorchArchive(file: MappedFile(data: storedZip([("archive/data.pkl", pickle)]), path: "crafted.pt"))
}

final class SafetyTests: XCTestCase {
    /// torch.save of objects whose __reduce__ runs a command (os.system, exec, eval, subprocess): refused at the
    /// GLOBAL, before anything else, and the command's side effect (a marker file) never appears.
    func testMaliciousCheckpointsAreRefusedAndRunNothing() throws {
        let marker = Fixtures.manifest.marker
        try? FileManager.default.removeItem(atPath: marker)
        let expected = [
            "malicious_os_system.pt": "posix.system", "malicious_exec.pt": "builtins.exec",
            "malicious_eval.pt": "builtins.eval", "malicious_subprocess.pt": "commands.check_output",
        ]  // protocol 2 spells subprocess as commands
        for (name, global) in expected {
            XCTAssertThrowsError(try ModelFile.open(path: Fixtures.path(name))) { error in
                guard case .refusedUnsafe(_, let named, _) = error as? CheckpointError else {
                    return XCTFail("\(name): \(error)")
                }
                XCTAssertEqual(named, global, name)
            }
            XCTAssertThrowsError(try TorchArchive(path: Fixtures.path(name)))
        }
        XCTAssertFalse(
            FileManager.default.fileExists(atPath: marker), "a refused checkpoint must not have run its command")
    }

    func testProtocolFourStackGlobalIsCheckedToo() {
        // PROTO 4, SHORT_BINUNICODE "os", SHORT_BINUNICODE "system", STACK_GLOBAL, … STOP
        let pickle: [UInt8] = [0x80, 4, 0x8C, 2] + Array("os".utf8) + [0x8C, 6] + Array("system".utf8) + [0x93, 0x2E]
        XCTAssertThrowsError(try archive(pickle: pickle)) { error in
            guard case .refusedUnsafe(_, "os.system", _) = error as? CheckpointError else { return XCTFail("\(error)") }
        }
    }

    func testAllowedClassesBecomeInertObjects() throws {
        // GLOBAL ultralytics.nn.tasks DetectionModel, EMPTY_TUPLE, NEWOBJ, {"nc": 3}, BUILD, STOP
        var pickle: [UInt8] = [0x80, 2, UInt8(ascii: "c")] + Array("ultralytics.nn.tasks\nDetectionModel\n".utf8)
        pickle += [UInt8(ascii: ")"), 0x81, UInt8(ascii: "}"), UInt8(ascii: "X"), 2, 0, 0, 0] + Array("nc".utf8)
        pickle += [UInt8(ascii: "K"), 3, UInt8(ascii: "s"), UInt8(ascii: "b"), UInt8(ascii: ".")]
        let root = try archive(pickle: pickle).root
        XCTAssertEqual(root.object?.qualifiedName, "ultralytics.nn.tasks.DetectionModel")
        XCTAssertEqual(root.object?["nc"]?.int, 3)
    }

    /// Sizes in headers are checked against the file before anything is allocated or read.
    func testHeaderCountsAndLengthsCannotOutgrowTheFile() {
        // A 22-byte end-of-directory record claiming 65,535 entries.
        var eocd = Data([0x50, 0x4B, 0x05, 0x06, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        eocd = Data(repeating: 0, count: 78) + eocd
        XCTAssertThrowsError(try TorchArchive(file: MappedFile(data: eocd, path: "eocd.pt"))) { error in
            guard case .corrupt(_, let reason) = error as? CheckpointError else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("65535 entries"), reason)
        }
        // BINUNICODE claiming 2 GB, BINBYTES8 claiming 2^63, LONG4 claiming 2^31 bytes.
        for pickle: [UInt8] in [
            [0x80, 2, UInt8(ascii: "X"), 0xFF, 0xFF, 0xFF, 0x7F, 0x41],
            [0x80, 4, 0x8E, 0, 0, 0, 0, 0, 0, 0, 0x80],
            [0x80, 2, 0x8B, 0xFF, 0xFF, 0xFF, 0x7F],
        ] {
            XCTAssertThrowsError(try archive(pickle: pickle)) { error in
                guard case .corrupt(_, let reason) = error as? CheckpointError else { return XCTFail("\(error)") }
                XCTAssertTrue(reason.contains("past the end"), reason)
            }
        }
        // A storage reference whose element count exceeds its record.
        var pickle: [UInt8] = [0x80, 2, UInt8(ascii: "(")]
        pickle += [UInt8(ascii: "X"), 7, 0, 0, 0] + Array("storage".utf8)
        pickle += [UInt8(ascii: "c")] + Array("torch\nFloatStorage\n".utf8)
        pickle += [UInt8(ascii: "X"), 1, 0, 0, 0, UInt8(ascii: "0"), UInt8(ascii: "X"), 3, 0, 0, 0] + Array("cpu".utf8)
        pickle += [UInt8(ascii: "J"), 0, 0, 0, 0x40, UInt8(ascii: "t"), UInt8(ascii: "Q"), UInt8(ascii: ".")]
        let zip = storedZip([("archive/data.pkl", pickle), ("archive/data/0", [0, 0, 0, 0])])
        XCTAssertThrowsError(try TorchArchive(file: MappedFile(data: zip, path: "storage.pt"))) { error in
            guard case .corrupt(_, let reason) = error as? CheckpointError else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("holds 4 bytes"), reason)
        }
    }

    func testMalformedPicklesEndInTypedErrors() {
        let cases: [[UInt8]] = [
            [0x80, 2],  // no STOP
            [0x80, 2, UInt8(ascii: "h"), 9, 0x2E],  // memo entry never stored
            [0x80, 2, UInt8(ascii: "a"), 0x2E],  // APPEND on an empty stack
            [0x80, 2, UInt8(ascii: "("), UInt8(ascii: "N"), 0x2E],  // STOP inside a MARK
            [0x80, 2, 0xFF],  // unknown opcode
            [0x80, 2, UInt8(ascii: "N"), UInt8(ascii: "R"), 0x2E],  // REDUCE of None
            [0x80, 2, UInt8(ascii: "c")] + Array("torch".utf8),  // unterminated GLOBAL
        ]
        for pickle in cases {
            XCTAssertThrowsError(try archive(pickle: pickle), "\(pickle)") { error in
                XCTAssertTrue(error is CheckpointError, "\(pickle): \(error)")
            }
        }
    }
}
