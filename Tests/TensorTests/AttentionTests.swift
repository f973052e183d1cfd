import Foundation
import Tensor
import XCTest

final class AttentionTests: XCTestCase {
    func naive(_ q: Tensor, _ k: Tensor, _ v: Tensor, bias: ((Int, Int, Int) -> Double)? = nil) -> [Double] {
        let (b, nq, d, nk, dv) = (q.count / (q.dim(-2) * q.dim(-1)), q.dim(-2), q.dim(-1), k.dim(-2), v.dim(-1))
        let (qd, kd, vd) = (q.doubles, k.doubles, v.doubles)
        var out = [Double](repeating: 0, count: b * nq * dv)
        for head in 0..<b { for i in 0..<nq {
            var scores = (0..<nk).map { j in
                (0..<d).reduce(0.0) { $0 + qd[(head * nq + i) * d + $1] * kd[(head * nk + j) * d + $1] } / Double(d).squareRoot()
                    + (bias?(head, i, j) ?? 0)
            }
            let m = scores.max()!
            scores = scores.map { exp($0 - m) }
            let sum = scores.reduce(0, +)
            for c in 0..<dv { out[(head * nq + i) * dv + c] = (0..<nk).reduce(0.0) { $0 + scores[$1] / sum * vd[(head * nk + $1) * dv + c] } }
        } }
        return out
    }

    func testMatchesFloat64OnOddShapes() {
        for (batch, nq, nk, d, dv) in [(1, 1, 1, 1, 1), (2, 7, 13, 5, 3), (6, 49, 49, 16, 16), (2, 5, 300, 8, 4)] {
            let q = randomTensor([batch, nq, d], seed: 60), k = randomTensor([batch, nk, d], seed: 61), v = randomTensor([batch, nk, dv], seed: 62)
            assertClose(scaledDotProductAttention(query: q, key: k, value: v), naive(q, k, v), shape: [batch, nq, dv], "attention \(batch)×\(nq)×\(nk)")
        }
    }

    func testChunkedEqualsUnchunked() {
        let q = randomTensor([3, 2, 100, 16], seed: 63, range: -3...3), k = randomTensor([3, 2, 90, 16], seed: 64, range: -3...3)
        let v = randomTensor([3, 2, 90, 8], seed: 65)
        let whole = scaledDotProductAttention(query: q, key: k, value: v, chunkRows: 100)
        for chunk in [1, 7, 64, 99] {
            let chunked = scaledDotProductAttention(query: q, key: k, value: v, chunkRows: chunk)
            assertClose(chunked, whole.doubles, shape: whole.shape, tolerance: 1e-6, "chunk \(chunk) vs whole")
        }
    }

    func testBiasHookSeesTheRightRowsOfEveryChunk() {
        let q = randomTensor([2, 11, 4], seed: 66), k = randomTensor([2, 9, 4], seed: 67), v = randomTensor([2, 9, 3], seed: 68)
        func bias(_ head: Int, _ row: Int, _ column: Int) -> Double {
            let code: Int = (head * 31 + row * 7 + column * 3) % 11
            return Double(code) / 5 - 1
        }
        let got = scaledDotProductAttention(query: q, key: k, value: v, chunkRows: 4) { head, rows, scores, ld in
            for (r, row) in rows.enumerated() { for column in 0..<9 { scores[r * ld + column] += Float(bias(head, row, column)) } }
        }
        assertClose(got, naive(q, k, v, bias: bias), shape: [2, 11, 3], "attention with bias")
    }

    func testThreadCountDoesNotChangeResults() {
        let x = randomTensor([2, 8, 21, 17], seed: 69), w = randomTensor([8, 8, 3, 3], seed: 70)
        let saved = Threading.count
        defer { Threading.count = saved }
        Threading.count = 1
        let one = conv2d(x, weight: w, geometry: .init(padding: 1))
        var g1 = one; g1.gelu()
        Threading.count = 2
        let two = conv2d(x, weight: w, geometry: .init(padding: 1))
        var g2 = two; g2.gelu()
        assertClose(two, one.doubles, shape: one.shape, tolerance: 1e-6, "conv 1 vs 2 threads")
        assertClose(g2, g1.doubles, shape: g1.shape, tolerance: 1e-6, "gelu 1 vs 2 threads")
    }
}
