import Foundation
import Imaging
import XCTest

final class ResizeTests: XCTestCase {
    /// `cv2.resize(INTER_LINEAR)` bit for bit: down, up, non-integer ratios, exact halving, 1-pixel sides.
    func testResizeEqualsOpenCV() throws {
        XCTAssertGreaterThanOrEqual(Fixtures.manifest.resize.count, 20)
        for entry in Fixtures.manifest.resize {
            let source = try Fixtures.expected(entry.source)
            assertPixelsEqual(
                source.resized(width: entry.width, height: entry.height), try Fixtures.expected(entry.expected),
                "\(entry.source) → \(entry.width)×\(entry.height)")
        }
    }

    /// Ultralytics' LetterBox pixels: auto rectangle, centred and top-left padding, no scale-up.
    func testLetterBoxEqualsUltralytics() throws {
        for entry in Fixtures.manifest.letterbox {
            let (image, _) = entry.config.letterBox(try Fixtures.expected(entry.source))
            assertPixelsEqual(image, try Fixtures.expected(entry.expected), entry.expected)
        }
    }

    /// LetterBox placements (scale, resized size, padding per side) for real photo sizes, as Ultralytics computes them.
    func testLetterBoxPlacementEqualsUltralytics() {
        XCTAssertGreaterThanOrEqual(Fixtures.manifest.placements.count, 30)
        for p in Fixtures.manifest.placements {
            let got = p.config.letterBox.placement(sourceWidth: p.width, sourceHeight: p.height)
            let what = "\(p.width)×\(p.height) into \(p.config)"
            XCTAssertEqual(got.ratio, p.ratio, what)
            XCTAssertEqual([got.resizedWidth, got.resizedHeight], p.resized, what)
            XCTAssertEqual([got.top, got.bottom, got.left, got.right], [p.top, p.bottom, p.left, p.right], what)
        }
    }

    func testPNGRoundTripIsLosslessAndJPEGIsClose() throws {
        let image = try Fixtures.expected("resize-src-photo-200x150")
        assertPixelsEqual(try ImageDecoder.decode(try ImageEncoder.png(image)), image, "PNG round trip")
        // JPEG is lossy: on a smooth image (no noise for 4:2:0 chroma to lose) q95 stays within a few levels.
        let smooth = Image(
            width: 64, height: 48,
            pixels: (0..<(64 * 48 * 3)).map { i in
                let (x, y, c) = ((i / 3) % 64, i / 3 / 64, i % 3)
                return UInt8(x * 2 + y + c * 30)
            })
        let jpeg = try ImageDecoder.decode(try ImageEncoder.jpeg(smooth, quality: 95))
        XCTAssertEqual([jpeg.width, jpeg.height], [64, 48])
        let meanError =
            Double(zip(jpeg.pixels, smooth.pixels).map { abs(Int($0) - Int($1)) }.reduce(0, +))
            / Double(smooth.pixels.count)
        XCTAssertLessThanOrEqual(meanError, 2, "JPEG q95 mean absolute error")
        XCTAssertThrowsError(try ImageEncoder.png(Image(width: 0, height: 0, pixels: [])))
    }
}
