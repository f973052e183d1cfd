import CKernels
import Tensor
import XCTest

/// `attentionToFewKeys` and `attentionFromFewQueries` against the reference order of operations (project with
/// `linear`, `multiHeadAttention`, project out) at SAM's mask-decoder widths (E 256, internal 128, 8 heads, the
/// 7 tokens of a box prompt): relative error ≤ 1e-5 (‖a−b‖/‖b‖), float32 rounding of the reassociated sums.
final class FewTokenAttentionTests: XCTestCase {
    typealias Projection = (weight: Tensor, bias: Tensor)

    func projection(_ outWidth: Int, _ inWidth: Int, seed: UInt64) -> Projection {
        let scale = 1 / Float(inWidth).squareRoot()
        return (
            randomTensor([outWidth, inWidth], seed: seed, range: -scale...scale),
            randomTensor([outWidth], seed: seed + 100, range: -0.1...0.1)
        )
    }

    func relativeError(_ a: Tensor, _ b: Tensor) -> Double {
        XCTAssertEqual(a.shape, b.shape)
        var difference = 0.0
        var norm = 0.0
        for (x, y) in zip(a.storage, b.storage) {
            difference += Double(x - y) * Double(x - y)
            norm += Double(y) * Double(y)
        }
        return (difference / norm).squareRoot()
    }

    func testManyRowsToFewKeysMatchesTheReferenceOrder() {
        let (q, k, v, out) = (
            projection(128, 256, seed: 1), projection(128, 256, seed: 2), projection(128, 256, seed: 3),
            projection(256, 128, seed: 4)
        )
        let tokens = randomTensor([3, 7, 256], seed: 11, range: -2...2)
        let others = randomTensor([3, 7, 256], seed: 14)
        let (keys, values) = (
            linear(tokens, weight: k.weight, bias: k.bias), linear(others, weight: v.weight, bias: v.bias)
        )
        // Per-prompt image rows (the decoder's second layer), and one image's rows shared by three prompts (the first),
        // as rows (the query projection folded in) and as rows projected already (the decoder's first layer).
        // 1100 rows: the softmax runs in pieces of 1024 rows and 256-row blocks, both with a partial last one.
        for image in [
            randomTensor([3, 1100, 256], seed: 12, range: -2...2),
            randomTensor([1, 1100, 256], seed: 13, range: -2...2),
        ] {
            let projected = linear(image, weight: q.weight, bias: q.bias)
            let reference = linear(
                multiHeadAttention(query: projected, key: keys, value: values, heads: 8), weight: out.weight,
                bias: out.bias)
            for (query, projection) in [(image, Optional(q)), (projected, nil)] {
                let fast = attentionToFewKeys(
                    query: query, keys: keys, values: values, heads: 8, queryProjection: projection, outProjection: out)
                XCTAssertEqual(fast.shape, [3, 1100, 256])
                XCTAssertLessThanOrEqual(
                    relativeError(fast, reference), 1e-5, "image rows \(image.shape), projected: \(projection == nil)")
            }
        }
    }

    /// The factors of one prompt's update whose scores the caller computed (the decoder's later layers):
    /// probabilitiesᵀ·values + b rebuilds the attention's output in the reference order.
    func testUpdateFactorsRebuildTheReferenceOrder() {
        let (k, v, out) = (
            projection(128, 256, seed: 31), projection(128, 256, seed: 32), projection(256, 128, seed: 33)
        )
        let tokens = randomTensor([1, 7, 256], seed: 34, range: -2...2)
        let projected = randomTensor([1, 1100, 128], seed: 35, range: -2...2)
        let (keys, values) = (
            linear(tokens, weight: k.weight, bias: k.bias), linear(tokens, weight: v.weight, bias: v.bias)
        )
        var scores = Tensor(zeros: [56, 1100 + 16])
        for h in 0..<8 {
            for t in 0..<7 {
                for r in 0..<1100 {
                    var sum: Float = 0
                    for c in 0..<16 {
                        sum += keys.storage[t * 128 + h * 16 + c] * projected.storage[r * 128 + h * 16 + c]
                    }
                    scores.storage[(h * 7 + t) * 1116 + r] = sum / 4
                }
            }
        }
        let reference = linear(
            multiHeadAttention(query: projected, key: keys, value: values, heads: 8), weight: out.weight, bias: out.bias
        )
        let back = fewKeyUpdate(scores: &scores, rows: 1100, values: values, heads: 8, outWeight: out.weight)
        XCTAssertEqual(back.shape, [56, 256])
        var rebuilt = reference
        for r in 0..<1100 {
            for o in 0..<256 {
                var sum = Double(out.bias.storage[o])
                for j in 0..<56 { sum += Double(scores.storage[j * 1116 + r]) * Double(back.storage[j * 256 + o]) }
                rebuilt.storage[r * 256 + o] = Float(sum)
            }
        }
        XCTAssertLessThanOrEqual(relativeError(rebuilt, reference), 1e-5)
    }

