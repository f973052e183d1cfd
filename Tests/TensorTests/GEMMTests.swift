import Tensor
import XCTest

final class GEMMTests: XCTestCase {
    func naive(_ a: [Double], _ b: [Double], m: Int, n: Int, k: Int, transA: Bool, transB: Bool) -> [Double] {
        var c = [Double](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for p in 0..<k { s += (transA ? a[p * m + i] : a[i * k + p]) * (transB ? b[j * k + p] : b[p * n + j]) }
                c[i * n + j] = s
            }
        }
        return c
    }

    func testEveryTransposeOnOddShapesMatchesFloat64() {
        for (m, n, k) in [(1, 1, 1), (7, 13, 5), (33, 17, 65), (2, 96, 300)] {
            for transA in [false, true] {
                for transB in [false, true] {
                    let a = randomTensor(transA ? [k, m] : [m, k], seed: 1), b = randomTensor(transB ? [n, k] : [k, n], seed: 2)
                    var c = Tensor(zeros: [m, n])
                    a.withUnsafeBufferPointer { a in
                        b.withUnsafeBufferPointer { b in
                            c.withUnsafeMutableBufferPointer { c in
                                gemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a.baseAddress!, lda: transA ? m : k,
                                     b: b.baseAddress!, ldb: transB ? k : n, c: c.baseAddress!, ldc: n)
                            }
                        }
                    }
                    assertClose(c, naive(a.doubles, b.doubles, m: m, n: n, k: k, transA: transA, transB: transB),
                                shape: [m, n], "gemm \(m)×\(n)×\(k) tA=\(transA) tB=\(transB)")
                }
            }
        }
    }

    func testAlphaAndBetaAccumulate() {
        let (m, n, k) = (5, 6, 7)
        let a = randomTensor([m, k], seed: 3), b = randomTensor([k, n], seed: 4)
        var c = randomTensor([m, n], seed: 5)
        let before = c.doubles
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                c.withUnsafeMutableBufferPointer { c in
                    gemm(m: m, n: n, k: k, alpha: 0.5, a: a.baseAddress!, lda: k, b: b.baseAddress!, ldb: n, beta: 2,
                         c: c.baseAddress!, ldc: n)
                }
            }
        }
        let product = naive(a.doubles, b.doubles, m: m, n: n, k: k, transA: false, transB: false)
        assertClose(c, zip(product, before).map { 0.5 * $0 + 2 * $1 }, shape: [m, n], "alpha/beta")
    }

    func testBatchedMatmulWithAndWithoutTransposedOther() {
        let a = randomTensor([3, 2, 7, 9], seed: 6), b = randomTensor([3, 2, 9, 4], seed: 7)
        let bt = b.permuted([0, 1, 3, 2])
        var expected: [Double] = []
        for batch in 0..<6 {
            expected += naive(Array(a.doubles[(batch * 63)..<((batch + 1) * 63)]), Array(b.doubles[(batch * 36)..<((batch + 1) * 36)]),
                              m: 7, n: 4, k: 9, transA: false, transB: false)
        }
        assertClose(a.matmul(b), expected, shape: [3, 2, 7, 4], "matmul")
        assertClose(a.matmul(bt, transposeOther: true), expected, shape: [3, 2, 7, 4], "matmul transposed")
    }

    func testLinearMatchesFloat64WithAndWithoutBias() {
        let x = randomTensor([2, 5, 13], seed: 8), w = randomTensor([7, 13], seed: 9), b = randomTensor([7], seed: 10)
        let (xd, wd) = (x.doubles, w.doubles)
        var expected = [Double](repeating: 0, count: 10 * 7)
        for row in 0..<10 { for o in 0..<7 { for i in 0..<13 { expected[row * 7 + o] += xd[row * 13 + i] * wd[o * 13 + i] } } }
        assertClose(linear(x, weight: w), expected, shape: [2, 5, 7], "linear without bias")
        assertClose(linear(x, weight: w, bias: b), expected.enumerated().map { $0.element + b.doubles[$0.offset % 7] },
                    shape: [2, 5, 7], "linear with bias")
    }

    func testPermuteMatchesIndexArithmetic() {
        let x = randomTensor([2, 3, 4, 5], seed: 11)
        let y = x.permuted([2, 0, 3, 1])
        XCTAssertEqual(y.shape, [4, 2, 5, 3])
        for a in 0..<2 { for b in 0..<3 { for c in 0..<4 { for d in 0..<5 {
            XCTAssertEqual(y.storage[((c * 2 + a) * 5 + d) * 3 + b], x.storage[((a * 3 + b) * 4 + c) * 5 + d])
        } } } }
    }
}
