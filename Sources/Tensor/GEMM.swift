import CKernels
import COpenBLAS
import Foundation

/// C = alpha · op(A) · op(B) + beta · C, row-major, where op(A) is M×K and op(B) is K×N.
///
/// Every matrix product — linear layers, convolutions as GEMM, attention — comes through here (or through
/// `product`, for packed operands), so threading and layout rules live in one place: our kernel where the CPU has
/// AVX2 and FMA (see `GEMMKernel`), else OpenBLAS, single-threaded (see `Threading`), with large products split here
/// among the threads.
public func gemm(
    transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    guard m > 0, n > 0 else { return }
    if k == 0 {  // BLAS leaves C untouched for K = 0 on some builds; define it as beta · C.
        for row in 0..<m { for col in 0..<n { c[row * ldc + col] = beta == 0 ? 0 : beta * c[row * ldc + col] } }
        return
    }
    // Fewer than 12 columns would leave much of our 16-column tile idle (the mask decoder's few-token products, with
    // 7 columns); OpenBLAS has narrower tiles for them. From 12 (the SAM encoder's 14-wide relative-position
    // products) ours, whose edge tiles beat the SSE3 kernels OpenBLAS loads on CPUs newer than its table. A choice by
    // shape alone, so results stay thread-independent.
    if oursRunsProduct(columns: n) {
        let left = ck_operand(data: a, row: transA ? 1 : lda, col: transA ? lda : 1, packed: nil, patches: nil)
        let right = ck_operand(data: b, row: transB ? 1 : ldb, col: transB ? ldb : 1, packed: nil, patches: nil)
        product(m: m, n: n, k: k, alpha: alpha, a: left, b: right, beta: beta, c: c, ldc: ldc)
        return
    }
    // OpenBLAS: split C into a grid of blocks whose number and shape depend on the problem's size only — never on
    // the thread count — and share them among the threads: OpenBLAS's bits for an element depend on the shape of the
    // call that computes it, so this gives the same results with any `threads=` (a resumed job may run with another).
    // Blocks are ≥ 4 M multiply-adds, at most 16 (see `blockGrid` for their shape). Inside a parallel loop the
    // same blocks run in turn on the calling thread: a product gives the same bits wherever it is called from.
    let blocks = min(16, max(1, m * n * k / (1 << 22)), max(m, n))
    if blocks == 1 {
        sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    } else {
        let (rowBlocks, columnBlocks) = blockGrid(blocks, m: m, n: n)
        Threading.parallelFor(rowBlocks * columnBlocks) { range in
            for block in range {
                let (i, j) = (block / columnBlocks, block % columnBlocks)
                let (r0, r1) = (m * i / rowBlocks, m * (i + 1) / rowBlocks)
                let (c0, c1) = (n * j / columnBlocks, n * (j + 1) / columnBlocks)
                sgemm(
                    transA, transB, r1 - r0, c1 - c0, k, alpha, transA ? a + r0 : a + r0 * lda, lda,
                    transB ? b + c0 * ldb : b + c0, ldb, beta, c + r0 * ldc + c0, ldc)
            }
        }
    }
}

/// Which kernel runs fp32 matrix products: ours (`ck_sgemm`) on CPUs with AVX2 and FMA — with AVX-512 where the CPU
/// has it — else OpenBLAS. `AUTOANNOTATE_GEMM=openblas` forces OpenBLAS, to compare the two; tests set `current` to
/// run both wherever the CPU can.
public enum GEMMKernel: String, Sendable {
    case ours, openblas

    /// Set it only while no product runs (a test, before a benchmark); `.ours` needs `ck_sgemm_supported()`.
    // Unchecked: a process-wide switch, set only while no product runs (documented above).
    nonisolated(unsafe) public static var current: GEMMKernel =
        ck_sgemm_supported() != 0 && ProcessInfo.processInfo.environment["AUTOANNOTATE_GEMM"] != "openblas"
        ? .ours : .openblas

    /// The kernels this CPU can run (tests run each).
    public static var available: [GEMMKernel] { ck_sgemm_supported() != 0 ? [.ours, .openblas] : [.openblas] }

    /// The kernels OpenBLAS picked for this CPU, by its model. A model newer than its table gets its oldest x86-64
    /// kernels: Debian's 0.3.21 on an Emerald Rapids Xeon runs "Prescott" (SSE3) kernels.
    public static let openBLASCore = String(cString: openblas_get_corename())
}

