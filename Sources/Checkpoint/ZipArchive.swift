import Foundation

/// The central directory of a zip archive as `torch.save` writes it: stored (uncompressed) entries whose data
/// is found through each local header (torch pads data to 64-byte alignment with a local extra field that
/// the central directory does not repeat), sizes from the central directory, ZIP64 where fields overflow.
/// Port of the reading side of PyTorch's caffe2/serialize/inline_container.cc (`getRecordOffset`).
struct ZipArchive {
    struct Entry {
        let name: String
        let method: UInt16
        let size: Int
        let localHeaderOffset: Int
    }

    let file: MappedFile
    /// Entries in directory order.
    let entries: [Entry]
    let byName: [String: Entry]

    static let localSignature: UInt64 = 0x0403_4b50

    init(_ file: MappedFile) throws {
        self.file = file
        let (directoryOffset, count) = try Self.endOfCentralDirectory(file)
        var entries: [Entry] = []
        entries.reserveCapacity(count)
        var at = directoryOffset
        for index in 0..<count {
            let what = "central directory entry \(index)"
            guard try file.uint(at: at, size: 4, what) == 0x0201_4b50 else {
                throw file.corrupt("\(what) has a bad signature")
            }
            let method = UInt16(try file.uint(at: at + 10, size: 2, what))
            var compressed = try file.uint(at: at + 20, size: 4, what)
            var size = try file.uint(at: at + 24, size: 4, what)
            let nameLength = Int(try file.uint(at: at + 28, size: 2, what))
            let extraLength = Int(try file.uint(at: at + 30, size: 2, what))
            let commentLength = Int(try file.uint(at: at + 32, size: 2, what))
            var localOffset = try file.uint(at: at + 42, size: 4, what)
            let name = String(decoding: try file.bytes(at: at + 46, count: nameLength, what), as: UTF8.self)
            // ZIP64 extended information: the 64-bit values of the fields that read 0xFFFFFFFF, in order.
            var extra = at + 46 + nameLength
            let extraEnd = extra + extraLength
            while extra + 4 <= extraEnd {
                let id = try file.uint(at: extra, size: 2, what)
                let length = Int(try file.uint(at: extra + 2, size: 2, what))
                if id == 0x0001 {
                    var field = extra + 4
                    if size == 0xFFFF_FFFF {
                        size = try file.uint(at: field, size: 8, what)
                        field += 8
                    }
                    if compressed == 0xFFFF_FFFF {
                        compressed = try file.uint(at: field, size: 8, what)
                        field += 8
                    }
                    if localOffset == 0xFFFF_FFFF {
                        localOffset = try file.uint(at: field, size: 8, what)
                        field += 8
                    }
                    guard field <= extra + 4 + length else {
                        throw file.corrupt("\(what): ZIP64 field overruns its extra block")
                    }
                }
                extra += 4 + length
            }
            guard size <= UInt64(file.count), localOffset <= UInt64(file.count) else {
                throw file.corrupt(
                    "\(what) (\(name)) claims \(size) bytes at \(localOffset) in a \(file.count)-byte file")
            }
            entries.append(Entry(name: name, method: method, size: Int(size), localHeaderOffset: Int(localOffset)))
            at += 46 + nameLength + extraLength + commentLength
        }
        self.entries = entries
        self.byName = Dictionary(entries.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// Finds the end-of-central-directory record (scanning back over a comment of up to 64 KiB) and, when its
    /// fields overflow, the ZIP64 record; returns the directory's offset and entry count, both checked.
    private static func endOfCentralDirectory(_ file: MappedFile) throws -> (offset: Int, count: Int) {
        let n = file.count
        guard n >= 22 else { throw file.corrupt("\(n) bytes is too short for a zip archive (truncated?)") }
        var eocd = -1
        var position = n - 22
        let lowest = max(0, n - 22 - 65_535)
        while position >= lowest {
            if try file.uint(at: position, size: 4, "end of central directory") == 0x0605_4b50 {
                eocd = position
                break
            }
            position -= 1
        }
        guard eocd >= 0 else {
            throw file.corrupt("no end-of-central-directory record: the file is truncated or not a zip")
        }
        var count = try file.uint(at: eocd + 10, size: 2, "entry count")
        var offset = try file.uint(at: eocd + 16, size: 4, "directory offset")
        if count == 0xFFFF || offset == 0xFFFF_FFFF, eocd >= 20,
            try file.uint(at: eocd - 20, size: 4, "ZIP64 locator") == 0x0706_4b50
        {
            let record = try file.uint(at: eocd - 20 + 8, size: 8, "ZIP64 record offset")
            guard record <= UInt64(n), try file.uint(at: Int(record), size: 4, "ZIP64 record") == 0x0606_4b50 else {
                throw file.corrupt("ZIP64 end-of-central-directory record missing")
            }
            count = try file.uint(at: Int(record) + 32, size: 8, "ZIP64 entry count")
            offset = try file.uint(at: Int(record) + 48, size: 8, "ZIP64 directory offset")
        }
        // Each directory entry takes at least 46 bytes: a count the file cannot hold is refused before any allocation.
        guard offset <= UInt64(n), count <= UInt64(n - Int(offset)) / 46 else {
            throw file.corrupt(
                "central directory of \(count) entries at byte \(offset) does not fit the \(n)-byte file")
        }
        return (Int(offset), Int(count))
    }

    /// The bytes of a stored entry, without copying (a slice of the mapping).
    func contents(of entry: Entry) throws -> Data {
        let what = "local header of \(entry.name)"
        guard entry.method == 0 else {
            throw file.corrupt(
                "\(entry.name) is compressed (method \(entry.method)); torch.save stores entries uncompressed")
        }
        guard try file.uint(at: entry.localHeaderOffset, size: 4, what) == Self.localSignature else {
            throw file.corrupt("\(what) has a bad signature")
        }
        let nameLength = Int(try file.uint(at: entry.localHeaderOffset + 26, size: 2, what))
        let extraLength = Int(try file.uint(at: entry.localHeaderOffset + 28, size: 2, what))
        return try file.bytes(
            at: entry.localHeaderOffset + 30 + nameLength + extraLength, count: entry.size, "data of \(entry.name)")
    }
}
