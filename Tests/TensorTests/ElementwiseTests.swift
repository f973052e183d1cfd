import CKernels
import Foundation
import Tensor
import XCTest

final class ElementwiseTests: XCTestCase {
    /// The exp and erf polynomials behind these (and their AVX2 build where the CPU has one), over their whole
    /// useful range and lengths that are not multiples of the vector width.
    func testActivationsMatchFloat64() {
        for (shape, range): ([Int], ClosedRange<Float>) in [
            ([3, 7, 13], -8...8), ([65_537], -20...20), ([1, 5], -90...90),
        ] {
            checkActivations(randomTensor(shape, seed: 40, range: range))
        }
    }

    func checkActivations(_ x: Tensor) {
        var gelu = x
        var silu = x
        var sigmoid = x
        var relu = x
        gelu.gelu()
        silu.silu()
        sigmoid.sigmoid()
        relu.relu()
        assertClose(gelu, x.doubles.map { 0.5 * $0 * (1 + erf($0 / 2.0.squareRoot())) }, shape: x.shape, "gelu")
        assertClose(silu, x.doubles.map { $0 / (1 + exp(-$0)) }, shape: x.shape, "silu")
        assertClose(sigmoid, x.doubles.map { 1 / (1 + exp(-$0)) }, shape: x.shape, "sigmoid")
        assertClose(relu, x.doubles.map { max($0, 0) }, shape: x.shape, "relu")
    }

    /// Sums where one operand repeats along the leading dimensions: short and long periods, either order.
    func testAddingRepeatsTheSmallerOperand() {
        for (large, small) in [
            ([5, 7], [5, 7]), ([5, 300, 256], [1, 300, 256]), ([300, 256], [256]), ([3, 70_001], [70_001]),
            ([2, 3], [1]),
        ] {
            let a = randomTensor(large, seed: 45)
            let b = randomTensor(small, seed: 46)
            let (x, y) = (a.doubles, b.doubles)
            let want = x.indices.map { x[$0] + y[$0 % y.count] }
            assertClose(a.adding(b), want, shape: large, "\(large) + \(small)")
            assertClose(b.adding(a), want, shape: large, "\(small) + \(large)")
        }
    }

    func testSoftmaxIsStableForLargeLogits() {
        for shape in [[1, 1], [7, 13], [2, 3, 4096]] {
            var x = randomTensor(shape, seed: 41, range: -50...50)
            x.storage[0] = 1000  // would overflow exp without max subtraction
            let d = x.doubles
            let c = shape.last!
            var want = [Double](repeating: 0, count: d.count)
            for row in 0..<(d.count / c) {
                let slice = d[(row * c)..<((row + 1) * c)]
                let m = slice.max()!
                let sum = slice.map { exp($0 - m) }.reduce(0, +)
                for i in 0..<c { want[row * c + i] = exp(d[row * c + i] - m) / sum }
            }
            x.softmaxLastDim()
            assertClose(x, want, shape: shape, "softmax \(shape)")
        }
    }

    /// Attention's softmax numerators (hand-written where the CPU has AVX-512, one pass for the exponentials and
    /// their sum) times each row's 1 / Σ give the bits of the softmax itself (the generic loops' build), at row
    /// lengths around the vector width and the 64 partial sums, with a row stride past the row and a logit that the
    /// exponential's lower clamp catches.
    func testSoftmaxNumeratorsGiveTheSoftmaxBits() {
        for n in [1, 15, 16, 17, 63, 64, 100, 196, 4096] {
            let (rows, stride) = (16, n + 5)
            var x = randomTensor([rows * stride], seed: 47, range: -90...90).storage
            x[n / 2] = -1000
            var softmax = x
            var inverse = [Float](repeating: 0, count: rows)
            ck_softmax_numerators(&x, rows, n, stride, &inverse)
            ck_softmax_rows(&softmax, rows, n, stride)
            for r in 0..<rows {
                let numerators = (0..<n).map { x[r * stride + $0] * inverse[r] }
                let want = Array(softmax[(r * stride)..<(r * stride + n)])
                XCTAssertEqual(numerators, want, "row \(r) of \(n)")
            }
        }
    }

