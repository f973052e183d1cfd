#!/usr/bin/env python3
"""Makes the YOLO fixtures: a tiny YOLOv8 detector that emits tens of boxes (random weights, BatchNorm
statistics re-estimated on images, class biases raised), test photos, and what Ultralytics 8.4.190 gives for
them: the raw network output on a letterboxed input, and `predict()`'s boxes under several settings.

    python Tests/Fixtures/make_yolo_fixtures.py                 # the committed tiny fixtures (Tests/Fixtures/yolo)
    python Tests/Fixtures/make_yolo_fixtures.py --full DIR      # boosted yolov8n/x from DIR (made by
                                                                # make_checkpoint_fixtures.py --full) and their
                                                                # predictions on bus.jpg and zidane.jpg, in DIR

Why boosting: a random-init YOLOv8's activations shrink layer by layer until the head outputs only its biases,
so no class scores pass conf 0.25. Re-estimating every BatchNorm's
running statistics on real inputs (train-mode forward passes with cumulative averaging) keeps activations at unit
scale; the last box convolutions are scaled to give centred DFL logits of trained magnitude (std 1), and the last class
convolution's biases are raised until a few tens of boxes pass.
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
OUT = HERE / "yolo"
sys.path.insert(0, str(HERE))
import torchvision_shim  # noqa: E402,F401  (before ultralytics: see the module)
from make_checkpoint_fixtures import ultralytics_checkpoint  # noqa: E402
from make_imaging_fixtures import photo  # noqa: E402


def scene(w, h, seed):
    """A photo-like image with a few solid shapes, so detections cluster on objects."""
    img = photo(w, h, seed)[..., ::-1].copy()  # BGR for cv2
    rng = np.random.default_rng(seed)
    for _ in range(6):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        if rng.random() < 0.5:
            cv2.ellipse(img, (cx, cy), (int(rng.integers(w // 12, w // 4)), int(rng.integers(h // 12, h // 4))), 0, 0, 360, colour, -1)
        else:
            cv2.rectangle(img, (cx, cy), (cx + int(rng.integers(w // 10, w // 3)), cy + int(rng.integers(h // 10, h // 3))), colour, -1)
    return img


def letterboxed(bgr, imgsz=640):
    from ultralytics.data.augment import LetterBox
    lb = LetterBox((imgsz, imgsz), auto=True, stride=32)(image=bgr)
    return torch.from_numpy(np.ascontiguousarray(lb[..., ::-1].transpose(2, 0, 1))).float()[None] / 255


def boost(model, images, target=(20, 60)):
    """Re-estimate BatchNorm statistics on `images`, then raise class biases until target boxes pass conf 0.25."""
    model = model.float()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches
    model.train()
    with torch.no_grad():
        for img in images:
            model(letterboxed(img))
    model.eval()
    head = model.model[-1]
    inputs = [letterboxed(img) for img in images]
    # Random box convolutions give DFL logits in the tens, where float32 rounding alone moves a box by
    # hundredths of a pixel (PyTorch fused vs unfused differed by 0.025 px). Trained heads give logits of a few
    # units: scale each level's last box convolution so its logits are centred with a standard deviation of 1.
    captured = {}
    hooks = [seq[-1].register_forward_hook(lambda m, i, o, k=k: captured.setdefault(k, []).append(o)) for k, seq in enumerate(head.cv2)]
    with torch.no_grad():
        for x in inputs:
            model(x)
    for h in hooks:
        h.remove()
    for k, seq in enumerate(head.cv2):
        logits = torch.cat([o.transpose(0, 1).flatten(1) for o in captured[k]], 1)  # per output channel
        mean, std = logits.mean(1), logits.std()
        seq[-1].weight.data /= std
        seq[-1].bias.data = (seq[-1].bias.data - mean) / std
    low, high = -10.0, 10.0
    original = [seq[-1].bias.data.clone() for seq in head.cv3]
    for _ in range(40):  # bisect one shared offset on the class biases
        mid = (low + high) / 2
        for seq, b in zip(head.cv3, original):
            seq[-1].bias.data = b + mid
        with torch.no_grad():
            counts = [int((model(x)[0][0, 4:].amax(0) > 0.25).sum()) for x in inputs]
        if np.median(counts) < target[0] * 3:
            low = mid
        else:
            high = mid
    return model


def predictions(weights, image_path, **kwargs):
    from ultralytics import YOLO
    result = YOLO(str(weights)).predict(str(image_path), verbose=False, **kwargs)[0]
    return {"xyxy": result.boxes.xyxy.tolist(), "conf": result.boxes.conf.tolist(), "cls": result.boxes.cls.int().tolist(),
            "orig_shape": list(result.orig_shape)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--full", type=Path)
    args = parser.parse_args()
    if args.full:
        return full(args.full)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir()
    images = {"portrait.jpg": scene(810, 1080, 11), "landscape.jpg": scene(1280, 720, 12), "small.png": scene(61, 47, 13),
              "square.jpg": scene(500, 500, 14)}
    for name, img in images.items():
        cv2.imwrite(str(OUT / name), img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    ckpt = torch.load(HERE / "checkpoints" / "tiny_yolov8.pt", weights_only=False)
    model = boost(ckpt["model"], [cv2.imread(str(OUT / n)) for n in images])
    ultralytics_checkpoint(model, OUT / "tiny_yolov8_boost.pt")
    weights = OUT / "tiny_yolov8_boost.pt"

    manifest = {"weights": weights.name, "raw": [], "predict": []}
    # Raw network output (fused, fp32 — as the predictor runs it) on letterboxed inputs.
    from ultralytics import YOLO
    # Also the same network in float64 (the exact answer, stored rounded to float32) and unfused in float32:
    # how far Ultralytics' own float32 result is from the exact one bounds what any float32 port can promise.
    net = YOLO(str(weights)).model.float().fuse().eval()
    exact = YOLO(str(weights)).model.double().eval()
    unfused = YOLO(str(weights)).model.float().eval()
    for name in ["portrait.jpg", "small.png"]:
        x = letterboxed(cv2.imread(str(OUT / name)))
        with torch.no_grad():
            y, y64, yu = net(x)[0], exact(x.double())[0], unfused(x)[0]
        stem = Path(name).stem
        y.numpy().astype("<f4").tofile(OUT / f"raw-{stem}.f32")
        y64.numpy().astype("<f4").tofile(OUT / f"raw-{stem}-float64.f32")
        boxes = lambda t: t[0, :4]  # noqa: E731
        manifest["raw"].append({"image": name, "input": list(x.shape), "output": list(y.shape), "file": f"raw-{stem}.f32",
                                "exact": f"raw-{stem}-float64.f32",
                                "reference_box_error": float((boxes(y).double() - boxes(y64)).abs().max()),
                                "fused_unfused_box_spread": float((boxes(y) - boxes(yu)).abs().max())})
    settings = [dict(conf=0.25, iou=0.45, imgsz=640, max_det=300), dict(conf=0.25, iou=0.7, imgsz=640, max_det=300),
                dict(conf=0.25, iou=0.45, imgsz=640, max_det=5), dict(conf=0.4, iou=0.45, imgsz=320, max_det=300),
                dict(conf=0.25, iou=0.45, imgsz=500, max_det=300), dict(conf=0.25, iou=0.45, imgsz=640, max_det=300, classes=[1]),
                dict(conf=0.25, iou=0.45, imgsz=640, max_det=300, agnostic_nms=True)]
    for name in images:
        for s in settings:
            manifest["predict"].append({"image": name, "settings": s, **predictions(weights, OUT / name, **s)})
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    counts = [len(p["conf"]) for p in manifest["predict"]]
    print(f"wrote {len(manifest['predict'])} predictions (boxes per case: {counts}) to {OUT}")


def full(directory: Path):
    """Boost random-init yolov8n/x and record Ultralytics' detections on bus.jpg and zidane.jpg."""
    import ultralytics
    assets = Path(ultralytics.__file__).parent / "assets"
    photos = [assets / "bus.jpg", assets / "zidane.jpg"]
    results = {}
    for scale in "nx":
        ckpt = torch.load(directory / f"yolov8{scale}.pt", weights_only=False)
        model = boost(ckpt["model"], [cv2.imread(str(p)) for p in photos])
        path = directory / f"yolov8{scale}_boost.pt"
        ultralytics_checkpoint(model, path)
        for p in photos:
            results[f"{path.name} {p.name}"] = predictions(path, p, conf=0.25, iou=0.45, imgsz=640, max_det=300)
    (directory / "yolo_reference.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote yolov8n_boost.pt, yolov8x_boost.pt and yolo_reference.json to {directory}; images in {assets}")


if __name__ == "__main__":
    main()
