import CKernels
import Foundation
import Tensor
import XCTest

final class ConvolutionTests: XCTestCase {
    /// Direct float64 convolution, straight from the definition in `torch.nn.Conv2d`'s documentation.
    func naiveConv(
        _ x: Tensor, _ w: Tensor, _ b: Tensor?, stride: (Int, Int), padding: (Int, Int), dilation: (Int, Int),
        groups: Int
    ) -> (shape: [Int], values: [Double]) {
        let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (o, cg, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3])
        let ho = (h + 2 * padding.0 - dilation.0 * (kh - 1) - 1) / stride.0 + 1
        let wo = (wd + 2 * padding.1 - dilation.1 * (kw - 1) - 1) / stride.1 + 1
        let og = o / groups
        var out = [Double](repeating: 0, count: n * o * ho * wo)
        for image in 0..<n {
            for oc in 0..<o {
                for oy in 0..<ho {
                    for ox in 0..<wo {
                        var s = b.map { Double($0.storage[oc]) } ?? 0
                        let group = oc / og
                        for ic in 0..<cg {
                            for ky in 0..<kh {
                                for kx in 0..<kw {
                                    let iy = oy * stride.0 - padding.0 + ky * dilation.0
                                    let ix = ox * stride.1 - padding.1 + kx * dilation.1
                                    guard iy >= 0, iy < h, ix >= 0, ix < wd else { continue }
                                    s +=
                                        Double(x.storage[((image * c + group * cg + ic) * h + iy) * wd + ix])
                                        * Double(w.storage[((oc * cg + ic) * kh + ky) * kw + kx])
                                }
                            }
                        }
                        out[((image * o + oc) * ho + oy) * wo + ox] = s
                    }
                }
            }
        }
        return ([n, o, ho, wo], out)
    }

    func check(
        n: Int, c: Int, h: Int, w: Int, o: Int, kh: Int, kw: Int, stride: (Int, Int) = (1, 1),
        padding: (Int, Int) = (0, 0),
        dilation: (Int, Int) = (1, 1), groups: Int = 1, bias: Bool = true, line: UInt = #line
    ) {
        let x = randomTensor([n, c, h, w], seed: UInt64(line))
        let wt = randomTensor([o, c / groups, kh, kw], seed: UInt64(line) + 1)
        let b = bias ? randomTensor([o], seed: UInt64(line) + 2) : nil
        let want = naiveConv(x, wt, b, stride: stride, padding: padding, dilation: dilation, groups: groups)
        forEachKernel {
            let got = conv2d(
                x, weight: wt, bias: b,
                geometry: .init(stride: stride, padding: padding, dilation: dilation, groups: groups))
            assertClose(
                got, want.values, shape: want.shape,
                "conv \(x.shape) * \(wt.shape) s\(stride) p\(padding) d\(dilation) g\(groups) on \(GEMMKernel.current)",
                line: line)
        }
    }

    func testPointwiseFastPathWithBatch() { check(n: 2, c: 5, h: 7, w: 13, o: 6, kh: 1, kw: 1) }
    func testPointwiseOnASinglePixel() { check(n: 1, c: 3, h: 1, w: 1, o: 4, kh: 1, kw: 1) }
    func testPointwiseWithStrideTakesTheGeneralPath() {
        check(n: 1, c: 3, h: 7, w: 13, o: 4, kh: 1, kw: 1, stride: (2, 2))
    }
    func testThreeByThreeSamePadding() { check(n: 2, c: 4, h: 7, w: 13, o: 5, kh: 3, kw: 3, padding: (1, 1)) }
    func testStrideTwoAsYOLODownsamples() {
        check(n: 1, c: 3, h: 13, w: 7, o: 8, kh: 3, kw: 3, stride: (2, 2), padding: (1, 1))
    }
    func testPatchEmbeddingKernelEqualsStride() {
        check(n: 1, c: 3, h: 32, w: 48, o: 6, kh: 16, kw: 16, stride: (16, 16))
    }
    func testDilationAndRectangularKernel() {
        check(n: 1, c: 2, h: 11, w: 9, o: 3, kh: 3, kw: 2, padding: (2, 1), dilation: (2, 3))
    }
    func testGroupedConvolution() {
        check(n: 2, c: 6, h: 5, w: 7, o: 4, kh: 3, kw: 3, padding: (1, 1), groups: 2, bias: false)
    }
    func testDepthwiseThreeByThree() { check(n: 2, c: 5, h: 7, w: 13, o: 5, kh: 3, kw: 3, padding: (1, 1), groups: 5) }
    func testDepthwiseStridedLargeKernel() {
        check(n: 1, c: 4, h: 9, w: 11, o: 4, kh: 5, kw: 5, stride: (2, 2), padding: (2, 2), groups: 4)
    }
    func testChannelMultiplierDepthwise() {
        check(n: 1, c: 3, h: 6, w: 6, o: 6, kh: 3, kw: 3, padding: (1, 1), groups: 3)
    }
    // Rows wide enough for whole 16-column panels inside the input, and k = 360 or 270: two slices of our kernel's k.
    func testWideInputOverTwoSlicesOfK() { check(n: 1, c: 40, h: 6, w: 45, o: 7, kh: 3, kw: 3, padding: (1, 1)) }
    func testWideStrideTwoOverTwoSlicesOfK() {
        check(n: 2, c: 30, h: 9, w: 70, o: 9, kh: 3, kw: 3, stride: (2, 2), padding: (1, 1))
    }
    // 20 filters: on an AVX-512 CPU our kernel runs a 12-row tile, then 6 and 2 rows, each starting from the bias.
    func testTwentyFiltersOverTwoSlicesOfK() { check(n: 1, c: 40, h: 6, w: 45, o: 20, kh: 3, kw: 3, padding: (1, 1)) }
    func testKernelAsLargeAsTheInput() { check(n: 1, c: 2, h: 3, w: 3, o: 2, kh: 3, kw: 3) }

    /// SiLU and the residual fused into the product give the bits of the passes after it (Ultralytics' order:
    /// conv + bias, SiLU, + shortcut), with and without bias, over one and two slices of k, pointwise and patches.
    func testFusedSiLUAndResidualEqualThePassesAfter() {
        let cases: [(x: [Int], w: [Int], geometry: Conv2dGeometry, bias: Bool)] = [
            ([2, 5, 7, 13], [6, 5, 1, 1], .init(), true),
            ([1, 40, 6, 45], [20, 40, 3, 3], .init(padding: 1), true),  // 20 rows: tiles of 12 (AVX-512), 6 and 2
            ([2, 30, 9, 70], [9, 30, 3, 3], .init(stride: 2, padding: 1), false),
            ([1, 6, 5, 7], [4, 3, 3, 3], .init(padding: 1, groups: 2), true),
        ]
        for (index, test) in cases.enumerated() {
            let seed = UInt64(40 + 4 * index)
            let x = randomTensor(test.x, seed: seed)
            let w = randomTensor(test.w, seed: seed + 1)
            let b = test.bias ? randomTensor([test.w[0]], seed: seed + 2) : nil
            forEachKernel {
                var want = conv2d(x, weight: w, bias: b, geometry: test.geometry)
                let residual = randomTensor(want.shape, seed: seed + 3)
                want.silu()
                let activated = want
                for i in want.storage.indices { want.storage[i] += residual.storage[i] }
                let label = "\(test.x) * \(test.w) on \(GEMMKernel.current)"
                XCTAssertEqual(
                    conv2d(x, weight: w, bias: b, geometry: test.geometry, silu: true).storage, activated.storage, label
                )
                XCTAssertEqual(
                    conv2d(x, weight: w, bias: b, geometry: test.geometry, silu: true, adding: residual).storage,
                    want.storage, label)
            }
        }
    }

    /// Convolutions reading and writing channels of a `ChannelStack` in place (a C2f: cv1 into two halves, bottlenecks
    /// on the last piece with and without a shortcut, a depthwise step) give the bits of separate tensors
    /// concatenated — over a batch of two, where a run of channels is not contiguous, on every path.
    func testChannelStackEqualsConvolutionsThenConcatenation() {
        let (n, c, h, w) = (2, 4, 6, 19)
        let x = randomTensor([n, 3, h, w], seed: 70)
        let w1 = randomTensor([2 * c, 3, 1, 1], seed: 71)
        let b1 = randomTensor([2 * c], seed: 72)
        let w2 = randomTensor([c, c, 3, 3], seed: 73)
        let w3 = randomTensor([c, c, 3, 3], seed: 74)
        let b3 = randomTensor([c], seed: 75)
        let w4 = randomTensor([c, 1, 3, 3], seed: 76)
        let same = Conv2dGeometry(padding: 1)
        let depthwise = Conv2dGeometry(padding: 1, groups: c)
        forEachKernel {
            let y = conv2d(x, weight: w1, bias: b1, silu: true)
            let half = channelRange(y, c..<(2 * c))
            let first = conv2d(
                conv2d(half, weight: w2, geometry: same, silu: true), weight: w3, bias: b3, geometry: same, silu: true,
                adding: half)
            let second = conv2d(conv2d(first, weight: w2, geometry: same), weight: w4, geometry: depthwise)
            let want = concatenated([y, first, second])

            let (f1, f2, f3, f4) = (
                ConvolutionFilters(w1), ConvolutionFilters(w2), ConvolutionFilters(w3),
                ConvolutionFilters(w4, groups: c)
            )
            var stack = ChannelStack(images: n, channels: 4 * c, height: h, width: w)
            stack.convolve(x, filters: f1, bias: b1, silu: true, into: 0)
            stack.convolve(
                stack.convolve(channels: c..<(2 * c), filters: f2, geometry: same, silu: true), filters: f3, bias: b3,
                geometry: same,
                silu: true, addingChannels: c..<(2 * c), into: 2 * c)
            stack.convolve(
                stack.convolve(channels: (2 * c)..<(3 * c), filters: f2, geometry: same), filters: f4,
                geometry: depthwise, into: 3 * c)
            XCTAssertEqual(stack.tensor.shape, want.shape)
            XCTAssertEqual(stack.tensor.storage, want.storage, "on \(GEMMKernel.current)")
        }
    }

    /// Filters packed once for our kernel give the bits of plain ones, on every path that takes them (pointwise,
    /// patches, groups; rows not a multiple of the 6-row panels; k over two slices), unpack to the weights they
    /// were made from, and still run where OpenBLAS is chosen after they were packed.
    func testPackedFiltersGiveTheBitsOfPlainOnes() {
        let cases: [(x: [Int], w: [Int], geometry: Conv2dGeometry)] = [
            ([2, 300, 5, 9], [13, 300, 1, 1], .init()),
            ([1, 40, 6, 45], [20, 40, 3, 3], .init(padding: 1)),
            ([2, 30, 9, 70], [9, 30, 3, 3], .init(stride: 2, padding: 1)),
            ([1, 40, 5, 7], [14, 20, 3, 3], .init(padding: 1, groups: 2)),
            ([1, 5, 7, 13], [5, 1, 3, 3], .init(padding: 1, groups: 5)),
        ]
        for (index, test) in cases.enumerated() {
            let seed = UInt64(80 + 4 * index)
            let x = randomTensor(test.x, seed: seed)
            let w = randomTensor(test.w, seed: seed + 1)
            let b = randomTensor([test.w[0]], seed: seed + 2)
            var packedWhileOurs: ConvolutionFilters?
            forEachKernel {
                let filters = ConvolutionFilters(w, groups: test.geometry.groups)
                if GEMMKernel.current == .ours { packedWhileOurs = filters }
                let label = "\(test.x) * \(test.w) on \(GEMMKernel.current)"
                XCTAssertEqual(filters.weight?.storage, w.storage, label)
                let want = conv2d(x, weight: w, bias: b, geometry: test.geometry, silu: true)
                XCTAssertEqual(
                    conv2d(x, filters: filters, bias: b, geometry: test.geometry, silu: true).storage, want.storage,
                    label)
                if GEMMKernel.current == .openblas, let packedWhileOurs {
                    XCTAssertEqual(
                        conv2d(x, filters: packedWhileOurs, bias: b, geometry: test.geometry, silu: true).storage,
                        want.storage,
                        label + ", filters packed for our kernel")
                }
            }
        }
    }

    /// Winograd's F(2×2, 3×3) for 3×3, stride-1, padding-1 layers (`ConvolutionFilters(_:geometry:)`): within the
    /// kernels' 1e-5 of the float64 definition — a single pixel; odd sides (a last tile of one column or row); tile
    /// rows that end inside a panel of 16 tiles; more tiles than a block; filters past one block of 48 and not a
    /// multiple of 6; channels over two 256-deep slices, not a multiple of 8 — with the epilogue's SiLU and residual
    /// the bits of the passes after it (on a batch of two and in a `ChannelStack`), and the same bits for any split
    /// of the tiles; the AVX-512 and portable builds of its transforms the same bits where both run.
    func testWinogradEqualsTheDefinition() throws {
        try XCTSkipIf(
            ck_winograd_supported() == 0, "Winograd's convolution runs on our kernel, which needs AVX2 and FMA")
        var outputs: [VectorInstructions: [[Float]]] = [:]
        let ran = try onOurKernelWithEachInstructionSet {
            outputs[VectorInstructions.current] = try winogradEqualsTheDefinition()
        }
        if let wide = outputs[.avx512], let portable = outputs[.avx2] {
            XCTAssertEqual(wide, portable, "the AVX-512 and portable builds give different bits")
        }
        print("Winograd's convolution: " + ran.joined(separator: ", "))
    }

    /// Each case's output with SiLU and a residual.
    func winogradEqualsTheDefinition() throws -> [[Float]] {
        let cases: [(x: [Int], o: Int)] = [
            ([1, 3, 1, 1], 2), ([2, 5, 7, 13], 7), ([1, 300, 5, 9], 13), ([1, 16, 40, 70], 50), ([1, 8, 2, 34], 4),
        ]
        let same = Conv2dGeometry(padding: 1)
        var outputs: [[Float]] = []
        for (index, test) in cases.enumerated() {
            let seed = UInt64(120 + 4 * index)
            let (n, c, h, w) = (test.x[0], test.x[1], test.x[2], test.x[3])
            let x = randomTensor(test.x, seed: seed)
            let wt = randomTensor([test.o, c, 3, 3], seed: seed + 1)
            let b = randomTensor([test.o], seed: seed + 2)
            let filters = ConvolutionFilters(wt, geometry: same, onlyWhereFaster: false)
            XCTAssertNil(filters.weight, "transformed filters keep no plain form")
            let label = "\(test.x) * \(test.o) filters"
            let want = naiveConv(x, wt, b, stride: (1, 1), padding: (1, 1), dilation: (1, 1), groups: 1)
            var plain = conv2d(x, filters: filters, bias: b, geometry: same)
            assertClose(plain, want.values, shape: want.shape, label)

            let residual = randomTensor(plain.shape, seed: seed + 3)
            plain.silu()
            let activated = plain
            for i in plain.storage.indices { plain.storage[i] += residual.storage[i] }
            XCTAssertEqual(
                conv2d(x, filters: filters, bias: b, geometry: same, silu: true).storage, activated.storage, label)
            let fused = conv2d(x, filters: filters, bias: b, geometry: same, silu: true, adding: residual).storage
            XCTAssertEqual(fused, plain.storage, label)
            outputs.append(fused)

            // In a stack: the input in channels [o, o + c), read in place; the residual's [0, o), the output into
            // [o + c, 2o + c). (1×1 identity filters put them there exactly.)
            let identity = { (k: Int) in
                ConvolutionFilters(
                    Tensor(shape: [k, k, 1, 1], storage: (0..<(k * k)).map { $0 % (k + 1) == 0 ? 1 : 0 }))
            }
            var stack = ChannelStack(images: n, channels: 2 * test.o + c, height: h, width: w)
            stack.convolve(residual, filters: identity(test.o), into: 0)
            stack.convolve(x, filters: identity(c), into: test.o)
            XCTAssertEqual(
                stack.convolve(channels: test.o..<(test.o + c), filters: filters, bias: b, geometry: same, silu: true)
                    .storage,
                activated.storage, label + " from a stack")
            stack.convolve(
                x, filters: filters, bias: b, geometry: same, silu: true, addingChannels: 0..<test.o, into: test.o + c)
            XCTAssertEqual(
                channelRange(stack.tensor, (test.o + c)..<(2 * test.o + c)).storage, plain.storage,
                label + " in a stack")

            // Any split of the items (blocks of tiles × blocks of filters) among threads: the same bits.
            var u = [Float](repeating: 0, count: ck_winograd_filters_count(test.o, c))
            XCTAssertEqual(ck_winograd_pack_filters(wt.storage, test.o, c, &u), 0)
            var whole = [Float](repeating: .nan, count: test.o * h * w)
            XCTAssertEqual(ck_winograd_conv3x3(u, test.o, c, h, w, x.storage, &whole, nil, nil, 0), 0)
            let items = ck_winograd_items(test.o, c, h, w)
            for threads in [2, 3] {
                var shared = [Float](repeating: .nan, count: test.o * h * w)
                let work = ck_items_create(items, threads)
                defer { ck_items_free(work) }
                let filters = u
                shared.withUnsafeMutableBufferPointer { y in
                    // Unchecked: each thread writes only the outputs of the items it takes.
                    nonisolated(unsafe) let (output, work) = (y.baseAddress, work)
                    DispatchQueue.concurrentPerform(iterations: threads) { thread in
                        XCTAssertEqual(
                            ck_winograd_conv3x3(filters, test.o, c, h, w, x.storage, output, nil, work, thread), 0)
                    }
                }
                XCTAssertEqual(shared, whole, label + ": \(items) items on \(threads) threads")
            }
            XCTAssertEqual(
                whole, Array(conv2d(x, filters: filters, geometry: same).storage.prefix(test.o * h * w)), label)
        }
        return outputs
    }

    /// Channels `range` of [N, C, H, W], and [N, C, H, W] tensors side by side along C: the test's reference copies.
    func channelRange(_ x: Tensor, _ range: Range<Int>) -> Tensor {
        let (n, c, plane) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        let values = (0..<n).flatMap { image in
            x.storage[((image * c + range.lowerBound) * plane)..<((image * c + range.upperBound) * plane)]
        }
        return Tensor(shape: [n, range.count, x.shape[2], x.shape[3]], storage: values)
    }

    func concatenated(_ parts: [Tensor]) -> Tensor {
        let (n, plane) = (parts[0].shape[0], parts[0].shape[2] * parts[0].shape[3])
        let values = (0..<n).flatMap { image in
            parts.flatMap { part in
                part.storage[(image * part.shape[1] * plane)..<((image + 1) * part.shape[1] * plane)]
            }
        }
        return Tensor(
            shape: [n, parts.reduce(0) { $0 + $1.shape[1] }, parts[0].shape[2], parts[0].shape[3]], storage: values)
    }

    func testFoldedBatchNormEqualsConvolutionThenBatchNorm() {
        let x = randomTensor([2, 3, 6, 5], seed: 30)
        let w = randomTensor([4, 3, 3, 3], seed: 31)
        let convBias = randomTensor([4], seed: 32)
        let gamma = randomTensor([4], seed: 33)
        let beta = randomTensor([4], seed: 34)
        let mean = randomTensor([4], seed: 35)
        let variance = randomTensor([4], seed: 36, range: 0.1...2)
        let eps = 1e-3  // Ultralytics' BatchNorm2d eps
        let plain = naiveConv(x, w, convBias, stride: (1, 1), padding: (1, 1), dilation: (1, 1), groups: 1)
        let plane = 30
        let want = plain.values.enumerated().map { i, v -> Double in
            let c = (i / plane) % 4
            return (v - Double(mean.storage[c])) / (Double(variance.storage[c]) + eps).squareRoot()
                * Double(gamma.storage[c]) + Double(beta.storage[c])
        }
        let folded = foldBatchNorm(
            weight: w, bias: convBias, gamma: gamma, beta: beta, runningMean: mean, runningVar: variance, eps: eps)
        assertClose(
            conv2d(x, weight: folded.weight, bias: folded.bias, geometry: .init(padding: 1)), want, shape: plain.shape,
            "conv+BN folded")
    }
}
