import Foundation
import Tensor
import XCTest

final class AttentionTests: XCTestCase {
    func naive(_ q: Tensor, _ k: Tensor, _ v: Tensor, bias: ((Int, Int, Int) -> Double)? = nil) -> [Double] {
        let (b, nq, d, nk, dv) = (q.count / (q.dim(-2) * q.dim(-1)), q.dim(-2), q.dim(-1), k.dim(-2), v.dim(-1))
        let (qd, kd, vd) = (q.doubles, k.doubles, v.doubles)
        var out = [Double](repeating: 0, count: b * nq * dv)
        for head in 0..<b {
            for i in 0..<nq {
                var scores = (0..<nk).map { j in
                    (0..<d).reduce(0.0) { $0 + qd[(head * nq + i) * d + $1] * kd[(head * nk + j) * d + $1] }
                        / Double(d).squareRoot()
                        + (bias?(head, i, j) ?? 0)
                }
                let m = scores.max()!
                scores = scores.map { exp($0 - m) }
                let sum = scores.reduce(0, +)
                for c in 0..<dv {
                    out[(head * nq + i) * dv + c] = (0..<nk).reduce(0.0) {
                        $0 + scores[$1] / sum * vd[(head * nk + $1) * dv + c]
                    }
                }
            }
        }
        return out
    }

    func testMatchesFloat64OnOddShapes() {
        for (batch, nq, nk, d, dv) in [(1, 1, 1, 1, 1), (2, 7, 13, 5, 3), (6, 49, 49, 16, 16), (2, 5, 300, 8, 4)] {
            let q = randomTensor([batch, nq, d], seed: 60)
            let k = randomTensor([batch, nk, d], seed: 61)
            let v = randomTensor([batch, nk, dv], seed: 62)
            let want = naive(q, k, v)
            forEachKernel {
                assertClose(
                    scaledDotProductAttention(query: q, key: k, value: v), want, shape: [batch, nq, dv],
                    "attention \(batch)×\(nq)×\(nk) on \(GEMMKernel.current)")
            }
        }
    }

    /// Heads interleaved in the last dimension, and batch-1 inputs shared by every batch entry, against the
    /// float64 reference on heads split out by hand.
    func testMultiHeadAttentionOnTheLinearLayoutWithSharedInputs() {
        let (heads, d, dv) = (3, 4, 2)
        for (bq, bk, tq, tk, chunk) in [(1, 1, 5, 7, 256), (4, 1, 7, 300, 256), (1, 4, 300, 7, 64), (3, 3, 9, 9, 4)] {
            let q = randomTensor([bq, tq, heads * d], seed: 80)
            let k = randomTensor([bk, tk, heads * d], seed: 81)
            let v = randomTensor([bk, tk, heads * dv], seed: 82)
            let batch = max(bq, bk)
            // [B, T, H·d] → [B·H, T, d], repeating a shared input for every entry.
            func split(_ x: Tensor, _ t: Int, _ width: Int, _ b: Int) -> Tensor {
                let split = x.reshaped([b, t, heads, width]).permuted([0, 2, 1, 3])
                return Tensor(
                    shape: [batch * heads, t, width],
                    storage: b == batch ? split.storage : Array((0..<batch).map { _ in split.storage }.joined()))
            }
            let want = naive(split(q, tq, d, bq), split(k, tk, d, bk), split(v, tk, dv, bk))
            let expected = Tensor(shape: [batch, heads, tq, dv], storage: want.map(Float.init)).permuted([0, 2, 1, 3])
            assertClose(
                multiHeadAttention(query: q, key: k, value: v, heads: heads, chunkRows: chunk), expected.doubles,
                shape: [batch, tq, heads * dv], "multi-head \(bq)/\(bk) × \(tq)×\(tk)")
        }
    }

    func testChunkedEqualsUnchunked() {
        let q = randomTensor([3, 2, 100, 16], seed: 63, range: -3...3)
        let k = randomTensor([3, 2, 90, 16], seed: 64, range: -3...3)
        let v = randomTensor([3, 2, 90, 8], seed: 65)
        let whole = scaledDotProductAttention(query: q, key: k, value: v, chunkRows: 100)
        for chunk in [1, 7, 64, 99] {
            let chunked = scaledDotProductAttention(query: q, key: k, value: v, chunkRows: chunk)
            assertClose(chunked, whole.doubles, shape: whole.shape, tolerance: 1e-6, "chunk \(chunk) vs whole")
        }
    }