    func testLayerNormOverLastDimension() {
        for shape in [[1, 1], [7, 13], [2, 5, 768]] {
            let x = randomTensor(shape, seed: 42, range: -3...5)
            let c = shape.last!
            let g = randomTensor([c], seed: 43)
            let b = randomTensor([c], seed: 44)
            let d = x.doubles
            var want = [Double](repeating: 0, count: d.count)
            for row in 0..<(d.count / c) {
                let slice = Array(d[(row * c)..<((row + 1) * c)])
                let mean = slice.reduce(0, +) / Double(c)
                let variance = slice.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(c)
                for i in 0..<c {
                    want[row * c + i] =
                        (slice[i] - mean) / (variance + 1e-6).squareRoot() * Double(g.storage[i]) + Double(b.storage[i])
                }
            }
            assertClose(layerNorm(x, weight: g, bias: b, eps: 1e-6), want, shape: shape, "layerNorm \(shape)")
        }
    }

    /// Swapping the last two axes (tiled transposes) against indexing, for sizes off the 32-wide tiles.
    func testSwappingTheLastTwoAxesMatchesIndexing() {
        for shape in [[3, 1], [2, 37, 45], [1, 256, 64]] {
            let x = randomTensor(shape, seed: 45)
            let (rows, columns) = (shape[shape.count - 2], shape[shape.count - 1])
            let y = x.permuted(shape.count == 2 ? [1, 0] : [0, 2, 1])
            XCTAssertEqual(y.shape, Array(shape.dropLast(2)) + [columns, rows])
            for b in 0..<(x.count / (rows * columns)) {
                for i in 0..<rows {
                    for j in 0..<columns {
                        XCTAssertEqual(
                            y.storage[(b * columns + j) * rows + i], x.storage[(b * rows + i) * columns + j],
                            "\(shape) at \(b), \(i), \(j)")
                    }
                }
            }
        }
    }

    func testLayerNorm2dAcrossChannels() {
        for (n, c, h, w) in [(1, 1, 1, 1), (2, 5, 7, 13), (1, 16, 19, 23)] {
            let x = randomTensor([n, c, h, w], seed: 45, range: -2...6)
            let g = randomTensor([c], seed: 46)
            let b = randomTensor([c], seed: 47)
            let d = x.doubles
            let plane = h * w
            var want = [Double](repeating: 0, count: d.count)
            for image in 0..<n {
                for p in 0..<plane {
                    let values = (0..<c).map { d[(image * c + $0) * plane + p] }
                    let mean = values.reduce(0, +) / Double(c)
                    let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(c)
                    for ch in 0..<c {
                        want[(image * c + ch) * plane + p] =
                            (values[ch] - mean) / (variance + 1e-6).squareRoot() * Double(g.storage[ch])
                            + Double(b.storage[ch])
                    }
                }
            }
            assertClose(
                layerNorm2d(x, weight: g, bias: b, eps: 1e-6), want, shape: [n, c, h, w], "layerNorm2d \([n, c, h, w])")
        }
    }

    func testMaxPoolPadsWithNegativeInfinity() {
        for (kernel, stride, padding) in [(5, 1, 2), (2, 2, 0), (3, 2, 1)] {
            let x = randomTensor([2, 3, 7, 13], seed: 48, range: -5 ... -1)  // all negative: zero padding would show
            let (h, w, xd) = (7, 13, x.doubles)
            let ho = (h + 2 * padding - kernel) / stride + 1
            let wo = (w + 2 * padding - kernel) / stride + 1
            var want = [Double](repeating: 0, count: 6 * ho * wo)
            for plane in 0..<6 {
                for oy in 0..<ho {
                    for ox in 0..<wo {
                        var m = -Double.infinity
                        for ky in 0..<kernel {
                            for kx in 0..<kernel {
                                let iy = oy * stride - padding + ky
                                let ix = ox * stride - padding + kx
                                if iy >= 0, iy < h, ix >= 0, ix < w { m = max(m, xd[(plane * h + iy) * w + ix]) }
                            }
                        }
                        want[(plane * ho + oy) * wo + ox] = m
                    }
                }
            }
            assertClose(
                maxPool2d(x, kernel: kernel, stride: stride, padding: padding), want, shape: [2, 3, ho, wo],
                "maxPool k\(kernel) s\(stride) p\(padding)")
        }
    }

