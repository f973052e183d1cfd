/// Simple overlays for looking at results: tinted masks and box outlines.
extension Image {
    /// A colour for the `index`-th instance (Ultralytics' palette order).
    public static func paletteColor(_ index: Int) -> (UInt8, UInt8, UInt8) {
        let palette: [(UInt8, UInt8, UInt8)] = [
            (255, 56, 56), (255, 157, 151), (255, 112, 31), (255, 178, 29), (207, 210, 49), (72, 249, 10),
            (146, 204, 23),
            (61, 219, 134), (26, 147, 52), (0, 212, 187), (44, 153, 168), (0, 194, 255), (52, 69, 147), (100, 115, 255),
            (0, 24, 236), (132, 56, 255), (82, 0, 133), (203, 56, 255), (255, 149, 200), (255, 55, 199),
        ]
        return palette[index % palette.count]
    }

    /// Blends `color` into the pixels where `mask` is set (row-major, the image's size).
    public mutating func tint(mask: [Bool], color: (UInt8, UInt8, UInt8), alpha: Float = 0.5) {
        precondition(mask.count == width * height, "mask does not match the image")
        let c = [Float(color.0), Float(color.1), Float(color.2)]
        for i in 0..<mask.count where mask[i] {
            for k in 0..<3 {
                pixels[3 * i + k] = UInt8((Float(pixels[3 * i + k]) * (1 - alpha) + c[k] * alpha).rounded())
            }
        }
    }

    /// Draws a rectangle outline `thickness` pixels wide, clipped to the image.
    public mutating func strokeBox(x1: Int, y1: Int, x2: Int, y2: Int, color: (UInt8, UInt8, UInt8), thickness: Int = 2)
    {
        func set(_ x: Int, _ y: Int) {
            guard x >= 0, y >= 0, x < width, y < height else { return }
            (pixels[3 * (y * width + x)], pixels[3 * (y * width + x) + 1], pixels[3 * (y * width + x) + 2]) = color
        }
        for t in 0..<thickness {
            for x in x1...max(x1, x2) {
                set(x, y1 + t)
                set(x, y2 - t)
            }
            for y in y1...max(y1, y2) {
                set(x1 + t, y)
                set(x2 - t, y)
            }
        }
    }
}
