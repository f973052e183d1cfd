import Foundation

/// An official model file that a bare name (`sam_b.pt`, `yolov8x.pt`) resolves to, as Ultralytics resolves it.
public struct KnownModel: Sendable, Equatable {
    public var name: String
    public var url: String
    /// Size in bytes, where known.
    public var size: Int?
    /// Lower-case hex SHA-256 of the file, or a prefix of it (Meta's file names carry the first 6 digits, the
    /// convention of torch.hub's `check_hash`). nil where no digest has been recorded: see `KnownModels`.
    public var sha256: String?

    public init(name: String, url: String, size: Int? = nil, sha256: String? = nil) {
        (self.name, self.url, self.size, self.sha256) = (name, url, size, sha256)
    }
}

/// The official names. Ultralytics' assets come from the release its pinned version downloads from (8.4.190:
/// `v8.4.0`); Meta's SAM checkpoints from Meta's own server, where each name ends in its digest's first digits.
///
/// Digests: a digest is recorded here only after checking it on the downloaded file
/// (`scripts/model-digests.sh` prints these lines). Where none is recorded yet, the first download is checked
/// against the size the server announced, and its SHA-256 is stored beside it in the cache, so later uses detect
/// a changed file (trust on first use).
public enum KnownModels {
    public static let ultralyticsRelease = "https://github.com/ultralytics/assets/releases/download/v8.4.0/"
    public static let metaSAM = "https://dl.fbaipublicfiles.com/segment_anything/"

    public static let all: [KnownModel] =
        ["yolov8n.pt", "yolov8s.pt", "yolov8m.pt", "yolov8l.pt", "yolov8x.pt", "sam_b.pt", "sam_l.pt", "mobile_sam.pt"]
        .map { KnownModel(name: $0, url: ultralyticsRelease + $0) }
        + [("sam_vit_b_01ec64.pth", "01ec64"), ("sam_vit_l_0b3195.pth", "0b3195"), ("sam_vit_h_4b8939.pth", "4b8939")]
        .map { KnownModel(name: $0.0, url: metaSAM + $0.0, sha256: $0.1) }

    /// The official files, fetched from `mirror` (a base URL: `mirror/NAME`) where one is set — the
    /// `AUTOANNOTATE_WEIGHTS_MIRROR` variable, for networks that reach an internal copy but not GitHub. Digests
    /// are checked all the same.
    public static func catalog(mirror: String? = ProcessInfo.processInfo.environment["AUTOANNOTATE_WEIGHTS_MIRROR"])
        -> [KnownModel]
    {
        guard let mirror, !mirror.isEmpty else { return all }
        let base = mirror.hasSuffix("/") ? mirror : mirror + "/"
        return all.map {
            var model = $0
            model.url = base + model.name
            return model
        }
    }
}
