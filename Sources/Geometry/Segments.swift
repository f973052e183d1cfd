// Port of Ultralytics' mask → polygon path at 8.4.190: utils/ops.py masks2segments and scale_coords,
// data/converter.py merge_multi_segment and min_index, engine/results.py Masks.xyn.

/// How a mask made of several parts becomes polygons.
public enum MultiPartPolicy: String, Sendable, CaseIterable {
    /// Ultralytics' default (`masks2segments(strategy="all")`): all parts joined into one closed walk through
    /// their closest points (`merge_multi_segment`).
    case merge
    /// Only the part with the most contour points (Ultralytics' `strategy="largest"`).
    case largest
    /// One polygon per part.
    case separate
}

/// The polygons of a binary mask as pixel coordinates, per `policy`. Empty for an empty mask.
public func maskSegments(_ mask: [Bool], width: Int, height: Int, policy: MultiPartPolicy = .merge) -> [[GridPoint]] {
    maskPolygons(mask, width: width, height: height, policy: policy).polygons
}

/// `maskSegments` with cleaner polygons: parts whose contour area (`contourArea`) is below `minimumPartArea`
/// pixels are dropped (and counted), and each part is simplified by `approximatePolygon` within `epsilon` pixels
/// (0: kept as found, Ultralytics' polygons) — the largest part chosen before, parts merged after.
public func maskPolygons(
    _ mask: [Bool], width: Int, height: Int, policy: MultiPartPolicy = .merge, minimumPartArea: Double = 0,
    epsilon: Double = 0
) -> (polygons: [[GridPoint]], droppedParts: Int) {
    let found = externalContours(mask, width: width, height: height)
    let contours = minimumPartArea > 0 ? found.filter { contourArea($0) >= minimumPartArea } : found
    guard !contours.isEmpty else { return ([], found.count - contours.count) }
    func simplified(_ parts: [[GridPoint]]) -> [[GridPoint]] {
        epsilon > 0 ? parts.map { approximatePolygon($0, epsilon: epsilon) } : parts
    }
    let polygons: [[GridPoint]]
    switch policy {
    case .merge:
        let parts = simplified(contours)
        polygons = [parts.count > 1 ? mergeMultiSegment(parts).flatMap { $0 } : parts[0]]
    case .largest: polygons = simplified([contours.max { $0.count < $1.count }!])  // the first longest, as argmax
    case .separate: polygons = simplified(contours)
    }
    return (polygons, found.count - contours.count)
}

/// `merge_multi_segment`: connects consecutive segments at their closest point pair so that the result, read
/// in order, is one closed walk visiting every segment and coming back along the same bridges.
public func mergeMultiSegment(_ input: [[GridPoint]]) -> [[GridPoint]] {
    var segments = input
    var indexes = [[Int]](repeating: [], count: segments.count)
    for i in 1..<segments.count {
        let (a, b) = minIndex(segments[i - 1], segments[i])
        indexes[i - 1].append(a)
        indexes[i].append(b)
    }
    var out: [[GridPoint]] = []
    let last = segments.count - 1
    for (i, original) in indexes.enumerated() {
        var idx = original
        // Middle segments have two indexes: reverse the segment when they are in decreasing order.
        if idx.count == 2 && idx[0] > idx[1] {
            idx = idx.map { segments[i].count - 1 - $0 }
            segments[i].reverse()
        }
        let n = segments[i].count
        segments[i] = Array(segments[i][(idx[0] % n)...] + segments[i][..<(idx[0] % n)])
        segments[i].append(segments[i][0])
        if i == 0 || i == last {
            out.append(segments[i])
        } else {
            out.append(Array(segments[i][0...(idx[1] - idx[0])]))
        }
    }
    for i in stride(from: last, through: 0, by: -1) where i != 0 && i != last {
        let span = abs(indexes[i][1] - indexes[i][0])
        out.append(Array(segments[i][span...]))
    }
    return out
}

/// `min_index`: the (i, j) of the closest pair, the first in row-major order among equal squared distances.
func minIndex(_ a: [GridPoint], _ b: [GridPoint]) -> (Int, Int) {
    var best = Int64.max
    var at = (0, 0)
    for (i, p) in a.enumerated() {
        for (j, q) in b.enumerated() {
            let dx = Int64(p.x - q.x)
            let dy = Int64(p.y - q.y)
            let d = dx * dx + dy * dy
            if d < best {
                best = d
                at = (i, j)
            }
        }
    }
    return at
}

/// `Masks.xyn` for one polygon: coordinates clipped to [0, width] × [0, height] and divided by the size, in
/// float32 as numpy computes them.
public func normalized(_ polygon: [GridPoint], width: Int, height: Int) -> [(x: Float, y: Float)] {
    polygon.map { p in
        (min(max(Float(p.x), 0), Float(width)) / Float(width), min(max(Float(p.y), 0), Float(height)) / Float(height))
    }
}
