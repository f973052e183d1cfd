/// The EXIF orientation tag (0x0112) and how to turn a stored image upright, as OpenCV's `ExifTransform`.
public enum ExifOrientation: Int, Sendable, CaseIterable {
    case topLeft = 1
    case topRight, bottomRight, bottomLeft, leftTop, rightTop, rightBottom, leftBottom

    /// Reads the orientation from EXIF data in TIFF layout, the way OpenCV's ExifReader does: byte order
    /// from the TIFF header, IFD0 entries scanned for tag 0x0112, its value read as an unsigned 16-bit
    /// integer. Returns nil for anything else, including values outside 1…8 (OpenCV leaves those alone).
    public init?(exif: UnsafeBufferPointer<UInt8>) {
        guard exif.count >= 8 else { return nil }
        let little: Bool
        switch (exif[0], exif[1]) {
        case (0x49, 0x49): little = true
        case (0x4D, 0x4D): little = false
        default: return nil
        }
        func u16(_ at: Int) -> Int? {
            guard at >= 0, at + 2 <= exif.count else { return nil }
            let (a, b) = (Int(exif[at]), Int(exif[at + 1]))
            return little ? a | b << 8 : a << 8 | b
        }
        func u32(_ at: Int) -> Int? {
            guard let low = u16(little ? at : at + 2), let high = u16(little ? at + 2 : at) else { return nil }
            return high << 16 | low
        }
        guard u16(2) == 42, let ifd = u32(4), let entries = u16(ifd) else { return nil }
        for entry in 0..<entries {
            let at = ifd + 2 + entry * 12
            guard let tag = u16(at) else { return nil }
            if tag == 0x0112, let value = u16(at + 8) {
                self.init(rawValue: value)
                return
            }
        }
        return nil
    }
}

extension Image {
    /// The image turned upright according to `orientation` (flips and transposes; no resampling).
    public func oriented(_ orientation: ExifOrientation) -> Image {
        let transposes = orientation.rawValue >= 5
        let (outW, outH) = transposes ? (height, width) : (width, height)
        // After the optional transpose, OpenCV flips: horizontally for TR, RT; both for BR, RB; vertically for BL, LB.
        let flipX = [.topRight, .bottomRight, .rightTop, .rightBottom].contains(orientation)
        let flipY = [.bottomRight, .bottomLeft, .rightBottom, .leftBottom].contains(orientation)
        var out = [UInt8](repeating: 0, count: pixels.count)
        for y in 0..<outH {
            for x in 0..<outW {
                let (tx, ty) = (flipX ? outW - 1 - x : x, flipY ? outH - 1 - y : y)
                let (sx, sy) = transposes ? (ty, tx) : (tx, ty)
                let (s, d) = ((sy * width + sx) * 3, (y * outW + x) * 3)
                out[d] = pixels[s]
                out[d + 1] = pixels[s + 1]
                out[d + 2] = pixels[s + 2]
            }
        }
        return Image(width: outW, height: outH, pixels: out)
    }
}
