#!/usr/bin/env python3
"""Makes the offline demo: a synthetic shapes dataset, a small YOLOv8 detector trained on it with Ultralytics, and a
small Segment Anything model trained on it from scratch, saved in the formats users' real files have (an
Ultralytics checkpoint; a segment_anything state dict), plus the demo images and their ground truth.

    python Examples/Demo/make_demo.py all WORK            # everything below (the two trainings side by side)
    python Examples/Demo/make_demo.py data WORK           # WORK/dataset: train/val scenes in Ultralytics' layout
    python Examples/Demo/make_demo.py detector WORK       # WORK/runs/…/best.pt → Examples/Demo/shapes_yolov8.pt
    python Examples/Demo/make_demo.py sam WORK            # → Examples/Demo/shapes_sam.pt
    python Examples/Demo/make_demo.py images              # Examples/Demo/{images,ground_truth}, Tests/Fixtures/demo
    python Examples/Demo/make_demo.py evaluate BIN N [OPTIONS]  # BIN (autoannotate) on N held-out scenes: recall, mask IoU

Pinned versions: Tests/Fixtures/requirements.txt (torch 2.13.0 CPU, ultralytics 8.4.190, segment-anything 1.0).
"""
import json
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent / "Tests" / "Fixtures"))
import torchvision_shim  # noqa: E402,F401  (before ultralytics: see the module)
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import shapes  # noqa: E402

DETECTOR = HERE / "shapes_yolov8.pt"
SAM = HERE / "shapes_sam.pt"
TRAIN_SCENES, VAL_SCENES, DEMO_SCENES, TEST_SCENES = 800, 100, 6, 10
TEST_FIXTURES = HERE.parent.parent / "Tests" / "Fixtures" / "demo"
DETECTOR_IMGSZ, DETECTOR_EPOCHS = 480, 8
SAM_INPUT, SAM_WINDOW = 512, 8


