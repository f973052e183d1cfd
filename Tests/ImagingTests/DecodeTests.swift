import Foundation
import Imaging
import XCTest

final class DecodeTests: XCTestCase {
    /// Every JPEG and PNG variant of the fixtures (subsamplings, progressive, grey, CMYK, YCCK, EXIF 1–8, all PNG
    /// colour types and depths, interlaced) decodes to exactly the pixels `cv2.imread` gives.
    func testEveryVariantDecodesToOpenCVsPixels() throws {
        XCTAssertGreaterThan(Fixtures.manifest.decode.count, 30)
        for entry in Fixtures.manifest.decode {
            let image = try ImageDecoder.decode(path: Fixtures.input(entry.file))
            XCTAssertEqual([image.width, image.height], [entry.width, entry.height], entry.file)
            assertPixelsEqual(image, try Fixtures.expected(entry.file), "\(entry.file) (\(entry.note))")
        }
    }

    func testBadInputGivesATypedErrorThatNamesTheFile() {
        XCTAssertGreaterThanOrEqual(Fixtures.manifest.invalid.count, 10)
        for entry in Fixtures.manifest.invalid {
            let path = Fixtures.input(entry.file)
            XCTAssertThrowsError(try ImageDecoder.decode(path: path), entry.note) { error in
                guard let error = error as? ImageError else { return XCTFail("\(entry.file): untyped error \(error)") }
                XCTAssertEqual(error.kind, entry.error, "\(entry.file) (\(entry.note)): \(error.localizedDescription)")
                XCTAssertTrue(
                    error.localizedDescription.contains(entry.file),
                    "message must name the file: \(error.localizedDescription)")
            }
        }
    }

    func testPixelLimitIsCheckedBeforeDecoding() throws {
        let path = Fixtures.input("jpeg-large.jpg")  // 1023 × 769 = 786,687 pixels
        XCTAssertNoThrow(try ImageDecoder.decode(path: path, pixelLimit: 786_687))
        XCTAssertThrowsError(try ImageDecoder.decode(path: path, pixelLimit: 786_686)) { error in
            XCTAssertEqual((error as? ImageError)?.kind, "tooLarge")
            XCTAssertTrue(error.localizedDescription.contains("1023 x 769"), error.localizedDescription)
        }
        XCTAssertThrowsError(try ImageDecoder.decode(path: Fixtures.input("png-rgb.png"), pixelLimit: 100)) { error in
            XCTAssertEqual((error as? ImageError)?.kind, "tooLarge")
        }
    }

    /// A chunk that declares more bytes than the file holds is refused before libpng sizes a buffer by it (a
    /// 2 GB text chunk in a few hundred bytes cost 2 GB); a pipe is never opened as an image.
    func testChunksMustFitInTheFile() throws {
        var bytes = try Data(contentsOf: URL(fileURLWithPath: Fixtures.input("png-rgb.png")))
        bytes.insert(contentsOf: [0x7F, 0xFF, 0xFF, 0xFF] + Array("tEXt".utf8), at: 33)  // after the IHDR chunk
        XCTAssertThrowsError(try ImageDecoder.decode(bytes, path: "x.png")) { error in
            XCTAssertEqual((error as? ImageError)?.kind, "truncated")
            XCTAssertTrue(error.localizedDescription.contains("chunk tEXt declares 2147483647 bytes"), "\(error)")
        }
        let fifo = FileManager.default.temporaryDirectory.appendingPathComponent("fifo-\(UUID().uuidString).png").path
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        defer { unlink(fifo) }
        XCTAssertThrowsError(try ImageDecoder.decode(path: fifo)) { error in
            XCTAssertTrue(error.localizedDescription.contains("not a regular file"), "\(error)")
        }
    }

    func testMissingFileAndDirectoryAreNamed() {
        XCTAssertThrowsError(try ImageDecoder.decode(path: "/nonexistent/x.jpg")) { error in
            XCTAssertEqual(error as? ImageError, .notFound(path: "/nonexistent/x.jpg"))
        }
        XCTAssertThrowsError(try ImageDecoder.decode(path: Fixtures.directory.path)) { error in
            XCTAssertEqual((error as? ImageError)?.kind, "unreadable")
        }
    }

    func testFormatIsToldByContentNotExtension() throws {
        let png = try Data(contentsOf: URL(fileURLWithPath: Fixtures.input("png-rgb.png")))
        let image = try ImageDecoder.decode(png, path: "misnamed.jpg")
        assertPixelsEqual(image, try Fixtures.expected("png-rgb.png"), "PNG bytes named .jpg")
        XCTAssertEqual(ImageDecoder.format(of: Array("GIF89a".utf8)), .gif)
        XCTAssertEqual(ImageDecoder.format(of: Array("RIFF\0\0\0\0WEBP".utf8)), .webp)
        XCTAssertNil(ImageDecoder.format(of: [0xFF, 0xD8]))
    }

    func testExifOrientationParsesBothByteOrdersAndRejectsJunk() {
        func parse(_ bytes: [UInt8]) -> ExifOrientation? { bytes.withUnsafeBufferPointer { ExifOrientation(exif: $0) } }
        let little: [UInt8] = [
            0x49, 0x49, 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0,
        ]
        let big: [UInt8] = [0x4D, 0x4D, 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 3, 0, 0, 0, 0, 0, 0]
        XCTAssertEqual(parse(little), .rightTop)
        XCTAssertEqual(parse(big), .bottomRight)
        XCTAssertNil(parse(Array(little.prefix(19))))  // entry cut inside its value
        XCTAssertNil(parse([0x49, 0x49, 42, 0, 0xFF, 0xFF, 0xFF, 0x7F]))  // IFD offset far outside
        XCTAssertNil(parse([]))
    }

    func testOrientationsComposeToTheIdentity() {
        let image = Image(width: 3, height: 2, pixels: (0..<18).map(UInt8.init))
        XCTAssertEqual(image.oriented(.topLeft), image)
        for o in [ExifOrientation.topRight, .bottomRight, .bottomLeft, .leftTop, .rightBottom] {
            XCTAssertEqual(image.oriented(o).oriented(o), image, "\(o) is its own inverse")
        }
        XCTAssertEqual(image.oriented(.rightTop).oriented(.leftBottom), image, "6 then 8 undo each other")
        XCTAssertEqual(
            image.oriented(.rightTop)[0, 0].r, image[0, 1].r, "orientation 6: top-left shows the stored bottom-left")
    }
}

extension ImageError {
    /// The case name, to compare with the fixture manifest.
    var kind: String {
        switch self {
        case .notFound: "notFound"
        case .unreadable: "unreadable"
        case .empty: "empty"
        case .unrecognized: "unrecognized"
        case .unsupportedFormat: "unsupportedFormat"
        case .corrupt: "corrupt"
        case .truncated: "truncated"
        case .tooLarge: "tooLarge"
        case .encodingFailed: "encodingFailed"
        }
    }
}
