import Foundation

/// A Segment Anything state dict with its architecture, checked key by key.
public struct SamCheckpoint: Sendable {
    public let weights: StateDict
    public var architecture: SamArchitecture

    /// Trainable parameters (`sum(p.numel() for p in model.parameters())`): every tensor but the prompt
    /// encoder's random Fourier matrix, which is a buffer.
    public var parameterCount: Int {
        weights.elementCount - (weights["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"]?.count ?? 0)
    }
}

/// An Ultralytics YOLOv8 detection checkpoint: the pickled `DetectionModel` (its module tree carries every
/// hyper-parameter: BatchNorm eps, strides, each layer's `f`/`i` routing) and its state dict.
// Unchecked: the pickled module tree (`PickleObject`, a class) is complete and never mutated once read.
public struct YOLOCheckpoint: @unchecked Sendable {
    /// `model.names`: a dict of class id → name, or a list naming the classes in order (Ultralytics'
    /// `check_class_names` takes both). Only ids a head can have (Detect checks nc against its weights) and names
    /// that are text count.
    public static func classNames(_ value: PickleValue?) -> [Int: String] {
        let entries = value?.dict?.entries ?? value?.items?.prefix(10_000).enumerated().map { (.int($0), $1) } ?? []
        return Dictionary(
            entries.compactMap { k, v in
                k.int.flatMap { id in (0..<10_000).contains(id) ? v.string.map { (id, $0) } : nil }
            },
            uniquingKeysWith: { a, _ in a })
    }

    public let model: PickleObject
    public let weights: StateDict
    /// Class names by id (`model.names`).
    public let names: [Int: String]
    /// Strides of the detection levels (`model.stride`, 8/16/32).
    public let stride: [Double]
    /// The yaml the model was built from (`yolov8x.yaml`), if recorded.
    public let yamlFile: String?
    /// The scale letter (n/s/m/l/x), if recorded.
    public let scale: String?
    /// The Ultralytics version that wrote the file.
    public let version: String?

    /// The layers of `model.model` (an `nn.Sequential`), in order.
    public var layers: [PickleObject] {
        model.children.first { $0.name == "model" }?.module.children.map(\.module) ?? []
    }
    /// The Detect head (last layer).
    public var head: PickleObject? { layers.last }
    public var classCount: Int? { head?["nc"]?.int }
}

public enum ModelCheckpoint: Sendable {
    case sam(SamCheckpoint)
    case yolo(YOLOCheckpoint)
}

/// Opens a model file and says what it is: SAM (ViT-B/L/H, MobileSAM, or a custom size) from Meta's or
/// Ultralytics' state dicts in torch.save or safetensors form, or an Ultralytics YOLOv8 detection checkpoint.
/// Everything else is refused with a message that names what the file is.
public enum ModelFile {
    public static func open(path: String) throws -> ModelCheckpoint { try open(MappedFile(path: path)) }

    /// The same for a file already mapped, or bytes in memory.
    public static func open(_ file: MappedFile) throws -> ModelCheckpoint {
        let path = file.path
        let name = (path as NSString).lastPathComponent
        try refuseOtherFormats(file)
        if Safetensors.looksLikeSafetensors(file) { return try sam(Safetensors.load(file), name: name) }
        let archive = try TorchArchive(file: file)
        guard case .dict(let top) = archive.root else {
            throw CheckpointError.unrecognized(
                path: path, guess: "a torch.save file holding \(archive.root.summary), not a model")
        }
        // Ultralytics checkpoints: {"model": DetectionModel, "ema": …}; as attempt_load_one_weight, EMA first.
        if top["model"] != nil || top["ema"] != nil {
            let model = top["ema"]?.object ?? top["model"]?.object
            if let model { return .yolo(try yolo(model, top: top, file: file, name: name)) }
            if top["model"]?.dict != nil {
                throw CheckpointError.unsupported(
                    path: path,
                    reason:
                        "a SAM 2-style checkpoint ({\"model\": state_dict}); SAM 2 is not supported — use sam_b.pt, sam_l.pt, sam_h.pt or mobile_sam.pt"
                )
            }
            throw CheckpointError.unrecognized(
                path: path, guess: "a dict whose \"model\" is \((top["model"] ?? .none).summary)")
        }
        return try sam(StateDict.from(dict: top, path: path, file: file), name: name)
    }

    static func sam(_ weights: StateDict, name: String) throws -> ModelCheckpoint {
        guard weights.keys.contains(where: { $0.hasPrefix("image_encoder.") }) else {
            let first = weights.keys.first.map { ", first \"\($0)\"" } ?? ""
            throw CheckpointError.unrecognized(
                path: weights.path,
                guess: "a state dict of \(weights.count) tensors\(first) that is not a model we know (SAM or YOLOv8)")
        }
        guard let architecture = SamArchitecture(weights) else {
            for key in [
                "prompt_encoder.point_embeddings.0.weight", "prompt_encoder.mask_downscaling.3.weight",
                "mask_decoder.mask_tokens.weight",
                "mask_decoder.transformer.layers.0.mlp.lin1.weight", "mask_decoder.iou_prediction_head.layers.0.weight",
                "image_encoder.pos_embed", "image_encoder.blocks.0.attn.rel_pos_h",
            ] where !weights.contains(key) {
                throw CheckpointError.missingKey(path: weights.path, key: key)
            }
            throw CheckpointError.unrecognized(
                path: weights.path, guess: "image_encoder tensors of a layout that is not SAM's")
        }
        if let problem = architecture.outOfRange {
            throw CheckpointError.unsupported(path: weights.path, reason: "not a SAM this tool can run: \(problem)")
        }
        var expected = architecture.expectedTensors
        var actual = weights
        if architecture.variant == .mobileSAM {
            // TinyViT tensors are checked by the MobileSAM encoder port; here only the shared parts.
            actual = StateDict(
                path: weights.path, weights.keys.filter { !$0.hasPrefix("image_encoder.") }.map { ($0, weights[$0]!) })
            expected = expected.filter { !$0.key.hasPrefix("image_encoder.") }
        }
        // Buffers some exports keep (non-persistent in segment_anything) are harmless.
        let ignored: Set<String> = ["pixel_mean", "pixel_std"]
        actual = StateDict(path: actual.path, actual.keys.filter { !ignored.contains($0) }.map { ($0, actual[$0]!) })
        try actual.check(against: expected)
        return .sam(SamCheckpoint(weights: weights, architecture: architecture))
    }

