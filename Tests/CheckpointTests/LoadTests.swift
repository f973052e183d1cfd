import Checkpoint
import Foundation
import XCTest

final class LoadTests: XCTestCase {
    func entry(_ name: String) -> Fixtures.Manifest.File { Fixtures.manifest.files.first { $0.file == name }! }

    /// Meta-format SAM state dicts, saved to a path (fp32, protocol 2) and as fp16 at protocol 4, and as
    /// safetensors: every tensor equals torch's, keys in state_dict() order.
    func testSamStateDictsEqualWhatTorchLoaded() throws {
        for name in ["tiny_sam.pt", "tiny_sam_fp16_proto4.pt", "tiny_sam.safetensors"] {
            guard case .sam(let sam) = try ModelFile.open(path: Fixtures.path(name)) else {
                return XCTFail("\(name) is not SAM")
            }
            let expected = entry(name)
            if name.hasSuffix(".safetensors") {
                XCTAssertEqual(Set(sam.weights.keys), Set(expected.keys), name)
            } else {
                XCTAssertEqual(sam.weights.keys, expected.keys, "\(name): keys in state_dict order")
            }
            for (key, tensor) in expected.state_dict {
                assertTensor(sam.weights[key], equals: tensor, "\(name) \(key)")
            }
            XCTAssertEqual(sam.architecture.variant, .custom)
            XCTAssertEqual(
                [sam.architecture.encoderWidth, sam.architecture.encoderDepth, sam.architecture.encoderHeads],
                [16, 2, 2])
            XCTAssertEqual(sam.architecture.globalAttentionBlocks, [1])
            XCTAssertEqual(
                [sam.architecture.windowSize, sam.architecture.gridSize, sam.architecture.patchSize], [14, 64, 16])
            XCTAssertEqual(
                [sam.architecture.promptWidth, sam.architecture.maskInputChannels, sam.architecture.decoderMLPWidth],
                [16, 16, 32])
            XCTAssertEqual(
                [sam.architecture.decoderDepth, sam.architecture.multimaskOutputs, sam.architecture.iouHeadDepth],
                [2, 3, 3])
        }
        XCTAssertEqual(
            entry("tiny_sam.pt").parameters,
            {
                guard case .sam(let sam) = try? ModelFile.open(path: Fixtures.path("tiny_sam.pt")) else { return nil }
                return sam.parameterCount
            }())
    }

    /// bf16, fp16, fp64, int64 and bool storages, a 0-d scalar, transposed and offset views, strided views,
    /// views sharing one storage, an expanded (stride-0) view and an empty tensor; saved to a buffer ("archive/").
    func testSpecialTensorsEqualWhatTorchLoaded() throws {
        let archive = try TorchArchive(path: Fixtures.path("special.pt"))
        XCTAssertEqual(archive.prefix, "archive")
        guard let dict = archive.root.dict else { return XCTFail("root is not a dict") }
        let expected = entry("special.pt")
        XCTAssertEqual(dict.keys.compactMap(\.string), expected.keys)
        for (key, tensor) in expected.state_dict { assertTensor(dict[key]?.tensor, equals: tensor, key) }
        XCTAssertEqual(dict["scalar"]?.tensor?.floats(), [3.25])
        XCTAssertEqual(dict["transposed"]?.tensor?.isContiguous, false)
    }

    /// Ultralytics checkpoints pickle the fp16 DetectionModel itself: the walk gives state_dict()'s keys, and
    /// the attributes a detector needs come with it. The training form (EMA) is preferred, as Ultralytics does.
    func testUltralyticsCheckpointsGiveStateDictAndAttributes() throws {
        for name in ["tiny_yolov8.pt", "tiny_yolov8_ema.pt"] {
            guard case .yolo(let yolo) = try ModelFile.open(path: Fixtures.path(name)) else {
                return XCTFail("\(name) is not YOLO")
            }
            let expected = entry(name)
            XCTAssertEqual(yolo.weights.keys, expected.keys, "\(name): state_dict keys and order")
            for (key, tensor) in expected.state_dict {
                assertTensor(yolo.weights[key], equals: tensor, "\(name) \(key)")
            }
            XCTAssertEqual(yolo.names.count, expected.names?.count)
            for (id, label) in expected.names ?? [:] { XCTAssertEqual(yolo.names[Int(id)!], label) }
            XCTAssertEqual(yolo.stride, expected.stride)
            XCTAssertEqual(yolo.yamlFile, expected.yaml_file)
            XCTAssertEqual(yolo.classCount, expected.nc)
            XCTAssertEqual(yolo.head?["reg_max"]?.int, expected.reg_max)
            let layers = yolo.layers
            XCTAssertEqual(layers.count, expected.layers?.count)
            for (layer, want) in zip(layers, expected.layers ?? []) {
                XCTAssertEqual(layer["i"]?.int, want.i)
                XCTAssertEqual(layer["type"]?.string, want.type)
                switch want.f {
                case .one(let f): XCTAssertEqual(layer["f"]?.int, f, "layer \(want.i) from")
                case .many(let f): XCTAssertEqual(layer["f"]?.items?.compactMap(\.int), f, "layer \(want.i) from")
                }
            }
            let eps = Set(yolo.model.allModules.filter { $0.name == "BatchNorm2d" }.compactMap { $0["eps"]?.double })
            XCTAssertEqual(eps.sorted(), expected.bn_eps)
            XCTAssertEqual(yolo.model.leafModules.count, expected.leaf_modules, "\(name): Ultralytics' layer count")
            XCTAssertEqual(yolo.model.parameterCount, expected.parameters, "\(name): parameter count")
        }
    }

    func testRefusedFilesSayWhatTheyAre() {
        XCTAssertGreaterThanOrEqual(Fixtures.manifest.refused.count, 15)
        for refused in Fixtures.manifest.refused {
            XCTAssertThrowsError(try ModelFile.open(path: Fixtures.path(refused.file)), refused.file) { error in
                guard let error = error as? CheckpointError else { return XCTFail("\(refused.file): untyped \(error)") }
                let message = error.localizedDescription
                XCTAssertTrue(
                    message.contains(refused.contains),
                    "\(refused.file): \"\(message)\" should mention \(refused.contains)")
                XCTAssertTrue(
                    message.contains(refused.file), "\(refused.file): the message must name the file: \(message)")
            }
        }
    }

    func testMissingAndMisshapedKeysNameTheKeyWithGotAndExpected() {
        XCTAssertThrowsError(try ModelFile.open(path: Fixtures.path("sam_missing_key.pt"))) { error in
            XCTAssertEqual(
                error as? CheckpointError,
                .missingKey(path: Fixtures.path("sam_missing_key.pt"), key: "mask_decoder.iou_token.weight"))
        }
        XCTAssertThrowsError(try ModelFile.open(path: Fixtures.path("sam_misshaped_key.pt"))) { error in
            XCTAssertEqual(
                error as? CheckpointError,
                .shapeMismatch(
                    path: Fixtures.path("sam_misshaped_key.pt"),
                    key: "mask_decoder.iou_token.weight", got: [1, 15], expected: [1, 16]))
        }
    }

    func testMissingFileIsNamed() {
        XCTAssertThrowsError(try ModelFile.open(path: "/nonexistent/sam_b.pt")) { error in
            XCTAssertEqual(error as? CheckpointError, .notFound(path: "/nonexistent/sam_b.pt"))
        }
    }
}
