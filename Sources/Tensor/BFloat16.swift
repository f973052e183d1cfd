import CKernels
import Foundation

/// The arithmetic of a model's large matrix products. `bf16` rounds both operands of each product to bfloat16
/// (round to nearest even) and sums in fp32 — what PyTorch's CPU autocast does — on the CPU's AVX512-BF16
/// instructions; everything else (norms, softmax, activations, small products) stays fp32.
public enum Precision: String, Codable, Sendable, CaseIterable {
    case fp32, bf16

    /// Whether this CPU runs `bf16` products (AVX512-BF16, with AVX-512 state saved by the OS).
    public static var bf16Supported: Bool { ck_bf16_supported() != 0 }

    /// Which instructions run `bf16` products here: AMX tiles where the CPU has them, else AVX512-BF16 (nil: neither).
    public static var bf16Kernel: String? { bf16Supported ? (ck_bf16_uses_amx() != 0 ? "AMX" : "AVX512-BF16") : nil }

    /// Why `bf16` cannot run here, or nil where it can.
    public static var bf16Refusal: String? {
        guard !bf16Supported else { return nil }
        let here =
            ck_bf16_detected() != 0
            ? "it is turned off here with AVX-512 (AUTOANNOTATE_NO_AVX512)" : "this one (\(cpuModelName)) has none"
        return "precision=bf16 needs a CPU with AVX512-BF16 (Intel Cooper Lake or Sapphire Rapids and later, "
            + "AMD Zen 4 and later); \(here). Use precision=fp32."
    }

    /// One core's multiply-adds per second with fp32 FMAs and with AVX512-BF16 dot products (measured once, in a few
    /// milliseconds); nil where the CPU has no AVX512-BF16.
    public static let dotRates: (fp32: Double, bf16: Double)? = {
        var (fp32, bf16) = (0.0, 0.0)
        return ck_bf16_dot_rates(&fp32, &bf16) == 0 ? (fp32, bf16) : nil
    }()

    /// Why `bf16` will be slower here than `fp32`, or nil (see `bf16Caution(kernel:rates:cpu:)`).
    public static var bf16Caution: String? { bf16Caution(kernel: bf16Kernel, rates: dotRates, cpu: cpuModelName) }

    /// Why `bf16` will be slower than `fp32`, or nil: without AMX the products run on AVX512-BF16 dot products, which
    /// pay only where they do more multiply-adds per second than the fp32 FMAs (as on AMD Zen 4; not on Intel's
    /// cores without AMX).
    public static func bf16Caution(kernel: String?, rates: (fp32: Double, bf16: Double)?, cpu: String) -> String? {
        guard kernel == "AVX512-BF16", let rates, rates.bf16 < 1.25 * rates.fp32 else { return nil }
        return String(
            format:
                "precision=bf16 on this CPU (%@, no AMX): its bf16 dot products do %.0f G multiply-adds/s per core, "
                + "its fp32 FMAs %.0f G (%.2f×), so the image encoder will be slower than with precision=fp32; "
                + "bf16 keeps its rounding here, not its speed", cpu, rates.bf16 / 1e9, rates.fp32 / 1e9,
            rates.bf16 / rates.fp32)
    }

    /// x rounded to the nearest bfloat16 (ties to even), as a float: what `bf16` products multiply.
    public static func roundedToBF16(_ x: Float) -> Float {
        guard !x.isNaN else { return x }
        let bits = x.bitPattern
        return Float(bitPattern: (bits &+ 0x7fff &+ ((bits >> 16) & 1)) & 0xffff_0000)
    }

    /// The CPU's name as /proc/cpuinfo gives it (for messages and benchmark reports).
    public static var cpuModelName: String {
        let info = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let line = info.split(separator: "\n").first { $0.hasPrefix("model name") }
        return line.flatMap { $0.split(separator: ":", maxSplits: 1).last }.map {
            $0.trimmingCharacters(in: .whitespaces)
        } ?? "unknown CPU"
    }
}

/// A matrix B (k × n) rounded to bfloat16 and packed for `gemmBF16`, in 32-column panels of k-pairs: made once per
/// weight at load, or once per attention head.
public struct PackedBF16: Sendable {
    public let k: Int, n: Int
    let storage: [UInt32]

    /// `transposed`: B is stored n × k, row i holding column i (a Linear weight [out, in] is Bᵀ of x · Wᵀ).
    public init(_ b: UnsafePointer<Float>, ldb: Int, transposed: Bool, k: Int, n: Int) {
        (self.k, self.n) = (k, n)
        storage = [UInt32](unsafeUninitializedCapacity: ck_bf16_packed_count(k, n)) { buffer, count in
            ck_bf16_pack_b(b, ldb, transposed ? 1 : 0, k, n, buffer.baseAddress)
            count = buffer.count
        }
    }

    /// A Linear weight [out, in], packed as the B of x · Wᵀ.
    public init(linearWeight weight: Tensor) {
        precondition(weight.rank == 2, "a linear weight is [out, in], got \(weight.shape)")
        self = weight.withUnsafeBufferPointer {
            PackedBF16($0.baseAddress!, ldb: weight.shape[1], transposed: true, k: weight.shape[1], n: weight.shape[0])
        }
    }
}

/// C = alpha · A·B (+ C when `accumulate`) with A (m × k, row-major fp32, rounded to bf16 on the way) and B packed,
/// sums in fp32. Rows are split into blocks among the threads by the problem's size alone, as `gemm` splits them.
/// Needs `Precision.bf16Supported`.
public func gemmBF16(
    m: Int, a: UnsafePointer<Float>, lda: Int, b: PackedBF16, alpha: Float = 1,
    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool = false
) {
    precondition(Precision.bf16Supported, Precision.bf16Refusal ?? "")
    guard m > 0, b.n > 0 else { return }
    let strips = (m + 11) / 12  // the kernel's row tile
    let blocks = min(16, max(1, m * b.n * b.k / (1 << 22)), strips)
    b.storage.withUnsafeBufferPointer { packed in
        Threading.parallelFor(blocks) { range in
            for block in range {
                let (r0, r1) = (min(m, strips * block / blocks * 12), min(m, strips * (block + 1) / blocks * 12))
                guard r1 > r0 else { continue }
                let status = ck_bf16_gemm(
                    r1 - r0, b.n, b.k, alpha, a + r0 * lda, lda, packed.baseAddress, c + r0 * ldc, ldc,
                    accumulate ? 1 : 0)
                precondition(status == 0, "bf16 GEMM failed (\(status == -2 ? "out of memory" : "no AVX512-BF16"))")
            }
        }
    }
}

/// `linear` with a packed bf16 weight: x [..., in] · Wᵀ + b → [..., out].
public func linear(_ input: Tensor, packedWeight weight: PackedBF16, bias: Tensor? = nil) -> Tensor {
    precondition(input.dim(-1) == weight.k, "linear: input \(input.shape), weight \(weight.n)×\(weight.k)")
    precondition(bias == nil || bias!.shape == [weight.n], "linear bias must be [\(weight.n)]")
    let rows = input.count / max(1, weight.k)
    var output = Tensor(uninitialized: Array(input.shape.dropLast()) + [weight.n])
    guard output.count > 0 else { return output }
    output.withUnsafeMutableBufferPointer { y in
        if let bias { fillRows(y.baseAddress!, rows: rows, with: bias.storage) }
        input.withUnsafeBufferPointer { x in
            gemmBF16(
                m: rows, a: x.baseAddress!, lda: weight.k, b: weight, c: y.baseAddress!, ldc: weight.n,
                accumulate: bias != nil)
        }
    }
    return output
}
