import CKernels

/// A convolution's filters [O, C / groups, kh, kw] for a model that runs them on every image: packed once as our
/// kernel's left operand (one matrix [O / groups, C / groups · kh · kw] per group) where that kernel runs, instead of
/// on every call — by every thread and for every block of columns, into a buffer of its own. The packed form
/// replaces the plain one, so the weights take no more memory. Plain where
/// our kernel does not run (`GEMMKernel.current` when they are made) and for depthwise filters (a direct loop, no
/// product). Packing is a copy: the same bits. A 3×3, stride-1, padding-1 layer's filters may instead be transformed
/// for Winograd's F(2×2, 3×3) (`init(_:geometry:)`), 16/9 of the weights' memory.
public struct ConvolutionFilters: Sendable {
    /// [O, C / groups, kh, kw].
    public let shape: [Int]
    let groups: Int
    private let plain: Tensor?
    private let packed: [Float]
    /// `packed` holds the filters transformed by `ck_winograd_pack_filters`, for a 3×3, stride-1, padding-1
    /// convolution without groups (`runConvolution` takes them whatever `GEMMKernel.current` is since).
    let winograd: Bool
    /// Each group's matrix: rows (filters) × depth (C / groups · kh · kw).
    private var rows: Int { shape[0] / groups }
    private var depth: Int { shape[1] * shape[2] * shape[3] }

    /// `packing: false` keeps them plain (a convolution run once).
    public init(_ weight: Tensor, groups: Int = 1, packing: Bool = true) {
        precondition(
            weight.rank == 4 && groups > 0 && weight.shape[0] % groups == 0,
            "filters \(weight.shape) in \(groups) groups")
        shape = weight.shape
        self.groups = groups
        winograd = false
        let (rows, depth) = (shape[0] / groups, shape[1] * shape[2] * shape[3])  // (self's are not usable yet)
        guard packing, GEMMKernel.current == .ours, !(shape[1] == 1 && rows == 1) else {
            (plain, packed) = (weight, [])
            return
        }
        let groupCount = ck_sgemm_packed_a_count(rows, depth)
        packed = weight.withUnsafeBufferPointer { w in
            [Float](unsafeUninitializedCapacity: groups * groupCount) { buffer, count in
                for group in 0..<groups {
                    var a = ck_operand(
                        data: w.baseAddress! + group * rows * depth, row: depth, col: 1, packed: nil, patches: nil)
                    ck_sgemm_pack_a(&a, rows, depth, buffer.baseAddress! + group * groupCount)
                }
                count = buffer.count
            }
        }
        plain = nil
    }

    /// A model layer's filters for `geometry`: transformed for Winograd's F(2×2, 3×3) where the layer is a 3×3,
    /// stride-1, padding-1 convolution without groups and the CPU runs it (`ck_winograd_supported`, with our kernel
    /// chosen): 2.25× fewer multiply-adds in the layers that hold most of YOLOv8's. With `onlyWhereFaster`, only
    /// where that pays (`VectorInstructions.fusedKernelsPay`). Else as `init(_:groups:)`.
    public init(_ weight: Tensor, geometry: Conv2dGeometry, onlyWhereFaster: Bool = true) {
        guard weight.rank == 4, weight.shape[2] == 3, weight.shape[3] == 3, geometry == Conv2dGeometry(padding: 1),
            GEMMKernel.current == .ours, ck_winograd_supported() != 0,
            !onlyWhereFaster || VectorInstructions.fusedKernelsPay
        else {
            self.init(weight, groups: geometry.groups)
            return
        }
        let (o, c) = (weight.shape[0], weight.shape[1])
        let transformed = weight.withUnsafeBufferPointer { w in
            [Float](unsafeUninitializedCapacity: ck_winograd_filters_count(o, c)) { buffer, count in
                precondition(
                    ck_winograd_pack_filters(w.baseAddress, o, c, buffer.baseAddress) == 0,
                    "Winograd filters: out of memory")
                count = buffer.count
            }
        }
        self.init(shape: weight.shape, groups: 1, plain: nil, packed: transformed, winograd: true)
    }

    private init(shape: [Int], groups: Int, plain: Tensor?, packed: [Float], winograd: Bool) {
        (self.shape, self.groups, self.plain, self.packed, self.winograd) = (shape, groups, plain, packed, winograd)
    }

    /// Winograd's transformed filters while `body` runs (`winograd` must be true).
    func withWinogradFilters<R>(_ body: (UnsafePointer<Float>) -> R) -> R {
        precondition(winograd)
        return packed.withUnsafeBufferPointer { body($0.baseAddress!) }
    }

    /// Group `group`'s filters as our kernel's left operand, packed or plain, while `body` runs.
    func withOperand<R>(group: Int, _ body: (ck_operand) -> R) -> R {
        if let plain {
            return plain.withUnsafeBufferPointer { w in
                body(
                    ck_operand(
                        data: w.baseAddress! + group * rows * depth, row: depth, col: 1, packed: nil, patches: nil))
            }
        }
        return packed.withUnsafeBufferPointer { p in
            body(
                ck_operand(
                    data: nil, row: 0, col: 0, packed: p.baseAddress! + group * ck_sgemm_packed_a_count(rows, depth),
                    patches: nil))
        }
    }

    /// The filters as a tensor: the plain ones, or unpacked (OpenBLAS chosen after they were packed: tests); nil for
    /// Winograd's transformed filters, which keep no plain form.
    public var weight: Tensor? {
        if let plain { return plain }
        if winograd { return nil }
        let panel = Int(CK_SGEMM_MR)
        let (groupCount, paddedRows) = (ck_sgemm_packed_a_count(rows, depth), (rows + panel - 1) / panel * panel)
        var values = [Float](repeating: 0, count: shape.reduce(1, *))
        for group in 0..<groups {
            for start in stride(from: 0, to: depth, by: Int(CK_SGEMM_KC)) {
                let slice = group * groupCount + start * paddedRows
                let kc = min(Int(CK_SGEMM_KC), depth - start)
                for row in 0..<rows {
                    for k in 0..<kc {
                        values[(group * rows + row) * depth + start + k] =
                            packed[slice + row / panel * panel * kc + k * panel + row % panel]
                    }
                }
            }
        }
        return Tensor(shape: shape, storage: values)
    }
}