/// Whether our kernel runs an unpacked product with `columns` columns of C (see `gemm` for the 12).
func oursRunsProduct(columns: Int) -> Bool { GEMMKernel.current == .ours && columns >= 12 }

/// The widest vector instructions our kernels use: AVX-512 where the CPU has it, else AVX2 (our kernel needs AVX2 and
/// FMA; without them OpenBLAS runs every product). Each AVX-512 kernel has an AVX2 or portable twin; setting `current`
/// to `.avx2` (or `AUTOANNOTATE_NO_AVX512=1` in the environment) runs those on an AVX-512 CPU, so that tests run both
/// and benchmarks compare them. Set it only while no product runs.
public enum VectorInstructions: String, Sendable {
    case avx512 = "AVX-512"
    case avx2 = "AVX2"

    public static var current: VectorInstructions {
        get { ck_cpu_has_avx512() != 0 ? .avx512 : .avx2 }
        set { ck_allow_avx512(newValue == .avx512 ? 1 : 0) }
    }

    /// Whether the kernels that beat the plain path only in their AVX-512 build — Winograd's convolution, the mask
    /// decoder's heads in one pass — run by default: with AVX-512. Their portable builds give the same results but
    /// are not tuned for AVX2 (Winograd's is slower there than the direct convolution), so they run there only where
    /// asked for (`onlyWhereFaster: false`, in tests).
    /// `AUTOANNOTATE_FUSED_KERNELS=always` runs them on AVX2 too, to measure them there.
    public static var fusedKernelsPay: Bool { current == .avx512 || fusedKernelsForced }
    private static let fusedKernelsForced =
        ProcessInfo.processInfo.environment["AUTOANNOTATE_FUSED_KERNELS"] == "always"

    /// The instruction sets this CPU runs our kernels with (none without AVX2 and FMA).
    public static var available: [VectorInstructions] {
        guard ck_sgemm_supported() != 0 else { return [] }
        return ck_cpu_detects_avx512() != 0 ? [.avx512, .avx2] : [.avx2]
    }
}

/// B (k × n) packed for our kernel once, to serve several products.
func packedB(_ b: ck_operand, k: Int, n: Int) -> [Float] {
    [Float](unsafeUninitializedCapacity: ck_sgemm_packed_b_count(k, n)) { buffer, count in
        withUnsafePointer(to: b) { ck_sgemm_pack_b($0, k, n, buffer.baseAddress) }
        count = buffer.count
    }
}

/// C = alpha · A·B + beta · C on our kernel, C cut among the threads. Any cut gives the same bits, so it is chosen
/// for speed: by rows when B is packed, by columns when B is a convolution's patches (each block gathers only
/// its own), else along the longer side, so that the other operand is re-packed least.
func product(
    m: Int, n: Int, k: Int, alpha: Float, a: ck_operand, b: ck_operand, beta: Float,
    c: UnsafeMutablePointer<Float>, ldc: Int, epilogue: ck_epilogue? = nil
) {
    let (rowUnits, columnUnits) = (
        (m + Int(CK_SGEMM_MR) - 1) / Int(CK_SGEMM_MR), (n + Int(CK_SGEMM_NR) - 1) / Int(CK_SGEMM_NR)
    )
    let threads = Threading.isInsideParallelRegion ? 1 : min(Threading.count, max(1, m * n * k / (1 << 20)))
    var byRows = b.packed != nil || (b.patches == nil && m >= n)
    if byRows ? rowUnits < threads && columnUnits > rowUnits : columnUnits < threads && rowUnits > columnUnits {
        byRows.toggle()
    }
    let parts = min(threads, byRows ? rowUnits : columnUnits)
    withUnsafePointer(to: a) { a in
        withUnsafePointer(to: b) { b in
            withUnsafePointer(to: epilogue ?? ck_epilogue()) { finish in
                let e = epilogue == nil ? nil : finish
                // A large product by rows: every thread takes blocks of rows as it goes (`ck_sgemm_shared_rows`). On a
                // machine whose cores run at uneven speeds — a VM's, a core shared with another process — a fixed
                // share per thread would leave the faster one idle at the end of each product.
                if parts > 1 && byRows && m >= 4 * Int(CK_SGEMM_MC) * parts && epilogue?.grid_h == nil {
                    guard let work = ck_shared_rows_create(m, n, k) else {
                        preconditionFailure("GEMM failed: out of memory")
                    }
                    defer { ck_shared_rows_free(work) }
                    Threading.parallelFor(parts) { range in
                        for _ in range {
                            precondition(
                                ck_sgemm_shared_rows(m, n, k, alpha, a, b, beta, c, ldc, e, work) == 0,
                                "GEMM failed: out of memory")
                        }
                    }
                    return
                }
                // Piece `i` of `pieces`, in whole units: rows of the tile, or pairs of B panels (the 12 × 32 tile's).
                let (unit, units) =
                    byRows
                    ? (Int(CK_SGEMM_MR), rowUnits)
                    : (2 * Int(CK_SGEMM_NR), (n + 2 * Int(CK_SGEMM_NR) - 1) / (2 * Int(CK_SGEMM_NR)))
                let run = { (i: Int, pieces: Int) in
                    let (start, end) = (units * i / pieces * unit, units * (i + 1) / pieces * unit)
                    let status =
                        byRows
                        ? ck_sgemm(m, n, k, alpha, a, b, beta, c, ldc, start, min(m, end), 0, n, e)
                        : ck_sgemm(m, n, k, alpha, a, b, beta, c, ldc, 0, m, start, min(n, end), e)
                    precondition(status == 0, "GEMM failed: out of memory")
                }
                if parts == 1 {
                    run(0, 1)
                } else if byRows {  // one share of rows per thread: each share packs all of B
                    Threading.parallelFor(parts) { range in for part in range { run(part, parts) } }
                } else {
                    // Columns (each piece packs or gathers only its own) in about 8 pieces per thread, taken as the
                    // threads go: a slower core leaves its last pieces to the others.
                    let pieces = min(units, 8 * parts)
                    Threading.parallelItems(pieces, threads: parts) { next in while let i = next() { run(i, pieces) } }
                }
            }
        }
    }
}

