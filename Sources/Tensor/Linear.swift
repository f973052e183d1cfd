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
            bias.withUnsafeBufferPointer { b in
                for row in 0..<rows { (y + row * outFeatures).update(from: b.baseAddress!, count: outFeatures) }
            }
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
