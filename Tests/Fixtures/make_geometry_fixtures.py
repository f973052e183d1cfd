#!/usr/bin/env python3
"""Makes the Geometry fixtures: binary masks of every awkward shape (ellipses, several parts, parts touching the
border, holes with islands, single pixels, 8-connected diagonals, noise, a full and an empty mask, a tiny-SAM
mask), with what cv2.findContours(RETR_EXTERNAL, CHAIN_APPROX_SIMPLE) and Ultralytics' masks2segments (all /
largest) and Masks.xyn give for them.

    python Tests/Fixtures/make_geometry_fixtures.py
"""
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import torchvision_shim  # noqa: E402,F401
import cv2  # noqa: E402
import numpy as np  # noqa: E402

OUT = HERE / "geometry"


def masks():
    rng = np.random.default_rng(3)
    out = {}
    m = np.zeros((90, 120), np.uint8); cv2.ellipse(m, (60, 45), (40, 25), 20, 0, 360, 1, -1); out["ellipse"] = m
    m = np.zeros((90, 120), np.uint8); cv2.circle(m, (30, 30), 15, 1, -1); cv2.rectangle(m, (70, 50), (110, 80), 1, -1); out["two-parts"] = m
    m = np.zeros((80, 100), np.uint8)
    for _ in range(6):
        cv2.circle(m, (int(rng.integers(0, 100)), int(rng.integers(0, 80))), int(rng.integers(3, 20)), 1, -1)
    out["parts-touching-border"] = m
    m = np.zeros((90, 90), np.uint8); cv2.circle(m, (45, 45), 35, 1, -1); cv2.circle(m, (45, 45), 20, 0, -1)
    cv2.circle(m, (45, 45), 8, 1, -1); out["ring-with-island"] = m
    m = np.zeros((40, 50), np.uint8)
    for x, y in [(3, 3), (10, 4), (11, 5), (12, 6), (30, 10), (31, 9), (32, 8), (20, 30), (49, 39), (0, 39), (49, 0)]:
        m[y, x] = 1
    cv2.line(m, (5, 20), (25, 35), 1, 1); out["pixels-and-diagonals"] = m
    out["noise"] = (rng.random((48, 64)) < 0.35).astype(np.uint8)
    out["full"] = np.ones((30, 40), np.uint8)
    out["empty"] = np.zeros((30, 40), np.uint8)
    m = np.zeros((60, 80), np.uint8); cv2.rectangle(m, (10, 10), (70, 50), 1, -1); m[20:40, 20:60] = 0; m[25:35, 30:50] = 1
    m[0, :] = 1; out["frame-and-nested"] = m
    sam = cv2.imread(str(HERE / "sam" / "mask-wide-0-0.png"), cv2.IMREAD_GRAYSCALE)
    out["tiny-sam"] = (sam > 127).astype(np.uint8)
    return out


def main():
    from ultralytics.utils import ops
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir()
    manifest = []
    for name, m in masks().items():
        cv2.imwrite(str(OUT / f"{name}.png"), m * 255)
        contours = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]
        merged = ops.masks2segments(m[None].astype(bool), strategy="all")[0]
        largest = ops.masks2segments(m[None].astype(bool), strategy="largest")[0]
        h, w = m.shape
        xyn = ops.scale_coords(m.shape, merged.copy(), m.shape, normalize=True)
        line = " ".join(map(str, xyn.reshape(-1).tolist()))
        manifest.append({"mask": f"{name}.png", "contours": [c.reshape(-1, 2).tolist() for c in contours],
                         "merged": merged.astype(int).tolist(), "largest": largest.astype(int).tolist(), "xyn_line": line})
    (OUT / "manifest.json").write_text(json.dumps(manifest) + "\n")
    print(f"wrote {len(manifest)} masks; contours per mask: {[len(e['contours']) for e in manifest]}")


if __name__ == "__main__":
    main()
