import Foundation

/// An existing YOLO label file read as prompts for SAM (the box dataset → segmentation recipe, like Ultralytics'
/// `yolo_bbox2segment`). Box rows (`class cx cy w h`, normalised) become SAM box prompts; rows that already are
/// polygons (`class x1 y1 … xn yn`) are kept as they are, so converting a converted or mixed dataset changes
/// nothing that is already a segment. Rows are checked as Ultralytics' dataset checker does.
public struct BoxLabels: Sendable, Equatable {
    public enum Row: Sendable, Equatable {
        /// A box in pixels of the image, with its class.
        case box(classId: Int, x1: Float, y1: Float, x2: Float, y2: Float)
        /// A row that already is a polygon (normalised points), kept verbatim.
        case polygon(classId: Int, points: [(x: Float, y: Float)], text: String)

        public static func == (a: Row, b: Row) -> Bool {
            switch (a, b) {
            case (.box(let c, let x1, let y1, let x2, let y2), .box(let d, let u1, let v1, let u2, let v2)):
                c == d && x1 == u1 && y1 == v1 && x2 == u2 && y2 == v2
            case (.polygon(_, _, let t), .polygon(_, _, let u)): t == u
            default: false
            }
        }
    }

    public var rows: [Row]

    /// Class ids a box label may carry: `0..<maximumClasses` (a box dataset's `data.yaml` names every id up to the
    /// highest, so an id of 999999999 would ask for a billion names).
    public static let maximumClasses = 10_000
    /// Rows a label file may hold; every box row prompts SAM.
    public static let maximumRows = 10_000
    /// Bytes a label file may hold (10,000 rows of long polygons fit comfortably).
    public static let maximumBytes = 16 << 20

    public struct Problem: Error, LocalizedError {
        public let path: String, line: Int, reason: String
        public var errorDescription: String? { "\(path) line \(line): \(reason)" }
    }

    /// Where an image's box labels are: `boxes` mirrors the data folder's tree (`a/b.jpg` → `boxes/a/b.txt`).
    public static func path(forImage relativePath: String, in boxes: String) -> String {
        (boxes as NSString).appendingPathComponent((relativePath as NSString).deletingPathExtension + ".txt")
    }

    /// Ultralytics' dataset layout (`img2label_paths`): the last `images` folder of the data path replaced by
    /// `labels` (`dataset/images/train` → `dataset/labels/train`).
    public static func ultralyticsLabelFolder(forData data: String) -> String? {
        var parts = URL(fileURLWithPath: data).standardizedFileURL.pathComponents
        guard let at = parts.lastIndex(of: "images") else { return nil }
        parts[at] = "labels"
        return NSString.path(withComponents: parts)
    }

