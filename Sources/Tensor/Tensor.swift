import CKernels

/// A contiguous, row-major Float32 tensor.
///
/// Deliberately plain: a shape and a buffer, no strides, no autograd, no device. Views that PyTorch gets
/// for free (permute, chunk) are explicit copies here; the kernels take raw pointers and shape letters, so the
/// models choose their layouts once instead of paying for generality on every call.
public struct Tensor: Equatable, Sendable {
    public private(set) var shape: [Int]
    public var storage: [Float]

    public init(shape: [Int], storage: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        precondition(storage.count == shape.reduce(1, *), "storage of \(storage.count) floats does not fit \(shape)")
        self.shape = shape
        self.storage = storage
    }

    public init(zeros shape: [Int]) {
        self.init(shape: shape, storage: [Float](repeating: 0, count: shape.reduce(1, *)))
    }

    /// A tensor whose every element the caller writes before reading any: no zero-filling pass over memory
    /// that a kernel overwrites anyway.
    public init(uninitialized shape: [Int]) {
        let count = shape.reduce(1, *)
        self.init(
            shape: shape, storage: [Float](unsafeUninitializedCapacity: count) { _, initialized in initialized = count }
        )
    }

    /// self + other, where the smaller of the two repeats along the leading dimensions (one image's values added
    /// to every prompt's); the result has the larger one's shape.
    public func adding(_ other: Tensor) -> Tensor {
        let (large, small) = count >= other.count ? (self, other) : (other, self)
        precondition(small.count > 0 && large.count % small.count == 0, "adding \(shape) and \(other.shape)")
        var out = Tensor(uninitialized: large.shape)
        large.withUnsafeBufferPointer { a in
            small.withUnsafeBufferPointer { b in
                out.withUnsafeMutableBufferPointer { y in
                    let (a, b, y, period) = (a.baseAddress!, b.baseAddress!, y.baseAddress!, small.count)
                    // Work in pieces of about 64 K values that never straddle a period: several whole periods
                    // of a short operand, or a slice of one period of a long one.
                    let piece = period >= 65_536 ? 65_536 : period * (65_536 / period)
                    let piecesPerPeriod = (period + piece - 1) / piece
                    let periods = large.count / period
                    Threading.parallelFor(
                        period >= 65_536 ? periods * piecesPerPeriod : (large.count + piece - 1) / piece
                    ) { units in
                        for unit in units {
                            if period >= 65_536 {
                                let (p, s) = (unit / piecesPerPeriod * period, unit % piecesPerPeriod * piece)
                                let length = min(piece, period - s)
                                ck_add_repeating(a + p + s, b + s, y + p + s, length, length)
                            } else {
                                let start = unit * piece
                                ck_add_repeating(a + start, b, y + start, min(piece, large.count - start), period)
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    public init(repeating value: Float, shape: [Int]) {
        self.init(shape: shape, storage: [Float](repeating: value, count: shape.reduce(1, *)))
    }

    public var count: Int { storage.count }
    public var rank: Int { shape.count }

    /// Size of dimension `axis`; negative axes count from the end, as in PyTorch.
    public func dim(_ axis: Int) -> Int { shape[axis < 0 ? shape.count + axis : axis] }

    /// The same values under another shape of equal element count; one dimension may be -1.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var resolved = newShape
        if let inferred = newShape.firstIndex(of: -1) {
            let known = newShape.enumerated().filter { $0.offset != inferred }.map(\.element).reduce(1, *)
            precondition(known > 0 && count % known == 0, "cannot reshape \(shape) to \(newShape)")
            resolved[inferred] = count / known
        }
        return Tensor(shape: resolved, storage: storage)
    }

    /// (p, q) where `order` keeps axes 0..<p and moves q..<rank before p..<q (two groups swapped), else nil.
    private static func swappedGroups(_ order: [Int]) -> (Int, Int)? {
        let rank = order.count
        for p in 0..<rank {
            for q in (p + 1)..<max(p + 1, rank) {
                let swapped: [Int] = Array(0..<p) + Array(q..<rank) + Array(p..<q)
                if order == swapped { return (p, q) }
            }
        }
        return nil
    }

    /// Dimensions permuted (a copy), like `tensor.permute(order).contiguous()`.
    public func permuted(_ order: [Int]) -> Tensor {
        precondition(order.sorted() == Array(0..<rank), "\(order) is not a permutation of \(rank) axes")
        let outShape = order.map { shape[$0] }
        var inStrides = [Int](repeating: 1, count: rank)
        for axis in stride(from: rank - 2, through: 0, by: -1) {
            inStrides[axis] = inStrides[axis + 1] * shape[axis + 1]
        }
        let strides = order.map { inStrides[$0] }
        var out = [Float](repeating: 0, count: count)
        if count == 0 { return Tensor(shape: outShape, storage: out) }
        if let (p, q) = Self.swappedGroups(order) {
            // Two groups of axes swapped, the axes before them kept: matrix transposes of [rows, columns] blocks
            // (SAM's decoder: [1, C, HW] → [1, HW, C] per predict; its encoder: [1, C, H, W] → [1, H, W, C] and
            // back) in 32 × 32 tiles, so that reads and writes both run along cache lines.
            let (rows, columns, tile) = (shape[p..<q].reduce(1, *), shape[q...].reduce(1, *), 32)
            let tileRows = (rows + tile - 1) / tile
            storage.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    let (src, dst) = (src.baseAddress!, dst.baseAddress!)
                    Threading.parallelFor(count / (rows * columns) * tileRows) { range in
                        for index in range {
                            let (base, i0) = (index / tileRows * rows * columns, index % tileRows * tile)
                            for j0 in stride(from: 0, to: columns, by: tile) {
                                for i in i0..<min(i0 + tile, rows) {
                                    for j in j0..<min(j0 + tile, columns) {
                                        dst[base + j * rows + i] = src[base + i * columns + j]
                                    }
                                }
                            }
                        }
                    }
                }
            }
            return Tensor(shape: outShape, storage: out)
        }
        storage.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                forEachStridedElement(shape: outShape, strides: strides) { position, offset in
                    dst[position] = src[offset]
                }
            }
        }
        return Tensor(shape: outShape, storage: out)
    }

    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try storage.withUnsafeBufferPointer(body)
    }

    public mutating func withUnsafeMutableBufferPointer<R>(
        _ body: (inout UnsafeMutableBufferPointer<Float>) throws -> R
    ) rethrows -> R {
        try storage.withUnsafeMutableBufferPointer(body)
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let preview = storage.prefix(6).map { String($0) }.joined(separator: ", ")
        return "Tensor(\(shape), [\(preview)\(count > 6 ? ", …" : "")])"
    }
}

/// Walks the elements of a strided view in row-major order, calling `body(position, offset)` with each element's
/// position in the row-major result and its offset (in elements) in the underlying storage.
public func forEachStridedElement(shape: [Int], strides: [Int], offset start: Int = 0, _ body: (Int, Int) -> Void) {
    let count = shape.reduce(1, *)
    guard count > 0 else { return }
    var index = [Int](repeating: 0, count: shape.count)
    var offset = start
    for position in 0..<count {
        body(position, offset)
        var axis = shape.count - 1
        while axis >= 0 {
            index[axis] += 1
            offset += strides[axis]
            if index[axis] < shape[axis] { break }
            offset -= strides[axis] * shape[axis]
            index[axis] = 0
            axis -= 1
        }
    }
}

/// `count` IEEE half-precision values at `halves` (any alignment) as Float, exactly: F16C where the CPU has it.
public func floatsFromHalves(_ halves: UnsafeRawPointer, count: Int) -> [Float] {
    [Float](unsafeUninitializedCapacity: count) { out, initialized in
        ck_halves_to_floats(halves.assumingMemoryBound(to: UInt16.self), out.baseAddress, count)
        initialized = count
    }
}
