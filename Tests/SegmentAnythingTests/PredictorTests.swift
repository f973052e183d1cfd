import Foundation
import Imaging
import SegmentAnything
import Tensor
import XCTest

/// Parity with Ultralytics 8.4.190's SAM predictor on a tiny SAM in Meta's format (Tests/Fixtures/sam, made by
/// make_sam_fixtures.py): image embedding and mask logits within 1e-4 relative (‖a−b‖/‖b‖), predicted IoUs within
/// 1e-4, binary masks at the original resolution ≥ 99.9 % equal.
final class PredictorTests: XCTestCase {
    struct Manifest: Decodable {
        struct ImageCase: Decodable {
            let image: String
            let embedding: String
            let shape: [Int]
        }
        struct Prompts: Decodable {
            let bboxes: [[Float]]?
            let points: [[[Float]]]?
            let labels: [[Int]]?
        }
        // The fields mirror the fixture JSON's keys.
        // swift-format-ignore: AlwaysUseLowerCamelCase
        struct Case: Decodable {
            let image: String
            let name: String
            let prompts: Prompts
            let multimask: Bool
            let logits: String
            let logits_shape: [Int]
            let scores: [Float]
            let masks: Int
        }
        let weights: String
        let images: [ImageCase]
        let cases: [Case]
    }

    /// The committed tiny fixtures, or full-size ones made by `make_sam_fixtures.py --full DIR` when
    /// AUTOANNOTATE_SAM_FIXTURES names their folder (run those with `swift test -c release -Xswiftc -enable-testing`).
    static let directory =
        ProcessInfo.processInfo.environment["AUTOANNOTATE_SAM_FIXTURES"].map { URL(fileURLWithPath: $0) }
        ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../Fixtures/sam")
        .standardized
    static let manifest = try! JSONDecoder().decode(
        Manifest.self, from: Data(contentsOf: directory.appendingPathComponent("manifest.json")))
    static let predictor = try! SamPredictor(path: directory.appendingPathComponent(manifest.weights).path)

    func floats(_ name: String, in directory: URL = directory) throws -> [Float] {
        try Data(contentsOf: directory.appendingPathComponent(name)).withUnsafeBytes {
            Array($0.bindMemory(to: Float.self))
        }
    }

    func relativeError(_ a: [Float], _ b: [Float]) -> Double {
        var difference = 0.0
        var norm = 0.0
        for (x, y) in zip(a, b) {
            difference += Double(x - y) * Double(x - y)
            norm += Double(y) * Double(y)
        }
        return (difference / max(norm, 1e-30)).squareRoot()
    }

    func testEmbeddingLogitsScoresAndMasksMatchUltralytics() throws {
        try checkParity(directory: Self.directory, manifest: Self.manifest, predictor: Self.predictor)
    }

