import Foundation
import Geometry
import XCTest

/// `epsilon=` and `min_area=`: OpenCV 4.10's approxPolyDP and contourArea on 262 contours of random masks
/// (Tests/Fixtures/make_export_fixtures.py), equal point for point and to the last bit of the area.
final class PolygonTests: XCTestCase {
    struct Case: Decodable {
        let contour: [[Int32]]
        let epsilon: Double
        let area: Double
        let approximated: [[Int32]]
    }

    static let cases = try! JSONDecoder().decode(
        [Case].self,
        from: Data(
            contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
                "../Fixtures/export/approx_poly.json")))

    func points(_ list: [[Int32]]) -> [GridPoint] { list.map { GridPoint(x: $0[0], y: $0[1]) } }

    func testApproximationAndAreaAreOpenCVs() {
        XCTAssertEqual(Self.cases.count, 262)
        var simplified = 0
        for (index, c) in Self.cases.enumerated() {
            let contour = points(c.contour)
            XCTAssertEqual(contourArea(contour), c.area, "case \(index)")
            let ours = approximatePolygon(contour, epsilon: c.epsilon)
            XCTAssertEqual(ours, points(c.approximated), "case \(index)")
            if ours.count < contour.count { simplified += 1 }
        }
        XCTAssertGreaterThan(simplified, 50, "many cases lose points")
        XCTAssertEqual(approximatePolygon([], epsilon: 1), [])
        XCTAssertEqual(approximatePolygon([GridPoint(x: 3, y: 4)], epsilon: 1), [GridPoint(x: 3, y: 4)])
    }
}
