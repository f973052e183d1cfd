import CKernels

/// `torch.nn.functional.linear`: x [..., in] · Wᵀ + b with W in PyTorch's [out, in] layout → [..., out]; `packed`,
/// the same weight packed once (the same bits, without packing it again); `gelu`: GELU(linear(x)), as an MLP's first
/// layer (applied as our kernel stores the sums); `residual` (the output's shape) added: `residual + linear(x)`, as a
/// transformer block's projections.
public func linear(
    _ input: Tensor, weight: Tensor, bias: Tensor? = nil, packed: PackedLinearWeight? = nil, gelu: Bool = false,
    residual: Tensor? = nil
) -> Tensor {
    precondition(
        weight.rank == 2 && input.dim(-1) == weight.shape[1], "linear: input \(input.shape), weight \(weight.shape)")
    let rows = input.count / max(1, input.dim(-1))
    // The bias or GEMM writes every element.
    var output = Tensor(uninitialized: Array(input.shape.dropLast()) + [weight.shape[0]])
    precondition(
        residual == nil || residual!.count == output.count,
        "linear: residual \(residual!.shape), output \(output.shape)")
    guard output.count > 0 else { return output }
    input.withUnsafeBufferPointer { x in
        withOptionalBuffer(residual) { r in
            output.withUnsafeMutableBufferPointer { y in
                linear(
                    x.baseAddress!, rows: rows, weight: weight, bias: bias, packed: packed, gelu: gelu, residual: r,
                    into: y.baseAddress!)
            }
        }
    }
    return output
}

/// `linear` on `rows` rows of in floats at `x`, into rows of out floats at `y` (`residual` laid out as y).
public func linear(
    _ x: UnsafePointer<Float>, rows: Int, weight: Tensor, bias: Tensor?, packed: PackedLinearWeight? = nil,
    gelu: Bool = false, residual: UnsafePointer<Float>? = nil, into y: UnsafeMutablePointer<Float>
) {
    let (inFeatures, outFeatures) = (weight.shape[1], weight.shape[0])
    precondition(bias == nil || bias!.shape == [outFeatures], "linear bias must be [\(outFeatures)]")
    if let bias,
        oursRunsProduct(columns: outFeatures) || GEMMKernel.current == .ours && !(packed?.values.isEmpty ?? true)
    {
        // Our kernel starts each row from the bias as it stores the first sums, and applies GELU and adds the residual
        // as it stores the last: no pass over y before or after the product.
        return weight.withUnsafeBufferPointer { w in
            bias.withUnsafeBufferPointer { b in
                (packed?.values ?? []).withUnsafeBufferPointer { p in
                    let right =
                        p.isEmpty
                        ? ck_operand(data: w.baseAddress!, row: 1, col: inFeatures, packed: nil, patches: nil)
                        : ck_operand(data: nil, row: 0, col: 0, packed: p.baseAddress!, patches: nil)
                    var epilogue = ck_epilogue()
                    (epilogue.col_bias, epilogue.gelu, epilogue.residual, epilogue.ldr) = (
                        b.baseAddress, gelu ? 1 : 0, residual, outFeatures
                    )
                    product(
                        m: rows, n: outFeatures, k: inFeatures, alpha: 1,
                        a: ck_operand(data: x, row: inFeatures, col: 1, packed: nil, patches: nil),
                        b: right, beta: 0, c: y, ldc: outFeatures, epilogue: epilogue)
                }
            }
        }
    }
    if let bias {  // start from the bias and let GEMM accumulate (beta = 1): one pass less than adding after
        fillRows(y, rows: rows, with: bias.storage)
    }
    weight.withUnsafeBufferPointer { w in
        multiplyTransposed(
            x, rows: rows, lda: inFeatures, w.baseAddress!, n: outFeatures, k: inFeatures, ldb: inFeatures,
            packed: packed,
            beta: bias == nil ? 0 : 1, into: y, ldc: outFeatures)
    }
    if gelu {
        Threading.parallelFor(rows * outFeatures, grain: 32_768) { range in ck_gelu(y + range.lowerBound, range.count) }
    }
    if let residual { addResidual(residual, onto: y, count: rows * outFeatures) }
}

/// y += residual over `count` values, as a pass after a product where our kernel does not add it (the same bits).
private func addResidual(_ residual: UnsafePointer<Float>, onto y: UnsafeMutablePointer<Float>, count: Int) {
    Threading.parallelFor(count, grain: 32_768) { range in
        ck_add_repeating(
            y + range.lowerBound, residual + range.lowerBound, y + range.lowerBound, range.count, range.count)
    }
}

