import Foundation
import Geometry
import Imaging
import XCTest

/// Contours and polygons against OpenCV 4.10's findContours and Ultralytics 8.4.190's masks2segments / Masks.xyn
/// on the masks of Tests/Fixtures/geometry (make_geometry_fixtures.py): equal point for point.
final class ContourTests: XCTestCase {
    // The fields mirror the fixture JSON's keys.
    // swift-format-ignore: AlwaysUseLowerCamelCase
    struct Entry: Decodable {
        let mask: String
        let contours: [[[Int32]]]
        let merged: [[Int32]]
        let largest: [[Int32]]
        let xyn_line: String
    }

    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
        "../Fixtures/geometry"
    ).standardized
    static let manifest = try! JSONDecoder().decode(
        [Entry].self, from: Data(contentsOf: directory.appendingPathComponent("manifest.json")))

    func mask(_ name: String) throws -> (pixels: [Bool], width: Int, height: Int) {
        let image = try ImageDecoder.decode(path: Self.directory.appendingPathComponent(name).path)
        return ((0..<(image.width * image.height)).map { image.pixels[3 * $0] > 127 }, image.width, image.height)
    }

    func points(_ list: [[Int32]]) -> [GridPoint] { list.map { GridPoint(x: $0[0], y: $0[1]) } }

    func testExternalContoursEqualOpenCV() throws {
        XCTAssertEqual(Self.manifest.count, 10)
        for entry in Self.manifest {
            let (pixels, w, h) = try mask(entry.mask)
            let contours = externalContours(pixels, width: w, height: h)
            XCTAssertEqual(contours.count, entry.contours.count, entry.mask)
            for (got, want) in zip(contours, entry.contours) { XCTAssertEqual(got, points(want), entry.mask) }
        }
    }

    func testSegmentsEqualUltralyticsMasks2Segments() throws {
        for entry in Self.manifest {
            let (pixels, w, h) = try mask(entry.mask)
            XCTAssertEqual(
                maskSegments(pixels, width: w, height: h, policy: .merge).first ?? [], points(entry.merged),
                "\(entry.mask): all")
            XCTAssertEqual(
                maskSegments(pixels, width: w, height: h, policy: .largest).first ?? [], points(entry.largest),
                "\(entry.mask): largest")
            XCTAssertEqual(maskSegments(pixels, width: w, height: h, policy: .separate).count, entry.contours.count)
        }
    }

    /// The coordinates as Ultralytics writes them into a label line: float32 normalised, printed as Python's repr.
    func testNormalisedCoordinatesPrintAsUltralyticsWritesThem() throws {
        for entry in Self.manifest where !entry.merged.isEmpty {
            let (pixels, w, h) = try mask(entry.mask)
            let polygon = normalized(maskSegments(pixels, width: w, height: h).first!, width: w, height: h)
            let line = polygon.flatMap { [$0.x, $0.y] }.map { "\(Double($0))" }.joined(separator: " ")
            XCTAssertEqual(line, entry.xyn_line, entry.mask)
        }
    }

    func testRunLengthEncodingIsColumnMajorStartingWithZeros() {
        // 3 wide, 2 high: row 0 = 0 1 1, row 1 = 1 1 0 → columns: (0,1), (1,1), (1,0) → 0 | 1 1 1 1 | 0 → [1, 4, 1]
        let mask = [false, true, true, true, true, false]
        XCTAssertEqual(runLengthEncoding(mask, width: 3, height: 2), [1, 4, 1])
        XCTAssertEqual(runLengthEncoding([true, true], width: 1, height: 2), [0, 2])
        XCTAssertEqual(maskBox(mask, width: 3, height: 2).map { [$0.x1, $0.y1, $0.x2, $0.y2] }, [0, 0, 2, 1])
        XCTAssertNil(maskBox([false, false], width: 2, height: 1))
    }
}
