import Foundation
import XCTest

@testable import Annotate

/// A job folder, or a box dataset, handed over by someone else: what it names is not trusted to stay where it
/// should.
final class HandedOverJobTests: XCTestCase {
    /// The store's image and label paths are used only as the scan makes them: relative, inside their folders, and
    /// the label the image's own. A store changed by hand to name `../user.txt` is refused, never written through.
    func testStorePathsMustBeThoseTheScanMakes() {
        XCTAssertTrue(JobStore.isScannedPair(image: "a/b.jpg", label: "a/b.txt"))
        XCTAssertTrue(JobStore.isScannedPair(image: "x.y/z", label: "x.y/z.txt"))
        for (image, label) in [
            ("a.jpg", "../user.txt"), ("../a.jpg", "../a.txt"), ("/etc/a.jpg", "/etc/a.txt"),
            ("a/../../b.jpg", "a/../../b.txt"),
            ("a//b.jpg", "a//b.txt"), ("./a.jpg", "./a.txt"), ("a.jpg", "b.txt"), ("a\0.jpg", "a\0.txt"), ("", ".txt"),
        ] {
            XCTAssertFalse(JobStore.isScannedPair(image: image, label: label), "\(image) → \(label)")
        }
    }

    /// A box label file that is a symbolic link is not followed: it could name any file the user can read, whose
    /// first line would then appear in an error.
    func testALinkedBoxLabelFileIsNotFollowed() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("handed-over-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let secret = folder.appendingPathComponent("secret")
        try Data("root:*:20228:0:99999:7:::\n".utf8).write(to: secret)
        let label = folder.appendingPathComponent("a.txt").path
        try FileManager.default.createSymbolicLink(atPath: label, withDestinationPath: secret.path)
        XCTAssertThrowsError(try BoxLabels.read(path: label, width: 64, height: 64)) { error in
            let message = error.localizedDescription
            XCTAssertTrue(message.contains("symbolic link, not followed"), message)
            XCTAssertFalse(message.contains("root"), message)
        }
    }
}
