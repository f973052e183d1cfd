import Foundation
import XCTest

@testable import Checkpoint

/// A checkpoint's pages leave the process as its tensors are copied (so a model loads with its weights in memory
/// once, not twice), and a tensor read again after that reads the same values, from a file or from memory.
final class MappingTests: XCTestCase {
    /// A safetensors file of one float32 tensor of `count` values i / 8.
    func safetensors(count: Int) -> Data {
        var header = Array(#"{"w":{"dtype":"F32","shape":[\#(count)],"data_offsets":[0,\#(4 * count)]}}"#.utf8)
        header += [UInt8](repeating: UInt8(ascii: " "), count: (8 - header.count % 8) % 8)
        var bytes = (0..<8).map { UInt8(truncatingIfNeeded: header.count >> (8 * $0)) } + header
        bytes.reserveCapacity(bytes.count + 4 * count)
        for i in 0..<count { bytes += withUnsafeBytes(of: (Float(i) / 8).bitPattern.littleEndian, Array.init) }
        return Data(bytes)
    }

    /// Resident kilobytes of the mapping that holds `address` (/proc/self/smaps), or nil if no mapping lists it.
    func residentKilobytes(at address: UnsafeRawPointer) throws -> Int? {
        let target = UInt(bitPattern: address)
        var inside = false
        // Read to the end: String(contentsOfFile:) stops at a /proc file's first page.
        let smaps = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/proc/self/smaps")).readToEnd() ?? Data()
        for line in String(decoding: smaps, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if let range = fields.first, range.contains("-"), !range.hasSuffix(":") {
                let bounds = range.split(separator: "-").compactMap { UInt($0, radix: 16) }
                inside = bounds.count == 2 && bounds[0] <= target && target < bounds[1]
            } else if inside, fields.first == "Rss:", fields.count > 1, let kilobytes = Int(fields[1]) {
                return kilobytes
            }
        }
        return nil
    }

    func testCopiedTensorsLeaveTheMappingAndReadTheSameAgain() throws {
        let count = 1 << 21  // 8 MB
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mapping-\(getpid()).safetensors").path
        try safetensors(count: count).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let file = try MappedFile(path: path)
        let tensor = try XCTUnwrap(try Safetensors.load(file)["w"])
        let expected = (0..<count).map { Float($0) / 8 }
        XCTAssertEqual(tensor.floats(), expected)
        let resident = try XCTUnwrap(
            try file.data.withUnsafeBytes { try residentKilobytes(at: $0.baseAddress!) }, "no mapping holds the file")
        // The header's page may stay.
        XCTAssertLessThan(resident, 64, "the copied tensor's 8 MB of pages are still resident")
        XCTAssertEqual(tensor.floats(), expected, "read again from the file")

        // Bytes in memory, not mapped: nothing is handed back (that would zero them).
        let inMemory = try XCTUnwrap(
            try Safetensors.load(MappedFile(data: try Data(contentsOf: URL(fileURLWithPath: path)), path: path))["w"])
        XCTAssertEqual(inMemory.floats(), expected)
        XCTAssertEqual(inMemory.floats(), expected, "read again from memory")
    }
}
