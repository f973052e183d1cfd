/// Cleaner polygons: OpenCV 4.10's `approxPolyDP` (Ramer–Douglas–Peucker as OpenCV runs it on a closed contour)
/// and `contourArea`, so that `epsilon=` and `min_area=` give the points and areas OpenCV gives.

/// `cv2.contourArea(contour)`: the polygon's area by the shoelace formula, in pixels (non-negative).
public func contourArea(_ contour: [GridPoint]) -> Double {
    guard contour.count >= 3 else { return 0 }
    var twice = 0.0
    var previous = contour[contour.count - 1]
    for point in contour {
        twice += Double(previous.x) * Double(point.y) - Double(point.x) * Double(previous.y)
        previous = point
    }
    return abs(twice) / 2
}

/// `cv2.approxPolyDP(contour, epsilon, closed=True)`: a subset of the contour's points within `epsilon` pixels of
/// it. OpenCV's order of work is kept — the start found by three rounds of farthest points, the splits taken from a
/// stack, then the clean-up pass over nearly straight runs — so the same points come out.
public func approximatePolygon(_ contour: [GridPoint], epsilon: Double) -> [GridPoint] {
    let count = contour.count
    guard count > 0 else { return [] }
    let tolerance = epsilon * epsilon
    func point(_ index: Int) -> (x: Double, y: Double) { (Double(contour[index].x), Double(contour[index].y)) }
    var kept: [GridPoint] = []
    var stack: [(start: Int, end: Int)] = []

    // 1. Approximately the two farthest points: from the first point, three rounds of "the farthest from here".
    var position = 0
    var farthest = 0
    var start = point(0)
    var withinTolerance = false
    for _ in 0..<3 {
        position = (position + farthest) % count
        start = point(position)
        position = (position + 1) % count
        var longest = 0.0
        for step in 1..<max(count, 1) {
            let p = point(position)
            position = (position + 1) % count
            let distance = (p.x - start.x) * (p.x - start.x) + (p.y - start.y) * (p.y - start.y)
            if distance > longest {
                longest = distance
                farthest = step
            }
        }
        withinTolerance = longest <= tolerance
    }
    if withinTolerance {
        kept.append(GridPoint(x: Int32(start.x), y: Int32(start.y)))
    } else {
        let first = position % count
        let second = (farthest + first) % count
        stack.append((second, first))
        stack.append((first, second))
    }

    // 2. Split each slice at its point farthest from the chord until every point is within tolerance.
    while let slice = stack.popLast() {
        let end = point(slice.end)
        var index = slice.start
        let from = point(index)
        index = (index + 1) % count
        var split = slice.start
        var within = true
        if index != slice.end {
            let (dx, dy) = (end.x - from.x, end.y - from.y)
            var largest = 0.0
            while index != slice.end {
                let p = point(index)
                index = (index + 1) % count
                let distance = abs((p.y - from.y) * dx - (p.x - from.x) * dy)
                if distance > largest {
                    largest = distance
                    split = (index + count - 1) % count
                }
            }
            within = largest * largest <= tolerance * (dx * dx + dy * dy)
        }
        if within {
            kept.append(contour[slice.start])
        } else {
            stack.append((split, slice.end))
            stack.append((slice.start, split))
        }
    }

    // 3. Clean-up: drop a point that lies nearly on the segment between its neighbours.
    var result = kept
    let total = result.count
    var remaining = total
    var read = total - 1
    func next() -> (x: Double, y: Double) {
        let p = result[read]
        read = read + 1 >= total ? 0 : read + 1
        return (Double(p.x), Double(p.y))
    }
    var from = next()
    var write = read
    var middle = next()
    var i = 0
    while i < total && remaining > 2 {
        let to = next()
        let (dx, dy) = (to.x - from.x, to.y - from.y)
        let distance = abs((middle.x - from.x) * dy - (middle.y - from.y) * dx)
        let inner = (middle.x - from.x) * (to.x - middle.x) + (middle.y - from.y) * (to.y - middle.y)
        if distance * distance <= 0.5 * tolerance * (dx * dx + dy * dy) && dx != 0 && dy != 0 && inner >= 0 {
            remaining -= 1
            from = to
            result[write] = GridPoint(x: Int32(to.x), y: Int32(to.y))
            write = write + 1 >= total ? 0 : write + 1
            middle = next()
            i += 2
            continue
        }
        from = middle
        result[write] = GridPoint(x: Int32(middle.x), y: Int32(middle.y))
        write = write + 1 >= total ? 0 : write + 1
        middle = to
        i += 1
    }
    return Array(result.prefix(remaining))
}