    func testFewQueriesToManyRowsMatchesTheReferenceOrder() {
        let (q, k, v) = (projection(128, 256, seed: 21), projection(128, 256, seed: 22), projection(128, 256, seed: 23))
        let tokens = randomTensor([2, 7, 256], seed: 24, range: -2...2)
        let (key, value) = (
            randomTensor([2, 300, 256], seed: 25, range: -2...2), randomTensor([2, 300, 256], seed: 26, range: -2...2)
        )
        let queries = linear(tokens, weight: q.weight, bias: q.bias)
        let fast = attentionFromFewQueries(
            queries: queries, key: key, value: value, heads: 8, keyWeight: k.weight, valueProjection: v)
        let reference = multiHeadAttention(
            query: queries, key: linear(key, weight: k.weight, bias: k.bias),
            value: linear(value, weight: v.weight, bias: v.bias), heads: 8)
        XCTAssertEqual(fast.shape, [2, 7, 128])
        XCTAssertLessThanOrEqual(relativeError(fast, reference), 1e-5)
    }

    /// `headScores` (all heads of a prompt's scores against an image map's packed parts in one pass) against the
    /// products it replaces, run one by one on our kernel: the same bits, with and without each term, over 1100 image
    /// rows (35 chunks of 32, the last 12 wide: a masked panel) and a prompt's rank past one 256-deep slice, with the
    /// columns cut across threads or not; SAM's heads (16 wide) and the wide tiny SAM's (8).
    func testHeadScoresGiveTheProductsBits() throws {
        try XCTSkipIf(ck_sgemm_supported() == 0, "the fused scores run on our kernel, which needs AVX2 and FMA")
        let ran = try onOurKernelWithEachInstructionSet(headScoresGiveTheProductsBits)
        print("the fused scores: " + ran.joined(separator: ", "))
    }

    func headScoresGiveTheProductsBits() throws {
        let saved = Threading.count
        defer { Threading.count = saved }
        let (t, heads, n) = (7, 8, 1100)
        let ldl = paddedStride(n)
        for dh in [16, 8] {
            let f = heads * dh
            let (x, base) = (randomTensor([n, f], seed: 21), randomTensor([n, f], seed: 22))
            let z = randomTensor([t, f], seed: 23)
            let scale = randomTensor([n], seed: 24, range: 0.5...2)
            let packed = { (m: Tensor) in
                m.withUnsafeBufferPointer { p in
                    (0..<heads).map { PackedLinearWeight(p.baseAddress! + $0 * dh, out: n, in: dh, stride: f) }
                }
            }
            let (packedX, packedBase) = (packed(x), packed(base))
            for (withScale, withBase, rank) in [
                (true, true, 57), (true, true, 300), (false, false, 0), (true, false, 0),
            ] {
                let g = randomTensor([heads * t, max(rank, 1)], seed: 25)
                let left = randomTensor([max(rank, 1), ldl], seed: 26)
                var expected = [Float](repeating: 0, count: heads * t * ldl)
                z.withUnsafeBufferPointer { z in
                    expected.withUnsafeMutableBufferPointer { e in
                        let (z, e) = (z.baseAddress!, e.baseAddress!)
                        x.withUnsafeBufferPointer { x in
                            for h in 0..<heads {
                                multiplyTransposed(
                                    z + h * dh, rows: t, lda: f, x.baseAddress! + h * dh, n: n, k: dh, ldb: f,
                                    packed: packedX[h],
                                    into: e + h * t * ldl, ldc: ldl)
                            }
                        }
                        if withScale {
                            for row in 0..<(heads * t) { for j in 0..<n { e[row * ldl + j] *= scale.storage[j] } }
                        }
                        if withBase {
                            base.withUnsafeBufferPointer { b in
                                for h in 0..<heads {
                                    multiplyTransposed(
                                        z + h * dh, rows: t, lda: f, b.baseAddress! + h * dh, n: n, k: dh, ldb: f,
                                        packed: packedBase[h],
                                        beta: 1, into: e + h * t * ldl, ldc: ldl)
                                }
                            }
                        }
                        if rank > 0 {
                            g.withUnsafeBufferPointer { g in
                                left.withUnsafeBufferPointer { l in
                                    gemm(
                                        m: heads * t, n: n, k: rank, a: g.baseAddress!, lda: rank, b: l.baseAddress!,
                                        ldb: ldl, beta: 1, c: e, ldc: ldl)
                                }
                            }
                        }
                    }
                }
                for threads in [1, 3] {
                    Threading.count = threads
                    var got = [Float](repeating: .nan, count: heads * t * ldl)
                    let ran = z.withUnsafeBufferPointer { z in
                        scale.withUnsafeBufferPointer { s in
                            g.withUnsafeBufferPointer { g in
                                left.withUnsafeBufferPointer { l in
                                    got.withUnsafeMutableBufferPointer { o in
                                        headScores(
                                            z.baseAddress!, tokens: t, ldz: f, heads: heads, headWidth: dh,
                                            image: packedX,
                                            base: withBase ? packedBase : nil, scale: withScale ? s.baseAddress! : nil,
                                            g: rank > 0 ? g.baseAddress! : nil, rank: rank,
                                            left: rank > 0 ? l.baseAddress! : nil, ldl: ldl,
                                            columns: n, into: o.baseAddress!, ldo: ldl, onlyWhereFaster: false)
                                    }
                                }
                            }
                        }
                    }
                    XCTAssertTrue(ran)
                    for row in 0..<(heads * t) {
                        XCTAssertEqual(
                            Array(got[(row * ldl)..<(row * ldl + n)]), Array(expected[(row * ldl)..<(row * ldl + n)]),
                            "head width \(dh), scale \(withScale), base \(withBase), rank \(rank), \(threads) threads: row \(row)"
                        )
                        XCTAssertTrue(
                            got[(row * ldl + n)..<((row + 1) * ldl)].allSatisfy(\.isNaN),
                            "row \(row): written past its \(n) columns")
                    }
                }
            }
        }
    }

