import Checkpoint
import Foundation
import Tensor
import XCTest

@testable import SegmentAnything

/// The mask decoder's fused output upscaling (`writeMasks`) against the reference's order of operations in float64:
/// ConvTranspose 2×2 → LayerNorm2d → GELU → ConvTranspose 2×2 → GELU on [C, H, W] maps, then each mask as the
/// hypernetwork vector times the channels. The tiny fixture model's weights; a 13 × 13 grid, so that the last
/// block of pixels is partial. Relative error ≤ 1e-5 (‖a−b‖/‖b‖): float32 rounding.
final class MaskDecoderTests: XCTestCase {
    func testFusedUpscalingMatchesConvolutionsThenMaskProduct() throws {
        let path = PredictorTests.directory.appendingPathComponent(PredictorTests.manifest.weights).path
        guard case .sam(let checkpoint) = try ModelFile.open(path: path) else { return XCTFail("not a SAM checkpoint") }
        let weights = Weights(state: checkpoint.weights)
        let decoder = try MaskDecoder(weights, checkpoint.architecture)
        let p = "mask_decoder.output_upscaling."
        let (w1, b1, g, beta, w2, b2) = (
            try weights(p + "0.weight"), try weights(p + "0.bias"), try weights(p + "1.weight"),
            try weights(p + "1.bias"), try weights(p + "3.weight"), try weights(p + "3.bias")
        )
        let (e, c1, c2, grid, masks) = (w1.shape[0], w1.shape[1], w2.shape[1], 13, 3)
        var seed: UInt64 = 7
        func random() -> Float {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Int64(bitPattern: seed >> 11) % 2000) / 1000 - 1
        }
        let keys = Tensor(shape: [1, grid * grid, e], storage: (0..<(grid * grid * e)).map { _ in random() })
        let hypers = (0..<(c2 * masks)).map { _ in random() }  // [masks, c2]

        /// ConvTranspose 2×2, stride 2: x [C, s, s] → [C', 2s, 2s].
        func transposedConvolution(_ x: [Double], side s: Int, _ w: Tensor, _ b: Tensor) -> [Double] {
            let (cin, cout) = (w.shape[0], w.shape[1])
            var y = [Double](repeating: 0, count: cout * 4 * s * s)
            for co in 0..<cout {
                for oy in 0..<(2 * s) {
                    for ox in 0..<(2 * s) {
                        var sum = Double(b.storage[co])
                        for ci in 0..<cin {
                            sum +=
                                x[(ci * s + oy / 2) * s + ox / 2]
                                * Double(w.storage[((ci * cout + co) * 2 + oy % 2) * 2 + ox % 2])
                        }
                        y[(co * 2 * s + oy) * 2 * s + ox] = sum
                    }
                }
            }
            return y
        }
        func gelu(_ v: Double) -> Double { 0.5 * v * (1 + erf(v / 2.0.squareRoot())) }

        var x = [Double](repeating: 0, count: e * grid * grid)  // [E, g, g], as the reference transposes the tokens
        for pixel in 0..<(grid * grid) {
            for c in 0..<e { x[c * grid * grid + pixel] = Double(keys.storage[pixel * e + c]) }
        }
        var up = transposedConvolution(x, side: grid, w1, b1)
        let plane = 4 * grid * grid
        for pixel in 0..<plane {
            let values = (0..<c1).map { up[$0 * plane + pixel] }
            let mean = values.reduce(0, +) / Double(c1)
            let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(c1)
            for c in 0..<c1 {
                up[c * plane + pixel] = gelu(
                    (values[c] - mean) / (variance + 1e-6).squareRoot() * Double(g.storage[c]) + Double(beta.storage[c])
                )
            }
        }
        up = transposedConvolution(up, side: 2 * grid, w2, b2).map(gelu)
        let side = 4 * grid
        var want = [Double](repeating: 0, count: masks * side * side)
        for m in 0..<masks {
            for pixel in 0..<(side * side) {
                want[m * side * side + pixel] = (0..<c2).reduce(0.0) {
                    $0 + Double(hypers[m * c2 + $1]) * up[$1 * side * side + pixel]
                }
            }
        }

        let saved = Threading.count
        defer { Threading.count = saved }
        for threads in [1, 2] {
            Threading.count = threads
            var got = [Float](repeating: .nan, count: masks * side * side)
            got.withUnsafeMutableBufferPointer { out in
                keys.withUnsafeBufferPointer { keys in
                    decoder.writeMasks(
                        grid: grid, blocks: MaskDecoder.blocks(grid: grid, content: nil), hypers: hypers,
                        into: out.baseAddress!
                    ) {
                        decoder.upscale1(keys.baseAddress! + $0.lowerBound * e, rows: $0.count, into: $1)
                    }
                }
            }
            var (difference, norm) = (0.0, 0.0)
            for (a, b) in zip(got, want) {
                difference += (Double(a) - b) * (Double(a) - b)
                norm += b * b
            }
            XCTAssertLessThanOrEqual((difference / norm).squareRoot(), 1e-5, "\(threads) threads")
        }
    }
}
