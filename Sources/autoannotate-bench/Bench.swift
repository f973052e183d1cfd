import ArgumentParser
import COpenBLAS
import Checkpoint
import Foundation
import Imaging
import SegmentAnything
import Tensor
import YOLO

/// Release-build benchmarks of the numeric core and image decoding, each beside its floor or reference:
/// our kernels beside raw `cblas_sgemm` on the same GEMM shapes, JPEG decoding beside OpenCV's `imdecode`.
///
///     swift run -c release autoannotate-bench [--threads N] [--reference-python PATH]
@main
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "autoannotate-bench",
        abstract: "Release-build benchmarks, each beside its floor or its reference.",
        subcommands: [Kernels.self, YOLOForward.self, SAMBench.self, BF16Bench.self], defaultSubcommand: Kernels.self)
}

/// The fixture scripts folder (reference-side benchmark scripts live there).
let fixtureScripts = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
    "../../Tests/Fixtures"
).standardized

/// Runs a reference script with the given Python, its output interleaved after ours.
func runReference(python: String, script: String, arguments: [String]) throws {
    fflush(nil)  // our lines so far go out before the reference process's
    let process = Process()
    process.executableURL = URL(fileURLWithPath: python)
    process.arguments = [fixtureScripts.appendingPathComponent(script).path] + arguments
    try process.run()
    process.waitUntilExit()
}

/// Which kernels the run uses, printed first so that runs on one machine (`AUTOANNOTATE_NO_AVX512`,
/// `AUTOANNOTATE_FUSED_KERNELS`, `AUTOANNOTATE_GEMM`) can be told apart.
func printKernels() {
    let products =
        GEMMKernel.current == .ours
        ? "ours (\(VectorInstructions.current.rawValue))" : "OpenBLAS (\(GEMMKernel.openBLASCore))"
    print(
        "products: \(products); Winograd and the decoder's fused heads: \(VectorInstructions.fusedKernelsPay ? "on" : "off")"
    )
}

/// Minimum wall time of `repeats` runs of `body` after one warm-up run.
func minimumTime(repeats: Int, _ body: () -> Void) -> Double {
    body()  // warm-up: first-touch page faults and thread start-up are not the kernel's cost
    var best = Double.infinity
    for _ in 0..<repeats {
        let start = DispatchTime.now().uptimeNanoseconds
        body()
        best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }
    return best
}

