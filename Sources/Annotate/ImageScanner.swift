import Foundation

/// An input image found by the scan.
public struct ScannedImage: Sendable, Equatable {
    /// Path relative to the data folder, '/'-separated.
    public var relativePath: String
    /// The label file's path relative to the output folder: the image's, with the extension replaced by .txt.
    public var labelPath: String
    public var size: Int
    public var mtime: Double
    /// In a box-dataset job, the stamp of the image's box label file (`BoxLabels.stamp`); "" otherwise.
    public var boxesStamp = ""
}

/// What a scan found besides images.
public struct ScanReport: Sendable {
    public var images: [ScannedImage]
    /// Files that are not images (by extension), ignored.
    public var ignored: Int
    /// Images whose label file another image also maps to (`x.jpg` and `x.png`): path → the image it collides with.
    public var collisions: [String: String]
    /// What the scan could not take, with the reason, never skipped silently: symbolic links (not followed),
    /// folders that cannot be listed, names that are not UTF-8, images that are not regular files. Paths are
    /// relative to the data folder ('?' in place of bytes that are not UTF-8).
    public var skipped: [(path: String, reason: String)] = []
}

/// Recursive scan of the data folder for the image types OpenCV reads (by extension, as Ultralytics'
/// loaders select files). Symbolic links are not followed, so a link loop cannot trap the scan; a folder
/// named like an image (`x.jpg/`) is a folder. Hidden files and folders are left out.
public enum ImageScanner {
    public static let extensions: Set<String> = [
        "bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm", "heic", "jp2", "pbm", "pgm", "ppm",
        "pxm", "pnm", "sr", "ras", "exr", "hdr", "pic",
    ]

    /// `boxes`: the box label folder of a box-dataset job, whose files' stamps are recorded with the images.
    /// `firstImageOnly`: stop at the first image found (does the folder hold any?).
    public static func scan(
        _ data: String, excluding excluded: String? = nil, boxes: String? = nil, firstImageOnly: Bool = false
    ) throws -> ScanReport {
        let root = URL(fileURLWithPath: data).standardizedFileURL.path
        var info = stat()
        guard stat(root, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            throw AnnotateError.notAFolder(path: data)
        }
        let excludedPath = excluded.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        let boxes = boxes.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        var report = ScanReport(images: [], ignored: 0, collisions: [:])
        // Folders still to list, as (full path, path relative to data); relative paths are '/'-separated.
        var folders: [(String, String)] = [(root, "")]
        walk: while let (folder, relativeFolder) = folders.popLast() {
            guard let directory = opendir(folder) else {
                if folder == root {
                    throw AnnotateError.unreadable(
                        path: data, reason: "the folder cannot be listed (\(String(cString: strerror(errno))))")
                }
                report.skipped.append((relativeFolder, "folder cannot be listed: \(String(cString: strerror(errno)))"))
                continue
            }
            defer { closedir(directory) }
            while let entry = readdir(directory) {
                let bytes = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
                guard bytes.first != UInt8(ascii: ".") else { continue }
                let relativeParent = relativeFolder.isEmpty ? "" : relativeFolder + "/"
                guard let name = String(validating: bytes, as: UTF8.self) else {
                    report.skipped.append(
                        (
                            relativeParent
                                + String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "\u{FFFD}", with: "?"),
                            "name is not UTF-8: rename it"
                        ))
                    continue
                }
                let full = folder + "/" + name
                let relative = relativeParent + name
                var info = stat()
                guard lstat(full, &info) == 0 else {
                    report.skipped.append((relative, "cannot be read: \(String(cString: strerror(errno)))"))
                    continue
                }
                let isImage = extensions.contains((name as NSString).pathExtension.lowercased())
                switch info.st_mode & S_IFMT {
                case S_IFDIR:
                    if full != excludedPath && full != boxes { folders.append((full, relative)) }
                case S_IFLNK:
                    report.skipped.append((relative, "symbolic link, not followed"))
                case S_IFREG:
                    guard isImage else {
                        report.ignored += 1
                        continue
                    }
                    // Size and time as Foundation reads them, so that jobs scanned before read the same stamps.
                    let values = try? URL(fileURLWithPath: full).resourceValues(forKeys: [.contentModificationDateKey])
                    report.images.append(
                        ScannedImage(
                            relativePath: relative, labelPath: (relative as NSString).deletingPathExtension + ".txt",
                            size: Int(info.st_size), mtime: values?.contentModificationDate?.timeIntervalSince1970 ?? 0,
                            boxesStamp: boxes.map { BoxLabels.stamp(path: BoxLabels.path(forImage: relative, in: $0)) }
                                ?? ""))
                    if firstImageOnly { break walk }
                default:
                    if isImage {
                        report.skipped.append((relative, "not a regular file (a pipe, socket or device)"))
                    } else {
                        report.ignored += 1
                    }
                }
            }
        }
        report.images.sort { $0.relativePath < $1.relativePath }
        report.skipped.sort { $0.path < $1.path }
        var owner: [String: String] = [:]
        for image in report.images {
            if let first = owner[image.labelPath] {
                report.collisions[image.relativePath] = first
            } else {
                owner[image.labelPath] = image.relativePath
            }
        }
        return report
    }
}