    /// The same for a tiny SAM with a 128-wide decoder (Tests/Fixtures/sam_wide): its cross attentions have 64
    /// channels, above 8 heads × 7 tokens, so box and one-point prompts take the decoder's low-rank path
    /// (`RowsProjection`), as every released SAM's do; the 16-wide tiny SAM's never do.
    func testWideDecoderMatchesUltralytics() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "../Fixtures/sam_wide"
        ).standardized
        let manifest = try JSONDecoder().decode(
            Manifest.self, from: Data(contentsOf: directory.appendingPathComponent("manifest.json")))
        try checkParity(
            directory: directory, manifest: manifest,
            predictor: try SamPredictor(path: directory.appendingPathComponent(manifest.weights).path))
    }

    func checkParity(directory: URL, manifest: Manifest, predictor: SamPredictor) throws {
        for imageCase in manifest.images {
            let image = try ImageDecoder.decode(path: directory.appendingPathComponent(imageCase.image).path)
            predictor.setImage(image)
            let embedding = try XCTUnwrap(predictor.imageEmbedding)
            XCTAssertEqual(embedding.shape, imageCase.shape)
            let embeddingError = relativeError(embedding.storage, try floats(imageCase.embedding, in: directory))
            XCTAssertLessThanOrEqual(embeddingError, 1e-4, "\(imageCase.image): image embedding")
            print("\(imageCase.image): embedding relative error \(embeddingError)")
            for c in manifest.cases where c.image == imageCase.image {
                let boxes = (c.prompts.bboxes ?? []).map { SamBox(x1: $0[0], y1: $0[1], x2: $0[2], y2: $0[3]) }
                let points = zip(c.prompts.points?.first ?? [], c.prompts.labels?.first ?? []).map {
                    SamPoint(x: $0.0[0], y: $0.0[1], label: $0.1)
                }
                let prediction = try predictor.predict(points: points, boxes: boxes, multimask: c.multimask)
                XCTAssertEqual(prediction.lowResLogits.count, c.logits_shape.reduce(1, *), c.name)
                let logitsError = relativeError(prediction.lowResLogits.storage, try floats(c.logits, in: directory))
                XCTAssertLessThanOrEqual(logitsError, 1e-4, "\(c.name): logits")
                XCTAssertEqual(prediction.scores.count, c.scores.count, c.name)
                for (got, want) in zip(prediction.scores, c.scores) {
                    XCTAssertEqual(got, want, accuracy: 1e-4, "\(c.name): IoU score")
                }
                XCTAssertEqual(prediction.masks.count, c.masks, c.name)
                for (j, mask) in prediction.masks.enumerated() {
                    let reference = try ImageDecoder.decode(
                        path: directory.appendingPathComponent("mask-\(c.name)-\(j).png").path)
                    XCTAssertEqual([mask.width, mask.height], [reference.width, reference.height], c.name)
                    var equal = 0
                    for i in 0..<mask.pixels.count where mask.pixels[i] == (reference.pixels[3 * i] > 127) {
                        equal += 1
                    }
                    let agreement = Double(equal) / Double(mask.pixels.count)
                    XCTAssertGreaterThanOrEqual(
                        agreement, 0.999, "\(c.name) mask \(j): \(agreement * 100) % of pixels agree")
                    print(
                        "\(c.name) mask \(j): logits relative error \(logitsError), \(mask.area) of \(mask.pixels.count) pixels set, \(agreement * 100) % agree"
                    )
                }
            }
        }
    }

    /// The decoder gives each prompt a thread of its own when there are at least as many prompts as threads, and
    /// shares the threads inside each step otherwise: the logits are the same bits with any thread count (a resumed
    /// job may run with another `threads=`), on each GEMM kernel, on both tiny SAMs (the wide one's boxes take the
    /// low-rank path).
    func testLogitsAreTheSameBitsForAnyThreadCount() throws {
        let image = try ImageDecoder.decode(
            path: Self.directory.appendingPathComponent(Self.manifest.images[0].image).path)
        let (w, h) = (Float(image.width), Float(image.height))
        let boxes = (0..<5).map { i in
            SamBox(x1: w * Float(i) / 10, y1: h * Float(4 - i) / 10, x2: w * Float(5 + i) / 10, y2: h * 0.9)
        }
        let saved = (Threading.count, GEMMKernel.current)
        defer { (Threading.count, GEMMKernel.current) = saved }
        let wide = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "../Fixtures/sam_wide/tiny_sam_wide_iou.pt")
        for predictor in [Self.predictor, try SamPredictor(path: wide.standardized.path)] {
            for kernel in GEMMKernel.available {
                GEMMKernel.current = kernel
                Threading.count = 1
                predictor.setImage(image)
                let reference = try predictor.predict(boxes: boxes, multimask: true)
                for threads in [2, 3, 6] {  // prompts on their own threads (2, 3), threads inside each step (6)
                    Threading.count = threads
                    let prediction = try predictor.predict(boxes: boxes, multimask: true)
                    XCTAssertEqual(
                        prediction.lowResLogits.storage, reference.lowResLogits.storage,
                        "\(kernel), \(threads) threads: logits")
                    XCTAssertEqual(prediction.scores, reference.scores, "\(kernel), \(threads) threads: scores")
                    XCTAssertEqual(prediction.masks, reference.masks, "\(kernel), \(threads) threads: masks")
                }
            }
        }
    }

    /// `lowResLogits: false` (the job's call) skips the logits over the letterbox's padding: the masks and scores are
    /// the same bits as with them, on a portrait and a wide image and a 334 × 517 crop (whose content ends mid-pixel
    /// in the logits: 662 / 4 = 165.5 columns, the sampled path), one box (the direct path) and five (low-rank), one
    /// mask and three, on both tiny SAMs; the prediction's `lowResLogits` is then empty.
    func testMasksWithoutLowResolutionLogitsAreTheSame() throws {
        let wide = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
            "../Fixtures/sam_wide/tiny_sam_wide_iou.pt")
        var images = try Self.manifest.images.map {
            (name: $0.image, image: try ImageDecoder.decode(path: Self.directory.appendingPathComponent($0.image).path))
        }
        let photo = images[0].image
        images.append(
            (
                "crop",
                Image(
                    width: 334, height: 517,
                    pixels: (0..<517).flatMap { y in photo.pixels[(y * photo.width * 3)..<((y * photo.width + 334) * 3)]
                    })
            ))
        for predictor in [Self.predictor, try SamPredictor(path: wide.standardized.path)] {
            for case_ in images {
                let image = case_.image
                XCTAssertNotEqual(image.width, image.height, "the padding must be there to skip")
                let (w, h) = (Float(image.width), Float(image.height))
                predictor.setImage(image)
                for count in [1, 5] {
                    let boxes = (0..<count).map { i in
                        SamBox(x1: w * Float(i) / 10, y1: h * Float(4 - i) / 10, x2: w * Float(5 + i) / 10, y2: h * 0.9)
                    }
                    for multimask in [false, true] {
                        let (whole, masksOnly) = (
                            try predictor.predict(boxes: boxes, multimask: multimask),
                            try predictor.predict(boxes: boxes, multimask: multimask, lowResLogits: false)
                        )
                        let what = "\(case_.name), \(count) boxes, multimask \(multimask)"
                        XCTAssertEqual(masksOnly.masks, whole.masks, what)
                        XCTAssertEqual(masksOnly.scores, whole.scores, what)
                        XCTAssertEqual(masksOnly.lowResLogits.count, 0, what)
                    }
                }
            }
        }
    }

    /// bf16 on the tiny model: refused with the reason where the CPU lacks AVX512-BF16; elsewhere the embedding and
    /// logits stay within 2 % of fp32's (bf16 keeps 8 mantissa bits) and the masks ≥ 99 % equal.
    func testBF16EncoderIsRefusedOrCloseToFP32() throws {
        let path = Self.directory.appendingPathComponent(Self.manifest.weights).path
        guard Precision.bf16Supported else {
            XCTAssertThrowsError(try SamPredictor(path: path, precision: .bf16)) {
                XCTAssertEqual($0 as? SamError, .unsupportedPrecision(Precision.bf16Refusal!))
            }
            return
        }
        let fp32 = try SamPredictor(path: path)
        let bf16 = try SamPredictor(path: path, precision: .bf16)
        let image = try ImageDecoder.decode(
            path: Self.directory.appendingPathComponent(Self.manifest.images[0].image).path)
        fp32.setImage(image)
        bf16.setImage(image)
        XCTAssertLessThan(relativeError(bf16.imageEmbedding!.storage, fp32.imageEmbedding!.storage), 0.02)
        let box = [SamBox(x1: 10, y1: 10, x2: Float(image.width) / 2, y2: Float(image.height) / 2)]
        let (a, b) = (try fp32.predict(boxes: box), try bf16.predict(boxes: box))
        XCTAssertLessThan(relativeError(b.lowResLogits.storage, a.lowResLogits.storage), 0.02)
        let same = zip(a.masks[0].pixels, b.masks[0].pixels).filter { $0 == $1 }.count
        XCTAssertGreaterThan(Double(same) / Double(a.masks[0].pixels.count), 0.99)
    }

    func testPromptsAreRequiredAndAnImageMustBeSet() throws {
        let predictor = try SamPredictor(path: Self.directory.appendingPathComponent(Self.manifest.weights).path)
        XCTAssertThrowsError(try predictor.predict(boxes: [SamBox(x1: 0, y1: 0, x2: 1, y2: 1)])) {
            XCTAssertEqual($0 as? SamError, .noImage)
        }
        predictor.setImage(Image(width: 8, height: 6, fill: (10, 20, 30)))
        XCTAssertThrowsError(try predictor.predict()) { XCTAssertEqual($0 as? SamError, .noPrompt) }
        XCTAssertThrowsError(try predictor.predict(points: [SamPoint(x: 1, y: 1, label: 7)]))
        predictor.resetImage()
        XCTAssertNil(predictor.imageEmbedding)
    }
}