    func testBiasHookSeesTheRightRowsOfEveryChunk() {
        let q = randomTensor([2, 11, 4], seed: 66)
        let k = randomTensor([2, 9, 4], seed: 67)
        let v = randomTensor([2, 9, 3], seed: 68)
        func bias(_ head: Int, _ row: Int, _ column: Int) -> Double {
            let code: Int = (head * 31 + row * 7 + column * 3) % 11
            return Double(code) / 5 - 1
        }
        let got = scaledDotProductAttention(
            query: q, key: k, value: v, chunkRows: 4,
            bias: AttentionBias { head, rows, scores, ld in
                for (r, row) in rows.enumerated() {
                    for column in 0..<9 { scores[r * ld + column] = Float(bias(head, row, column)) }
                }
            })
        assertClose(got, naive(q, k, v, bias: bias), shape: [2, 11, 3], "attention with bias")
    }

    /// A fused qkv projection's rows ([3, heads, d] each), read in place, with a bias per (entry · heads + head,
    /// query, key), against the float64 reference on q, k and v split out by hand.
    func testSelfAttentionOnAFusedProjectionWithBias() {
        let (batch, tokens, heads, d) = (2, 11, 3, 4)
        let qkv = randomTensor([batch, tokens, 3 * heads * d], seed: 83)
        func bias(_ head: Int, _ row: Int, _ column: Int) -> Double {
            let code: Int = (head * 17 + row * 5 + column * 3) % 13
            return Double(code) / 6 - 1
        }
        // [B, T, 3, H, d] → part [B·H, T, d]
        let split = qkv.reshaped([batch, tokens, 3, heads, d]).permuted([2, 0, 3, 1, 4])
        let size = batch * heads * tokens * d
        func part(_ index: Int) -> Tensor {
            Tensor(
                shape: [batch * heads, tokens, d], storage: Array(split.storage[(index * size)..<((index + 1) * size)]))
        }
        let want = naive(part(0), part(1), part(2), bias: bias)
        let expected = Tensor(shape: [batch, heads, tokens, d], storage: want.map(Float.init)).permuted([0, 2, 1, 3])
        forEachKernel {
            for chunk in [4, 256] {
                let got = selfAttention(
                    qkv: qkv, heads: heads, chunkRows: chunk,
                    bias: AttentionBias { head, rows, scores, ld in
                        for (r, row) in rows.enumerated() {
                            for column in 0..<tokens { scores[r * ld + column] = Float(bias(head, row, column)) }
                        }
                    })
                assertClose(
                    got, expected.doubles, shape: [batch, tokens, heads * d],
                    "self-attention, chunks of \(chunk) on \(GEMMKernel.current)")
            }
        }
    }

