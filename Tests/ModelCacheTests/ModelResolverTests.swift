import Crypto
import Foundation
import ModelCache
import XCTest

/// Model names resolve like Ultralytics' (path, then cache, then download), and downloads are verified,
/// resumable and atomic — against a local HTTP server only.
final class ModelResolverTests: XCTestCase {
    var cache: String!
    /// 1.3 MB of deterministic bytes standing in for a checkpoint.
    let payload = Data((0..<1_300_000).map { UInt8(truncatingIfNeeded: ($0 &* 2_654_435_761) >> 13) })

    override func setUpWithError() throws {
        cache =
            FileManager.default.temporaryDirectory.appendingPathComponent("autoannotate-weights-\(UUID().uuidString)")
            .path
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: cache) }

    var digest: String { SHA256.hash(data: payload).map { String(format: "%02x", $0) }.joined() }

    func resolver(_ url: String, sha256: String? = nil, size: Int? = nil) -> ModelResolver {
        ModelResolver(cache: cache, catalog: [KnownModel(name: "sam_b.pt", url: url, size: size, sha256: sha256)])
    }

    /// Serves the payload, honouring range requests as GitHub's asset storage does.
    func serve(_ request: LocalHTTPServer.Request) -> LocalHTTPServer.Response {
        if let range = request.headers["range"], range.hasPrefix("bytes="),
            let start = Int(range.dropFirst(6).dropLast())
        {
            return .init(
                status: 206, headers: ["Content-Range": "bytes \(start)-\(payload.count - 1)/\(payload.count)"],
                body: payload.subdata(in: start..<payload.count))
        }
        return .init(body: payload)
    }

    func files() -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: cache)) ?? []).sorted() }

    func testAnExistingPathThenTheCacheComeFirst() throws {
        let server = try LocalHTTPServer { _ in .init(status: 500) }
        let resolver = resolver(server.url("/sam_b.pt"), sha256: digest)
        let local = cache + "-local.pt"
        try payload.write(to: URL(fileURLWithPath: local))
        defer { try? FileManager.default.removeItem(atPath: local) }
        XCTAssertEqual(try resolver.resolve(local), local)

        try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
        try payload.write(to: URL(fileURLWithPath: cache + "/sam_b.pt"))
        XCTAssertEqual(try resolver.resolve("sam_b.pt"), cache + "/sam_b.pt")
        XCTAssertEqual(
            try resolver.resolve("models/sam_b.pt"), cache + "/sam_b.pt", "a missing path falls back to its name")
        XCTAssertEqual(server.requests.count, 0)
        XCTAssertThrowsError(try resolver.resolve("yolov9000.pt")) {
            XCTAssertTrue(
                $0.localizedDescription.contains(
                    "no such file, and not in the weights cache (\(cache!)); official names that download by themselves: sam_b.pt"
                ), $0.localizedDescription)
        }
    }

    /// A server that sends (or announces) more than the model can be is cut off, and nothing it sent is kept:
    /// a wrong mirror cannot fill the disk.
    func testAServerSendingMoreThanTheModelIsCutOff() throws {
        let server = try LocalHTTPServer(handler: serve)
        for var resolver in [
            resolver(server.url("/sam_b.pt"), size: 1000), resolver(server.url("/sam_b.pt")),
        ] {
            if resolver.catalog[0].size == nil { resolver.maximumDownloadBytes = 5000 }
            XCTAssertThrowsError(try resolver.resolve("sam_b.pt")) {
                XCTAssertTrue(
                    $0.localizedDescription.contains("the server sent or announced more than"), $0.localizedDescription)
            }
            XCTAssertEqual(files(), ["sam_b.pt.lock"], "no partial download is kept")
        }
        // A resumed download whose total the server does not say: the bytes themselves are counted.
        let unsized = try LocalHTTPServer { [self] _ in
            .init(
                status: 206, headers: ["Content-Range": "bytes 100-\(payload.count - 1)/*"],
                body: payload.subdata(in: 100..<payload.count))
        }
        var resumed = resolver(unsized.url("/sam_b.pt"))
        resumed.maximumDownloadBytes = 5000
        try payload.prefix(100).write(to: URL(fileURLWithPath: cache + "/sam_b.pt.partial"))
        XCTAssertThrowsError(try resumed.resolve("sam_b.pt")) {
            XCTAssertTrue(
                $0.localizedDescription.contains("the server sent or announced more than 5000 bytes"),
                $0.localizedDescription)
        }
        XCTAssertEqual(files(), ["sam_b.pt.lock"])
    }

    func testADownloadIsVerifiedRenamedIntoPlaceAndNotRepeated() throws {
        let server = try LocalHTTPServer(handler: serve)
        let resolver = resolver(server.url("/v8.4.0/sam_b.pt"), sha256: digest, size: payload.count)
        var reports: [(Int64, Int64?)] = []
        let path = try resolver.resolve("sam_b.pt") { reports.append(($0, $1)) }
        XCTAssertEqual(path, cache + "/sam_b.pt")
        XCTAssertEqual(FileManager.default.contents(atPath: path), payload)
        XCTAssertEqual(files(), ["sam_b.pt", "sam_b.pt.lock", "sam_b.pt.sha256"])
        XCTAssertEqual(reports.last?.0, Int64(payload.count))
        XCTAssertEqual(reports.last?.1, Int64(payload.count))
        XCTAssertEqual(try resolver.resolve("sam_b.pt"), path)
        XCTAssertEqual(server.requests.count, 1, "the cached file is used")
    }

    func testAnInterruptedDownloadResumesWithARangeRequestAcrossARedirect() throws {
        var cut = true
        let server = try LocalHTTPServer { [self] request in
            if request.path.hasPrefix("/releases/") {
                return .init(status: 302, headers: ["Location": "/storage/sam_b.pt"])
            }
            if cut {
                cut = false
                return .init(body: payload, cutAfter: 500_000)
            }
            return serve(request)
        }
        let resolver = resolver(server.url("/releases/sam_b.pt"), sha256: digest)
        XCTAssertThrowsError(try resolver.resolve("sam_b.pt")) {
            XCTAssertTrue(
                $0.localizedDescription.contains(
                    "500000 bytes are kept in \(cache!)/sam_b.pt.partial and the next run resumes from there"),
                $0.localizedDescription)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: cache + "/sam_b.pt"), "no complete-looking file")
        XCTAssertEqual(try resolver.resolve("sam_b.pt"), cache + "/sam_b.pt")
        XCTAssertEqual(FileManager.default.contents(atPath: cache + "/sam_b.pt"), payload)
        XCTAssertEqual(server.requests.last?.headers["range"], "bytes=500000-")
        XCTAssertFalse(files().contains("sam_b.pt.partial"))
    }

    func testAWrongDigestIsRefusedAndNothingIsKept() throws {
        let server = try LocalHTTPServer(handler: serve)
        let resolver = resolver(server.url("/sam_b.pt"), sha256: String(repeating: "ab", count: 32))
        XCTAssertThrowsError(try resolver.resolve("sam_b.pt")) {
            XCTAssertTrue(
                $0.localizedDescription.contains(
                    "not the official file (SHA-256 \(digest), the official file's is abab"), $0.localizedDescription)
            XCTAssertTrue($0.localizedDescription.hasSuffix("the download was removed)"), $0.localizedDescription)
        }
        XCTAssertEqual(files(), ["sam_b.pt.lock"])
        // Meta's names carry a digest prefix, which is checked the same way.
        XCTAssertEqual(
            try self.resolver(server.url("/sam_b.pt"), sha256: String(digest.prefix(6))).resolve("sam_b.pt"),
            cache + "/sam_b.pt")
    }

    func testMissingFilesAndNoNetworkSayWhatToDo() throws {
        let server = try LocalHTTPServer { _ in .init(status: 404, body: Data("Not Found".utf8)) }
        XCTAssertThrowsError(try resolver(server.url("/sam_b.pt")).resolve("sam_b.pt")) {
            let message = $0.localizedDescription
            XCTAssertTrue(
                message.hasPrefix("sam_b.pt is not here and could not be downloaded (the server answered HTTP 404)"),
                message)
            XCTAssertTrue(
                message.contains("Download it yourself from \(server.url("/sam_b.pt"))\n  and put it in \(cache!)"),
                message)
        }
        XCTAssertEqual(files(), ["sam_b.pt.lock"], "nothing half-made is left")
        // Offline: nobody listens on the port any more.
        let offline = server.url("/sam_b.pt")
        server.stop()
        XCTAssertThrowsError(try resolver(offline).resolve("sam_b.pt")) {
            XCTAssertTrue(
                $0.localizedDescription.contains("Download it yourself from \(offline)"), $0.localizedDescription)
        }
    }

    func testASlowServerCompletesAndAStalledOneKeepsItsBytes() throws {
        let slow = try LocalHTTPServer { [self] _ in .init(body: payload, pause: 0.02) }
        XCTAssertEqual(
            FileManager.default.contents(
                atPath: try resolver(slow.url("/sam_b.pt"), sha256: digest).resolve("sam_b.pt")), payload)

        try FileManager.default.removeItem(atPath: cache)
        let stalled = try LocalHTTPServer { [self] _ in .init(body: payload, pause: 3) }
        var resolver = resolver(stalled.url("/sam_b.pt"), sha256: digest)
        resolver.idleTimeout = 1
        XCTAssertThrowsError(try resolver.resolve("sam_b.pt")) {
            XCTAssertTrue($0.localizedDescription.contains("65536 bytes are kept"), $0.localizedDescription)
        }
    }

    func testACachedFileThatChangedIsRefused() throws {
        let server = try LocalHTTPServer(handler: serve)
        let resolver = resolver(server.url("/sam_b.pt"))
        let path = try resolver.resolve("sam_b.pt")
        let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: path))
        try handle.seek(toOffset: 1000)
        try handle.write(contentsOf: Data([0]))
        try handle.close()
        XCTAssertThrowsError(try resolver.resolve("sam_b.pt")) {
            XCTAssertTrue(
                $0.localizedDescription.contains("its SHA-256 changed since it was downloaded"), $0.localizedDescription
            )
        }
    }

    func testTheOfficialNamesAreKnown() {
        let names = Set(KnownModels.all.map(\.name))
        for name in [
            "yolov8n.pt", "yolov8s.pt", "yolov8m.pt", "yolov8l.pt", "yolov8x.pt", "sam_b.pt", "sam_l.pt",
            "mobile_sam.pt", "sam_vit_h_4b8939.pth",
        ] {
            XCTAssertTrue(names.contains(name), name)
        }
        XCTAssertEqual(
            KnownModels.all.first { $0.name == "yolov8x.pt" }?.url,
            "https://github.com/ultralytics/assets/releases/download/v8.4.0/yolov8x.pt")
        let mirrored = KnownModels.catalog(mirror: "https://mirror.example/weights")
        XCTAssertEqual(
            mirrored.first { $0.name == "sam_vit_b_01ec64.pth" },
            KnownModel(
                name: "sam_vit_b_01ec64.pth", url: "https://mirror.example/weights/sam_vit_b_01ec64.pth",
                sha256: "01ec64"))
    }
}
