import Foundation
import GRDB

/// The state of one image of a job.
public enum ImageState: String, Sendable, CaseIterable {
    case pending, detected, done, empty, failed
}

/// One object written to a label file.
public struct ObjectRecord: Sendable, Equatable {
    public var classId: Int
    public var confidence: Float
    public var box: (x1: Float, y1: Float, x2: Float, y2: Float)
    public var samScore: Float
    public var points: Int
    public var source: Source = .sam
    /// The object's lines in the label file (`class x1 y1 … xn yn`, normalised; several where its mask has parts
    /// written apart), kept in the store so that an export reads the job, not its text files.
    public var lines: [String] = []

    /// Where an object's polygon came from.
    public enum Source: String, Sendable {
        /// SAM's mask for the box.
        case sam
        /// A box dataset's box written as its own outline: SAM's mask was rejected (`sam_conf`) or empty.
        case boxOutline = "box"
        /// A box dataset's row that already was a polygon, copied (confidence 1, SAM not run).
        case label
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.classId == b.classId && a.confidence == b.confidence && a.samScore == b.samScore && a.points == b.points
            && a.source == b.source && a.lines == b.lines
            && a.box.x1 == b.box.x1 && a.box.y1 == b.box.y1 && a.box.x2 == b.box.x2 && a.box.y2 == b.box.y2
    }
}

/// The job's SQLite store inside the output folder (`autoannotate.sqlite`, WAL mode, one pool per process):
/// the job's settings, a row per image with its state, error and timings, a row per written object. A label
/// file is made durable before the state that describes it is committed, so a crash in between redoes that one
/// image and writes the same bytes.
public final class JobStore: Sendable {
    public static let fileName = "autoannotate.sqlite"
    let pool: DatabasePool
    public let path: String

