import CKernels
import Foundation
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

    func testEveryTransposeOnOddShapesMatchesFloat64() { forEachKernel(everyTransposeOnOddShapes) }

    func everyTransposeOnOddShapes() {
        // Our kernel's edges: 6-row and 16-column tiles, 256-deep slices of k, 144-row blocks, 3072-column blocks.
        for (m, n, k) in [(1, 1, 1), (7, 13, 5), (33, 17, 65), (2, 96, 300), (150, 35, 513), (7, 3090, 20)] {
            for transA in [false, true] {
                for transB in [false, true] {
                    let a = randomTensor(transA ? [k, m] : [m, k], seed: 1)
                    let b = randomTensor(transB ? [n, k] : [k, n], seed: 2)
                    var c = Tensor(zeros: [m, n])
                    a.withUnsafeBufferPointer { a in
                        b.withUnsafeBufferPointer { b in
                            c.withUnsafeMutableBufferPointer { c in
                                gemm(
                                    transA: transA, transB: transB, m: m, n: n, k: k, a: a.baseAddress!,
                                    lda: transA ? m : k,
                                    b: b.baseAddress!, ldb: transB ? k : n, c: c.baseAddress!, ldc: n)
                            }
                        }
                    }
                    assertClose(
                        c, naive(a.doubles, b.doubles, m: m, n: n, k: k, transA: transA, transB: transB),
                        shape: [m, n], "gemm \(m)×\(n)×\(k) tA=\(transA) tB=\(transB) on \(GEMMKernel.current)")
                }
            }
        }
    }

    func testAlphaAndBetaAccumulate() {
        forEachKernel {
            // k = 600 runs three slices through our kernel: beta applies once, alpha to each slice's sums.
            for (m, n, k, beta) in [(5, 6, 7, Float(2)), (13, 40, 600, 2), (13, 40, 600, 1), (8, 17, 300, 0)] {
                let a = randomTensor([m, k], seed: 3)
                let b = randomTensor([k, n], seed: 4)
                var c = randomTensor([m, n], seed: 5)
                let before = c.doubles
                a.withUnsafeBufferPointer { a in
                    b.withUnsafeBufferPointer { b in
                        c.withUnsafeMutableBufferPointer { c in
                            gemm(
                                m: m, n: n, k: k, alpha: 0.5, a: a.baseAddress!, lda: k, b: b.baseAddress!, ldb: n,
                                beta: beta,
                                c: c.baseAddress!, ldc: n)
                        }
                    }
                }
                let product = naive(a.doubles, b.doubles, m: m, n: n, k: k, transA: false, transB: false)
                assertClose(
                    c, zip(product, before).map { 0.5 * $0 + Double(beta) * $1 }, shape: [m, n],
                    "alpha/beta \(m)×\(n)×\(k) beta \(beta) on \(GEMMKernel.current)")
            }
        }
    }

    /// Our kernel sums every element in the same order whatever block of C computes it, so the threads may cut C
    /// any way: a product cut into uneven blocks, or with B packed ahead, has the bits of the whole call.
    func testOurKernelGivesTheSameBitsForAnyCutAndForPackedOperands() throws {
        try XCTSkipIf(
            ck_sgemm_supported() == 0,
            "our kernel does not run on this CPU (it needs AVX2 and FMA): OpenBLAS runs every product")
        let (m, n, k) = (301, 75, 530)  // one call over 2 blocks of rows (> 288); the cuts below each in one
        let a = randomTensor([m, k], seed: 12)
        let b = randomTensor([n, k], seed: 13)  // B stored transposed, as a weight
        let initial = randomTensor([m, n], seed: 14)
        func run(_ cuts: [(Int, Int, Int, Int)], packB: Bool = false) -> [Float] {
            var c = initial.storage
            a.withUnsafeBufferPointer { a in
                b.withUnsafeBufferPointer { b in
                    var left = ck_operand(data: a.baseAddress, row: k, col: 1, packed: nil, patches: nil)
                    var right = ck_operand(data: b.baseAddress, row: 1, col: k, packed: nil, patches: nil)
                    var packed = [Float](repeating: .nan, count: ck_sgemm_packed_b_count(k, n))
                    if packB { ck_sgemm_pack_b(&right, k, n, &packed) }
                    packed.withUnsafeBufferPointer { packed in
                        if packB {
                            right = ck_operand(data: nil, row: 0, col: 0, packed: packed.baseAddress, patches: nil)
                        }
                        for (m0, m1, n0, n1) in cuts {
                            XCTAssertEqual(ck_sgemm(m, n, k, 0.75, &left, &right, 1.5, &c, n, m0, m1, n0, n1, nil), 0)
                        }
                    }
                }
            }
            return c
        }
        let whole = run([(0, m, 0, n)])
        var expected = naive(a.doubles, b.doubles, m: m, n: n, k: k, transA: false, transB: true)
        for i in expected.indices { expected[i] = 0.75 * expected[i] + 1.5 * Double(initial.storage[i]) }
        assertClose(Tensor(shape: [m, n], storage: whole), expected, shape: [m, n], "whole call")
        XCTAssertEqual(
            run([(0, 5, 0, n), (5, 150, 0, 33), (5, 150, 33, n), (150, m, 0, 1), (150, m, 1, n)]), whole, "uneven cut")
        XCTAssertEqual(run([(0, 72, 0, n), (72, m, 0, 48), (72, m, 48, n)], packB: true), whole, "packed B")
        // Blocks one or two tile pairs wide read A in place (with AVX-512): over several blocks of rows and one.
        XCTAssertEqual(run([(0, m, 0, 32), (0, 150, 32, 64), (150, m, 32, 64), (0, m, 64, n)]), whole, "A in place")
        XCTAssertEqual(run([(0, 7, 0, 64), (7, m, 0, 64), (0, m, 64, n)], packB: true), whole, "A in place, packed B")
        // And through `gemm` at any thread count.
        for threads in [1, 2, 3] {
            XCTAssertEqual(
                gemmOnOurKernel(threads: threads, a, b, transB: true, m: m, n: n, k: k, c: initial), whole,
                "gemm with \(threads) threads")
        }
    }

    /// C = 0.75 · A·op(B) + 1.5 · C through `gemm` on our kernel with `threads` threads.
    func gemmOnOurKernel(
        threads: Int, _ a: Tensor, _ b: Tensor, transB: Bool, m: Int, n: Int, k: Int, c initial: Tensor
    ) -> [Float] {
        let saved = Threading.count
        Threading.count = threads
        defer { Threading.count = saved }
        var c = initial
        onOurKernel {
            withBuffers([a, b]) { p in
                c.withUnsafeMutableBufferPointer { c in
                    gemm(
                        transB: transB, m: m, n: n, k: k, alpha: 0.75, a: p[0], lda: k, b: p[1], ldb: transB ? k : n,
                        beta: 1.5, c: c.baseAddress!, ldc: n)
                }
            }
        }
        return c.storage
    }

    /// A large product shared by row blocks (`ck_sgemm_shared_rows`: each thread takes the next block of rows of each
    /// phase as it goes) gives the bits of one ck_sgemm call, whichever thread ran which block: over two column
    /// blocks of B and three slices of k, with B packed and not, a column bias and a residual — run by 1, 2 and 3
    /// threads at once, and by `gemm` on 2 threads.
    func testSharedRowsGiveTheBitsOfOneCall() throws {
        try XCTSkipIf(
            ck_sgemm_supported() == 0,
            "our kernel does not run on this CPU (it needs AVX2 and FMA): OpenBLAS runs every product")
        let (m, n, k) = (1_200, 3_100, 530)  // 9 blocks of 144 rows (the last 48), 2 blocks of columns, 3 slices
        let a = randomTensor([m, k], seed: 21)
        let b = randomTensor([k, n], seed: 22)
        let bias = randomTensor([n], seed: 23)
        let residual = randomTensor([m, n], seed: 24)
        let initial = randomTensor([m, n], seed: 25)
        var packed = [Float](repeating: .nan, count: ck_sgemm_packed_b_count(k, n))
        func run(threads: Int, packB: Bool, epilogue: Bool) -> [Float] {
            var c = initial.storage
            withBuffers([a, b, bias, residual]) { p in
                let left = ck_operand(data: p[0], row: k, col: 1, packed: nil, patches: nil)
                var right = ck_operand(data: p[1], row: n, col: 1, packed: nil, patches: nil)
                if packB { ck_sgemm_pack_b(&right, k, n, &packed) }
                packed.withUnsafeBufferPointer { packed in
                    if packB { right = ck_operand(data: nil, row: 0, col: 0, packed: packed.baseAddress, patches: nil) }
                    var finish = ck_epilogue()
                    (finish.col_bias, finish.residual, finish.ldr) = (p[2], p[3], n)
                    let (l, r, f) = (copied(left), copied(right), copied(finish))
                    defer {
                        l.deallocate()
                        r.deallocate()
                        f.deallocate()
                    }
                    c.withUnsafeMutableBufferPointer { c in
                        // Unchecked: the epilogue is only read by the threads below.
                        nonisolated(unsafe) let e = epilogue ? UnsafePointer(f) : nil
                        if threads == 0 {
                            XCTAssertEqual(ck_sgemm(m, n, k, 0.75, l, r, 1.5, c.baseAddress, n, 0, m, 0, n, e), 0)
                            return
                        }
                        // Unchecked: the threads take disjoint row blocks of C from `work`.
                        nonisolated(unsafe) let work = ck_shared_rows_create(m, n, k)
                        defer { ck_shared_rows_free(work) }
                        // Unchecked: the operands are only read; each thread writes the row blocks it takes.
                        nonisolated(unsafe) let (l, r, output) = (l, r, c.baseAddress)
                        DispatchQueue.concurrentPerform(iterations: threads) { _ in
                            XCTAssertEqual(ck_sgemm_shared_rows(m, n, k, 0.75, l, r, 1.5, output, n, e, work), 0)
                        }
                    }
                }
            }
            return c
        }
        for epilogue in [false, true] {
            let whole = run(threads: 0, packB: false, epilogue: epilogue)
            for threads in [1, 2, 3] {
                XCTAssertEqual(
                    differing(run(threads: threads, packB: false, epilogue: epilogue), whole), 0,
                    "\(threads) threads, epilogue \(epilogue)")
            }
            XCTAssertEqual(
                differing(run(threads: 2, packB: true, epilogue: epilogue), whole), 0, "packed B, epilogue \(epilogue)")
        }
        // `gemm` hands a product this large to the shared blocks on 2 threads.
        XCTAssertEqual(
            differing(
                gemmOnOurKernel(threads: 2, a, b, transB: false, m: m, n: n, k: k, c: initial),
                run(threads: 0, packB: false, epilogue: false)), 0, "gemm on 2 threads")
    }

    /// A copy of `value` at a pointer of its own (for C calls from several threads; deallocate it).
    func copied<T>(_ value: T) -> UnsafeMutablePointer<T> {
        let p = UnsafeMutablePointer<T>.allocate(capacity: 1)
        p.initialize(to: value)
        return p
    }

    /// How many elements of two equally long arrays differ in their bits.
    func differing(_ x: [Float], _ y: [Float]) -> Int { zip(x, y).filter { $0.bitPattern != $1.bitPattern }.count }

    /// A grid's parts as the epilogue's start (SAM's relative positions: h[i, j / s] + w[i, j % s]) give the bits of
    /// the parts written into C first and the product added onto them (beta 1): added by the 12 × 32 tiles as they
    /// finish where each lies in one grid row, else written first by ck_sgemm itself — a grid of 14, or a cut
    /// 16 columns into one of 32 — over one slice of k and two, a block of rows with an edge tile and several.
    func testGridEpilogueGivesTheBitsOfThePartsWrittenFirst() throws {
        try XCTSkipIf(ck_sgemm_supported() == 0, "our kernel does not run on this CPU (it needs AVX2 and FMA)")
        for (m, side, k) in [(13, 32, 70), (301, 32, 300), (13, 14, 70)] {
            let n = side * side
            let a = randomTensor([m, k], seed: 15)
            let b = randomTensor([k, n], seed: 16)
            let h = randomTensor([m, side], seed: 17, range: -3...3)
            let w = randomTensor([m, side], seed: 18, range: -3...3)
            var parts = [Float](repeating: 0, count: m * n)
            for i in 0..<m {
                for j in 0..<n { parts[i * n + j] = h.storage[i * side + j / side] + w.storage[i * side + j % side] }
            }
            func run(_ cuts: [(Int, Int, Int, Int)], grid: Bool) -> [Float] {
                var c = grid ? [Float](repeating: .nan, count: m * n) : parts
                withBuffers([a, b, h, w]) { p in
                    var left = ck_operand(data: p[0], row: k, col: 1, packed: nil, patches: nil)
                    var right = ck_operand(data: p[1], row: n, col: 1, packed: nil, patches: nil)
                    var epilogue = ck_epilogue()
                    (epilogue.grid_h, epilogue.grid_w, epilogue.grid_side) = (p[2], p[3], side)
                    withUnsafePointer(to: epilogue) { epilogue in
                        for (m0, m1, n0, n1) in cuts {
                            XCTAssertEqual(
                                ck_sgemm(
                                    m, n, k, 0.5, &left, &right, grid ? 0 : 1, &c, n, m0, m1, n0, n1,
                                    grid ? epilogue : nil), 0)
                        }
                    }
                }
                return c
            }
            let want = run([(0, m, 0, n)], grid: false)
            XCTAssertEqual(run([(0, m, 0, n)], grid: true), want, "\(m) rows, grid of \(side), k \(k)")
            XCTAssertEqual(
                run([(0, 7, 0, n), (7, m, 0, 32), (7, m, 32, n)], grid: true), want, "cut in 32s, grid of \(side)")
            XCTAssertEqual(run([(0, m, 0, 16), (0, m, 16, n)], grid: true), want, "cut 16 columns in, grid of \(side)")
        }
    }

    func testBatchedMatmulWithAndWithoutTransposedOther() { forEachKernel(batchedMatmul) }

    func batchedMatmul() {
        let a = randomTensor([3, 2, 7, 9], seed: 6)
        let b = randomTensor([3, 2, 9, 4], seed: 7)
        let bt = b.permuted([0, 1, 3, 2])
        var expected: [Double] = []
        for batch in 0..<6 {
            expected += naive(
                Array(a.doubles[(batch * 63)..<((batch + 1) * 63)]),
                Array(b.doubles[(batch * 36)..<((batch + 1) * 36)]),
                m: 7, n: 4, k: 9, transA: false, transB: false)
        }
        assertClose(a.matmul(b), expected, shape: [3, 2, 7, 4], "matmul")
        assertClose(a.matmul(bt, transposeOther: true), expected, shape: [3, 2, 7, 4], "matmul transposed")
    }

    func testLinearMatchesFloat64WithAndWithoutBias() { forEachKernel(linearWithAndWithoutBias) }

    /// A residual and GELU applied by a linear layer (by our kernel's tiles as they store their last sums — tile pairs
    /// and an edge of 11 columns, 12-row tiles and an edge row, one slice of k and three, rows shared block by block
    /// among the threads; after the product on OpenBLAS) give the bits of the layer, then `gelu()` and `adding`.
    func testLinearWithResidualAndGELUGivesTheBitsOfApplyingThemAfter() {
        forEachKernel {
            for (rows, k) in [(301, 70), (301, 700), (1_200, 300)] {
                let x = randomTensor([rows, k], seed: 19)
                let w = randomTensor([75, k], seed: 20)
                let b = randomTensor([75], seed: 21)
                let r = randomTensor([rows, 75], seed: 22)
                let plain = linear(x, weight: w, bias: b)
                var activated = plain
                activated.gelu()
                let label = "\(rows) × \(k) on \(GEMMKernel.current)"
                XCTAssertEqual(linear(x, weight: w, bias: b, residual: r).storage, r.adding(plain).storage, label)
                XCTAssertEqual(linear(x, weight: w, bias: b, gelu: true).storage, activated.storage, label)
                XCTAssertEqual(
                    linear(x, weight: w, bias: b, gelu: true, residual: r).storage, r.adding(activated).storage, label)
            }
        }
    }

    /// Few outputs (left to `gemm`), and 35 outputs over two k slices of our kernel, whose bias starts each column as the
    /// first slice's sums are stored (a pair of panels and an edge of 3 columns, rows past a tile's edge).
    func linearWithAndWithoutBias() {
        for (batch, rows, inWidth, outWidth) in [(2, 5, 13, 7), (3, 10, 270, 35)] {
            let x = randomTensor([batch, rows, inWidth], seed: 8)
            let w = randomTensor([outWidth, inWidth], seed: 9)
            let b = randomTensor([outWidth], seed: 10)
            let (xd, wd, n) = (x.doubles, w.doubles, batch * rows)
            var expected = [Double](repeating: 0, count: n * outWidth)
            for row in 0..<n {
                for o in 0..<outWidth {
                    for i in 0..<inWidth { expected[row * outWidth + o] += xd[row * inWidth + i] * wd[o * inWidth + i] }
                }
            }
            assertClose(
                linear(x, weight: w), expected, shape: [batch, rows, outWidth],
                "linear without bias, \(outWidth) outputs")
            assertClose(
                linear(x, weight: w, bias: b),
                expected.enumerated().map { $0.element + b.doubles[$0.offset % outWidth] },
                shape: [batch, rows, outWidth], "linear with bias, \(outWidth) outputs")
        }
    }

    /// A weight packed once gives the same bits as packing it per call: few rows (a box prompt's 7 tokens), many
    /// rows over two of our kernel's k slices and several threads, and outputs too few to pack (left to `gemm`).
    func testLinearWithPackedWeightGivesTheSameBits() {
        forEachKernel {
            for (rows, inWidth, outWidth) in [(7, 256, 40), (300, 270, 35), (5, 9, 4)] {
                let x = randomTensor([rows, inWidth], seed: 11)
                let w = randomTensor([outWidth, inWidth], seed: 12)
                let b = randomTensor([outWidth], seed: 13)
                let packed = PackedLinearWeight(w)
                XCTAssertEqual(
                    linear(x, weight: w, bias: b, packed: packed).storage, linear(x, weight: w, bias: b).storage,
                    "\(rows)×\(inWidth)×\(outWidth)")
                XCTAssertEqual(
                    linear(x, weight: w, packed: packed).storage, linear(x, weight: w).storage,
                    "\(rows)×\(inWidth)×\(outWidth), no bias")
            }
        }
    }

    /// The general strided copy ([2, 0, 3, 1]) and the tiled transposes of two swapped groups of axes (SAM's
    /// encoder: [0, 2, 3, 1] and [0, 3, 1, 2]; sizes off the 32-wide tiles) against index arithmetic.
    func testPermuteMatchesIndexArithmetic() {
        let x = randomTensor([2, 3, 34, 5], seed: 11)
        for order in [[2, 0, 3, 1], [0, 2, 3, 1], [0, 3, 1, 2], [1, 2, 3, 0]] {
            let y = x.permuted(order)
            XCTAssertEqual(y.shape, order.map { x.shape[$0] })
            var index = [0, 0, 0, 0]
            for a in 0..<2 {
                for b in 0..<3 {
                    for c in 0..<34 {
                        for d in 0..<5 {
                            index = [a, b, c, d]
                            let at = order.reduce(0) { $0 * x.shape[$1] + index[$1] }
                            XCTAssertEqual(
                                y.storage[at], x.storage[((a * 3 + b) * 34 + c) * 5 + d], "\(order) at \(index)")
                        }
                    }
                }
            }
        }
    }
}
