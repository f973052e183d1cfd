/// `torch.nn.functional.linear`: x [..., in] · Wᵀ + b with W in PyTorch's [out, in] layout → [..., out].
public func linear(_ input: Tensor, weight: Tensor, bias: Tensor? = nil) -> Tensor {
    precondition(weight.rank == 2 && input.dim(-1) == weight.shape[1], "linear: input \(input.shape), weight \(weight.shape)")
    let (rows, inFeatures, outFeatures) = (input.count / max(1, input.dim(-1)), weight.shape[1], weight.shape[0])
    precondition(bias == nil || bias!.shape == [outFeatures], "linear bias must be [\(outFeatures)]")
    var output = Tensor(uninitialized: Array(input.shape.dropLast()) + [outFeatures])  // the bias or GEMM writes all
    guard output.count > 0 else { return output }
    output.withUnsafeMutableBufferPointer { y in
        let y = y.baseAddress!
        if let bias {  // start from the bias and let GEMM accumulate (beta = 1): one pass less than adding after
            fillRows(y, rows: rows, with: bias.storage)
        }
        input.withUnsafeBufferPointer { x in
            weight.withUnsafeBufferPointer { w in
                gemm(transB: true, m: rows, n: outFeatures, k: inFeatures, a: x.baseAddress!, lda: inFeatures,
                     b: w.baseAddress!, ldb: inFeatures, beta: bias == nil ? 0 : 1, c: y, ldc: outFeatures)
            }
        }
    }
    return output
}

/// Copies `row` into each of `rows` consecutive rows at `p` (a bias that a GEMM with beta = 1 then adds to).
func fillRows(_ p: UnsafeMutablePointer<Float>, rows: Int, with row: [Float]) {
    row.withUnsafeBufferPointer { r in
        Threading.parallelFor(rows, grain: 256) { range in
            for i in range { (p + i * r.count).update(from: r.baseAddress!, count: r.count) }
        }
    }
}
