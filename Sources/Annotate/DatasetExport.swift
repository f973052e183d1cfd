import Foundation
import Geometry

/// A dataset made from a job's store (never from its label text): the finished images, linked or copied, with
/// their objects in Ultralytics' YOLO layout (a train/val split and `data.yaml`), as COCO instances, or as LabelMe
/// files for correction. The dataset is written into a temporary folder beside `dataset` and renamed into place
/// at the end, so that it is either complete or absent.
public struct DatasetExport: Sendable {
    public enum Format: String, Sendable, CaseIterable {
        /// `images/{train,val}/…`, `labels/{train,val}/…`, `data.yaml`: `yolo segment train data=…` trains on it.
        case yolo
        /// `images/{train,val}/…` and `annotations/instances_{train,val}.json`.
        case coco
        /// Each image with a LabelMe JSON file beside it (no split).
        case labelme
    }

    /// How the dataset holds the images: links to the job's data folder, or copies.
    public enum Link: String, Sendable, CaseIterable {
        case symlink, hardlink, copy
    }

    public var format: Format = .yolo
    /// The folder to make: it must not exist yet, or be empty, and must not overlap the data or the job folder.
    public var dataset: String
    /// The share of images in the validation split, from 0 to 0.9 (yolo, coco).
    public var validationShare = 0.1
    public var link: Link = .symlink
    /// COCO masks as compressed RLE instead of polygons.
    public var rle = false
    /// Objects below either score are left out: the detector's confidence, and SAM's predicted IoU (for objects
    /// whose outline is SAM's mask; a box dataset's copied polygons and kept outlines have no SAM score to judge).
    public var minimumConfidence: Float = 0
    public var minimumSamScore: Float = 0

    public init(format: Format, dataset: String) {
        (self.format, self.dataset) = (format, URL(fileURLWithPath: dataset).standardizedFileURL.path)
    }

    public static let validationShares = 0...0.9

    public struct Summary: Sendable, Equatable {
        public var train = 0, validation = 0, objects = 0
        /// Objects below `minimumConfidence` or `minimumSamScore`.
        public var filtered = 0
        /// Images in the job that are not finished (pending or failed): not in the dataset.
        public var unfinished = 0
        /// The dataset's `data.yaml` (yolo) or annotation files (coco); empty for labelme.
        public var files: [String] = []
    }