    static let modelTasks: [String: String] = [
        "SegmentationModel": "segmentation", "PoseModel": "pose", "ClassificationModel": "classification",
        "OBBModel": "oriented-bounding-box (OBB)", "WorldModel": "YOLO-World", "YOLOEModel": "YOLOE",
        "YOLOESegModel": "YOLOE segmentation", "RTDETRDetectionModel": "RT-DETR",
    ]
    /// The layer types of YOLOv8 detection models; any other marks a different generation.
    static let yolov8Layers: Set<String> = ["Conv", "C2f", "SPPF", "Upsample", "Concat", "Detect"]

    static func yolo(_ model: PickleObject, top: PickleDict, file: MappedFile, name: String) throws -> YOLOCheckpoint {
        let yaml = model["yaml"]?.dict
        let yamlFile = yaml?["yaml_file"]?.string
        let generation = yamlFile.flatMap(generationName)
        if let task = modelTasks[model.name] {
            throw CheckpointError.unsupported(
                path: file.path,
                reason:
                    "\(name) is a \(generation ?? "YOLO") \(task) model (\(model.name)); det_model needs a detection model such as yolov8x.pt"
            )
        }
        guard model.name == "DetectionModel" else {
            throw CheckpointError.unrecognized(
                path: file.path, guess: "a checkpoint of \(model.qualifiedName), not a YOLOv8 detection model")
        }
        let checkpoint = YOLOCheckpoint(
            model: model, weights: try StateDict.from(module: model, path: file.path, file: file),
            names: YOLOCheckpoint.classNames(model["names"]),
            stride: model["stride"]?.tensor.flatMap { $0.count <= 8 ? $0.floats().map(Double.init) : nil } ?? [],
            yamlFile: yamlFile, scale: yaml?["scale"]?.string, version: top["version"]?.string)
        let types = Set(checkpoint.layers.map(\.name))
        let foreign = types.subtracting(yolov8Layers)
        if !foreign.isEmpty || (generation != nil && generation != "YOLOv8") {
            let what =
                generation.map { "a \($0) model" }
                ?? "a detection model with layers YOLOv8 does not have (\(foreign.sorted().joined(separator: ", ")))"
            throw CheckpointError.unsupported(
                path: file.path, reason: "\(name) is \(what); only YOLOv8 detection models are supported (yolov8n…x.pt)"
            )
        }
        guard let head = checkpoint.head else {
            throw CheckpointError.unrecognized(path: file.path, guess: "a DetectionModel without a Detect head")
        }
        guard checkpoint.classCount != nil else {
            let held = head["nc"]?.summary ?? "missing"
            throw CheckpointError.corrupt(
                path: file.path, reason: "the Detect head's nc (its class count) is \(held), not a whole number")
        }
        return checkpoint
    }

    /// "yolov8x.yaml" → "YOLOv8", "yolo11n.yaml" → "YOLO11", "yolov10s.yaml" → "YOLOv10".
    static func generationName(_ yamlFile: String) -> String? {
        let stem = ((yamlFile as NSString).lastPathComponent as NSString).deletingPathExtension.lowercased()
        guard stem.hasPrefix("yolo") else { return nil }
        let rest = stem.dropFirst(4)
        let v = rest.hasPrefix("v") ? "v" : ""
        let digits = rest.dropFirst(v.count).prefix { $0.isNumber }
        return digits.isEmpty ? nil : "YOLO\(v)\(digits)"
    }

    /// Names the formats that are not torch zip files or safetensors, so the error says what the file is.
    static func refuseOtherFormats(_ file: MappedFile) throws {
        let head = [UInt8](file.data.prefix(16))
        if head.starts(with: [0x50, 0x4B, 0x03, 0x04]) || Safetensors.looksLikeSafetensors(file) { return }
        if file.count == 0 { throw CheckpointError.unrecognized(path: file.path, guess: "the file is empty") }
        if head.starts(with: [0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]) {
            throw CheckpointError.unsupported(
                path: file.path,
                reason: "a legacy torch.save file (PyTorch < 1.6 format); re-save it with torch.save in PyTorch ≥ 1.6")
        }
        if head.first == 0x80 {
            throw CheckpointError.unsupported(path: file.path, reason: "a bare pickle, not a torch.save checkpoint")
        }
        // ONNX: a protobuf ModelProto, starting with field 1 (ir_version, varint) and naming its producer early.
        if head.count >= 2, head[0] == 0x08, head[1] < 0x80,
            file.data.prefix(256).range(of: Data("pytorch".utf8)) != nil
                || (file.path as NSString).pathExtension.lowercased() == "onnx"
        {
            throw CheckpointError.unsupported(
                path: file.path, reason: "an ONNX model; give the PyTorch .pt checkpoint instead")
        }
        throw CheckpointError.unrecognized(
            path: file.path, guess: "it is not a torch.save zip archive or safetensors file")
    }
}
