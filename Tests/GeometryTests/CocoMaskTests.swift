import Foundation
import Geometry
import XCTest

/// COCO masks against pycocotools 2.0.11 (Tests/Fixtures/make_export_fixtures.py): random polygons, one to three per
/// object, some with repeated corners, rasterised, merged, measured and compressed — equal count for count.
final class CocoMaskTests: XCTestCase {
    struct Case: Decodable {
        let height: Int
        let width: Int
        let polygons: [[Double]]
        let counts: [Int]
        let compressed: String
        let area: Int
        let box: [Double]
    }

    static let cases = try! JSONDecoder().decode(
        [Case].self,
        from: Data(
            contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
                "../Fixtures/export/coco_masks.json")))

    func testPolygonsBecomeTheMasksPycocotoolsMakes() throws {
        XCTAssertEqual(Self.cases.count, 63)
        for (index, c) in Self.cases.enumerated() {
            let parts = c.polygons.map { CocoRLE(polygon: $0, height: c.height, width: c.width) }
            let mask = try XCTUnwrap(CocoRLE.union(parts))
            XCTAssertEqual(mask.counts, c.counts, "case \(index)")
            XCTAssertEqual(mask.compressed, c.compressed, "case \(index)")
            XCTAssertEqual(mask.area, c.area, "case \(index)")
            XCTAssertEqual(mask.box, c.box, "case \(index)")
            XCTAssertEqual(mask.pixels.filter { $0 }.count, c.area, "case \(index)")
        }
    }

    func testUnionNeedsMasksOfOneSize() {
        XCTAssertNil(CocoRLE.union([]))
        let a = CocoRLE(polygon: [0, 0, 4, 0, 4, 4], height: 5, width: 5)
        let b = CocoRLE(polygon: [0, 0, 4, 0, 4, 4], height: 6, width: 5)
        XCTAssertNil(CocoRLE.union([a, b]))
        XCTAssertEqual(CocoRLE.union([a, a]), a)
    }
}