    /// Writes the dataset of the job in `output`.
    public func run(job output: String) throws -> Summary {
        guard Self.validationShares.contains(validationShare) else {
            throw AnnotateError.outOfRange(name: "val", value: "\(validationShare)", range: "a number from 0 to 0.9")
        }
        for (name, value) in [("min_conf", minimumConfidence), ("min_sam_score", minimumSamScore)]
        where !JobSettings.scores.contains(value) {
            throw AnnotateError.outOfRange(name: name, value: "\(value)", range: "a number from 0 to 1")
        }
        let job = URL(fileURLWithPath: output).standardizedFileURL.path
        var info = stat()
        guard lstat((job as NSString).appendingPathComponent(JobStore.fileName), &info) == 0 else {
            throw AnnotateError.notAJob(output: job)
        }
        let store = try JobStore(output: job)
        guard let settings = try store.settings() else { throw AnnotateError.notAJob(output: job) }
        try checkDatasetFolder(data: settings.data, job: job)

        let (images, unrecorded) = try store.finishedImages()
        guard unrecorded == 0 else {
            throw AnnotateError.unreadable(
                path: store.path,
                reason:
                    "\(unrecorded) finished images have no polygons or size in the job store (a store changed by hand?); "
                    + "'autoannotate resume output_dir=\(job)' labels what is missing")
        }
        var summary = Summary()
        let counts = try store.counts().counts  // no label-file checks: only the states are needed
        summary.unfinished = counts.filter { $0.key != "done" && $0.key != "empty" }.values.reduce(0, +)
        let names = try store.names()
        let split = Self.split(images.map(\.path), validationShare: format == .labelme ? 0 : validationShare)

        // Everything is written into a folder of our own beside the dataset, then renamed into place.
        let parent = (dataset as NSString).deletingLastPathComponent
        let staging = (parent as NSString).appendingPathComponent(
            ".\((dataset as NSString).lastPathComponent).aa-export-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
        )
        do {
            try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: false)
        } catch {
            throw AnnotateError.unreadable(
                path: dataset, reason: "the dataset folder cannot be made (\(AnnotateError.cause(of: error).reason))")
        }
        do {
            var kept: [(image: JobStore.FinishedImage, validation: Bool, objects: [ObjectRecord])] = []
            for (image, validation) in zip(images, split) {
                let objects = image.objects.filter { keeps($0) }
                summary.filtered += image.objects.count - objects.count
                summary.objects += objects.count
                if validation { summary.validation += 1 } else { summary.train += 1 }
                kept.append((image, validation, objects))
            }
            switch format {
            case .yolo:
                summary.files = try writeYOLO(kept, names: names, data: settings.data, into: staging)
            case .coco:
                summary.files = try writeCOCO(kept, names: names, data: settings.data, into: staging)
            case .labelme:
                try writeLabelMe(kept, names: names, data: settings.data, into: staging)
            }
            if lstat(dataset, &info) == 0 { rmdir(dataset) }  // empty: checked above
            guard rename(staging, dataset) == 0 else {
                throw AnnotateError.unreadable(
                    path: dataset, reason: "cannot be put in place (\(String(cString: strerror(errno))))")
            }
        } catch {
            try? FileManager.default.removeItem(atPath: staging)
            throw error
        }
        summary.files = summary.files.map { (dataset as NSString).appendingPathComponent($0) }
        return summary
    }

    /// The dataset folder must be new (or empty), and hold neither the images nor the job, nor lie inside them:
    /// a job scanning its data would find the exported copies, and the job folder is the job's alone.
    func checkDatasetFolder(data: String, job: String) throws {
        for (name, folder) in [("data", data), ("job", job)] {
            if let relation = AutoAnnotator.overlap(of: dataset, with: folder, named: name) {
                throw AnnotateError.unreadable(
                    path: dataset, reason: "the dataset folder \(relation); choose a folder of its own")
            }
        }
        var info = stat()
        guard lstat(dataset, &info) == 0 else { return }
        guard info.st_mode & S_IFMT == S_IFDIR,
            (try? FileManager.default.contentsOfDirectory(atPath: dataset))?.isEmpty == true
        else {
            throw AnnotateError.unreadable(
                path: dataset,
                reason:
                    "already exists and is not an empty folder; an export makes a new dataset (remove it, or choose another dataset=)"
            )
        }
    }

    func keeps(_ object: ObjectRecord) -> Bool {
        object.confidence >= minimumConfidence && (object.source != .sam || object.samScore >= minimumSamScore)
    }

    /// Which images go to the validation split: those whose path hashes (FNV-1a, 64 bits) below the share, so that
    /// an image keeps its split when others are added. With a share above 0 and two images or more, at least one
    /// (the lowest hash) is in each split.
    public static func split(_ paths: [String], validationShare: Double) -> [Bool] {
        let positions = paths.map { path -> Double in
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325
            for byte in path.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
            return Double(hash >> 11) / Double(1 << 53)
        }
        var validation = positions.map { $0 < validationShare }
        if validationShare > 0, paths.count >= 2 {
            if !validation.contains(true), let lowest = positions.indices.min(by: { positions[$0] < positions[$1] }) {
                validation[lowest] = true
            }
            if !validation.contains(false), let highest = positions.indices.max(by: { positions[$0] < positions[$1] }) {
                validation[highest] = false
            }
        }
        return validation
    }

    /// Every id up to the highest used, named (by its number where the job has no name for it).
    static func denseNames(_ names: [Int: String], objects: [[ObjectRecord]]) -> [Int: String] {
        let highest = max(names.keys.max() ?? -1, objects.joined().map(\.classId).max() ?? -1)
        guard highest >= 0 else { return [:] }
        return Dictionary(uniqueKeysWithValues: (0...highest).map { ($0, names[$0] ?? String($0)) })
    }

    /// Links or copies the data folder's image `path` to `relative` inside `root`.
    func place(image path: String, data: String, at relative: String, in root: String) throws {
        let source = (data as NSString).appendingPathComponent(path)
        let target = (root as NSString).appendingPathComponent(relative)
        do {
            try FileManager.default.createDirectory(
                atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            switch link {
            case .symlink: try FileManager.default.createSymbolicLink(atPath: target, withDestinationPath: source)
            case .hardlink:
                guard Foundation.link(source, target) == 0 else {
                    throw AnnotateError.unreadable(
                        path: source,
                        reason:
                            "cannot be hard-linked into the dataset (\(String(cString: strerror(errno)))); link=copy or link=symlink works across file systems"
                    )
                }
            case .copy: try FileManager.default.copyItem(atPath: source, toPath: target)
            }
        } catch let error as AnnotateError {
            throw error
        } catch {
            throw AnnotateError.unreadable(path: source, reason: AnnotateError.cause(of: error).reason)
        }
    }

    func write(_ text: String, to relative: String, in root: String) throws {
        try LabelWriter.writeAtomically(text, to: relative, in: root)
    }

    /// The label file Ultralytics looks for beside an image (`img2label_paths`): the last `/images/` of the path
    /// becomes `/labels/` and the extension `.txt`.
    public static func ultralyticsLabelPath(forImage path: String) -> String {
        let withLabels: String
        if let range = path.range(of: "/images/", options: .backwards) {
            withLabels = path.replacingCharacters(in: range, with: "/labels/")
        } else {
            withLabels = path
        }
        let name = (withLabels as NSString).lastPathComponent
        guard let dot = name.lastIndex(of: ".") else { return withLabels + ".txt" }
        return (withLabels as NSString).deletingLastPathComponent + "/" + name[..<dot] + ".txt"
    }

    func writeYOLO(
        _ images: [(image: JobStore.FinishedImage, validation: Bool, objects: [ObjectRecord])], names: [Int: String],
        data: String, into root: String
    ) throws -> [String] {
        for (image, validation, objects) in images {
            let relative = "images/\(validation ? "val" : "train")/\(image.path)"
            try place(image: image.path, data: data, at: relative, in: root)
            // Relative to the dataset, from the path Ultralytics will list (the dataset's own folder names have
            // no `/images/` after the split folder unless the image's own path has one).
            let label = String(Self.ultralyticsLabelPath(forImage: "/" + relative).dropFirst())
            try write(LabelWriter.contents(lines: objects.flatMap(\.lines)), to: label, in: root)
        }
        let hasValidation = images.contains { $0.validation }
        let yaml = try LabelWriter.dataYAML(
            path: dataset, train: "images/train", val: hasValidation ? "images/val" : "images/train",
            names: Self.denseNames(names, objects: images.map(\.objects)))
        try write(yaml, to: "data.yaml", in: root)
        return ["data.yaml"]
    }

    /// An object's polygons in pixels, from its normalised label lines.
    static func pixelPolygons(_ object: ObjectRecord, width: Int, height: Int) -> [[Double]] {
        object.lines.map { line in
            line.split(separator: " ").dropFirst().enumerated().map { index, field in
                (Double(field) ?? 0) * Double(index % 2 == 0 ? width : height)
            }
        }.filter { $0.count >= 6 }
    }

    func writeCOCO(
        _ images: [(image: JobStore.FinishedImage, validation: Bool, objects: [ObjectRecord])], names: [Int: String],
        data: String, into root: String
    ) throws -> [String] {
        // Category ids are class ids + 1 (COCO keeps 0 for no object; Ultralytics' convert_coco subtracts 1).
        let categories = Self.denseNames(names, objects: images.map(\.objects)).sorted { $0.key < $1.key }.map {
            ["id": $0.key + 1, "name": $0.value, "supercategory": ""] as [String: Any]
        }
        var files: [String] = []
        for validation in [false, true] {
            let part = images.filter { $0.validation == validation }
            if validation && part.isEmpty { continue }
            let split = validation ? "val" : "train"
            var imageRecords: [[String: Any]] = []
            var annotations: [[String: Any]] = []
            for (image, _, objects) in part {
                try place(image: image.path, data: data, at: "images/\(split)/\(image.path)", in: root)
                imageRecords.append([
                    "id": image.id, "file_name": image.path, "width": image.width, "height": image.height,
                ])
                for object in objects {
                    let polygons = Self.pixelPolygons(object, width: image.width, height: image.height)
                    guard
                        let mask = CocoRLE.union(
                            polygons.map { CocoRLE(polygon: $0, height: image.height, width: image.width) })
                    else { continue }
                    var annotation: [String: Any] = [
                        "id": annotations.count + 1, "image_id": image.id, "category_id": object.classId + 1,
                        "iscrowd": 0, "area": mask.area, "bbox": mask.box,
                        "segmentation": rle
                            ? ["size": [image.height, image.width], "counts": mask.compressed] as [String: Any]
                            : polygons as Any,
                        "confidence": Double(object.confidence),
                    ]
                    if object.source == .sam { annotation["sam_score"] = Double(object.samScore) }
                    annotations.append(annotation)
                }
            }
            let document: [String: Any] = [
                "info": ["description": "autoannotate export", "version": AutoAnnotator.version],
                "licenses": [] as [Any], "images": imageRecords, "annotations": annotations,
                "categories": categories,
            ]
            let json = try JSONSerialization.data(withJSONObject: document, options: [.sortedKeys])
            let file = "annotations/instances_\(split).json"
            try write(String(decoding: json, as: UTF8.self), to: file, in: root)
            files.append(file)
        }
        return files
    }

    func writeLabelMe(
        _ images: [(image: JobStore.FinishedImage, validation: Bool, objects: [ObjectRecord])], names: [Int: String],
        data: String, into root: String
    ) throws {
        for (image, _, objects) in images {
            try place(image: image.path, data: data, at: image.path, in: root)
            var shapes: [[String: Any]] = []
            for (index, object) in objects.enumerated() {
                let polygons = Self.pixelPolygons(object, width: image.width, height: image.height)
                for polygon in polygons {
                    shapes.append([
                        "label": names[object.classId] ?? String(object.classId),
                        "points": stride(from: 0, to: polygon.count - 1, by: 2).map { [polygon[$0], polygon[$0 + 1]] },
                        // The parts of one object share a group.
                        "group_id": polygons.count > 1 ? index as Any : NSNull(), "description": "",
                        "shape_type": "polygon", "flags": [String: Bool](), "mask": NSNull(),
                    ])
                }
            }
            let document: [String: Any] = [
                "version": "5.5.0", "flags": [String: Bool](), "shapes": shapes,
                "imagePath": (image.path as NSString).lastPathComponent, "imageData": NSNull(),
                "imageHeight": image.height, "imageWidth": image.width,
            ]
            let json = try JSONSerialization.data(withJSONObject: document, options: [.prettyPrinted, .sortedKeys])
            let file = (image.path as NSString).deletingPathExtension + ".json"
            try write(String(decoding: json, as: UTF8.self), to: file, in: root)
        }
    }
}