/// y = W·xᵀ + bias: a linear layer on x [rows, in] (rows `in` floats apart) with its output's rows and features
/// swapped, y [out, rows] (rows `ldy` apart), for a consumer that reads each feature along the rows. Our kernel adds
/// the bias as it stores; OpenBLAS onto rows filled with it.
public func linearTransposed(
    _ x: UnsafePointer<Float>, rows: Int, weight: Tensor, bias: Tensor, into y: UnsafeMutablePointer<Float>, ldy: Int
) {
    let (inFeatures, outFeatures) = (weight.shape[1], weight.shape[0])
    precondition(bias.shape == [outFeatures], "linear bias must be [\(outFeatures)]")
    weight.withUnsafeBufferPointer { w in
        bias.withUnsafeBufferPointer { b in
            if GEMMKernel.current == .ours {
                product(
                    m: outFeatures, n: rows, k: inFeatures, alpha: 1,
                    a: ck_operand(data: w.baseAddress!, row: inFeatures, col: 1, packed: nil, patches: nil),
                    b: ck_operand(data: x, row: 1, col: inFeatures, packed: nil, patches: nil), beta: 0, c: y, ldc: ldy,
                    epilogue: {
                        var e = ck_epilogue()
                        e.row_bias = b.baseAddress
                        return e
                    }())
                return
            }
            for o in 0..<outFeatures { (y + o * ldy).update(repeating: b[o], count: rows) }
            gemm(
                transB: true, m: outFeatures, n: rows, k: inFeatures, a: w.baseAddress!, lda: inFeatures, b: x,
                ldb: inFeatures, beta: 1, c: y, ldc: ldy)
        }
    }
}

/// C = alpha · A·Bᵀ + beta · C for B [n, k] (rows `ldb` apart), A [rows, k] and C rows `lda` and `ldc` apart; `packed`,
/// the same B packed once (`PackedLinearWeight`), is used where our kernel runs.
public func multiplyTransposed(
    _ a: UnsafePointer<Float>, rows: Int, lda: Int, _ b: UnsafePointer<Float>, n: Int, k: Int, ldb: Int,
    packed: PackedLinearWeight?, alpha: Float = 1, beta: Float = 0, into c: UnsafeMutablePointer<Float>, ldc: Int
) {
    if let packed, GEMMKernel.current == .ours, !packed.values.isEmpty {
        packed.values.withUnsafeBufferPointer { w in
            product(
                m: rows, n: n, k: k, alpha: alpha, a: ck_operand(data: a, row: lda, col: 1, packed: nil, patches: nil),
                b: ck_operand(data: nil, row: 0, col: 0, packed: w.baseAddress, patches: nil), beta: beta, c: c,
                ldc: ldc)
        }
        return
    }
    gemm(transB: true, m: rows, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
}

/// A linear layer's weight [out, in] packed once as our kernel's right operand Wᵀ. A layer that runs on a few rows
/// at a time (the mask decoder's tokens: 7 rows for a box) would otherwise pack its whole weight on every call, at a
/// cost above its multiply-adds. Empty where our kernel does not run the products (`GEMMKernel.current` when it is
/// made, and fewer than 12 outputs: `gemm` gives those to OpenBLAS).
public struct PackedLinearWeight: Sendable {
    let values: [Float]

    public init(_ weight: Tensor) {
        precondition(weight.rank == 2, "PackedLinearWeight wants [out, in], got \(weight.shape)")
        self = weight.withUnsafeBufferPointer {
            PackedLinearWeight($0.baseAddress!, out: weight.shape[0], in: weight.shape[1], stride: weight.shape[1])
        }
    }

    /// The same for a weight [out, in] whose rows are `stride` apart (a slice of columns of a wider matrix).
    public init(_ weight: UnsafePointer<Float>, out: Int, in inFeatures: Int, stride: Int) {
        guard oursRunsProduct(columns: out) else {
            values = []
            return
        }
        values = packedB(
            ck_operand(data: weight, row: 1, col: stride, packed: nil, patches: nil), k: inFeatures, n: out)
    }
}

/// Copies `row` into each of `rows` consecutive rows at `p` (a bias that a GEMM with beta = 1 then adds to).
func fillRows(_ p: UnsafeMutablePointer<Float>, rows: Int, with row: [Float]) {
    row.withUnsafeBufferPointer { r in
        Threading.parallelFor(rows, grain: 256) { range in
            for i in range { (p + i * r.count).update(from: r.baseAddress!, count: r.count) }
        }
    }
}

/// y[i] = x[i] + `row` for each of `rows` consecutive rows: a bias plus a residual, for a GEMM to add onto.
func fillRows(_ y: UnsafeMutablePointer<Float>, rows: Int, adding x: UnsafePointer<Float>, to row: [Float]) {
    row.withUnsafeBufferPointer { r in
        Threading.parallelFor(rows, grain: 256) { range in
            let start = range.lowerBound * r.count
            ck_add_repeating(x + start, r.baseAddress!, y + start, range.count * r.count, r.count)
        }
    }
}