    public init(output: String) throws {
        path = (output as NSString).appendingPathComponent(Self.fileName)
        // SQLite follows symbolic links: a link planted in the job folder would have it write elsewhere.
        for file in [path, path + "-wal", path + "-shm"] {
            var info = stat()
            if lstat(file, &info) == 0, info.st_mode & S_IFMT != S_IFREG {
                throw AnnotateError.unreadable(
                    path: file,
                    reason: "not a regular file (a symbolic link?); autoannotate does not follow links in a job folder")
            }
        }
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            try Self.migrator.migrate(pool)
            let damaged = try pool.read { db in try Int.fetchOne(db, sql: Self.wrongTypes) ?? 0 }
            guard damaged == 0 else {
                throw AnnotateError.unreadable(
                    path: path,
                    reason:
                        "the job store was changed by hand: \(damaged) rows hold values of the wrong type (text for a number, or a number for a path); restore it or start a new job"
                )
            }
        } catch let error as DatabaseError {
            throw AnnotateError.unreadable(
                path: path,
                reason: "the job store cannot be opened (\(error.message ?? "SQLite error \(error.resultCode)"))")
        }
    }

    /// Rows whose values the store's readers would not decode (SQLite keeps any type in any column): counted once
    /// when the store opens, so that a store edited by hand is refused in a sentence instead of trapping in a read.
    static let wrongTypes = """
        SELECT
          (SELECT COUNT(*) FROM image WHERE typeof(path) != 'text' OR typeof(label) != 'text'
             OR typeof(size) != 'integer' OR typeof(mtime) NOT IN ('real', 'integer') OR typeof(state) != 'text'
             OR state NOT IN ('pending', 'detected', 'done', 'empty', 'failed')
             OR typeof(objects) != 'integer' OR typeof(removed) != 'integer' OR typeof(completions) != 'integer'
             OR typeof(boxes) != 'text' OR typeof(updatedAt) NOT IN ('real', 'integer')
             OR typeof(error) NOT IN ('text', 'null') OR typeof(seconds) NOT IN ('real', 'integer', 'null')
             OR typeof(width) NOT IN ('integer', 'null') OR typeof(height) NOT IN ('integer', 'null'))
        + (SELECT COUNT(*) FROM object WHERE typeof(imageId) != 'integer' OR typeof(position) != 'integer'
             OR typeof(classId) != 'integer' OR typeof(points) != 'integer' OR typeof(source) != 'text'
             OR typeof(lines) NOT IN ('text', 'null')
             OR typeof(confidence) NOT IN ('real', 'integer') OR typeof(samScore) NOT IN ('real', 'integer')
             OR typeof(x1) NOT IN ('real', 'integer') OR typeof(y1) NOT IN ('real', 'integer')
             OR typeof(x2) NOT IN ('real', 'integer') OR typeof(y2) NOT IN ('real', 'integer'))
        + (SELECT COUNT(*) FROM job WHERE typeof(settings) != 'text' OR typeof(token) NOT IN ('text', 'null')
             OR typeof(names) NOT IN ('text', 'null'))
        + (SELECT COUNT(*) FROM skipped WHERE typeof(path) != 'text' OR typeof(reason) != 'text')
        """

    /// Migrations are named, never edited once shipped, and written in SQL rather than app types.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: job, image, object") { db in
            try db.execute(
                sql: """
                    CREATE TABLE job (
                        id INTEGER PRIMARY KEY CHECK (id = 1),
                        settings TEXT NOT NULL,
                        createdAt REAL NOT NULL,
                        updatedAt REAL NOT NULL
                    );
                    CREATE TABLE image (
                        id INTEGER PRIMARY KEY,
                        path TEXT NOT NULL UNIQUE,
                        label TEXT NOT NULL,
                        size INTEGER NOT NULL,
                        mtime REAL NOT NULL,
                        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'detected', 'done', 'empty', 'failed')),
                        error TEXT,
                        objects INTEGER NOT NULL DEFAULT 0,
                        seconds REAL,
                        removed INTEGER NOT NULL DEFAULT 0,
                        completions INTEGER NOT NULL DEFAULT 0,
                        updatedAt REAL NOT NULL
                    );
                    CREATE INDEX image_state ON image(state);
                    CREATE TABLE object (
                        id INTEGER PRIMARY KEY,
                        imageId INTEGER NOT NULL REFERENCES image(id) ON DELETE CASCADE,
                        position INTEGER NOT NULL,
                        classId INTEGER NOT NULL,
                        confidence REAL NOT NULL,
                        x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
                        samScore REAL NOT NULL,
                        points INTEGER NOT NULL,
                        UNIQUE (imageId, position)
                    );
                    """)
        }
        migrator.registerMigration("v2: box datasets (image.boxes, object.source)") { db in
            // The stamp of an image's box label file in a box-dataset job, so that editing a box redoes the image.
            try db.execute(sql: "ALTER TABLE image ADD COLUMN boxes TEXT NOT NULL DEFAULT ''")
            try db.execute(
                sql:
                    "ALTER TABLE object ADD COLUMN source TEXT NOT NULL DEFAULT 'sam' CHECK (source IN ('sam', 'box', 'label'))"
            )
        }
        migrator.registerMigration("v3: job token, files the scan could not take") { db in
            // A random token per job: the job's temporary files carry it, so that it removes its own alone.
            try db.execute(sql: "ALTER TABLE job ADD COLUMN token TEXT")
            try db.execute(sql: "CREATE TABLE skipped (path TEXT NOT NULL, reason TEXT NOT NULL)")
        }
        migrator.registerMigration("v4: objects' lines, images' sizes, class names") { db in
            try db.execute(sql: "ALTER TABLE object ADD COLUMN lines TEXT")
            try db.execute(sql: "ALTER TABLE image ADD COLUMN width INTEGER")
            try db.execute(sql: "ALTER TABLE image ADD COLUMN height INTEGER")
            // Images finished by an earlier version have neither: the next run labels them again (the same bytes).
            try db.execute(sql: "UPDATE image SET state = 'pending' WHERE state IN ('done', 'empty')")
            // The class names by id, as JSON ({"0": "person", …}): the detector's, or a box dataset's.
            try db.execute(sql: "ALTER TABLE job ADD COLUMN names TEXT")
        }
        return migrator
    }

    /// The job's token (made on first use): the prefix of its temporary files.
    public func token() throws -> String {
        try pool.write { db in
            if let token = try String.fetchOne(db, sql: "SELECT token FROM job WHERE id = 1") { return token }
            let token = String(UInt32.random(in: 0...UInt32.max), radix: 16)
            let padded = String(repeating: "0", count: 8 - token.count) + token
            try db.execute(sql: "UPDATE job SET token = ? WHERE id = 1", arguments: [padded])
            return padded
        }
    }

    /// Records what the last scan could not take (replacing the previous scan's list).
    public func recordSkipped(_ skipped: [(path: String, reason: String)]) throws {
        try pool.write { db in
            try db.execute(sql: "DELETE FROM skipped")
            for item in skipped {
                try db.execute(
                    sql: "INSERT INTO skipped (path, reason) VALUES (?, ?)", arguments: [item.path, item.reason])
            }
        }
    }

    /// Finished images whose label file is gone from the output folder (deleted by hand) go back to pending, so
    /// that the run writes them again. `emptyFiles`: whether images without objects have a file (empty=write).
    /// Returns how many.
    public func requeueMissingLabels(output: String, emptyFiles: Bool) throws -> Int {
        let missing = try missingLabels(output: output, emptyFiles: emptyFiles)
        guard !missing.isEmpty else { return 0 }
        let now = Date().timeIntervalSince1970
        try pool.write { db in
            for path in missing {
                try db.execute(
                    sql: "UPDATE image SET state = 'pending', updatedAt = ? WHERE path = ? AND removed = 0",
                    arguments: [now, path])
            }
        }
        return missing.count
    }

    /// Images (relative paths) that are finished but whose label file is not in `output`.
    public func missingLabels(output: String, emptyFiles: Bool) throws -> [String] {
        let states = emptyFiles ? "'done', 'empty'" : "'done'"
        let rows = try pool.read { db in
            try Row.fetchAll(
                db, sql: "SELECT path, label FROM image WHERE removed = 0 AND state IN (\(states)) ORDER BY path"
            )
            .map { ($0["path"] as String, $0["label"] as String) }
        }
        return rows.filter { _, label in
            var info = stat()
            return lstat((output as NSString).appendingPathComponent(label), &info) != 0
        }.map(\.0)
    }

    public func settings() throws -> JobSettings? {
        try pool.read { db in
            guard let text = try String.fetchOne(db, sql: "SELECT settings FROM job WHERE id = 1") else { return nil }
            do {
                return try JSONDecoder().decode(JobSettings.self, from: Data(text.utf8))
            } catch {
                let reason = (error as? DecodingError).map { AnnotateError.decodingSentence($0) } ?? "\(error)"
                throw AnnotateError.unreadable(path: path, reason: "the job's settings in it cannot be read: \(reason)")
            }
        }
    }

    public func saveSettings(_ settings: JobSettings) throws {
        let text = String(decoding: try JSONEncoder().encode(settings), as: UTF8.self)
        let now = Date().timeIntervalSince1970
        try pool.write { db in
            try db.execute(
                sql: """
                    INSERT INTO job (id, settings, createdAt, updatedAt) VALUES (1, ?, ?, ?)
                    ON CONFLICT(id) DO UPDATE SET settings = excluded.settings, updatedAt = excluded.updatedAt
                    """, arguments: [text, now, now])
        }
    }

    /// Brings the image table in line with a scan: new images become pending, images no longer there are marked
    /// removed (kept for the record), images whose file (or box label file) changed since they were done are redone. Returns
    /// (new, removed) counts.
    /// `removedLabels`: the label files (relative to the output folder) of images gone since the last scan that the
    /// job had written, for the job to remove.
    public func synchronize(with scan: [ScannedImage]) throws -> (added: Int, removed: Int, removedLabels: [String]) {
        let now = Date().timeIntervalSince1970
        return try pool.write { db in
            var known: [String: (size: Int, mtime: Double, boxes: String, removed: Bool)] = [:]
            var written: [String: String] = [:]
            for row in try Row.fetchAll(
                db, sql: "SELECT path, label, size, mtime, boxes, removed, completions FROM image")
            {
                known[row["path"]] = (row["size"], row["mtime"], row["boxes"], row["removed"])
                if (row["completions"] as Int) > 0 { written[row["path"]] = row["label"] }
            }
            var added = 0
            let present = Set(scan.map(\.relativePath))
            for image in scan {
                if let old = known[image.relativePath] {
                    if old.size != image.size || old.mtime != image.mtime || old.boxes != image.boxesStamp
                        || old.removed
                    {
                        try db.execute(
                            sql:
                                "UPDATE image SET size = ?, mtime = ?, boxes = ?, label = ?, state = 'pending', error = NULL, removed = 0, updatedAt = ? WHERE path = ?",
                            arguments: [
                                image.size, image.mtime, image.boxesStamp, image.labelPath, now, image.relativePath,
                            ])
                    }
                } else {
                    try db.execute(
                        sql: "INSERT INTO image (path, label, size, mtime, boxes, updatedAt) VALUES (?, ?, ?, ?, ?, ?)",
                        arguments: [
                            image.relativePath, image.labelPath, image.size, image.mtime, image.boxesStamp, now,
                        ])
                    added += 1
                }
            }
            var removed: [String] = []
            for (path, old) in known where !present.contains(path) && !old.removed {
                try db.execute(
                    sql: "UPDATE image SET removed = 1, updatedAt = ? WHERE path = ?", arguments: [now, path])
                removed.append(path)
            }
            // A label still claimed by an image present (a same-stem image took its place) stays.
            let claimed = Set(scan.map(\.labelPath))
            return (added, removed.count, removed.compactMap { written[$0] }.filter { !claimed.contains($0) })
        }
    }

    /// Images still to do, in path order (failed ones too when `retryFailed`).
    /// `completions`: how many times the image was finished before (its label file was written by the job).
    public func remaining(retryFailed: Bool) throws -> [(id: Int64, path: String, label: String, completions: Int)] {
        let rows: [(id: Int64, path: String, label: String, completions: Int)] = try pool.read { db in
            let states = retryFailed ? "'pending', 'detected', 'failed'" : "'pending', 'detected'"
            return try Row.fetchAll(
                db,
                sql:
                    "SELECT id, path, label, completions FROM image WHERE removed = 0 AND state IN (\(states)) ORDER BY path"
            )
            .map { ($0["id"], $0["path"], $0["label"], $0["completions"]) }
        }
        // The store is a file anyone may hand over with a job folder: its paths are read, written and joined to the
        // folders only as the scan makes them — relative, inside, and the label the image's own.
        for row in rows where !Self.isScannedPair(image: row.path, label: row.label) {
            throw AnnotateError.unreadable(
                path: path,
                reason:
                    "the job store holds an image '\(row.path)' with label '\(row.label)', which no scan makes (a path "
                    + "that leaves its folder, or not the image's own label): it was changed outside autoannotate")
        }
        return rows
    }

    /// Whether `image` is a path the scan makes (relative, no `..`, `.` or empty part, no NUL) and `label` its label.
    static func isScannedPair(image: String, label: String) -> Bool {
        let parts = image.split(separator: "/", omittingEmptySubsequences: false)
        return !image.hasPrefix("/") && !image.contains("\0")
            && parts.allSatisfy { !$0.isEmpty && $0 != ".." && $0 != "." }
            && label == (image as NSString).deletingPathExtension + ".txt"
    }

    /// Records a finished image and its objects in one transaction.
    /// Records a finished image (`width` × `height` pixels, as decoded and oriented) and its objects.
    public func finish(
        imageId: Int64, state: ImageState, objects: [ObjectRecord], width: Int, height: Int, seconds: Double
    ) throws {
        let now = Date().timeIntervalSince1970
        try pool.write { db in
            try db.execute(sql: "DELETE FROM object WHERE imageId = ?", arguments: [imageId])
            for (position, o) in objects.enumerated() {
                try db.execute(
                    sql: """
                        INSERT INTO object (imageId, position, classId, confidence, x1, y1, x2, y2, samScore, points, source, lines)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        imageId, position, o.classId, Double(o.confidence), Double(o.box.x1), Double(o.box.y1),
                        Double(o.box.x2), Double(o.box.y2), Double(o.samScore), o.points, o.source.rawValue,
                        o.lines.joined(separator: "\n"),
                    ])
            }
            try db.execute(
                sql: """
                    UPDATE image SET state = ?, error = NULL, objects = ?, seconds = ?, completions = completions + 1,
                    updatedAt = ?, width = ?, height = ? WHERE id = ?
                    """,
                arguments: [state.rawValue, objects.count, seconds, now, width, height, imageId])
        }
    }

    /// The class names by id that the job's labels use.
    public func names() throws -> [Int: String] {
        try pool.read { db in
            guard let text = try String.fetchOne(db, sql: "SELECT names FROM job WHERE id = 1"),
                let names = try? JSONDecoder().decode([String: String].self, from: Data(text.utf8))
            else { return [:] }
            return Dictionary(
                names.compactMap { key, name in Int(key).map { ($0, name) } }, uniquingKeysWith: { first, _ in first })
        }
    }

    public func saveNames(_ names: [Int: String]) throws {
        let text = String(
            decoding: try JSONEncoder().encode(Dictionary(uniqueKeysWithValues: names.map { (String($0), $1) })),
            as: UTF8.self)
        try pool.write { db in try db.execute(sql: "UPDATE job SET names = ? WHERE id = 1", arguments: [text]) }
    }

    /// A finished image as an export reads it: its paths, size and objects (in label order).
    public struct FinishedImage: Sendable {
        public var id: Int64
        /// Relative to the data folder and to the output folder.
        public var path: String, label: String
        public var width: Int, height: Int
        public var objects: [ObjectRecord]
    }

    /// Every finished (done or empty) image still in `data`, by path, with its objects; `unrecorded` counts the
    /// images finished by a version that did not keep sizes and lines (they are left out of `images`).
    public func finishedImages() throws -> (images: [FinishedImage], unrecorded: Int) {
        try pool.read { db in
            var images: [FinishedImage] = []
            var unrecorded = 0
            var byId: [Int64: Int] = [:]
            for row in try Row.fetchAll(
                db,
                sql: """
                    SELECT id, path, label, width, height FROM image
                    WHERE removed = 0 AND state IN ('done', 'empty') ORDER BY path
                    """)
            {
                guard let width = row["width"] as Int?, let height = row["height"] as Int? else {
                    unrecorded += 1
                    continue
                }
                byId[row["id"]] = images.count
                images.append(
                    FinishedImage(
                        id: row["id"], path: row["path"], label: row["label"], width: width, height: height,
                        objects: []))
            }
            let objects = try Row.fetchAll(
                db,
                sql: """
                    SELECT object.* FROM object JOIN image ON image.id = object.imageId
                    WHERE image.removed = 0 AND image.state = 'done' ORDER BY object.imageId, object.position
                    """)
            var incomplete = Set<Int64>()
            for row in objects {
                let imageId: Int64 = row["imageId"]
                guard let index = byId[imageId] else { continue }
                guard let lines = row["lines"] as String? else {
                    incomplete.insert(imageId)
                    continue
                }
                images[index].objects.append(
                    ObjectRecord(
                        classId: row["classId"], confidence: Float(row["confidence"] as Double),
                        box: (
                            Float(row["x1"] as Double), Float(row["y1"] as Double), Float(row["x2"] as Double),
                            Float(row["y2"] as Double)
                        ),
                        samScore: Float(row["samScore"] as Double), points: row["points"],
                        source: ObjectRecord.Source(rawValue: row["source"]) ?? .sam,
                        lines: lines.split(separator: "\n").map(String.init)))
            }
            if !incomplete.isEmpty {
                unrecorded += incomplete.count
                images.removeAll { incomplete.contains($0.id) }
            }
            return (images, unrecorded)
        }
    }

    public func fail(imageId: Int64, reason: String, seconds: Double) throws {
        let now = Date().timeIntervalSince1970
        try pool.write { db in
            try db.execute(sql: "DELETE FROM object WHERE imageId = ?", arguments: [imageId])
            try db.execute(
                sql:
                    "UPDATE image SET state = 'failed', error = ?, objects = 0, seconds = ?, updatedAt = ? WHERE id = ?",
                arguments: [reason, seconds, now, imageId])
        }
    }

    /// How many times each image has been finished (done or empty) — more than once only if it was redone on
    /// purpose (its file changed) — by relative path.
    public func completions() throws -> [String: Int] {
        try pool.read { db in
            Dictionary(
                uniqueKeysWithValues: try Row.fetchAll(db, sql: "SELECT path, completions FROM image").map {
                    ($0["path"] as String, $0["completions"] as Int)
                })
        }
    }

    /// The highest class id written so far (nil before any object): a box-dataset job names its classes by id.
    public func highestClass() throws -> Int? {
        try pool.read { db in
            try Int.fetchOne(
                db,
                sql: "SELECT MAX(classId) FROM object JOIN image ON image.id = object.imageId WHERE image.removed = 0")
        }
    }

    /// What `status` shows.
    public struct Summary: Sendable, Encodable {
        public var counts: [String: Int]
        public var removed: Int
        public var objects: Int
        public var imagesPerSecond: Double?
        public var secondsLeft: Double?
        public var lastErrors: [[String: String]]
        /// Finished images whose label file is missing on disk (the next run writes them again).
        public var missingLabels: Int = 0
        /// Files and folders the last scan could not take (symbolic links, unreadable folders, names that are not
        /// UTF-8): how many, and the first of them with the reason.
        public var skipped: Int = 0
        public var skippedExamples: [[String: String]] = []
    }

    public func summary() throws -> Summary {
        var summary = try counts()
        let output = (path as NSString).deletingLastPathComponent
        summary.missingLabels =
            try missingLabels(output: output, emptyFiles: (try settings()?.empty ?? .write) == .write).count
        return summary
    }

    func counts() throws -> Summary {
        try pool.read { db in
            var counts = Dictionary(uniqueKeysWithValues: ImageState.allCases.map { ($0.rawValue, 0) })
            for row in try Row.fetchAll(
                db, sql: "SELECT state, COUNT(*) AS n FROM image WHERE removed = 0 GROUP BY state")
            {
                counts[row["state"]] = row["n"]
            }
            let removed = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM image WHERE removed = 1") ?? 0
            let objects =
                try Int.fetchOne(
                    db,
                    sql: "SELECT COUNT(*) FROM object JOIN image ON image.id = object.imageId WHERE image.removed = 0")
                ?? 0
            let timed = try Row.fetchOne(
                db,
                sql:
                    "SELECT COUNT(*) AS n, SUM(seconds) AS s FROM image WHERE removed = 0 AND seconds IS NOT NULL AND state != 'pending'"
            )
            let n: Int = timed?["n"] ?? 0
            let s: Double = timed?["s"] ?? 0
            let rate = n > 0 && s > 0 ? Double(n) / s : nil
            let left = (counts["pending"] ?? 0) + (counts["detected"] ?? 0)
            let errors = try Row.fetchAll(
                db,
                sql:
                    "SELECT path, error FROM image WHERE state = 'failed' AND removed = 0 ORDER BY updatedAt DESC LIMIT 10"
            )
            .map { ["image": $0["path"] as String, "error": ($0["error"] as String?) ?? ""] }
            let skipped = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM skipped") ?? 0
            let skippedExamples = try Row.fetchAll(db, sql: "SELECT path, reason FROM skipped ORDER BY path LIMIT 10")
                .map { ["path": $0["path"] as String, "reason": $0["reason"] as String] }
            return Summary(
                counts: counts, removed: removed, objects: objects, imagesPerSecond: rate,
                secondsLeft: rate.map { Double(left) / $0 }, lastErrors: errors, skipped: skipped,
                skippedExamples: skippedExamples)
        }
    }
}
