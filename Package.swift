// swift-tools-version:6.0
import PackageDescription

// Layers (docs/ARCHITECTURE.md): C shims → Tensor → Imaging → Checkpoint → YOLO, SegmentAnything, Geometry →
// Annotate → the thin `autoannotate` CLI (with ModelCache resolving model names to files). No target sets unsafe
// flags, so other packages can depend on this one by version; optimisation comes from the build configuration
// (`-c release`, which the tests use too: they run real, if tiny, models).
let package = Package(
    name: "autoannotate",
    products: [
        .executable(name: "autoannotate", targets: ["autoannotate"]),
        .library(name: "Tensor", targets: ["Tensor"]),
        .library(name: "Imaging", targets: ["Imaging"]),
        .library(name: "Checkpoint", targets: ["Checkpoint"]),
        .library(name: "YOLO", targets: ["YOLO"]),
        .library(name: "SegmentAnything", targets: ["SegmentAnything"]),
        .library(name: "Geometry", targets: ["Geometry"]),
        .library(name: "Annotate", targets: ["Annotate"]),
        .library(name: "ModelCache", targets: ["ModelCache"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        // C shims
        .systemLibrary(
            name: "COpenBLAS", path: "Sources/COpenBLAS",
            providers: [.apt(["libopenblas-dev"])]),
        // libjpeg reports errors by longjmp, which Swift cannot host: the codecs live in a small C target.
        .target(
            name: "CImageCodecs", path: "Sources/CImageCodecs",
            linkerSettings: [.linkedLibrary("jpeg"), .linkedLibrary("png")]),

        // Our fp32 matrix product, Winograd's convolution, the mask decoder's fused heads, the elementwise kernels and
        // the bf16 product, each built for the instruction sets it runs on and chosen at run time.
        .target(name: "CKernels", path: "Sources/CKernels"),

        // Libraries
        .target(name: "Tensor", dependencies: ["COpenBLAS", "CKernels"]),
        .target(name: "Imaging", dependencies: ["CImageCodecs"]),
        .target(name: "Checkpoint", dependencies: ["Tensor"]),
        .target(name: "YOLO", dependencies: ["Tensor", "Imaging", "Checkpoint"]),
        .target(name: "SegmentAnything", dependencies: ["Tensor", "Imaging", "Checkpoint"]),
        .target(name: "Geometry"),
        // Official model names → files: the weights cache and verified, resumable downloads.
        .target(name: "ModelCache", dependencies: [.product(name: "Crypto", package: "swift-crypto")]),
        .target(
            name: "Annotate",
            dependencies: [
                "Imaging", "Checkpoint", "YOLO", "SegmentAnything", "Geometry", "ModelCache", "Yams",
                .product(name: "GRDB", package: "GRDB.swift"),
            ]),

        // Executables
        .executableTarget(
            name: "autoannotate",
            dependencies: [
                "Tensor", "Imaging", "Checkpoint", "YOLO", "SegmentAnything", "Geometry", "Annotate", "ModelCache",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Yams", package: "Yams"),
            ]),
        // libFuzzer targets for the readers of untrusted files (scripts/fuzz.sh); built plainly, a corpus replayer.
        .executableTarget(name: "autoannotate-fuzz", dependencies: ["Annotate", "Checkpoint", "Imaging", "YOLO"]),
        .executableTarget(
            name: "autoannotate-bench",
            dependencies: [
                "Tensor", "Imaging", "YOLO", "SegmentAnything", "COpenBLAS",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        // Examples: small programs that use the libraries as a Swift user would; they build with the package.
        .executableTarget(name: "detect-only", dependencies: ["Imaging", "YOLO"], path: "Examples/DetectOnly"),
        .executableTarget(
            name: "prompt-sam", dependencies: ["Imaging", "SegmentAnything"], path: "Examples/PromptSAM"),
        .executableTarget(name: "annotate-folder", dependencies: ["Annotate"], path: "Examples/AnnotateFolder"),

        // Tests: one target per library
        .testTarget(name: "TensorTests", dependencies: ["Tensor", "CKernels"]),
        // Fixtures are read from Tests/Fixtures by path (see Tests/Fixtures/README.md).
        .testTarget(name: "ImagingTests", dependencies: ["Imaging"]),
        .testTarget(name: "CheckpointTests", dependencies: ["Checkpoint"]),
        .testTarget(name: "YOLOTests", dependencies: ["YOLO"]),
        .testTarget(name: "SegmentAnythingTests", dependencies: ["SegmentAnything"]),
        .testTarget(name: "GeometryTests", dependencies: ["Geometry", "Imaging"]),
        .testTarget(
            name: "AnnotateTests", dependencies: ["Annotate", .product(name: "GRDB", package: "GRDB.swift")]),
        .testTarget(name: "ModelCacheTests", dependencies: ["ModelCache"]),
    ],
    swiftLanguageModes: [.v6]
)
