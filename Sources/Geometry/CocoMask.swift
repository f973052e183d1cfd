import Foundation

/// A mask in COCO's run-length form, as pycocotools' `mask` module (maskApi.c) makes and reads it: run lengths
/// over the pixels in column-major order, starting with a run of zeros. Polygons are rasterised by pycocotools'
/// own algorithm, so areas, boxes and masks equal what `COCO.annToMask` and `maskUtils.area` give for them.
public struct CocoRLE: Equatable, Sendable {
    public let height: Int
    public let width: Int
    public var counts: [Int]

    public init(height: Int, width: Int, counts: [Int]) {
        (self.height, self.width, self.counts) = (height, width, counts)
    }

    /// `rleFrPoly`: the polygon `xy` (x0, y0, x1, y1, … in pixels) rasterised on an image of `height` × `width`:
    /// the boundary walked at 5× resolution, its crossings of pixel columns kept, and the runs read off them.
    public init(polygon xy: [Double], height: Int, width: Int) {
        let scale = 5.0
        let corners = xy.count / 2
        // C's (int)(v + .5): truncation toward zero; coordinates beyond any image are clamped first.
        func upsampled(_ v: Double) -> Int { Int(min(max(scale * v + 0.5, -1e9), 1e9)) }
        var x = (0..<corners).map { upsampled(xy[2 * $0]) }
        var y = (0..<corners).map { upsampled(xy[2 * $0 + 1]) }
        guard corners > 0 else {
            self.init(height: height, width: width, counts: [height * width])
            return
        }
        x.append(x[0])
        y.append(y[0])
        // Every point on the boundary, densely.
        var u: [Int] = []
        var v: [Int] = []
        for j in 0..<corners {
            var (xs, xe, ys, ye) = (x[j], x[j + 1], y[j], y[j + 1])
            let (dx, dy) = (abs(xe - xs), abs(ys - ye))
            let flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye)
            if flip { (xs, xe, ys, ye) = (xe, xs, ye, ys) }
            if dx == 0 && dy == 0 {
                // A repeated corner: one point, whose row is never read (its neighbours share its column).
                u.append(xs)
                v.append(ys)
            } else if dx >= dy {
                let slope = Double(ye - ys) / Double(dx)
                for d in 0...dx {
                    let t = flip ? dx - d : d
                    u.append(t + xs)
                    v.append(Int(Double(ys) + slope * Double(t) + 0.5))
                }
            } else {
                let slope = Double(xe - xs) / Double(dy)
                for d in 0...dy {
                    let t = flip ? dy - d : d
                    v.append(t + ys)
                    u.append(Int(Double(xs) + slope * Double(t) + 0.5))
                }
            }
        }
        // Where the boundary crosses a pixel column's centre, back at 1×: the first row inside.
        var starts: [Int] = []
        for j in 1..<max(u.count, 1) where u[j] != u[j - 1] {
            var column = Double(u[j] < u[j - 1] ? u[j] : u[j] - 1)
            column = (column + 0.5) / scale - 0.5
            guard column.rounded(.down) == column, column >= 0, column <= Double(width - 1) else { continue }
            var row = Double(v[j] < v[j - 1] ? v[j] : v[j - 1])
            row = (row + 0.5) / scale - 0.5
            row = min(max(row, 0), Double(height)).rounded(.up)
            starts.append(Int(column) * height + Int(row))
        }
        // Sorted crossings become alternating runs; an empty run merges its neighbours.
        starts.append(height * width)
        starts.sort()
        var previous = 0
        for j in starts.indices { (starts[j], previous) = (starts[j] - previous, starts[j]) }
        var counts = [starts[0]]
        var j = 1
        while j < starts.count {
            if starts[j] > 0 {
                counts.append(starts[j])
                j += 1
            } else {
                j += 1
                if j < starts.count {
                    counts[counts.count - 1] += starts[j]
                    j += 1
                }
            }
        }
        self.init(height: height, width: width, counts: counts)
    }

    /// `rleMerge` (union): the pixels set in any of `masks`, all of one size; nil for none or sizes that differ.
    public static func union(_ masks: [CocoRLE]) -> CocoRLE? {
        guard var merged = masks.first, masks.allSatisfy({ $0.height == merged.height && $0.width == merged.width })
        else { return nil }
        for other in masks.dropFirst() {
            // Two cursors walk the runs together; a run of the union ends where its value changes.
            struct Cursor {
                let counts: [Int]
                var left: Int, next = 1, value = false
                init(_ counts: [Int]) { (self.counts, left) = (counts, counts.first ?? 0) }
                mutating func advance(by step: Int) -> Int {
                    left -= step
                    if left == 0 && next < counts.count {
                        left = counts[next]
                        next += 1
                        value.toggle()
                    }
                    return left
                }
            }
            var (a, b) = (Cursor(merged.counts), Cursor(other.counts))
            var counts: [Int] = []
            var (run, remaining, value) = (0, 1, false)
            while remaining > 0 {
                let step = min(a.left, b.left)
                run += step
                remaining = a.advance(by: step) + b.advance(by: step)
                let before = value
                value = a.value || b.value
                if value != before || remaining == 0 {
                    counts.append(run)
                    run = 0
                }
            }
            merged.counts = counts
        }
        return merged
    }

    /// `rleArea`: the number of set pixels.
    public var area: Int { stride(from: 1, to: counts.count, by: 2).reduce(0) { $0 + counts[$1] } }

    /// `rleToBbox`: the set pixels' box as COCO writes it (x, y, width, height); zeros for an empty mask.
    public var box: [Double] {
        let runs = counts.count / 2 * 2
        guard runs > 0, height > 0 else { return [0, 0, 0, 0] }
        var (xs, ys, xe, ye) = (width, height, 0, 0)
        var (total, previousX) = (0, 0)
        for j in 0..<runs {
            total += counts[j]
            let t = total - j % 2
            let (row, column) = (t % height, t / height)
            if j % 2 == 0 {
                previousX = column
            } else if previousX < column {
                (ys, ye) = (0, height - 1)
            }
            (xs, xe, ys, ye) = (min(xs, column), max(xe, column), min(ys, row), max(ye, row))
        }
        return [Double(xs), Double(ys), Double(xe - xs + 1), Double(ye - ys + 1)]
    }

    /// `rleToString`: COCO's compressed counts (6 bits a character, each count after the second as the difference
    /// from the one two before).
    public var compressed: String {
        var text: [UInt8] = []
        for (i, count) in counts.enumerated() {
            var value = count - (i > 2 ? counts[i - 2] : 0)
            var more = true
            while more {
                var c = UInt8(truncatingIfNeeded: value & 0x1f)
                value >>= 5
                more = (c & 0x10) != 0 ? value != -1 : value != 0
                if more { c |= 0x20 }
                text.append(c + 48)
            }
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// The mask's pixels, row-major (for drawing and tests).
    public var pixels: [Bool] {
        var mask = [Bool](repeating: false, count: height * width)
        var (index, value) = (0, false)
        for count in counts {
            for k in index..<min(index + count, mask.count) where value {
                mask[(k % height) * width + k / height] = true
            }
            index += count
            value.toggle()
        }
        return mask
    }
}