struct Kernels: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "GEMM, convolution, attention and JPEG decoding.")

    @Option(help: "Threads for BLAS and our loops (default: all cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Repetitions per measurement; the minimum is reported.")
    var repeats: Int = 3

    @Option(
        help: "A Python with opencv-python installed, to time OpenCV on the same JPEG (Tests/Fixtures/bench_opencv.py)."
    )
    var referencePython: String?

    func run() throws {
        Threading.count = threads
        printKernels()
        print(
            "threads: \(threads), cores: \(ProcessInfo.processInfo.activeProcessorCount), repeats: \(repeats) (min reported)"
        )
        print("")
        print(
            pad("case", 46) + pad("shape", 26) + pad("GFLOP", 8) + pad("ours ms", 10) + pad("GFLOP/s", 9)
                + pad("sgemm ms", 10) + "sgemm GFLOP/s")

        // SAM ViT-B linear layers: tokens × in → out (qkv, mlp.lin1, mlp.lin2, proj).
        for (m, k, n, name) in [
            (4096, 768, 2304, "ViT-B qkv"), (4096, 768, 3072, "ViT-B mlp.lin1"),
            (4096, 3072, 768, "ViT-B mlp.lin2"), (4096, 768, 768, "ViT-B attn.proj"),
        ] {
            let x = Tensor.random([m, k])
            let w = Tensor.random([n, k])
            let b = Tensor.random([n])
            let ours = time { _ = linear(x, weight: w, bias: b) }
            report(
                "linear \(name)", "\(m)×\(k)×\(n)", flop: 2.0 * Double(m * n * k), ours: ours,
                floor: sgemmTime(m: m, n: n, k: k))
        }
        // YOLOv8x 3×3 convolutions (C2f bottlenecks) at the P2…P4 resolutions of a 640² input.
        for (side, c) in [(160, 160), (80, 320), (40, 640)] {
            let x = Tensor.random([1, c, side, side])
            let w = Tensor.random([c, c, 3, 3])
            let ours = time { _ = conv2d(x, weight: w, geometry: .init(padding: 1)) }
            report(
                "conv3×3 YOLOv8x \(side)²", "\(c)→\(c) @\(side)²", flop: 2.0 * Double(c * c * 9 * side * side),
                ours: ours,
                floor: sgemmTime(m: c, n: side * side, k: c * 9))
        }
        // SAM ViT-B attention: 14×14 windows (25 windows × 12 heads) and global 64×64 (12 heads), head dim 64.
        for (batch, tokens, name) in [(25 * 12, 196, "windowed 14×14"), (12, 4096, "global 64×64")] {
            let q = Tensor.random([batch, tokens, 64])
            let k = Tensor.random([batch, tokens, 64])
            let v = Tensor.random([batch, tokens, 64])
            let ours = time { _ = scaledDotProductAttention(query: q, key: k, value: v) }
            let floor = sgemmTime(m: tokens, n: tokens, k: 64) * Double(batch) * 2
            report(
                "attention ViT-B \(name)", "\(batch)×\(tokens)×64", flop: 4.0 * Double(batch * tokens * tokens * 64),
                ours: ours, floor: floor)
        }

        print("")
        let image = Image.gradientTexture(width: 1920, height: 1080)
        let jpeg = try ImageEncoder.jpeg(image, quality: 90)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("autoannotate-bench-1080p.jpg").path
        try jpeg.write(to: URL(fileURLWithPath: path))
        let decode = time(repeats: repeats * 3) { _ = try! ImageDecoder.decode(path: path) }
        let megapixels = Double(image.width * image.height) / 1e6
        print(
            "JPEG decode 1920×1080 q90 (4:2:0), file read included: \(fmt(decode * 1000)) ms, \(fmt(megapixels / decode)) MP/s (ours)"
        )
        let placement = time(repeats: repeats * 3) { _ = LetterBox(height: 640, width: 640, auto: true)(image) }
        print("LetterBox 1920×1080 → 640×384 (INTER_LINEAR + pad): \(fmt(placement * 1000)) ms (ours)")
        if let python = referencePython {
            try runReference(
                python: python, script: "bench_opencv.py", arguments: [path, String(threads), String(repeats * 3)])
        }
    }

    func time(repeats: Int? = nil, _ body: () -> Void) -> Double { minimumTime(repeats: repeats ?? self.repeats, body) }

    func sgemmTime(m: Int, n: Int, k: Int) -> Double {
        rawSgemmSeconds(m: m, n: n, k: k, threads: threads, repeats: repeats)
    }

    func report(_ name: String, _ shape: String, flop: Double, ours: Double, floor: Double) {
        print(
            pad(name, 46) + pad(shape, 26) + pad(fmt(flop / 1e9), 8) + pad(fmt(ours * 1000), 10)
                + pad(fmt(flop / ours / 1e9), 9) + pad(fmt(floor * 1000), 10) + fmt(flop / floor / 1e9))
    }
}

/// Raw `cblas_sgemm` (OpenBLAS with `threads` threads of its own, as any BLAS user gets it) on an M×K · K×N
/// product, the minimum of `repeats` runs: the floor our kernels and models are measured against.
func rawSgemmSeconds(m: Int, n: Int, k: Int, threads: Int, repeats: Int) -> Double {
    openblas_set_num_threads(Int32(threads))
    defer { openblas_set_num_threads(1) }
    return productSeconds(m: m, n: n, k: k, repeats: repeats) { a, b, c in
        cblas_sgemm(
            CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(n), 0, c,
            Int32(n))
    }
}

