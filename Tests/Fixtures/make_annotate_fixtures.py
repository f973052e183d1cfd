#!/usr/bin/env python3
"""Makes the Annotate fixtures: small photos (the YOLO fixture scenes, downscaled so that the random tiny SAM's
noisy masks give label files of kilobytes, not megabytes) and the label files Ultralytics 8.4.190's own
`auto_annotate` writes for them with the tiny boosted YOLOv8 (yolo/tiny_yolov8_boost.pt) and the tiny SAM
(sam/tiny_sam_iou.pt); then box labels for the same photos (annotate/boxes: a box dataset, one image without a
label file, one with an empty one) and the segment labels Ultralytics' `yolo_bbox2segment` makes from them with
the tiny SAM (annotate/bbox2segment).

    python Tests/Fixtures/make_annotate_fixtures.py

SAM() picks its architecture from the file name, which a custom-size SAM does not have: `build_sam` is replaced
for this run by one that builds the tiny SAM in Ultralytics' own modules (make_sam_fixtures.ultralytics_tiny_sam)
and loads the file, so everything else — predictor, prompts, postprocess, masks2segments, the file writing — is
Ultralytics' shipped code.
"""
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import torchvision_shim  # noqa: E402,F401
import torch  # noqa: E402
import ultralytics.models.sam.build as sam_build  # noqa: E402
from make_sam_fixtures import ultralytics_tiny_sam  # noqa: E402

OUT = HERE / "annotate"


def main():
    sam_build.build_sam = lambda path: ultralytics_tiny_sam(torch.load(path))
    from ultralytics.data.annotator import auto_annotate
    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "ultralytics").mkdir(parents=True)
    (OUT / "images").mkdir()
    import cv2
    for name, size in [("portrait.jpg", (135, 180)), ("landscape.jpg", (192, 108)), ("square.jpg", (100, 100))]:
        cv2.imwrite(str(OUT / "images" / name), cv2.resize(cv2.imread(str(HERE / "yolo" / name)), size, interpolation=cv2.INTER_AREA),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
    shutil.copy(HERE / "yolo" / "small.png", OUT / "images" / "small.png")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "images"
        shutil.copytree(OUT / "images", data)
        auto_annotate(data=str(data), det_model=str(HERE / "yolo" / "tiny_yolov8_boost.pt"),
                      sam_model=str(HERE / "sam" / "tiny_sam_iou.pt"), output_dir=str(OUT / "ultralytics"))
    report("auto_annotate", OUT / "ultralytics")
    box_dataset()


# Boxes (class cx cy w h, normalised) of a hand-made box dataset over the fixture photos.
BOXES = {
    "portrait.txt": ["0 0.5 0.5 0.6 0.7", "2 0.25 0.3 0.3 0.2", "0 0.7 0.8 0.2 0.3"],
    "landscape.txt": ["5 0.4 0.55 0.5 0.6", "1 0.85 0.2 0.2 0.3"],
    "square.txt": [],
}


def box_dataset():
    from ultralytics.data.converter import yolo_bbox2segment
    (OUT / "boxes").mkdir()
    for name, rows in BOXES.items():
        (OUT / "boxes" / name).write_text("".join(r + "\n" for r in rows))
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(OUT / "images", Path(tmp) / "images")
        shutil.copytree(OUT / "boxes", Path(tmp) / "labels")
        yolo_bbox2segment(Path(tmp) / "images", save_dir=OUT / "bbox2segment", sam_model=str(HERE / "sam" / "tiny_sam_iou.pt"))
    report("yolo_bbox2segment", OUT / "bbox2segment")


def report(what, folder):
    files = sorted(p.name for p in folder.iterdir())
    print(f"Ultralytics {what} wrote {files}: lines {[len((folder / f).read_text().splitlines()) for f in files]}")


if __name__ == "__main__":
    main()
