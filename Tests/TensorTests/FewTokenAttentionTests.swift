import Tensor
import XCTest

/// `attentionToFewKeys` and `attentionFromFewQueries` against the reference order of operations (project with
/// `linear`, `multiHeadAttention`, project out) at SAM's mask-decoder widths (E 256, internal 128, 8 heads, the
/// 7 tokens of a box prompt): relative error ≤ 1e-5 (‖a−b‖/‖b‖), float32 rounding of the reassociated sums.
final class FewTokenAttentionTests: XCTestCase {
    typealias Projection = (weight: Tensor, bias: Tensor)

    func projection(_ outWidth: Int, _ inWidth: Int, seed: UInt64) -> Projection {
        let scale = 1 / Float(inWidth).squareRoot()
        return (randomTensor([outWidth, inWidth], seed: seed, range: -scale...scale), randomTensor([outWidth], seed: seed + 100, range: -0.1...0.1))
    }

    func relativeError(_ a: Tensor, _ b: Tensor) -> Double {
        XCTAssertEqual(a.shape, b.shape)
        var difference = 0.0, norm = 0.0
        for (x, y) in zip(a.storage, b.storage) { difference += Double(x - y) * Double(x - y); norm += Double(y) * Double(y) }
        return (difference / norm).squareRoot()
    }

    func testManyRowsToFewKeysMatchesTheReferenceOrder() {
        let (q, k, v, out) = (projection(128, 256, seed: 1), projection(128, 256, seed: 2), projection(128, 256, seed: 3), projection(256, 128, seed: 4))
        let tokens = randomTensor([3, 7, 256], seed: 11, range: -2...2), others = randomTensor([3, 7, 256], seed: 14)
        let (keys, values) = (linear(tokens, weight: k.weight, bias: k.bias), linear(others, weight: v.weight, bias: v.bias))
        // Per-prompt image rows (the decoder's second layer), and one image's rows shared by three prompts (the first),
        // as rows (the query projection folded in) and as rows projected already (the decoder's first layer).
        // 1100 rows: the softmax runs in pieces of 1024 rows and 256-row blocks, both with a partial last one.
        for image in [randomTensor([3, 1100, 256], seed: 12, range: -2...2), randomTensor([1, 1100, 256], seed: 13, range: -2...2)] {
            let projected = linear(image, weight: q.weight, bias: q.bias)
            let reference = linear(multiHeadAttention(query: projected, key: keys, value: values, heads: 8), weight: out.weight, bias: out.bias)
            for (query, projection) in [(image, Optional(q)), (projected, nil)] {
                let fast = attentionToFewKeys(query: query, keys: keys, values: values, heads: 8, queryProjection: projection, outProjection: out)
                XCTAssertEqual(fast.shape, [3, 1100, 256])
                XCTAssertLessThanOrEqual(relativeError(fast, reference), 1e-5, "image rows \(image.shape), projected: \(projection == nil)")
            }
        }
    }

    /// The factors of one prompt's update whose scores the caller computed (the decoder's later layers):
    /// probabilitiesᵀ·values + b rebuilds the attention's output in the reference order.
    func testUpdateFactorsRebuildTheReferenceOrder() {
        let (k, v, out) = (projection(128, 256, seed: 31), projection(128, 256, seed: 32), projection(256, 128, seed: 33))
        let tokens = randomTensor([1, 7, 256], seed: 34, range: -2...2), projected = randomTensor([1, 1100, 128], seed: 35, range: -2...2)
        let (keys, values) = (linear(tokens, weight: k.weight, bias: k.bias), linear(tokens, weight: v.weight, bias: v.bias))
        var scores = Tensor(zeros: [56, 1100 + 16])
        for h in 0..<8 { for t in 0..<7 { for r in 0..<1100 {
            var sum: Float = 0
            for c in 0..<16 { sum += keys.storage[t * 128 + h * 16 + c] * projected.storage[r * 128 + h * 16 + c] }
            scores.storage[(h * 7 + t) * 1116 + r] = sum / 4
        } } }
        let reference = linear(multiHeadAttention(query: projected, key: keys, value: values, heads: 8), weight: out.weight, bias: out.bias)
        let back = fewKeyUpdate(scores: &scores, rows: 1100, values: values, heads: 8, outWeight: out.weight)
        XCTAssertEqual(back.shape, [56, 256])
        var rebuilt = reference
        for r in 0..<1100 { for o in 0..<256 {
            var sum = Double(out.bias.storage[o])
            for j in 0..<56 { sum += Double(scores.storage[j * 1116 + r]) * Double(back.storage[j * 256 + o]) }
            rebuilt.storage[r * 256 + o] = Float(sum)
        } }
        XCTAssertLessThanOrEqual(relativeError(rebuilt, reference), 1e-5)
    }

    func testFewQueriesToManyRowsMatchesTheReferenceOrder() {
        let (q, k, v) = (projection(128, 256, seed: 21), projection(128, 256, seed: 22), projection(128, 256, seed: 23))
        let tokens = randomTensor([2, 7, 256], seed: 24, range: -2...2)
        let (key, value) = (randomTensor([2, 300, 256], seed: 25, range: -2...2), randomTensor([2, 300, 256], seed: 26, range: -2...2))
        let queries = linear(tokens, weight: q.weight, bias: q.bias)
        let fast = attentionFromFewQueries(queries: queries, key: key, value: value, heads: 8, keyWeight: k.weight, valueProjection: v)
        let reference = multiHeadAttention(query: queries, key: linear(key, weight: k.weight, bias: k.bias),
                                           value: linear(value, weight: v.weight, bias: v.bias), heads: 8)
        XCTAssertEqual(fast.shape, [2, 7, 128])
        XCTAssertLessThanOrEqual(relativeError(fast, reference), 1e-5)
    }
}
