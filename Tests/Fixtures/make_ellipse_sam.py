#!/usr/bin/env python3
"""Makes a full-size SAM whose masks look like real ones, for end-to-end checks and pipeline timing
(docs/PARITY.md, "The whole job"): the random-init DIR/sam_b.pt keeps its (random, frozen) image encoder, and its prompt encoder and
mask decoder are trained for a few minutes to answer a box with the ellipse inscribed in it. Random SAM masks are
noise with thousands of contours; these are smooth, with polygons of realistic size.

    python Tests/Fixtures/make_ellipse_sam.py DIR        # DIR/sam_b.pt → DIR/ellipse_sam_b.pt

The IoU head is then set as make_sam_fixtures.py sets it (about 0.9), so Ultralytics keeps every mask.
"""
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import torchvision_shim  # noqa: E402,F401
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def ellipse_targets(boxes, size=256, scale=0.25):
    """Ellipses inscribed in `boxes` (x1 y1 x2 y2 in the 1024 input frame) on the size² low-resolution grid."""
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    b = boxes * scale
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    rx, ry = (b[:, 2] - b[:, 0]) / 2, (b[:, 3] - b[:, 1]) / 2
    d = ((xs[None] - cx[:, None, None]) / rx[:, None, None]) ** 2 + ((ys[None] - cy[:, None, None]) / ry[:, None, None]) ** 2
    return (d <= 1).float()


def random_boxes(generator, n, width, height):
    """Boxes of 24 px to the whole image, inside the image's part of the 1024 frame."""
    w = torch.empty(n).uniform_(24, width, generator=generator)
    h = torch.empty(n).uniform_(24, height, generator=generator)
    x1 = torch.rand(n, generator=generator) * (width - w)
    y1 = torch.rand(n, generator=generator) * (height - h)
    return torch.stack([x1, y1, x1 + w, y1 + h], 1)


def main():
    from ultralytics.models.sam.build import build_sam_vit_b
    from ultralytics.models.sam.predict import Predictor
    import ultralytics
    folder = Path(sys.argv[1])
    torch.manual_seed(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = build_sam_vit_b()
    model.load_state_dict(torch.load(folder / "sam_b.pt"))
    model.eval()
    predictor = Predictor(overrides=dict(conf=0.25, task="segment", mode="predict", imgsz=1024, save=False, verbose=False))
    predictor.setup_model(model=model, verbose=False)
    assets = Path(ultralytics.__file__).parent / "assets"
    embeddings = []
    for name in ["bus.jpg", "zidane.jpg"]:
        image = cv2.imread(str(assets / name))
        with torch.no_grad():
            predictor.set_image(image)
        r = 1024 / max(image.shape[:2])
        embeddings.append((predictor.features.detach(), image.shape[1] * r, image.shape[0] * r))
        predictor.reset_image()
    parameters = list(model.prompt_encoder.parameters()) + list(model.mask_decoder.parameters())
    for p in model.image_encoder.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.AdamW(parameters, lr=float(sys.argv[3]) if len(sys.argv) > 3 else 3e-4, weight_decay=0)
    generator = torch.Generator().manual_seed(1)
    pe = model.prompt_encoder.get_dense_pe
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    start = time.time()

    def predict(embedding, boxes):
        sparse, dense = model.prompt_encoder(points=None, boxes=boxes, masks=None)
        logits, _ = model.mask_decoder(image_embeddings=embedding, image_pe=pe(), sparse_prompt_embeddings=sparse,
                                       dense_prompt_embeddings=dense, multimask_output=False)
        return logits[:, 0]

    model.prompt_encoder.train()
    model.mask_decoder.train()
    for step in range(steps):
        embedding, width, height = embeddings[step % len(embeddings)]
        boxes = random_boxes(generator, 12, width, height)
        target = ellipse_targets(boxes)
        logits = predict(embedding, boxes)
        probability = torch.sigmoid(logits)
        dice = 1 - (2 * (probability * target).sum((1, 2)) + 1) / (probability.sum((1, 2)) + target.sum((1, 2)) + 1)
        loss = F.binary_cross_entropy_with_logits(logits, target) + dice.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 25 == 0 or step == steps - 1:
            iou = ((logits > 0) & (target > 0)).sum((1, 2)) / ((logits > 0) | (target > 0)).sum((1, 2)).clamp(min=1)
            print(f"step {step}: loss {loss.item():.4f}, mask IoU {iou.mean().item():.3f} ({time.time() - start:.0f} s)", flush=True)

    model.eval()
    with torch.no_grad():
        ious = []
        for embedding, width, height in embeddings:
            boxes = random_boxes(torch.Generator().manual_seed(99), 32, width, height)
            logits, target = predict(embedding, boxes), ellipse_targets(boxes)
            ious.append(((logits > 0) & (target > 0)).sum((1, 2)) / ((logits > 0) | (target > 0)).sum((1, 2)).clamp(min=1))
        print(f"held-out boxes: mean mask IoU with the inscribed ellipse {torch.cat(ious).mean().item():.3f}")
    state = model.state_dict()
    last = "mask_decoder.iou_prediction_head.layers.2"
    state[last + ".weight"] = state[last + ".weight"] * 0.01
    state[last + ".bias"] = torch.full_like(state[last + ".bias"], 0.9)
    torch.save({k: v.contiguous() for k, v in state.items()}, folder / "ellipse_sam_b.pt")
    print(f"wrote {folder / 'ellipse_sam_b.pt'}")


if __name__ == "__main__":
    main()
