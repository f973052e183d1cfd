// swift-tools-version:6.0
// A package that depends on autoannotate by version, as a user's package would (`.ci/run` builds and runs it
// against a tagged clone: AUTOANNOTATE_PACKAGE_URL names the repository, AUTOANNOTATE_PACKAGE_VERSION the tag).
import Foundation
import PackageDescription

let environment = ProcessInfo.processInfo.environment
let url = environment["AUTOANNOTATE_PACKAGE_URL"] ?? "https://github.com/autoannotate/autoannotate"
let version = Version(environment["AUTOANNOTATE_PACKAGE_VERSION"] ?? "0.1.0") ?? "0.1.0"

let package = Package(
    name: "consumer",
    dependencies: [.package(url: url, from: version)],
    targets: [
        .executableTarget(
            name: "consumer",
            dependencies: [
                .product(name: "Tensor", package: "autoannotate"),
                .product(name: "Imaging", package: "autoannotate"),
                .product(name: "Checkpoint", package: "autoannotate"),
                .product(name: "YOLO", package: "autoannotate"),
                .product(name: "SegmentAnything", package: "autoannotate"),
                .product(name: "Geometry", package: "autoannotate"),
                .product(name: "Annotate", package: "autoannotate"),
                .product(name: "ModelCache", package: "autoannotate"),
            ])
    ]
)