/// The same product through `gemm` (our kernel where it runs, on the threads of `Threading`); each of the `repeats`
/// runs makes it `times` times in a row (their total time).
func kernelSeconds(m: Int, n: Int, k: Int, repeats: Int, times: Int = 1) -> Double {
    productSeconds(m: m, n: n, k: k, repeats: repeats) { a, b, c in
        for _ in 0..<times { gemm(m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n, c: c, ldc: n) }
    }
}

/// The minimum time of `repeats` runs of `multiply` on random row-major A (M×K), B (K×N) and C (M×N).
func productSeconds(
    m: Int, n: Int, k: Int, repeats: Int,
    _ multiply: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void
) -> Double {
    let a = Tensor.random([m, k])
    let b = Tensor.random([k, n])
    var c = [Float](repeating: 0, count: m * n)
    return a.withUnsafeBufferPointer { a in
        b.withUnsafeBufferPointer { b in
            c.withUnsafeMutableBufferPointer { c in
                minimumTime(repeats: repeats) { multiply(a.baseAddress!, b.baseAddress!, c.baseAddress!) }
            }
        }
    }
}

/// One JSON object on one line (the benchmark driver reads our results this way).
func printJSON(_ object: [String: Any]) {
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}

func pad(_ s: String, _ width: Int) -> String {
    s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count)
}
func fmt(_ v: Double) -> String { String(format: v >= 100 ? "%.0f" : v >= 10 ? "%.1f" : "%.2f", v) }

extension Tensor {
    /// Uniform values in [-1, 1) from a xorshift generator (the system generator costs a syscall per value).
    static func random(_ shape: [Int]) -> Tensor {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        return Tensor(
            shape: shape,
            storage: (0..<shape.reduce(1, *)).map { _ in
                state ^= state << 13
                state ^= state >> 7
                state ^= state << 17
                return Float(state >> 40) / Float(1 << 23) - 1
            })
    }
}

extension Image {
    /// A smooth gradient with fine texture: compresses like a photo rather than like flat colour.
    static func gradientTexture(width: Int, height: Int) -> Image {
        var pixels = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                let i = (y * width + x) * 3
                pixels[i] = UInt8((x * 255 / width + (x * y) % 23) & 255)
                pixels[i + 1] = UInt8((y * 255 / height + (x ^ y) % 17) & 255)
                pixels[i + 2] = UInt8(((x + y) * 127 / (width + height) + (x * 7 + y * 3) % 29) & 255)
            }
        }
        return Image(width: width, height: height, pixels: pixels)
    }
}

/// YOLOv8 forward passes at 640×640 and 640×480 (the letterbox of a 4:3 photo), ms and GFLOP/s, beside
/// Ultralytics' fused fp32 PyTorch model on the same sizes and thread count.
struct YOLOForward: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "yolo", abstract: "YOLOv8 forward pass beside PyTorch.")

    @Option(help: "YOLOv8 checkpoints to time (e.g. yolov8n.pt yolov8x.pt).")
    var model: [String]

    @Option(help: "Threads (default: all cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Repetitions; the minimum is reported.")
    var repeats: Int = 5

    @Option(help: "A Python with torch and ultralytics, to time the reference in the same run.")
    var referencePython: String?

    @Flag(help: "Print one JSON object per model and size instead of text (for scripts/benchmark.py).")
    var json = false

    func run() throws {
        Threading.count = threads
        if !json { printKernels() }
        for path in model {
            let detector = try Detector(path: path)
            for (h, w) in [(640, 640), (480, 640)] {
                let input = Tensor.random([1, 3, h, w]).clampedToUnit()
                let seconds = minimumTime(repeats: repeats) { _ = detector.model(input) }
                let gflops = detector.model.gflops(height: h, width: w)
                let name = (path as NSString).lastPathComponent
                if json {
                    printJSON([
                        "model": name, "size": "\(h)x\(w)", "seconds": seconds, "gflops": gflops, "threads": threads,
                    ])
                } else {
                    print(
                        "ours \(name) \(h)x\(w): \(fmt(seconds * 1000)) ms, \(fmt(gflops)) GFLOPs (thop count) → \(fmt(gflops / seconds)) GFLOP/s, \(threads) threads"
                    )
                }
            }
            if let python = referencePython {
                try runReference(
                    python: python, script: "bench_yolo_torch.py",
                    arguments: [path, String(threads), String(repeats), "640x640", "480x640"])
            }
        }
    }
}

