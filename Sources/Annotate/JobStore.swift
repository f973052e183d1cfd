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
            && a.source == b.source
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
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        pool = try DatabasePool(path: path, configuration: configuration)
        try Self.migrator.migrate(pool)
    }

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
        return migrator
    }

    public func settings() throws -> JobSettings? {
        try pool.read { db in
            guard let text = try String.fetchOne(db, sql: "SELECT settings FROM job WHERE id = 1") else { return nil }
            return try JSONDecoder().decode(JobSettings.self, from: Data(text.utf8))
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
    public func synchronize(with scan: [ScannedImage]) throws -> (added: Int, removed: Int) {
        let now = Date().timeIntervalSince1970
        return try pool.write { db in
            var known: [String: (size: Int, mtime: Double, boxes: String, removed: Bool)] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT path, size, mtime, boxes, removed FROM image") {
                known[row["path"]] = (row["size"], row["mtime"], row["boxes"], row["removed"])
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
            var removed = 0
            for (path, old) in known where !present.contains(path) && !old.removed {
                try db.execute(
                    sql: "UPDATE image SET removed = 1, updatedAt = ? WHERE path = ?", arguments: [now, path])
                removed += 1
            }
            return (added, removed)
        }
    }

    /// Images still to do, in path order (failed ones too when `retryFailed`).
    public func remaining(retryFailed: Bool) throws -> [(id: Int64, path: String, label: String)] {
        try pool.read { db in
            let states = retryFailed ? "'pending', 'detected', 'failed'" : "'pending', 'detected'"
            return try Row.fetchAll(
                db, sql: "SELECT id, path, label FROM image WHERE removed = 0 AND state IN (\(states)) ORDER BY path"
            )
            .map { ($0["id"], $0["path"], $0["label"]) }
        }
    }

    /// Records a finished image and its objects in one transaction.
    public func finish(imageId: Int64, state: ImageState, objects: [ObjectRecord], seconds: Double) throws {
        let now = Date().timeIntervalSince1970
        try pool.write { db in
            try db.execute(sql: "DELETE FROM object WHERE imageId = ?", arguments: [imageId])
            for (position, o) in objects.enumerated() {
                try db.execute(
                    sql: """
                        INSERT INTO object (imageId, position, classId, confidence, x1, y1, x2, y2, samScore, points, source)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        imageId, position, o.classId, Double(o.confidence), Double(o.box.x1), Double(o.box.y1),
                        Double(o.box.x2), Double(o.box.y2), Double(o.samScore), o.points, o.source.rawValue,
                    ])
            }
            try db.execute(
                sql:
                    "UPDATE image SET state = ?, error = NULL, objects = ?, seconds = ?, completions = completions + 1, updatedAt = ? WHERE id = ?",
                arguments: [state.rawValue, objects.count, seconds, now, imageId])
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
    }

    public func summary() throws -> Summary {
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
            return Summary(
                counts: counts, removed: removed, objects: objects, imagesPerSecond: rate,
                secondsLeft: rate.map { Double(left) / $0 }, lastErrors: errors)
        }
    }
}