    func testNearestUpsampleRepeatsPixels() {
        let x = randomTensor([2, 3, 5, 7], seed: 49)
        let xd = x.doubles
        let want = (0..<(6 * 10 * 14)).map { i -> Double in
            let (plane, y, xo) = (i / 140, (i / 14) % 10, i % 14)
            return xd[(plane * 5 + y / 2) * 7 + xo / 2]
        }
        assertClose(upsampleNearest(x, factor: 2), want, shape: [2, 3, 10, 14], "upsample ×2")
    }

    /// `F.interpolate(mode="bilinear", align_corners=False)` from PyTorch's formula (UpSampleKernel.cpp).
    func testBilinearResizeMatchesPyTorchFormula() {
        for (h, w, oh, ow) in [(7, 13, 20, 9), (64, 64, 256, 256), (256, 256, 47, 61), (1, 1, 3, 2), (5, 3, 5, 3)] {
            let x = randomTensor([2, 2, h, w], seed: 50)
            let xd = x.doubles
            // PyTorch computes the source coordinate in float (opmath of float32), the blend in the reference
            // is float64: the coordinate rounding is part of the definition we match.
            func taps(_ input: Int, _ output: Int, _ o: Int) -> (Int, Int, Double) {
                let source = max(Float(input) / Float(output) * (Float(o) + 0.5) - 0.5, 0)
                let i0 = min(Int(source), input - 1)
                return (i0, min(i0 + 1, input - 1), Double(source - Float(i0)))
            }
            var want = [Double](repeating: 0, count: 4 * oh * ow)
            for plane in 0..<4 {
                for oy in 0..<oh {
                    for ox in 0..<ow {
                        let (y0, y1, ly) = taps(h, oh, oy)
                        let (x0, x1, lx) = taps(w, ow, ox)
                        func v(_ y: Int, _ xx: Int) -> Double { xd[(plane * h + y) * w + xx] }
                        want[(plane * oh + oy) * ow + ox] =
                            (1 - ly) * ((1 - lx) * v(y0, x0) + lx * v(y0, x1)) + ly
                            * ((1 - lx) * v(y1, x0) + lx * v(y1, x1))
                    }
                }
            }
            assertClose(
                resizeBilinear(x, height: oh, width: ow), want, shape: [2, 2, oh, ow],
                "bilinear \(h)×\(w) → \(oh)×\(ow)")
        }
    }
}

/// Half-precision weights (Ultralytics' checkpoints) to Float: every one of the 65,536 bit patterns, equal to Swift's
/// own `Float(Float16)` (NaNs stay NaN), through the 8-wide path and, in runs of 7, the one-by-one path.
final class HalfConversionTests: XCTestCase {
    func testEveryHalfBitPatternConvertsExactly() {
        let patterns = (0...UInt16.max).map { $0 }
        let want = patterns.map { Float(Float16(bitPattern: $0)) }
        patterns.withUnsafeBytes { bytes in
            let whole = floatsFromHalves(bytes.baseAddress!, count: patterns.count)
            var inRuns = [Float]()
            for start in stride(from: 0, to: patterns.count, by: 7) {
                inRuns += floatsFromHalves(bytes.baseAddress! + 2 * start, count: min(7, patterns.count - start))
            }
            for (name, got) in [("8-wide", whole), ("one by one", inRuns)] {
                XCTAssertEqual(got.count, want.count)
                let wrong = zip(got, want).enumerated().filter { _, pair in
                    pair.1.isNaN ? !pair.0.isNaN : pair.0.bitPattern != pair.1.bitPattern
                }
                XCTAssertTrue(
                    wrong.isEmpty,
                    "\(name): \(wrong.count) patterns differ, first 0x\(String(wrong.first?.offset ?? 0, radix: 16))")
            }
        }
    }
}
