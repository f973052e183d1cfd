extension Image {
    /// `cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)`, bit for bit.
    ///
    /// OpenCV resizes 8-bit images in fixed point (resize.cpp, `resizeGeneric_` with `HResizeLinear` and the
    /// `VResizeLinear<uchar, int, short, …>` specialisation): tap weights are rounded to 11 bits, rows are
    /// interpolated horizontally into integers, and the vertical pass drops 4 bits before a high-half multiply.
    /// An exact halving of both sides is done as a 2×2 box average instead (`INTER_AREA` fast path).
    public func resized(width outW: Int, height outH: Int) -> Image {
        precondition(outW > 0 && outH > 0 && width > 0 && height > 0, "resize of \(width)×\(height) to \(outW)×\(outH)")
        if outW == width && outH == height { return self }
        let scaleX = 1 / (Double(outW) / Double(width))
        let scaleY = 1 / (Double(outH) / Double(height))
        let isAreaFast =
            abs(scaleX - scaleX.rounded()) < Double.ulpOfOne && abs(scaleY - scaleY.rounded()) < Double.ulpOfOne
        if isAreaFast && scaleX.rounded() == 2 && scaleY.rounded() == 2 { return halved() }

        let one = 2048  // INTER_RESIZE_COEF_SCALE
        func weight(_ value: Float) -> Int32 { Int32((value * Float(one)).rounded(.toNearestOrEven)) }

        // Horizontal taps, per output column.
        var xOffset = [Int](repeating: 0, count: outW)
        var xWeights = [(Int32, Int32)](repeating: (0, 0), count: outW)
        var xmax = outW
        for dx in 0..<outW {
            var fx = Float((Double(dx) + 0.5) * scaleX - 0.5)
            var sx = Int(fx.rounded(.down))
            fx -= Float(sx)
            if sx < 0 {
                fx = 0
                sx = 0
            }
            if sx + 1 >= width {
                xmax = min(xmax, dx)
                if sx >= width - 1 {
                    fx = 0
                    sx = width - 1
                }
            }
            xOffset[dx] = sx * 3
            xWeights[dx] = (weight(1 - fx), weight(fx))
        }
        // Vertical taps, per output row; rows are clamped but weights are not (as OpenCV).
        var rows = [(Int, Int)](repeating: (0, 0), count: outH)
        var yWeights = [(Int32, Int32)](repeating: (0, 0), count: outH)
        for dy in 0..<outH {
            var fy = Float((Double(dy) + 0.5) * scaleY - 0.5)
            let sy = Int(fy.rounded(.down))
            fy -= Float(sy)
            rows[dy] = (min(max(sy, 0), height - 1), min(max(sy + 1, 0), height - 1))
            yWeights[dy] = (weight(1 - fy), weight(fy))
        }

        var out = [UInt8](repeating: 0, count: outW * outH * 3)
        let rowWidth = outW * 3
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                var line0 = [Int32](repeating: 0, count: rowWidth)
                var line1 = line0
                var cached = (-1, -1)
                func horizontal(_ row: Int, into line: inout [Int32]) {
                    let s = src.baseAddress! + row * width * 3
                    for dx in 0..<outW {
                        let o = xOffset[dx]
                        if dx < xmax {
                            let (a0, a1) = xWeights[dx]
                            for k in 0..<3 { line[dx * 3 + k] = Int32(s[o + k]) * a0 + Int32(s[o + k + 3]) * a1 }
                        } else {
                            for k in 0..<3 { line[dx * 3 + k] = Int32(s[o + k]) * Int32(one) }
                        }
                    }
                }
                for dy in 0..<outH {
                    let (r0, r1) = rows[dy]
                    if cached.0 != r0 {
                        if cached.1 == r0 { swap(&line0, &line1) } else { horizontal(r0, into: &line0) }
                    }
                    if cached.0 != r0 || cached.1 != r1 { horizontal(r1, into: &line1) }
                    cached = (r0, r1)
                    let (b0, b1) = yWeights[dy]
                    let d = dst.baseAddress! + dy * rowWidth
                    for i in 0..<rowWidth {
                        d[i] = UInt8(
                            truncatingIfNeeded: (((b0 * (line0[i] >> 4)) >> 16) + ((b1 * (line1[i] >> 4)) >> 16) + 2)
                                >> 2)
                    }
                }
            }
        }
        return Image(width: outW, height: outH, pixels: out)
    }

    /// Exact halving: each output pixel is the rounded mean of a 2×2 block, `(a + b + c + d + 2) >> 2`.
    private func halved() -> Image {
        let (outW, outH) = (width / 2, height / 2)
        var out = [UInt8](repeating: 0, count: outW * outH * 3)
        for y in 0..<outH {
            let top = 2 * y * width * 3
            let bottom = (2 * y + 1) * width * 3
            for x in 0..<outW {
                for k in 0..<3 {
                    let sum =
                        Int(pixels[top + 6 * x + k]) + Int(pixels[top + 6 * x + 3 + k])
                        + Int(pixels[bottom + 6 * x + k]) + Int(pixels[bottom + 6 * x + 3 + k])
                    out[(y * outW + x) * 3 + k] = UInt8((sum + 2) >> 2)
                }
            }
        }
        return Image(width: outW, height: outH, pixels: out)
    }
}
