import Foundation
import Imaging
import XCTest

/// The committed fixtures of Tests/Fixtures/imaging (made by Tests/Fixtures/make_imaging_fixtures.py).
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../Fixtures/imaging").standardized

    struct Manifest: Decodable {
        struct Decode: Decodable {
            let file: String
            let width: Int
            let height: Int
            let note: String
        }
        struct Invalid: Decodable {
            let file: String
            let error: String
            let note: String
        }
        struct Resize: Decodable {
            let source: String
            let width: Int
            let height: Int
            let expected: String
        }
        struct Config: Decodable {
            let height: Int
            let width: Int
            let auto: Bool
            let scaleUp: Bool
            let center: Bool
            let stride: Int
        }
        struct LetterBoxCase: Decodable {
            let source: String
            let config: Config
            let expected: String
        }
        struct Placement: Decodable {
            let width: Int
            let height: Int
            let config: Config
            let ratio: Double
            let resized: [Int]
            let top: Int
            let bottom: Int
            let left: Int
            let right: Int
        }
        let decode: [Decode]
        let invalid: [Invalid]
        let resize: [Resize]
        let letterbox: [LetterBoxCase]
        let placements: [Placement]
    }

    static let manifest: Manifest = {
        let data = try! Data(contentsOf: directory.appendingPathComponent("manifest.json"))
        return try! JSONDecoder().decode(Manifest.self, from: data)
    }()

    static func input(_ name: String) -> String { directory.appendingPathComponent("inputs/\(name)").path }

    /// Expected pixels, stored as RGB PNG.
    static func expected(_ name: String) throws -> Image {
        try ImageDecoder.decode(path: directory.appendingPathComponent("expected/\(name).png").path)
    }
}

extension Fixtures.Manifest.Config {
    var letterBox: LetterBox {
        LetterBox(height: height, width: width, auto: auto, scaleUp: scaleUp, center: center, stride: stride)
    }
}

/// Asserts two images are pixel-identical; on failure reports how many channel values differ and by how much.
func assertPixelsEqual(_ got: Image, _ want: Image, _ what: String, file: StaticString = #filePath, line: UInt = #line)
{
    guard got.width == want.width, got.height == want.height else {
        XCTFail("\(what): size \(got.width)×\(got.height), want \(want.width)×\(want.height)", file: file, line: line)
        return
    }
    var differing = 0
    var worst = 0
    var first: Int? = nil
    for i in 0..<got.pixels.count where got.pixels[i] != want.pixels[i] {
        differing += 1
        worst = max(worst, abs(Int(got.pixels[i]) - Int(want.pixels[i])))
        if first == nil { first = i }
    }
    if let first {
        let pixel = first / 3
        XCTFail(
            "\(what): \(differing) of \(got.pixels.count) values differ (max by \(worst)); first at x \(pixel % got.width), y \(pixel / got.width)",
            file: file, line: line)
    }
}
