// Port of OpenCV's border following (imgproc/src/contours.cpp at 4.10: cvFindNextContour, icvFetchContour,
// the Suzuki–Abe algorithm) for the one mode the pipeline needs: cv2.findContours(mask, RETR_EXTERNAL,
// CHAIN_APPROX_SIMPLE).

/// A point on the pixel grid.
public struct GridPoint: Equatable, Hashable, Sendable {
    public var x: Int32, y: Int32
    public init(x: Int32, y: Int32) { (self.x, self.y) = (x, y) }
}

/// The outer borders of the 8-connected components of a binary mask (`width × height`, row-major, non-zero =
/// set), with only the corner points of each straight run kept — exactly `cv2.findContours(mask,
/// cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]`: each contour starts at its top-left pixel and runs
/// counter-clockwise in image coordinates, and contours come in OpenCV's order (the reverse of discovery,
/// i.e. the last one found in the raster scan first).
public func externalContours(_ mask: [Bool], width: Int, height: Int) -> [[GridPoint]] {
    precondition(mask.count == width * height, "mask of \(mask.count) pixels is not \(width)×\(height)")
    guard width > 0, height > 0 else { return [] }
    // A zero border of one pixel all round, as findContours pads the image.
    let (w, h) = (width + 2, height + 2)
    var img = [Int8](repeating: 0, count: w * h)
    for y in 0..<height { for x in 0..<width where mask[y * width + x] { img[(y + 1) * w + x + 1] = 1 } }
    // Neighbour offsets by chain code 0…7 (right, up-right, up, up-left, left, down-left, down, down-right),
    // repeated so that a search may run past 7.
    let steps = [1, -w + 1, -w, -w - 1, -1, w - 1, w, w + 1]
    let deltas = steps + steps
    let codeDeltas: [(Int32, Int32)] = [(1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1)]
    let nbd: Int8 = 2
    let rightBound: Int8 = 2 | -128

    var contours: [[GridPoint]] = []
    img.withUnsafeMutableBufferPointer { buffer in
        let image = buffer.baseAddress!
        var lnbd = 0  // column of the last border pixel met on this row (its row is the current one)
        for y in 1..<(h - 1) {
            lnbd = 0
            var prev: Int8 = 0
            var x = 1
            while x < w - 1 {
                let row = image + y * w
                var p = row[x]
                while x < w - 1 && p == prev {
                    x += 1
                    p = row[x]
                }
                if x >= w - 1 { break }
                // An outer border starts where 0 turns into 1; in RETR_EXTERNAL mode it is followed only when the
                // last border met on this row is not a left border of an enclosing component (marked +nbd).
                if prev == 0 && p == 1 && row[lnbd] <= 0 {
                    contours.append(
                        follow(
                            image + y * w + x, origin: GridPoint(x: Int32(x - 1), y: Int32(y - 1)),
                            deltas: deltas, codeDeltas: codeDeltas, nbd: nbd, rightBound: rightBound))
                    p = row[x]  // the start pixel is now marked
                } else if p == 0 && prev >= 1 && prev & -2 != 0 {
                    lnbd = x - 1  // a hole border: not followed in this mode, but it is the last border met
                }
                prev = p
                if prev & -2 != 0 { lnbd = x }
                x += 1
            }
        }
    }
    return contours.reversed()
}

/// icvFetchContour with CHAIN_APPROX_SIMPLE for an outer border starting at `start`: marks the border (right
/// edges with the high bit) and returns the points where the chain direction changes.
private func follow(
    _ start: UnsafeMutablePointer<Int8>, origin: GridPoint, deltas: [Int], codeDeltas: [(Int32, Int32)],
    nbd: Int8, rightBound: Int8
) -> [GridPoint] {
    var points: [GridPoint] = []
    var s = 4
    var sEnd = 4
    var i1 = start
    repeat {
        s = (s - 1) & 7
        i1 = start + deltas[s]
        if i1.pointee != 0 { break }
    } while s != sEnd
    if s == sEnd {  // a single pixel
        start.pointee = rightBound
        return [origin]
    }
    var i3 = start
    var prevS = s ^ 4
    var pt = origin
    while true {
        sEnd = s
        var i4: UnsafeMutablePointer<Int8>
        repeat {
            s += 1
            i4 = i3 + deltas[s]
        } while i4.pointee == 0
        s &= 7
        if UInt(bitPattern: s - 1) < UInt(sEnd) {
            i3.pointee = rightBound
        } else if i3.pointee == 1 {
            i3.pointee = nbd
        }
        if s != prevS {
            points.append(pt)
            prevS = s
        }
        pt.x += codeDeltas[s].0
        pt.y += codeDeltas[s].1
        if i4 == start && i3 == i1 { break }
        i3 = i4
        s = (s + 4) & 7
    }
    return points
}
