"""Fixtures for the export and cleaner polygons (Tests/GeometryTests/CocoMaskTests.swift, PolygonTests.swift):

- export/coco_masks.json: random polygons, single and several per object, with what pycocotools makes of them — the
  RLE counts of `frPyObjects` merged as `annToRLE` merges them, the compressed string, `area` and `toBbox`;
- export/approx_poly.json: contours of random masks (`cv2.findContours`, external, simple chains) with their
  `cv2.contourArea` and `cv2.approxPolyDP(closed=True)` at several epsilons (OpenCV 4.10).

    python Tests/Fixtures/make_export_fixtures.py
"""
import json
import pathlib

import cv2
import numpy as np
from pycocotools import mask as mask_utils

HERE = pathlib.Path(__file__).parent


def record(polygons, height, width):
    """What pycocotools makes of one object's polygons: merged RLE (counts from the decoded mask), string, area, box."""
    merged = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    flat = mask_utils.decode(merged).reshape(-1, order="F")
    counts, value, run = [], 0, 0
    for pixel in flat:
        if pixel != value:
            counts.append(run)
            run, value = 0, pixel
        run += 1
    counts.append(run)
    return {
        "height": height, "width": width, "polygons": polygons,
        "counts": counts, "compressed": merged["counts"].decode(),
        "area": int(mask_utils.area(merged)), "box": [float(v) for v in mask_utils.toBbox(merged)],
    }


def random_polygons(rng, height, width, parts):
    polygons = []
    for _ in range(parts):
        corners = int(rng.integers(3, 40))
        centre = rng.uniform([0, 0], [width, height])
        radius = rng.uniform(1, max(width, height) / 2)
        angles = np.sort(rng.uniform(0, 2 * np.pi, corners))
        radii = radius * rng.uniform(0.3, 1.0, corners)
        xs = np.clip(centre[0] + radii * np.cos(angles), 0, width)
        ys = np.clip(centre[1] + radii * np.sin(angles), 0, height)
        points = np.stack([xs, ys], 1).reshape(-1)
        if rng.random() < 0.3:  # repeated corners, as merged contours have
            points = np.concatenate([points, points[:2], points[:2]])
        polygons.append([float(v) for v in points])
    return polygons


def main():
    rng = np.random.default_rng(31)
    cases = []
    for _ in range(60):
        height, width = int(rng.integers(5, 90)), int(rng.integers(5, 90))
        cases.append(record(random_polygons(rng, height, width, int(rng.integers(1, 4))), height, width))
    # A tiny triangle, a polygon on the border, a thin sliver.
    for polygons, height, width in [([[1, 1, 3, 1, 2, 3]], 5, 5), ([[0, 0, 20, 0, 20, 10, 0, 10]], 10, 20),
                                     ([[0, 5, 30, 5.4, 30, 5.6]], 12, 31)]:
        cases.append(record([[float(v) for v in p] for p in polygons], height, width))
    (HERE / "export").mkdir(exist_ok=True)
    (HERE / "export/coco_masks.json").write_text(json.dumps(cases))
    print(f"wrote {len(cases)} COCO mask cases")

    contours = []
    for _ in range(120):
        mask = np.zeros((64, 64), np.uint8)
        for _ in range(int(rng.integers(1, 4))):
            centre = (int(rng.integers(4, 60)), int(rng.integers(4, 60)))
            axes = (int(rng.integers(2, 28)), int(rng.integers(2, 28)))
            cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        if rng.random() < 0.5:
            mask[rng.random((64, 64)) < 0.04] ^= 1
        found, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for contour in found[:3]:
            epsilon = float(rng.choice([0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 12.0]))
            approximated = cv2.approxPolyDP(contour, epsilon, True)
            contours.append({"contour": contour.reshape(-1, 2).tolist(), "epsilon": epsilon,
                             "area": float(cv2.contourArea(contour)),
                             "approximated": approximated.reshape(-1, 2).tolist()})
    (HERE / "export/approx_poly.json").write_text(json.dumps(contours))
    print(f"wrote {len(contours)} approxPolyDP cases")


if __name__ == "__main__":
    main()
