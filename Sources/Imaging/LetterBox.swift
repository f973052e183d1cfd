/// Ultralytics' `LetterBox` (ultralytics/data/augment.py, 8.4.190): scale to fit, keeping the aspect ratio,
/// then pad with grey to the target — or, with `auto`, only up to the next multiple of `stride`.
public struct LetterBox: Sendable {
    /// Target height and width.
    public var height: Int
    public var width: Int
    /// Pad only to a multiple of `stride` (the minimal rectangle Ultralytics uses for PyTorch models).
    public var auto: Bool
    /// Allow scaling up (Ultralytics' `scaleup`).
    public var scaleUp: Bool
    /// Split the padding between both sides (true) or put it all at the bottom and right.
    public var center: Bool
    public var stride: Int
    public var padValue: UInt8

    public init(
        height: Int, width: Int, auto: Bool = false, scaleUp: Bool = true, center: Bool = true,
        stride: Int = 32, padValue: UInt8 = 114
    ) {
        self.height = height
        self.width = width
        self.auto = auto
        self.scaleUp = scaleUp
        self.center = center
        self.stride = stride
        self.padValue = padValue
    }

    /// Where the source image went: its scale and the padding before it, what `scale_boxes` undoes.
    public struct Placement: Equatable, Sendable {
        public var ratio: Double
        public var resizedWidth: Int, resizedHeight: Int
        public var top: Int, bottom: Int, left: Int, right: Int
    }

    /// The placement of a `sourceWidth`×`sourceHeight` image, with Ultralytics' rounding: Python's
    /// round-half-even of the scaled sides, and `round(pad/2 ∓ 0.1)` so an odd padding puts the extra pixel
    /// at the bottom/right.
    public func placement(sourceWidth: Int, sourceHeight: Int) -> Placement {
        var r = min(Double(height) / Double(sourceHeight), Double(width) / Double(sourceWidth))
        if !scaleUp { r = min(r, 1) }
        let newW = max(Int((Double(sourceWidth) * r).rounded(.toNearestOrEven)), 1)
        let newH = max(Int((Double(sourceHeight) * r).rounded(.toNearestOrEven)), 1)
        var dw = Double(width - newW)
        var dh = Double(height - newH)
        if auto {
            dw = Double((width - newW) %% stride)
            dh = Double((height - newH) %% stride)
        }
        if center {
            dw /= 2
            dh /= 2
        }
        func round(_ v: Double) -> Int { Int(v.rounded(.toNearestOrEven)) }
        return Placement(
            ratio: r, resizedWidth: newW, resizedHeight: newH,
            top: center ? round(dh - 0.1) : 0, bottom: round(dh + 0.1),
            left: center ? round(dw - 0.1) : 0, right: round(dw + 0.1))
    }

    public func callAsFunction(_ image: Image) -> (image: Image, placement: Placement) {
        let p = placement(sourceWidth: image.width, sourceHeight: image.height)
        let resized = image.resized(width: p.resizedWidth, height: p.resizedHeight)
        let (outW, outH) = (p.left + p.resizedWidth + p.right, p.top + p.resizedHeight + p.bottom)
        var out = [UInt8](repeating: padValue, count: outW * outH * 3)
        let rowBytes = p.resizedWidth * 3
        resized.pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for y in 0..<p.resizedHeight {
                    (dst.baseAddress! + ((p.top + y) * outW + p.left) * 3).update(
                        from: src.baseAddress! + y * rowBytes, count: rowBytes)
                }
            }
        }
        return (Image(width: outW, height: outH, pixels: out), p)
    }
}

infix operator %% : MultiplicationPrecedence

/// Python's modulo (result has the divisor's sign), as `np.mod` in the letterbox.
private func %% (a: Int, b: Int) -> Int { ((a % b) + b) % b }
