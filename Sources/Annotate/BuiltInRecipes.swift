/// The recipes that ship with autoannotate, by name: `pipeline=auto-annotate` works wherever the binary is.
/// The same text as `Pipelines/NAME.yaml` (a test holds them equal), where users read and copy them.
extension Recipe {
    public static let builtIn: [String: String] = [
        "auto-annotate": """
        # The seed's job: Ultralytics' auto_annotate defaults with YOLOv8x and SAM ViT-B.
        #   autoannotate pipeline=Pipelines/auto-annotate.yaml data=images [key=value overrides]
        # Keys are the command's own options (det_model, sam_model, conf, iou, imgsz, max_det, classes, sam_conf, empty,
        # polygon, threads, output_dir); anything given on the command line wins over the recipe.
        det_model: yolov8x.pt
        sam_model: sam_b.pt
        conf: 0.25
        iou: 0.45
        imgsz: 640
        max_det: 300
        sam_conf: 0.25
        empty: write
        polygon: merge

        """,
        "boxes-to-segments": """
        # Turn an existing YOLO box dataset into segmentation labels (Ultralytics' yolo_bbox2segment, but resumable and
        # idempotent): each labelled box prompts SAM ViT-B, no detector runs.
        #   autoannotate pipeline=Pipelines/boxes-to-segments.yaml data=dataset/images/train output_dir=dataset/labels-segment/train
        # boxes: auto finds the box labels by Ultralytics' layout (…/images/… → …/labels/…); give boxes=DIR otherwise.
        # A box whose mask SAM scores at or below sam_conf (or whose mask is empty) keeps its outline as a 4-point
        # polygon, so no labelled object is lost; rows that already are polygons are copied unchanged.
        boxes: auto
        sam_model: sam_b.pt
        sam_conf: 0.25
        empty: write
        polygon: merge

        """,
        "largest-part": """
        # Like auto-annotate.yaml, but a mask in several parts keeps only its largest part: cleaner polygons for
        # training, at the price of the smaller parts of occluded objects.
        det_model: yolov8x.pt
        sam_model: sam_b.pt
        conf: 0.25
        iou: 0.45
        imgsz: 640
        max_det: 300
        sam_conf: 0.25
        empty: write
        polygon: largest

        """,
    ]
}
