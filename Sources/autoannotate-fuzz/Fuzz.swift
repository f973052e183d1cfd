// Coverage-guided fuzz targets (libFuzzer) for the readers of untrusted files: one input through the reader that
// AUTOANNOTATE_FUZZ_TARGET names. Built for libFuzzer by scripts/fuzz.sh (`-sanitize=fuzzer,address`, FUZZING);
// built plainly, it replays the files it is given, so that a corpus or a crash reproducer runs anywhere.
import Annotate
import Checkpoint
import Foundation
import Imaging
import YOLO

/// The readers: each must end in a value or a typed error, never a crash, a hang or an unbounded allocation.
enum FuzzTarget: String, CaseIterable {
    /// A torch.save zip or safetensors file, read as `info` and the models read it: the zip, the pickle, the
    /// tensors, and a detector's module tree built into a network.
    case checkpoint
    /// An image file decoded as the job decodes it (JPEG, PNG; every other format refused).
    case image
    /// A YOLO box label file, as a box-dataset job reads it for a 640 × 480 image.
    case boxes
    /// A pipeline recipe (YAML), as `pipeline=` reads it.
    case recipe

    func run(_ data: Data) {
        switch self {
        case .checkpoint:
            guard case .yolo(let checkpoint) = try? ModelFile.open(MappedFile(data: data, path: "fuzz.pt")) else {
                return
            }
            _ = try? DetectionModel(checkpoint)
        case .image:
            _ = try? ImageDecoder.decode(data, path: "fuzz", pixelLimit: 1 << 22)
        case .boxes:
            _ = try? BoxLabels.parse(data, path: "fuzz.txt", width: 640, height: 480)
        case .recipe:
            _ = try? Recipe.options(yaml: String(decoding: data, as: UTF8.self), path: "fuzz.yaml")
        }
    }
}

let target: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["AUTOANNOTATE_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTarget(rawValue: name) else {
        let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
        FileHandle.standardError.write(Data("AUTOANNOTATE_FUZZ_TARGET must be one of: \(names)\n".utf8))
        exit(2)
    }
    return target
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ bytes: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    target.run(bytes.map { Data(bytes: $0, count: count) } ?? Data())
    return 0
}

#if FUZZING
    /// libFuzzer's driver, linked in by `-sanitize=fuzzer` (its own `main` is not: SwiftPM's is this program's).
    @_silgen_name("LLVMFuzzerRunDriver")
    func runFuzzerDriver(
        _ argc: UnsafeMutablePointer<CInt>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
        _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
    ) -> CInt
#endif

@main
enum Fuzz {
    static func main() {
        #if FUZZING
            var argc = CommandLine.argc
            var argv = CommandLine.unsafeArgv
            exit(runFuzzerDriver(&argc, &argv, fuzzOne))
        #else
            // Built without libFuzzer: replays files (or every file in folders) through the target.
            for argument in CommandLine.arguments.dropFirst() {
                let url = URL(fileURLWithPath: argument)
                let files =
                    (try? FileManager.default.contentsOfDirectory(at: url, includingPropertiesForKeys: nil).sorted {
                        $0.path < $1.path
                    }) ?? [url]
                for file in files {
                    guard let data = try? Data(contentsOf: file) else { continue }
                    target.run(data)
                }
                print("\(target.rawValue): replayed \(files.count) inputs from \(argument)")
            }
        #endif
    }
}
