/// COCO run-length encoding of a binary mask (pycocotools' uncompressed form): run lengths over the mask read
/// in column-major (Fortran) order, starting with a run of zeros (possibly empty).
public func runLengthEncoding(_ mask: [Bool], width: Int, height: Int) -> [Int] {
    var counts: [Int] = []
    var current = false
    var run = 0
    for x in 0..<width {
        for y in 0..<height {
            let value = mask[y * width + x]
            if value != current {
                counts.append(run)
                run = 0
                current = value
            }
            run += 1
        }
    }
    counts.append(run)
    return counts
}

/// The tight box (x1, y1, x2, y2) of the set pixels, x2/y2 inclusive as Ultralytics' `batched_mask_to_box`; nil
/// for an empty mask.
public func maskBox(_ mask: [Bool], width: Int, height: Int) -> (x1: Int, y1: Int, x2: Int, y2: Int)? {
    var (x1, y1, x2, y2) = (width, height, -1, -1)
    for y in 0..<height {
        for x in 0..<width where mask[y * width + x] {
            x1 = min(x1, x)
            x2 = max(x2, x)
            y1 = min(y1, y)
            y2 = max(y2, y)
        }
    }
    return x2 < 0 ? nil : (x1, y1, x2, y2)
}