    /// `headWeighted` (few token rows' attention output from an image map, all heads in one pass over it) onto an
    /// output that holds a value already: the bits of a product per head on our kernel for 16-wide heads, float64's
    /// sums within 1e-5 for 8-wide (where `gemm` takes OpenBLAS); 1100 image rows are five 256-deep slices, the last
    /// short, in 64-row chunks; heads cut across threads or not.
    func testHeadWeightedGivesTheProductsBits() throws {
        try XCTSkipIf(ck_sgemm_supported() == 0, "the fused output runs on our kernel, which needs AVX2 and FMA")
        let ran = try onOurKernelWithEachInstructionSet(headWeightedGivesTheProductsBits)
        print("the fused output: " + ran.joined(separator: ", "))
    }

    func headWeightedGivesTheProductsBits() throws {
        let saved = Threading.count
        defer { Threading.count = saved }
        let (t, heads, n) = (7, 8, 1100)
        let ldp = paddedStride(n)
        for dh in [16, 8] {
            let f = heads * dh
            let (p, x, start) = (
                randomTensor([heads * t, ldp], seed: 31, range: 0...1), randomTensor([n, f], seed: 32),
                randomTensor([t, f], seed: 33)
            )
            var expected = start.storage
            p.withUnsafeBufferPointer { p in
                x.withUnsafeBufferPointer { x in
                    if dh == 16 {
                        expected.withUnsafeMutableBufferPointer { e in
                            for h in 0..<heads {
                                gemm(
                                    m: t, n: dh, k: n, a: p.baseAddress! + h * t * ldp, lda: ldp,
                                    b: x.baseAddress! + h * dh, ldb: f, beta: 1,
                                    c: e.baseAddress! + h * dh, ldc: f)
                            }
                        }
                    } else {
                        for h in 0..<heads {
                            for i in 0..<t {
                                for c in 0..<dh {
                                    let sum = (0..<n).reduce(0.0) {
                                        $0 + Double(p[(h * t + i) * ldp + $1]) * Double(x[$1 * f + h * dh + c])
                                    }
                                    expected[i * f + h * dh + c] = Float(
                                        Double(start.storage[i * f + h * dh + c]) + sum)
                                }
                            }
                        }
                    }
                }
            }
            for threads in [1, 3] {
                Threading.count = threads
                var got = start.storage
                let ran = p.withUnsafeBufferPointer { p in
                    x.withUnsafeBufferPointer { x in
                        got.withUnsafeMutableBufferPointer { o in
                            headWeighted(
                                p.baseAddress!, tokens: t, ldp: ldp, heads: heads, headWidth: dh, rows: n,
                                x.baseAddress!, ldx: f,
                                into: o.baseAddress!, ldo: f, onlyWhereFaster: false)
                        }
                    }
                }
                XCTAssertTrue(ran)
                if dh == 16 {
                    XCTAssertEqual(got, expected, "\(threads) threads")
                } else {
                    XCTAssertLessThanOrEqual(
                        relativeError(Tensor(shape: [t, f], storage: got), Tensor(shape: [t, f], storage: expected)),
                        1e-5,
                        "head width 8, \(threads) threads")
                }
            }
        }
    }
}
