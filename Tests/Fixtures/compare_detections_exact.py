#!/usr/bin/env python3
"""The exact answer for the YOLO parity question: Ultralytics' detection pipeline (LetterBox, model, NMS,
scale_boxes) with the boosted full-size detector in float64 — unfused, so no float32 rounding anywhere — compared
with Ultralytics' own float32 `predict()` (yolo_reference.json) and with ours (`autoannotate detect format=json`).
Coordinates and confidences are compared in order; where the order differs, boxes are paired by best IoU instead.

    python Tests/Fixtures/compare_detections_exact.py DIR  .build/release/autoannotate

(DIR from `make_checkpoint_fixtures.py --full DIR` and `make_yolo_fixtures.py --full DIR`.)
"""
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torchvision_shim  # noqa: E402,F401
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import ultralytics  # noqa: E402
from ultralytics import YOLO  # noqa: E402
from ultralytics.data.augment import LetterBox  # noqa: E402
from ultralytics.utils import nms, ops  # noqa: E402


def exact(weights: Path, image: Path):
    model = YOLO(str(weights)).model.double().eval()
    original = cv2.imread(str(image))
    boxed = LetterBox(new_shape=(640, 640), auto=True, stride=32)(image=original)
    x = torch.from_numpy(np.ascontiguousarray(boxed[..., ::-1].transpose(2, 0, 1))).double()[None] / 255
    with torch.inference_mode():
        det = nms.non_max_suppression(model(x)[0], conf_thres=0.25, iou_thres=0.45, max_det=300)[0]
        det[:, :4] = ops.scale_boxes(x.shape[2:], det[:, :4], original.shape)
    return {"xyxy": det[:, :4].tolist(), "conf": det[:, 4].tolist(), "cls": det[:, 5].int().tolist()}


def iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def compare(name, got, truth):
    """Largest coordinate and confidence differences from the exact answer, in order or paired by IoU."""
    same_order = len(got["cls"]) == len(truth["cls"]) and all(
        g == t and iou(a, b) > 0.99 for g, t, a, b in zip(got["cls"], truth["cls"], got["xyxy"], truth["xyxy"]))
    pairs = list(range(len(truth["cls"]))) if same_order else [
        max(range(len(truth["cls"])), key=lambda j: iou(box, truth["xyxy"][j]) if truth["cls"][j] == c else -1)
        for box, c in zip(got["xyxy"], got["cls"])]
    coord = max((abs(a - b) for i, j in enumerate(pairs) for a, b in zip(got["xyxy"][i], truth["xyxy"][j])), default=0.0)
    conf = max((abs(got["conf"][i] - truth["conf"][j]) for i, j in enumerate(pairs)), default=0.0)
    order = "same order" if same_order else "ORDER DIFFERS (paired by IoU)"
    print(f"  {name:<22} {len(got['cls'])} boxes, {order}; max |Δxyxy| {coord:.5f} px, max |Δconf| {conf:.2e}")


def main():
    directory, binary = Path(sys.argv[1]), sys.argv[2]
    torch.set_num_threads(2)
    reference = json.loads((directory / "yolo_reference.json").read_text())
    assets = Path(ultralytics.__file__).parent / "assets"
    for model in ["yolov8n_boost.pt", "yolov8x_boost.pt"]:
        for photo in ["bus.jpg", "zidane.jpg"]:
            truth = exact(directory / model, assets / photo)
            out = subprocess.run([binary, "detect", f"model={directory / model}", f"source={assets / photo}", "format=json"],
                                 check=True, capture_output=True, text=True).stdout
            ours = json.loads(out)[0]["detections"]
            ours = {"xyxy": [d["xyxy"] for d in ours], "conf": [d["confidence"] for d in ours], "cls": [d["class_id"] for d in ours]}
            print(f"{model} {photo}: float64 answer {len(truth['cls'])} boxes")
            compare("Ultralytics float32", reference[f"{model} {photo}"], truth)
            compare("autoannotate", ours, truth)


if __name__ == "__main__":
    main()
