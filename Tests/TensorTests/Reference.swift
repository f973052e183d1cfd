import CKernels
import Tensor
import XCTest

/// Deterministic random numbers for test inputs (SplitMix64), so a failure reproduces.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func randomTensor(_ shape: [Int], seed: UInt64, range: ClosedRange<Float> = -1...1) -> Tensor {
    var generator = SeededGenerator(seed: seed)
    return Tensor(
        shape: shape, storage: (0..<shape.reduce(1, *)).map { _ in Float.random(in: range, using: &generator) })
}

/// `body` with the storage of each tensor, in order (for C kernels that take several).
func withBuffers<R>(_ tensors: [Tensor], _ body: ([UnsafePointer<Float>]) throws -> R) rethrows -> R {
    guard let first = tensors.first else { return try body([]) }
    return try first.withUnsafeBufferPointer { p in
        try withBuffers(Array(tensors.dropFirst())) { try body([p.baseAddress!] + $0) }
    }
}

/// The tolerance every kernel is held to against its float64 reference.
let kernelTolerance = 1e-5

/// Asserts max |actual − expected| ≤ tolerance · max |expected| (relative to the largest reference value).
func assertClose(
    _ actual: Tensor, _ expected: [Double], shape: [Int], tolerance: Double = kernelTolerance, _ what: String,
    file: StaticString = #filePath, line: UInt = #line
) {
    XCTAssertEqual(actual.shape, shape, "\(what): shape", file: file, line: line)
    XCTAssertEqual(actual.count, expected.count, "\(what): count", file: file, line: line)
    guard actual.count == expected.count else { return }
    let scale = max(expected.map(abs).max() ?? 0, 1e-30)
    var worst = 0.0
    var worstIndex = 0
    for i in 0..<expected.count {
        let error = abs(Double(actual.storage[i]) - expected[i])
        if error > worst {
            worst = error
            worstIndex = i
        }
    }
    XCTAssertLessThanOrEqual(
        worst / scale, tolerance,
        "\(what): max error \(worst) at \(worstIndex) (got \(actual.count > 0 ? actual.storage[worstIndex] : .nan), want \(expected.isEmpty ? .nan : expected[worstIndex])), relative \(worst / scale)",
        file: file, line: line)
}

extension Tensor {
    var doubles: [Double] { storage.map(Double.init) }
}

/// Runs `body` on our kernel (a test of its own properties), whatever `AUTOANNOTATE_GEMM` chose; the caller skips
/// where the CPU cannot run it.
func onOurKernel<R>(_ body: () throws -> R) rethrows -> R {
    let saved = GEMMKernel.current
    defer { GEMMKernel.current = saved }
    GEMMKernel.current = .ours
    return try body()
}

/// Runs `body` on our kernel with each instruction set this CPU runs it with: AVX-512 where the CPU has it, and the
/// AVX2 and portable paths on every CPU with AVX2 and FMA. Returns their names, for the test's output.
@discardableResult
func onOurKernelWithEachInstructionSet(_ body: () throws -> Void) rethrows -> [String] {
    let saved = VectorInstructions.current
    defer { VectorInstructions.current = saved }
    return try onOurKernel {
        try VectorInstructions.available.map { instructions in
            VectorInstructions.current = instructions
            try body()
            return "ours (\(instructions.rawValue))"
        }
    }
}

/// The matrix-product kernels this CPU runs — ours with each of its instruction sets, and OpenBLAS —, said once in
/// the test output.
let kernelsThisCPURuns: [(kernel: GEMMKernel, instructions: VectorInstructions?, name: String)] = {
    let ours = GEMMKernel.available.contains(.ours) ? VectorInstructions.available : []
    let kernels: [(kernel: GEMMKernel, instructions: VectorInstructions?, name: String)] =
        ours.map { (.ours, $0, "ours (\($0.rawValue))") } + [(.openblas, nil, "OpenBLAS (\(GEMMKernel.openBLASCore))")]
    print("matrix-product kernels exercised: " + kernels.map(\.name).joined(separator: ", "))
    return kernels
}()

/// Runs `body` on each matrix-product kernel this CPU runs (`kernelsThisCPURuns`).
func forEachKernel(_ body: () -> Void) {
    let saved = (GEMMKernel.current, VectorInstructions.current)
    defer { (GEMMKernel.current, VectorInstructions.current) = saved }
    for (kernel, instructions, _) in kernelsThisCPURuns {
        GEMMKernel.current = kernel
        VectorInstructions.current = instructions ?? saved.1
        body()
    }
}