/// How `blocks` blocks tile C: strips of the larger side while they stay ≥ 256 wide (OpenBLAS runs such strips at
/// full speed: the SAM encoder's linear layers); else the rows × columns grid that packs least (columns · m +
/// rows · n, in units of k), with at least one row and one column of C in each block — for YOLO's late layers,
/// 16 strips of 40–100 would each re-pack the whole other operand.
func blockGrid(_ blocks: Int, m: Int, n: Int) -> (rows: Int, columns: Int) {
    var best = (rows: m >= n ? blocks : 1, columns: m >= n ? 1 : blocks)
    if max(m, n) / blocks >= 256 { return best }
    var cost = best.columns * m + best.rows * n
    for rows in 1...blocks where blocks % rows == 0 && rows <= m && blocks / rows <= n {
        let columns = blocks / rows
        if columns * m + rows * n < cost { (best, cost) = ((rows, columns), columns * m + rows * n) }
    }
    return best
}

@inline(__always)
private func sgemm(
    _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float, _ a: UnsafePointer<Float>, _ lda: Int,
    _ b: UnsafePointer<Float>, _ ldb: Int, _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int
) {
    cblas_sgemm(
        CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
        Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

extension Tensor {
    /// Batched matrix product over the last two dimensions: [..., M, K] · [..., K, N] → [..., M, N] (batch
    /// dimensions equal). With `transposeOther`, `other` is [..., N, K].
    public func matmul(_ other: Tensor, transposeOther: Bool = false) -> Tensor {
        precondition(rank >= 2 && other.rank == rank, "matmul needs equal ranks ≥ 2, got \(shape) and \(other.shape)")
        let batchShape = Array(shape.dropLast(2))
        precondition(batchShape == Array(other.shape.dropLast(2)), "matmul batch mismatch \(shape) vs \(other.shape)")
        let (m, k) = (dim(-2), dim(-1))
        let n = transposeOther ? other.dim(-2) : other.dim(-1)
        precondition(
            (transposeOther ? other.dim(-1) : other.dim(-2)) == k, "matmul inner mismatch \(shape) · \(other.shape)")
        let batch = batchShape.reduce(1, *)
        var out = Tensor(zeros: batchShape + [m, n])
        withUnsafeBufferPointer { a in
            other.withUnsafeBufferPointer { b in
                out.withUnsafeMutableBufferPointer { c in
                    for i in 0..<batch {
                        gemm(
                            transB: transposeOther, m: m, n: n, k: k, a: a.baseAddress! + i * m * k, lda: k,
                            b: b.baseAddress! + i * k * n, ldb: transposeOther ? k : n, c: c.baseAddress! + i * m * n,
                            ldc: n)
                    }
                }
            }
        }
        return out
    }
}
