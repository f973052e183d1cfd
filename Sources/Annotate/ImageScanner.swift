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
}

/// Recursive scan of the data folder for the image types OpenCV reads (by extension, as Ultralytics'
/// loaders select files). Symbolic links are not followed, so a link loop cannot trap the scan; a folder
/// named like an image (`x.jpg/`) is a folder.
public enum ImageScanner {
    public static let extensions: Set<String> = [
        "bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm", "heic", "jp2", "pbm", "pgm", "ppm",
        "pxm", "pnm", "sr", "ras", "exr", "hdr", "pic",
    ]

    /// `boxes`: the box label folder of a box-dataset job, whose files' stamps are recorded with the images.
    public static func scan(_ data: String, excluding excluded: String? = nil, boxes: String? = nil) throws
        -> ScanReport
    {
        let root = URL(fileURLWithPath: data).standardizedFileURL
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw AnnotateError.notAFolder(path: data)
        }
        let keys: [URLResourceKey] = [.isRegularFileKey, .isSymbolicLinkKey, .fileSizeKey, .contentModificationDateKey]
        guard
            let walker = FileManager.default.enumerator(
                at: root, includingPropertiesForKeys: keys, options: [.skipsHiddenFiles])
        else {
            throw AnnotateError.unreadable(path: data, reason: "the folder cannot be listed")
        }
        let excludedPath = excluded.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        let boxes = boxes.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        var images: [ScannedImage] = []
        var ignored = 0
        for case let url as URL in walker {
            let path = url.standardizedFileURL.path
            if path == excludedPath || path == boxes {
                walker.skipDescendants()
                continue
            }
            let values = try? url.resourceValues(forKeys: Set(keys))
            if values?.isSymbolicLink == true { continue }
            guard values?.isRegularFile == true else { continue }
            let relative = String(url.standardizedFileURL.path.dropFirst(root.path.count + 1))
            guard extensions.contains(url.pathExtension.lowercased()) else {
                ignored += 1
                continue
            }
            let label = (relative as NSString).deletingPathExtension + ".txt"
            images.append(
                ScannedImage(
                    relativePath: relative, labelPath: label, size: values?.fileSize ?? 0,
                    mtime: values?.contentModificationDate?.timeIntervalSince1970 ?? 0,
                    boxesStamp: boxes.map { BoxLabels.stamp(path: BoxLabels.path(forImage: relative, in: $0)) } ?? ""))
        }
        images.sort { $0.relativePath < $1.relativePath }
        var owner: [String: String] = [:]
        var collisions: [String: String] = [:]
        for image in images {
            if let first = owner[image.labelPath] {
                collisions[image.relativePath] = first
            } else {
                owner[image.labelPath] = image.relativePath
            }
        }
        return ScanReport(images: images, ignored: ignored, collisions: collisions)
    }
}
