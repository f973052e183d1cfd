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
