import Checkpoint
import Foundation
import XCTest
import YOLO

/// `autoannotate info` numbers against Ultralytics' `model.info()` on the same files (recorded in the
/// checkpoint fixtures' manifest by make_checkpoint_fixtures.py).
final class InfoTests: XCTestCase {
    struct Manifest: Decodable {
        struct Info: Decodable {
            let layers: Int
            let parameters: Int
            let gradients: Int
            let gflops: Double
        }
        struct File: Decodable {
            let file: String
            let info: Info?
        }
        let files: [File]
    }

    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
        "../Fixtures/checkpoints"
    ).standardized

    func testLayersParametersGradientsAndGFLOPsEqualUltralytics() throws {
        let manifest = try JSONDecoder().decode(
            Manifest.self, from: Data(contentsOf: Self.directory.appendingPathComponent("manifest.json")))
        let files = manifest.files.filter { $0.info != nil }
        XCTAssertEqual(files.count, 2)
        for file in files {
            guard
                case .yolo(let yolo) = try ModelFile.open(path: Self.directory.appendingPathComponent(file.file).path),
                let info = file.info
            else {
                return XCTFail("\(file.file) is not a YOLO checkpoint")
            }
            XCTAssertEqual(yolo.model.leafModules.count, info.layers, file.file)
            XCTAssertEqual(yolo.model.parameterCount, info.parameters, file.file)
            XCTAssertEqual(yolo.model.gradientCount, info.gradients, file.file)
            let gflops = try DetectionModel(yolo).gflops()
            XCTAssertEqual(gflops, info.gflops, accuracy: info.gflops * 1e-9, file.file)
        }
    }
}
