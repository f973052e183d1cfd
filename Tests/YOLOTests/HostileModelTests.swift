import Foundation
import XCTest

@testable import Checkpoint
@testable import YOLO

/// A real detector's module tree with one attribute changed, as a crafted file would change it: every attribute the
/// network uses is checked against the weights' shapes before anything runs, so each is refused with a sentence that
/// names the module and the attribute — never run to read past a buffer or trap.
final class HostileModelTests: XCTestCase {
    static let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
        "../Fixtures/checkpoints/tiny_yolov8.pt"
    ).standardized.path

    /// A fresh copy of the tiny YOLOv8 (the changes below mutate its module tree).
    func checkpoint() throws -> YOLOCheckpoint {
        guard case .yolo(let checkpoint) = try ModelFile.open(path: Self.path) else {
            throw CheckpointError.unrecognized(path: Self.path, guess: "not a detector")
        }
        return checkpoint
    }

    func assertRefused(
        _ change: (YOLOCheckpoint) throws -> Void, saying words: [String], line: UInt = #line
    ) throws {
        let checkpoint = try checkpoint()
        try change(checkpoint)
        XCTAssertThrowsError(try DetectionModel(checkpoint), line: line) { error in
            let message = error.localizedDescription
            XCTAssertTrue(message.hasPrefix(Self.path + ":"), message, line: line)
            for word in words { XCTAssertTrue(message.contains(word), "\(message) lacks \(word)", line: line) }
        }
    }

    func layer(_ checkpoint: YOLOCheckpoint, _ type: String) throws -> PickleObject {
        try XCTUnwrap(checkpoint.layers.first { $0.name == type }, "no \(type) layer")
    }

    /// Names as a list (Ultralytics takes both) name the classes in order; ids out of range or names that are not
    /// text do not count.
    func testClassNamesFromADictOrAList() {
        XCTAssertEqual(
            YOLOCheckpoint.classNames(.tuple([.string("person"), .string("car"), .int(3)])), [0: "person", 1: "car"])
        XCTAssertEqual(YOLOCheckpoint.classNames(PickleValue.none), [:])
        XCTAssertEqual(try checkpoint().names.count, 3)
    }

    func testTheUnchangedModelLoads() throws {
        XCTAssertNoThrow(try DetectionModel(try checkpoint()))
    }

    /// `Detect.nc = 1000` on a head whose class branches give 3 channels would index scores past their buffer.
    func testClassCountMustMatchTheClassBranches() throws {
        try assertRefused(
            { $0.head!.attributes.set(.string("nc"), .int(1000)) }, saying: ["nc 1000", "class channels"])
        try assertRefused({ $0.head!.attributes.set(.string("reg_max"), .int(1000)) }, saying: ["reg_max", "1…64"])
        try assertRefused({ $0.head!.attributes.set(.string("nc"), .int(-1)) }, saying: ["nc", "outside"])
    }

    /// An upsampling by 4 makes the concatenation after it join maps of different sizes; huge or fractional factors
    /// are not upsampling factors at all.
    func testUpsamplingMustGiveMapsTheConcatenationCanJoin() throws {
        try assertRefused(
            { try self.layer($0, "Upsample").attributes.set(.string("scale_factor"), .float(4)) },
            saying: ["joins maps of different sizes"])
        for factor in [1e300, 2.5, -2, .nan, .infinity] {
            try assertRefused(
                { try self.layer($0, "Upsample").attributes.set(.string("scale_factor"), .float(factor)) },
                saying: ["Upsample", "factor of 2, 4 or 8"])
        }
    }

    /// A convolution's stride, groups and padding are checked before its filters are packed.
    func testConvolutionGeometryIsChecked() throws {
        func conv(_ checkpoint: YOLOCheckpoint) throws -> PickleObject {
            try XCTUnwrap(try layer(checkpoint, "Conv").children.first { $0.name == "conv" }?.module)
        }
        let cases: [(String, PickleValue, String)] = [
            ("stride", .tuple([.int(0), .int(0)]), "stride is (0, 0), outside 1…2"),
            ("groups", .int(0), "groups is 0"),
            ("padding", .tuple([.int(-1), .int(-1)]), "padding is (-1, -1)"),
            ("dilation", .tuple([.int(1 << 40), .int(1)]), "dilation"),
            ("padding", .tuple([.int(0), .int(0)]), "does not keep the feature map's size"),
            ("padding", .string("same"), "padding is 'same', not a whole number"),
            ("groups", .none, "groups is None, not a whole number"),
            ("padding_mode", .string("reflect"), "padding_mode is 'reflect', not 'zeros'"),
        ]
        for (attribute, value, words) in cases {
            try assertRefused(
                { try conv($0).attributes.set(.string(attribute), value) }, saying: ["model.0.conv", words])
        }
    }

    /// A layer reading a map the model does not keep (`save`) would read a map that was dropped.
    func testEveryMapReadLaterIsKept() throws {
        try assertRefused(
            { checkpoint in
                let kept = (checkpoint.model["save"]?.items ?? []).dropFirst()
                checkpoint.model.attributes.set(.string("save"), .list(PickleList(Array(kept))))
            }, saying: ["does not keep"])
    }

    /// A few cheap weights cannot size gigabytes of activations: a map may hold 64 M elements for a 640 × 640 input
    /// (YOLOv8x's largest, a C2f's stack of 400 channels at a quarter of the side, holds 10 M).
    func testFeatureMapsAreBounded() {
        XCTAssertTrue(FeatureShape(channels: 400, halvings: 2).holds(channels: 400))
        XCTAssertFalse(FeatureShape(channels: 3, halvings: 1).holds(channels: 4096))
        XCTAssertTrue(FeatureShape(channels: 3, halvings: 3).holds(channels: 10_000))
        XCTAssertFalse(FeatureShape(channels: 3, halvings: -5).holds(channels: 1 << 20))
    }

    /// A network with NaN or infinite weights gives boxes that are not numbers: they are no detections, whatever their
    /// scores (Ultralytics would pass them on).
    func testBoxesThatAreNotNumbersAreDropped() {
        // Two anchors, one class: [x, y, w, h, score] by rows of `anchors`.
        let prediction: [Float] = [.nan, 10, 5, 10, 4, 4, 4, .infinity, 0.9, 0.8]
        let detections = prediction.withUnsafeBufferPointer {
            nonMaxSuppression($0.baseAddress!, classes: 1, anchors: 2, options: NMSOptions())
        }
        XCTAssertEqual(detections.count, 0, "\(detections)")
        // An infinite score is no confidence either: JSON could not even hold it.
        let infiniteScore: [Float] = [20, 10, 5, 10, 4, 4, 4, 4, .infinity, 0.8]
        let scored = infiniteScore.withUnsafeBufferPointer {
            nonMaxSuppression($0.baseAddress!, classes: 1, anchors: 2, options: NMSOptions())
        }
        XCTAssertEqual(scored.map(\.confidence), [0.8])
        let finite: [Float] = [20, 10, 5, 10, 4, 4, 4, 4, 0.9, 0.8]
        let kept = finite.withUnsafeBufferPointer {
            nonMaxSuppression($0.baseAddress!, classes: 1, anchors: 2, options: NMSOptions())
        }
        XCTAssertEqual(kept.count, 2)
    }
}
