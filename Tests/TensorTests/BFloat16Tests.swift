import Tensor
import XCTest

/// `precision=bf16`: rounding to bfloat16 as PyTorch rounds (nearest, ties to even), and the AVX512-BF16 kernel
/// against a float64 product of the rounded operands — only fp32 summation error may remain (≤ 1e-5 of Σ|a·b|).
/// The kernel runs only where the CPU has AVX512-BF16; elsewhere its test is skipped and the refusal is tested.
final class BFloat16Tests: XCTestCase {
    func testRoundingIsToNearestWithTiesToEven() {
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1); just above it rounds up.
        XCTAssertEqual(Precision.roundedToBF16(1 + 0x1p-8), 1)
        XCTAssertEqual(Precision.roundedToBF16(1 + 0x1p-8 + 0x1p-20), 1 + 0x1p-7)
        XCTAssertEqual(Precision.roundedToBF16(1 + 3 * 0x1p-8), 1 + 0x1p-6)  // halfway above an odd mantissa: up
        XCTAssertEqual(Precision.roundedToBF16(-2.5), -2.5)
        XCTAssertEqual(Precision.roundedToBF16(.infinity), .infinity)
        XCTAssertTrue(Precision.roundedToBF16(.nan).isNaN)
        XCTAssertEqual(Precision.roundedToBF16(3.14159274), 3.140625)
    }

    func testKernelEqualsFloat64ProductOfRoundedOperands() throws {
        try XCTSkipUnless(Precision.bf16Supported, "this CPU has no AVX512-BF16: \(Precision.bf16Refusal ?? "")")
        // Tails of every kind: rows not a multiple of 12, columns not of 32 or 16, odd k, k beyond one 512-value block.
        for (m, n, k, transposed) in [
            (37, 45, 77, true), (12, 32, 64, false), (100, 70, 3, false), (5, 33, 1031, true), (25, 200, 513, false),
        ] {
            let a = randomTensor([m, k], seed: UInt64(m))
            let b = randomTensor(transposed ? [n, k] : [k, n], seed: UInt64(n))
            var c = randomTensor([m, n], seed: UInt64(k))
            let before = c.storage
            let packed = b.withUnsafeBufferPointer {
                PackedBF16($0.baseAddress!, ldb: transposed ? k : n, transposed: transposed, k: k, n: n)
            }
            a.withUnsafeBufferPointer { a in
                c.withUnsafeMutableBufferPointer { c in
                    gemmBF16(
                        m: m, a: a.baseAddress!, lda: k, b: packed, alpha: 0.5, c: c.baseAddress!, ldc: n,
                        accumulate: true)
                }
            }
            for i in 0..<m {
                for j in 0..<n {
                    var (sum, magnitude) = (0.0, 0.0)
                    for l in 0..<k {
                        let product =
                            Double(Precision.roundedToBF16(a.storage[i * k + l]))
                            * Double(Precision.roundedToBF16(b.storage[transposed ? j * k + l : l * n + j]))
                        sum += product
                        magnitude += abs(product)
                    }
                    let expected = 0.5 * sum + Double(before[i * n + j])
                    XCTAssertEqual(
                        Double(c.storage[i * n + j]), expected,
                        accuracy: 1e-5 * (0.5 * magnitude + abs(Double(before[i * n + j]))),
                        "\(m)×\(n)×\(k) transposed \(transposed) at (\(i), \(j))")
                }
            }
        }
    }

    func testLinearInBF16IsCloseToFP32() throws {
        try XCTSkipUnless(Precision.bf16Supported, "this CPU has no AVX512-BF16")
        let x = randomTensor([50, 96], seed: 1)
        let w = randomTensor([40, 96], seed: 2, range: -0.1...0.1)
        let bias = randomTensor([40], seed: 3)
        let exact = linear(x, weight: w, bias: bias)
        let rounded = linear(x, packedWeight: PackedBF16(linearWeight: w), bias: bias)
        let error =
            zip(exact.storage, rounded.storage).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
            / exact.storage.map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
        XCTAssertLessThan(error, 1e-2)  // bf16 has an 8-bit mantissa: ~3e-3 per operand
        XCTAssertGreaterThan(error, 0)  // and it did round
    }

    func testCautionOnlyWhereBF16DotProductsAreNotFaster() {
        let (cpu, slow, fast) = ("a CPU", (fp32: 88e9, bf16: 43e9), (fp32: 44e9, bf16: 88e9))
        let caution = Precision.bf16Caution(kernel: "AVX512-BF16", rates: slow, cpu: cpu)
        XCTAssertTrue(
            caution?.contains("43 G") == true && caution?.contains("88 G") == true
                && caution?.contains("slower") == true, caution ?? "nil")
        // Zen 4: twice the multiply-adds.
        XCTAssertNil(Precision.bf16Caution(kernel: "AVX512-BF16", rates: fast, cpu: cpu))
        XCTAssertNil(Precision.bf16Caution(kernel: "AMX", rates: slow, cpu: cpu))  // the tiles, not the dot products
        XCTAssertNil(Precision.bf16Caution(kernel: nil, rates: nil, cpu: cpu))  // refused instead
    }

    func testDotRatesAreMeasuredWhereTheCPUHasAVX512BF16() throws {
        guard let rates = Precision.dotRates else {
            XCTAssertFalse(Precision.bf16Supported)
            return
        }
        // A core does between 1 and 1,000 G multiply-adds per second with either instruction.
        for rate in [rates.fp32, rates.bf16] { XCTAssertTrue((1e9...1e12).contains(rate), "\(rates)") }
    }

    /// Refused without AVX512-BF16, or with AVX-512 turned off on a CPU that has it.
    func testRefusalNamesWhatIsMissing() throws {
        let saved = VectorInstructions.current
        defer { VectorInstructions.current = saved }
        VectorInstructions.current = .avx2
        XCTAssertFalse(Precision.bf16Supported)
        let refusal = try XCTUnwrap(Precision.bf16Refusal)
        XCTAssertTrue(refusal.contains("AVX512-BF16") && refusal.contains("precision=fp32"), refusal)
    }
}