    /// SAM's windows read from the image's qkv rows (the padding tokens' from the padding row) and only the image's
    /// queries computed give the bits of partitioning by hand, `selfAttention` over the windows and cropping: with a
    /// decomposed relative-position bias (our kernel adds it as a grid, OpenBLAS's path writes it first), on a side
    /// the window divides and one it does not, in fp32 and (where the CPU has it) bf16.
    func testWindowedSelfAttentionGivesTheBitsOfPartitioning() {
        let (heads, d) = (2, 8)
        let (row, width) = (3 * heads * d, heads * d)
        for (side, w) in [(11, 4), (8, 4)] {
            let (n, tokens) = ((side + w - 1) / w, w * w)
            let qkv = randomTensor([side * side, row], seed: 90)
            let padding = randomTensor([row], seed: 91).storage
            // Window (window / n, window % n)'s token t is the image's (y, x), or padding outside it.
            func place(_ window: Int, _ t: Int) -> (y: Int, x: Int) { (window / n * w + t / w, window % n * w + t % w) }
            var windows = [Float]()
            for window in 0..<(n * n) {
                for t in 0..<tokens {
                    let (y, x) = place(window, t)
                    windows +=
                        y < side && x < side
                        ? Array(qkv.storage[((y * side + x) * row)..<((y * side + x + 1) * row)]) : padding
                }
            }
            // The bias of each window's tokens; windowedSelfAttention's numbers its image tokens in order.
            let count = n * n * heads * tokens * w
            let (h, wParts) = (randomTensor([count], seed: 92).storage, randomTensor([count], seed: 93).storage)
            var (hImage, wImage) = (h, wParts)
            for bh in 0..<(n * n * heads) {
                let columns = min(w, side - place(bh / heads, 0).x)
                for t in 0..<tokens where place(bh / heads, t).y < side && place(bh / heads, t).x < side {
                    let (from, to) = ((bh * tokens + t) * w, (bh * tokens + t / w * columns + t % w) * w)
                    hImage.replaceSubrange(to..<(to + w), with: h[from..<(from + w)])
                    wImage.replaceSubrange(to..<(to + w), with: wParts[from..<(from + w)])
                }
            }
            func bias(_ h: [Float], _ w2: [Float], _ body: (AttentionBias) -> Tensor) -> Tensor {
                h.withUnsafeBufferPointer { hp in
                    w2.withUnsafeBufferPointer { wp in
                        body(
                            .decomposedRelativePositions(
                                h: hp.baseAddress!, w: wp.baseAddress!, queries: tokens, side: w))
                    }
                }
            }
            for precision in Precision.bf16Supported ? [Precision.fp32, .bf16] : [.fp32] {
                forEachKernel {
                    // bf16 is an AVX-512 path: not run while the kernels are kept to AVX2.
                    guard precision == .fp32 || Precision.bf16Supported else { return }
                    let reference = bias(h, wParts) {
                        selfAttention(
                            qkv: Tensor(shape: [n * n, tokens, row], storage: windows), heads: heads, bias: $0,
                            precision: precision)
                    }
                    var expected = [Float](repeating: 0, count: side * side * width)
                    for window in 0..<(n * n) {
                        for t in 0..<tokens where place(window, t).y < side && place(window, t).x < side {
                            let (y, x) = place(window, t)
                            expected.replaceSubrange(
                                ((y * side + x) * width)..<((y * side + x + 1) * width),
                                with: reference.storage[
                                    ((window * tokens + t) * width)..<((window * tokens + t + 1) * width)])
                        }
                    }
                    let got = bias(hImage, wImage) {
                        windowedSelfAttention(
                            qkv: qkv, side: side, window: w, heads: heads, padding: padding, bias: $0,
                            precision: precision)
                    }
                    let label = "side \(side), window \(w), \(precision) on \(GEMMKernel.current)"
                    // OpenBLAS's sums for a row depend on the rows beside it (the windows' padding queries are not
                    // computed here): held to the kernels' tolerance there, to the bit on ours.
                    if GEMMKernel.current == .ours || precision == .bf16 {
                        XCTAssertEqual(got.shape, [side * side, width], label)
                        XCTAssertEqual(got.storage, expected, label)
                    } else {
                        assertClose(got, expected.map(Double.init), shape: [side * side, width], label)
                    }
                }
            }
        }
    }

    /// Bit for bit: a resumed job may run with another `threads=` and must write the same labels. The GEMMs
    /// are large enough to be split into blocks, in both directions.
    func testThreadCountDoesNotChangeResults() {
        let x = randomTensor([2, 16, 41, 37], seed: 69)
        let w = randomTensor([40, 16, 3, 3], seed: 70)
        let tokens = randomTensor([3, 500, 96], seed: 71)
        let weight = randomTensor([200, 96], seed: 72)
        let q = randomTensor([4, 300, 32], seed: 73)
        let kv = randomTensor([1, 700, 32], seed: 74)
        func compute() -> [Tensor] {
            var activated = conv2d(x, weight: w, geometry: .init(padding: 1))
            activated.gelu()
            return [
                conv2d(x, weight: w, geometry: .init(padding: 1)), activated, linear(tokens, weight: weight),
                linear(weight, weight: tokens.reshaped([1500, 96])),
                multiHeadAttention(query: q, key: kv, value: kv, heads: 4),
            ]
        }
        let saved = Threading.count
        defer { Threading.count = saved }
        forEachKernel {
            var results: [[Tensor]] = []
            for threads in [1, 2, 3] {
                Threading.count = threads
                results.append(compute())
            }
            for (i, result) in results.enumerated().dropFirst() {
                for (a, b) in zip(result, results[0]) {
                    XCTAssertEqual(
                        a.storage, b.storage, "\(i + 1) threads vs 1, shape \(a.shape), \(GEMMKernel.current)")
                }
            }
        }
    }
}