extension Tensor {
    func clampedToUnit() -> Tensor { Tensor(shape: shape, storage: storage.map { ($0 + 1) / 2 }) }
}

/// SAM: image encoder time as a multiple of its FLOP floor (its GFLOPs over the sgemm rate measured in the same
/// run) and beside PyTorch; mask decoder time for 1, 10 and 50 boxes; peak RSS of the process.
struct SAMBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sam", abstract: "SAM encoder and decoder beside PyTorch and the FLOP floor.")

    @Option(help: "A SAM checkpoint (sam_b.pt, sam_l.pt, …).")
    var model: String

    @Option(help: "Image encoder arithmetic: fp32 or bf16 (AVX512-BF16).")
    var precision: Precision = .fp32

    @Option(help: "Threads (default: all cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Encoder repetitions (each is seconds long); the minimum is reported.")
    var encoderRepeats: Int = 2

    @Option(help: "A Python with torch and ultralytics, to time the reference in the same run.")
    var referencePython: String?

    @Option(
        help: "Only the mask decoder, for this many boxes, repeated (for profiling): the encoder runs once, untimed.")
    var decoderOnly: Int?

    @Option(help: "Only the image encoder, this many times, each timed (for profiling; the first includes warm-up).")
    var encoderOnly: Int?

    @Flag(help: "Print one JSON object instead of text (for scripts/benchmark.py).")
    var json = false

    static func boxes(_ count: Int) -> [SamBox] {
        (0..<count).map { i -> SamBox in
            let (x, y) = (Float(i * 7 % 500), Float(i * 13 % 300))
            return SamBox(x1: x, y1: y, x2: x + 200, y2: y + 300)
        }
    }

    func run() throws {
        Threading.count = threads
        if !json { printKernels() }
        let predictor = try SamPredictor(path: model, precision: precision)
        if let count = decoderOnly {
            predictor.setImage(Image.gradientTexture(width: 1024, height: 768))
            for _ in 0..<5 {
                let seconds = minimumTime(repeats: 1) {
                    _ = try! predictor.predict(boxes: Self.boxes(count), lowResLogits: false)
                }
                print(
                    "ours mask decoder, \(count) boxes (masks at 1024×768 included, as the job runs it): \(fmt(seconds * 1000)) ms"
                )
            }
            return
        }
        if let count = encoderOnly {
            let image = Image.gradientTexture(width: 1024, height: 768)
            for _ in 0..<count {
                let start = DispatchTime.now().uptimeNanoseconds
                predictor.setImage(image)
                print("ours image encoder: \(fmt(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)) s")
            }
            return
        }
        let architecture = predictor.architecture
        // The floor: the encoder's dominant product (tokens × width × 4·width) at the better of OpenBLAS's sgemm and
        // our kernel alone (OpenBLAS may run old kernels on a CPU newer than itself: see `GEMMKernel.openBLASCore`).
        // A VM's speed can drift between minutes, so the rate is measured before each encoder run and after the last,
        // and the best rate is set against the best encoder run. A product alone is far shorter than the encoder: it
        // is also run back to back for as long as an encoder run (the best of as many such runs as the encoder's), the
        // floor of a computation that long on this machine.
        let (m, k, n) = (4096, architecture.encoderWidth, architecture.mlpWidth)
        let image = Image.gradientTexture(width: 1024, height: 768)
        let gflops = architecture.encoderGFLOPs
        let productGFLOP = 2.0 * Double(m * n * k) / 1e9
        let sgemmRate = {
            productGFLOP
                / min(
                    rawSgemmSeconds(m: m, n: n, k: k, threads: threads, repeats: 3),
                    kernelSeconds(m: m, n: n, k: k, repeats: 3))
        }
        predictor.setImage(image)  // warm-up
        var (encoder, rate, sustained) = (Double.infinity, 0.0, 0.0)
        for _ in 0..<max(1, encoderRepeats) {
            rate = max(rate, sgemmRate())
            let products = max(1, Int((encoder.isFinite ? encoder : gflops / rate) * rate / productGFLOP))
            sustained = max(
                sustained,
                productGFLOP * Double(products) / kernelSeconds(m: m, n: n, k: k, repeats: 1, times: products))
            let start = DispatchTime.now().uptimeNanoseconds
            predictor.setImage(image)
            encoder = min(encoder, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        rate = max(rate, sgemmRate())
        let multiple = encoder / (gflops / rate)
        if !json {
            print(
                "ours \(architecture.variant.rawValue) image encoder: \(fmt(encoder)) s, \(fmt(gflops)) GFLOPs → \(fmt(gflops / encoder)) GFLOP/s; "
                    + "a \(m)×\(k)×\(n) product runs at up to \(fmt(rate)) GFLOP/s, so the floor is \(fmt(gflops / rate)) s and we are at \(fmt(multiple))× the floor; "
                    + "run back to back for an encoder's time, at \(fmt(sustained)) GFLOP/s: \(fmt(encoder / (gflops / sustained)))× that floor"
            )
        }
        var decoder: [String: Double] = [:]
        for count in [1, 10, 50] {
            // As the job runs it: the masks, without the low-resolution logits over the letterbox's padding.
            let seconds = minimumTime(repeats: 3) {
                _ = try! predictor.predict(boxes: Self.boxes(count), lowResLogits: false)
            }
            decoder[String(count)] = seconds
            if !json {
                print(
                    "ours mask decoder, \(count) boxes (masks at 1024×768 included, as the job runs it): \(fmt(seconds * 1000)) ms"
                )
            }
        }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        if json {
            printJSON([
                "variant": architecture.variant.rawValue, "precision": precision.rawValue, "encoder_seconds": encoder,
                "encoder_gflops": gflops,
                "sgemm_gflops_per_s": rate, "sgemm_sustained_gflops_per_s": sustained, "decoder_seconds": decoder,
                "peak_rss_mb": usage.ru_maxrss / 1024, "threads": threads,
                "gemm": GEMMKernel.current.rawValue, "openblas_core": GEMMKernel.openBLASCore,
            ])
        } else {
            print("ours peak RSS \(usage.ru_maxrss / 1024) MB")
        }
        if let python = referencePython {
            try runReference(
                python: python, script: "bench_sam_torch.py",
                arguments: [model, String(threads), String(encoderRepeats), "3"])
        }
    }
}

extension Precision: ExpressibleByArgument {}

/// `precision=bf16` beside fp32 on one model: encoder times, the embedding's and the decoder logits' relative error,
/// and how many mask pixels agree. Needs a CPU with AVX512-BF16. Without `--model` it writes a random-init model
/// of a published size (segment_anything's initialisation: linear and conv weights uniform in ±1/√fan-in, norms 1
/// and 0, position tables 0), so that it runs where no checkpoint can be copied.
struct BF16Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bf16", abstract: "SAM image encoder in bf16 beside fp32.")

    @Option(help: "A SAM checkpoint; without it, a random-init model of --random's size.")
    var model: String?

    @Option(help: "vit_b, vit_l or vit_h: the size of the random-init model made when --model is not given.")
    var random: String = "vit_b"

    @Option(help: "Threads (default: all cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Encoder repetitions per precision; the minimum is reported.")
    var repeats: Int = 3

    @Option(help: "Boxes decoded on each embedding for the mask comparison.")
    var boxes: Int = 20

    func run() throws {
        Threading.count = threads
        if let refusal = Precision.bf16Refusal { throw ValidationError(refusal) }
        let path = try model ?? Self.randomModel(random)
        let fp32 = try SamPredictor(path: path)
        let bf16 = try SamPredictor(path: path, precision: .bf16)
        let image = Image.gradientTexture(width: 1024, height: 768)
        let time32 = minimumTime(repeats: repeats) { fp32.setImage(image) }
        let time16 = minimumTime(repeats: repeats) { bf16.setImage(image) }
        let prompts = SAMBench.boxes(boxes)
        let (a, b) = (try fp32.predict(boxes: prompts), try bf16.predict(boxes: prompts))
        var (same, total) = (0, 0)
        for (x, y) in zip(a.masks, b.masks) {
            same += zip(x.pixels, y.pixels).reduce(0) { $0 + ($1.0 == $1.1 ? 1 : 0) }
            total += x.pixels.count
        }
        let gflops = fp32.architecture.encoderGFLOPs
        printJSON([
            "variant": fp32.architecture.variant.rawValue, "threads": threads, "cpu": Precision.cpuModelName,
            "kernel": Precision.bf16Kernel ?? "none",
            "fp32_seconds": time32, "bf16_seconds": time16, "speedup": time32 / time16,
            "fp32_gflops_per_s": gflops / time32, "bf16_gflops_per_s": gflops / time16,
            "embedding_relative_error": Self.relativeError(bf16.imageEmbedding!, fp32.imageEmbedding!),
            "logits_relative_error": Self.relativeError(b.lowResLogits, a.lowResLogits),
            "mask_pixels_equal": Double(same) / Double(max(1, total)), "boxes": boxes,
            // One core's instruction rates: what the AVX512-BF16 kernel can gain at most over fp32's FMAs.
            "fp32_fma_gmacs_per_core": (Precision.dotRates?.fp32 ?? 0) / 1e9,
            "bf16_dot_gmacs_per_core": (Precision.dotRates?.bf16 ?? 0) / 1e9,
        ])
    }

    /// ‖x − y‖ / ‖y‖.
    static func relativeError(_ x: Tensor, _ y: Tensor) -> Double {
        var (difference, norm) = (0.0, 0.0)
        for (p, q) in zip(x.storage, y.storage) {
            difference += Double(p - q) * Double(p - q)
            norm += Double(q) * Double(q)
        }
        return (difference / max(norm, .leastNormalMagnitude)).squareRoot()
    }

    /// Writes a random-init SAM of a published size as safetensors in the temporary folder; returns its path.
    static func randomModel(_ name: String) throws -> String {
        guard let variant = SamArchitecture.Variant(rawValue: name),
            let architecture = SamArchitecture.published(variant)
        else {
            throw ValidationError("--random takes vit_b, vit_l or vit_h")
        }
        var header: [String: Any] = [:]
        var offset = 0
        let tensors = architecture.expectedTensors
        for (key, shape) in tensors {
            let bytes = shape.reduce(1, *) * 4
            header[key] = ["dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes]]
            offset += bytes
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while (json.count + 8) % 8 != 0 { json.append(UInt8(ascii: " ")) }
        var file = Data(count: 8)
        file.withUnsafeMutableBytes { $0.storeBytes(of: UInt64(json.count).littleEndian, as: UInt64.self) }
        file.append(json)
        var state: UInt64 = 0x2545_F491_4F6C_DD1D
        for (key, shape) in tensors {
            let count = shape.reduce(1, *)
            let isNorm =
                shape.count == 1
                && (key.contains("norm") || key.contains("neck.1") || key.contains("neck.3")
                    || key.contains("upscaling.1") || key.contains("downscaling.1") || key.contains("downscaling.4"))
            let bound: Float =
                key.contains("rel_pos") || key.contains("pos_embed")
                ? 0
                : shape.count >= 2 ? 1 / Float(shape.dropFirst().reduce(1, *)).squareRoot() : 0.02
            var values = [Float](repeating: 0, count: count)
            for i in 0..<count {
                state ^= state << 13
                state ^= state >> 7
                state ^= state << 17
                values[i] =
                    isNorm ? (key.hasSuffix("weight") ? 1 : 0) : bound * (Float(state >> 40) / Float(1 << 23) - 1)
            }
            values.withUnsafeBytes { file.append(contentsOf: $0) }
        }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(
            "autoannotate-bench-random-\(name).safetensors"
        ).path
        try file.write(to: URL(fileURLWithPath: path))
        return path
    }
}