def data(work):
    """Ultralytics' detection layout: images/{train,val}, labels/{train,val}, data.yaml; plus the polygons."""
    root = work / "dataset"
    for split, count in (("train", TRAIN_SCENES), ("val", VAL_SCENES)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        (root / "polygons" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            img, objects = shapes.scene(split, i)
            h, w = img.shape[:2]
            cv2.imwrite(str(root / "images" / split / f"{i:05d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
            (root / "labels" / split / f"{i:05d}.txt").write_text("".join(shapes.box_line(c, p, w, h) + "\n" for c, p in objects))
            (root / "polygons" / split / f"{i:05d}.txt").write_text("".join(shapes.segment_line(c, p, w, h) + "\n" for c, p in objects))
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(shapes.CLASSES))
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n{names}\n")
    print(f"dataset: {TRAIN_SCENES} training and {VAL_SCENES} validation scenes in {root}")


def detector(work):
    """YOLOv8 at an eighth of the n scale's widths (0.9 M parameters), trained from scratch with Ultralytics."""
    from ultralytics import YOLO
    from ultralytics.nn.tasks import yaml_model_load
    cfg = yaml_model_load("yolov8n.yaml")
    cfg["scales"] = {"n": [0.33, 0.125, 1024]}
    cfg["nc"] = len(shapes.CLASSES)
    yaml_path = work / "yolov8n-shapes.yaml"  # the name carries the scale letter Ultralytics looks for
    import yaml
    yaml_path.write_text(yaml.safe_dump({k: v for k, v in cfg.items() if k not in ("scale", "yaml_file", "ch")}, sort_keys=False))
    model = YOLO(str(yaml_path))
    model.train(data=str(work / "dataset" / "data.yaml"), epochs=DETECTOR_EPOCHS, imgsz=DETECTOR_IMGSZ, batch=16,
                device="cpu", workers=2, seed=0, nbs=16, optimizer="AdamW", lr0=0.002, cos_lr=True, warmup_epochs=1, deterministic=True, plots=False, amp=False, project=str(work / "runs"),
                name="detector", exist_ok=True, mosaic=1.0, close_mosaic=2, fliplr=0.5, flipud=0.5, degrees=0.0,
                hsv_h=0.1, verbose=False)
    best = work / "runs" / "detector" / "weights" / "best.pt"
    shutil.copy(best, DETECTOR)
    print(f"detector: {DETECTOR} ({DETECTOR.stat().st_size / 1e6:.1f} MB)")


def tiny_sam():
    """SAM's modules (segment_anything 1.0) at small widths: a 3-block ViT of width 64 on 16-pixel patches of a
    512-pixel input — half SAM's 1024, a quarter of the tokens, so a training step costs a quarter (the scenes are
    at most 480 pixels wide, so no detail is lost) — with windowed attention only (8 × 8 windows tile the 32 × 32
    grid; a global block would triple the training time on a CPU); prompt and mask decoder of width 64 with 8 heads,
    as every SAM has."""
    from make_checkpoint_fixtures import segment_anything_modeling
    m = segment_anything_modeling()
    return m.Sam(
        image_encoder=m.ImageEncoderViT(depth=3, embed_dim=64, img_size=SAM_INPUT, mlp_ratio=4, num_heads=2, patch_size=16,
                                        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), qkv_bias=True, use_rel_pos=True,
                                        global_attn_indexes=[], window_size=SAM_WINDOW, out_chans=64),
        prompt_encoder=m.PromptEncoder(embed_dim=64, image_embedding_size=(SAM_INPUT // 16, SAM_INPUT // 16), input_image_size=(SAM_INPUT, SAM_INPUT), mask_in_chans=16),
        mask_decoder=m.MaskDecoder(num_multimask_outputs=3, transformer=m.TwoWayTransformer(depth=2, embedding_dim=64, mlp_dim=256, num_heads=8),
                                   transformer_dim=64, iou_head_depth=3, iou_head_hidden_dim=64),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])


def sam_batch(sam, rng, scenes):
    """Model inputs for training scenes: padded normalised images, jittered box prompts (as a detector's boxes are
    off by a few pixels), and the true masks for each box at half the model's input size (its low-resolution
    masks are a quarter)."""
    images, boxes, masks = [], [], []
    for index in scenes:
        img, objects = shapes.scene("train", int(index))
        img = cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])[1], cv2.IMREAD_COLOR)  # as shipped
        h, w = img.shape[:2]
        scale = SAM_INPUT / max(h, w)
        rgb = cv2.resize(img[..., ::-1], (round(w * scale), round(h * scale)), interpolation=cv2.INTER_LINEAR)
        images.append(sam.preprocess(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float()))
        prompt, truth = [], []
        for _cls, poly in objects:
            (x0, y0), (x1, y1) = poly.min(0), poly.max(0)
            side = np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0])
            prompt.append((np.array([x0, y0, x1, y1]) + rng.normal(0, 0.04, 4) * side) * scale)
            truth.append(shapes.mask_of(poly * scale / 2, SAM_INPUT // 2, SAM_INPUT // 2))
        boxes.append(torch.tensor(np.array(prompt), dtype=torch.float32))
        masks.append(torch.from_numpy(np.array(truth)).float())
    return torch.stack(images), boxes, masks


def sam_phase(model, steps, first_scene, lr, balanced, seed, threads, free_core, batch=2):
    """`steps` optimiser steps on scenes from `first_scene` on: dice loss plus binary cross-entropy on the upscaled
    mask — `balanced` between the object's pixels and the rest, or plain — and, as SAM, the mean squared error of
    the predicted IoU against the mask's real IoU. Runs on `threads` threads until `free_core()` says another core
    has come free (the detector's training is over), then on one more."""
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.04)
    start, recent = time.time(), []
    for step in range(steps):
        images, boxes, masks = sam_batch(model, rng, range(first_scene + step * batch, first_scene + (step + 1) * batch))
        embeddings = model.image_encoder(images)
        loss = 0
        for embedding, box, truth in zip(embeddings, boxes, masks):
            sparse, dense = model.prompt_encoder(points=None, boxes=box, masks=None)
            logits, iou = model.mask_decoder(image_embeddings=embedding[None], image_pe=model.prompt_encoder.get_dense_pe(),
                                             sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False)
            logits = torch.nn.functional.interpolate(logits, (SAM_INPUT // 2, SAM_INPUT // 2), mode="bilinear", align_corners=False)[:, 0]
            p = logits.sigmoid()
            raw = torch.nn.functional.binary_cross_entropy_with_logits(logits, truth, reduction="none")
            if balanced:
                inside, outside = truth.sum((1, 2)).clamp(min=1), (1 - truth).sum((1, 2)).clamp(min=1)
                bce = 0.5 * ((raw * truth).sum((1, 2)) / inside + (raw * (1 - truth)).sum((1, 2)) / outside)
            else:
                bce = raw.mean((1, 2))
            inter = (p * truth).sum((1, 2))
            dice = 1 - (2 * inter + 1) / (p.sum((1, 2)) + truth.sum((1, 2)) + 1)
            with torch.no_grad():
                hard = (logits > 0).float()
                real_iou = (hard * truth).sum((1, 2)) / ((hard + truth).clamp(max=1).sum((1, 2)) + 1e-6)
            loss = loss + (bce + dice + (iou[:, 0] - real_iou) ** 2).mean() / batch
            recent.append(real_iou.mean().item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 25 == 24 or step == steps - 1:
            print(f"sam step {step + 1}/{steps}: loss {loss.item():.4f}, mask IoU (last 25 steps) {np.mean(recent):.3f}, "
                  f"{time.time() - start:.0f} s, {torch.get_num_threads()} threads", flush=True)
            recent = []
            if torch.get_num_threads() == threads and free_core():
                torch.set_num_threads(threads + 1)


def sam(work, threads=2, free_core=lambda: False):
    """Trains the tiny SAM from scratch on box prompts, for its single-mask output (the one auto_annotate uses), in
    three phases: 1500 steps with the cross-entropy balanced between object and background (plain cross-entropy,
    or SAM's focal loss, leave a model this small predicting background everywhere for hundreds of steps), then
    1200 and 1600 with plain cross-entropy at lower rates, which stops the balanced loss's fattening of uncertain
    edges. Each phase's result is kept in WORK/sam_phaseN.pt, and a phase whose file exists is not run again."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = tiny_sam().train()
    phases = [(1500, 0, 1e-3, True, 0), (1200, 3000, 3e-4, False, 1), (1600, 5400, 2e-4, False, 2)]
    for number, (steps, first_scene, lr, balanced, seed) in enumerate(phases, 1):
        done = work / f"sam_phase{number}.pt"
        if done.exists():
            model.load_state_dict(torch.load(done))
            continue
        sam_phase(model, steps, first_scene, lr, balanced, seed, threads, free_core)
        torch.save(model.state_dict(), done)
    torch.save(model.state_dict(), SAM)
    print(f"sam: {SAM} ({SAM.stat().st_size / 1e6:.1f} MB)")


def images():
    """The shipped demo images (scenes neither model trained on) and their true outlines as YOLO segment labels, and
    the first held-out scenes with theirs for DemoTests (Tests/Fixtures/demo)."""
    for folder, split, count in ((HERE, "demo", DEMO_SCENES), (TEST_FIXTURES, "heldout", TEST_SCENES)):
        for sub in ("images", "ground_truth"):
            shutil.rmtree(folder / sub, ignore_errors=True)
            (folder / sub).mkdir(parents=True)
        for i in range(count):
            img, objects = shapes.scene(split, i)
            h, w = img.shape[:2]
            name = f"shapes_{i}" if split == "demo" else f"{i:04d}"
            cv2.imwrite(str(folder / "images" / f"{name}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
            (folder / "ground_truth" / f"{name}.txt").write_text("".join(shapes.segment_line(c, p, w, h) + "\n" for c, p in objects))
        print(f"{split}: {count} images in {folder / 'images'}, their outlines in {folder / 'ground_truth'}")


def match(truth, found, w, h):
    """One-to-one matches of true and found objects of the same class with mask IoU >= 0.5 (greedy, best first):
    ([IoU of each matched true object], number of found objects left unmatched)."""
    def mask(poly):
        return shapes.mask_of(np.asarray(poly) * [w, h], w, h).astype(bool)
    a, b = [(c, mask(p)) for c, p in truth], [(c, mask(p)) for c, p in found]
    pairs = sorted(((np.logical_and(x, y).sum() / max(np.logical_or(x, y).sum(), 1), i, j)
                    for i, (cx, x) in enumerate(a) for j, (cy, y) in enumerate(b) if cx == cy), reverse=True)
    used_a, used_b, ious = set(), set(), []
    for iou, i, j in pairs:
        if iou >= 0.5 and i not in used_a and j not in used_b:
            used_a.add(i), used_b.add(j), ious.append(iou)
    return ious, len(b) - len(used_b)


def read_segments(path):
    """[(class, [[x, y], …] normalised)] of a YOLO segment label file (empty when it does not exist)."""
    if not path.exists():
        return []
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return [(int(r[0]), np.array(r[1:], dtype=np.float64).reshape(-1, 2)) for r in rows]


def evaluate(binary, count, options=()):
    """Runs `binary` (autoannotate) with the demo models on `count` held-out scenes and scores its labels against
    the true outlines: detection recall (a true object is found when a written polygon of its class overlaps it
    with IoU >= 0.5), precision, and the mean mask IoU of the found objects' polygons."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "images").mkdir()
        truth = {}
        for i in range(count):
            img, objects = shapes.scene("heldout", i)
            h, w = img.shape[:2]
            cv2.imwrite(str(tmp / "images" / f"{i:04d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
            truth[f"{i:04d}"] = (w, h, [(c, p / [w, h]) for c, p in objects])
        start = time.time()
        subprocess.run([binary, f"data={tmp / 'images'}", f"det_model={DETECTOR}", f"sam_model={SAM}", f"imgsz={DETECTOR_IMGSZ}",
                        f"output_dir={tmp / 'labels'}", *options], check=True, stdout=subprocess.DEVNULL)
        seconds = time.time() - start
        ious, extra, total = [], 0, 0
        for stem, (w, h, objects) in truth.items():
            matched, unmatched = match(objects, read_segments(tmp / "labels" / f"{stem}.txt"), w, h)
            ious += matched
            extra += unmatched
            total += len(objects)
    print(json.dumps({"scenes": count, "objects": total, "recall": round(len(ious) / total, 4),
                      "precision": round(len(ious) / max(len(ious) + extra, 1), 4), "mean_mask_iou": round(float(np.mean(ious)), 4),
                      "min_mask_iou": round(float(np.min(ious)), 4), "seconds": round(seconds, 1)}))


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "data":
        data(Path(sys.argv[2]))
    elif command == "detector":
        detector(Path(sys.argv[2]))
    elif command == "images":
        images()
    elif command == "evaluate":
        evaluate(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 100, sys.argv[4:])
    elif command == "all":
        work = Path(sys.argv[2])
        data(work)
        # Both trainings at once: Ultralytics trains on min(8, cores - 1) threads, 1 on a 2-core machine.
        trainer = subprocess.Popen([sys.executable, __file__, "detector", str(work)])
        sam(work, threads=1, free_core=lambda: trainer.poll() is not None)
        if trainer.wait() != 0:
            sys.exit("the detector's training failed")
        images()
    elif command == "sam":
        sam(Path(sys.argv[2]), *(int(a) for a in sys.argv[3:]))
    else:
        sys.exit(__doc__)