    /// Reads the label file at `path` for an image of `width`×`height` pixels. A missing file is an image
    /// without objects (a background image, as Ultralytics treats it). Duplicate rows are dropped, keeping the
    /// first (Ultralytics drops them too).
    public static func read(path: String, width: Int, height: Int) throws -> BoxLabels {
        var info = stat()
        // lstat: a label file that is a symbolic link is not followed (it could name any file the user can read).
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return BoxLabels(rows: []) }
            throw Problem(path: path, line: 0, reason: "cannot be read (\(String(cString: strerror(errno))))")
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw Problem(
                path: path, line: 0,
                reason: info.st_mode & S_IFMT == S_IFLNK
                    ? "a symbolic link, not followed" : "not a regular file (a folder, pipe or device)")
        }
        guard info.st_size <= maximumBytes else {
            throw Problem(
                path: path, line: 0,
                reason: "\(info.st_size) bytes; a label file is at most \(maximumBytes >> 20) MiB")
        }
        guard let handle = FileHandle(forReadingAtPath: path),
            let data = try? handle.read(upToCount: maximumBytes + 1) ?? Data()
        else {
            throw Problem(path: path, line: 0, reason: "cannot be read")
        }
        try? handle.close()
        return try parse(data, path: path, width: width, height: height)
    }

    /// A label file's bytes (read from `path`) for an image of `width`×`height` pixels, checked row by row.
    public static func parse(_ data: Data, path: String, width: Int, height: Int) throws -> BoxLabels {
        guard data.count <= maximumBytes else {
            throw Problem(path: path, line: 0, reason: "larger than \(maximumBytes >> 20) MiB")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw Problem(path: path, line: 0, reason: "not UTF-8 text")
        }
        var rows: [Row] = []
        var seen = Set<[Substring]>()
        for (index, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let fields = line.split(whereSeparator: \.isWhitespace)
            guard !fields.isEmpty, seen.insert(fields).inserted else { continue }
            func problem(_ reason: String) -> Problem { Problem(path: path, line: index + 1, reason: reason) }
            guard isDecimal(fields[0]), let classValue = Double(fields[0]), classValue >= 0,
                classValue == classValue.rounded()
            else {
                throw problem("class '\(fields[0])' is not a non-negative whole number")
            }
            guard classValue < Double(maximumClasses) else {
                throw problem(
                    "class \(fields[0]) is above the highest class id autoannotate takes, \(maximumClasses - 1)")
            }
            guard rows.count < maximumRows else {
                throw problem(
                    "more than \(maximumRows) rows; autoannotate takes at most \(maximumRows) objects an image")
            }
            let values = try fields.dropFirst().map { field -> Float in
                guard isDecimal(field), let v = Float(field), v.isFinite else {
                    throw problem("'\(field)' is not a decimal number")
                }
                return v
            }
            // Ultralytics' checker: normalised, non-negative coordinates.
            guard values.allSatisfy({ $0 >= 0 && $0 <= 1 }) else {
                throw problem("coordinates must be normalised to [0, 1]")
            }
            let classId = Int(classValue)
            if values.count == 4 {
                // As yolo_bbox2segment: scale to pixels in float32, then xywh → xyxy.
                let (cx, cy) = (values[0] * Float(width), values[1] * Float(height))
                let (w, h) = (values[2] * Float(width), values[3] * Float(height))
                guard w > 0, h > 0 else { throw problem("the box has no width or no height") }
                rows.append(.box(classId: classId, x1: cx - w / 2, y1: cy - h / 2, x2: cx + w / 2, y2: cy + h / 2))
            } else if values.count >= 6, values.count % 2 == 0 {
                let points = stride(from: 0, to: values.count, by: 2).map { (x: values[$0], y: values[$0 + 1]) }
                guard shoelaceArea(points) > 0 else {
                    throw problem("the polygon has no area (its points lie on one line)")
                }
                rows.append(.polygon(classId: classId, points: points, text: fields.joined(separator: " ")))
            } else {
                throw problem(
                    "\(fields.count) columns: a box row has 5 (class cx cy w h), a polygon row an odd number ≥ 7")
            }
        }
        return BoxLabels(rows: rows)
    }

    /// Decimal notation as Python's `float` reads a label file (Swift would also take `0x1p3` or `nan`).
    static func isDecimal(_ field: Substring) -> Bool {
        field.utf8.allSatisfy {
            ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E || $0 == 0x2B || $0 == 0x2D || $0 | 0x20 == 0x65
        }
    }

    /// A polygon's area by the shoelace formula, in normalised units (in double: tiny polygons stay non-zero).
    static func shoelaceArea(_ points: [(x: Float, y: Float)]) -> Double {
        var twice = 0.0
        for (i, p) in points.enumerated() {
            let q = points[(i + 1) % points.count]
            twice += Double(p.x) * Double(q.y) - Double(q.x) * Double(p.y)
        }
        return abs(twice) / 2
    }

    /// Size and modification time of the label file ("" when there is none): a job redoes an image when this
    /// changes, so editing a box is picked up by the next run.
    public static func stamp(path: String) -> String {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
            let size = attributes[.size] as? Int, let date = attributes[.modificationDate] as? Date
        else { return "" }
        return "\(size):\(date.timeIntervalSince1970)"
    }
}
