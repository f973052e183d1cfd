"""The synthetic shapes world of the demo: coloured circles, rectangles and triangles on textured backgrounds, with
their exact outlines as ground truth. Deterministic: scene `i` of a split is the same on every machine (NumPy's
PCG64 and OpenCV's rasteriser only).
"""
import math

import cv2
import numpy as np

CLASSES = ["circle", "rectangle", "triangle"]
# Seeds of the splits: training scenes for the models, held-out scenes for the reported numbers, and the shipped
# demo images (also held out: neither model saw them).
SPLITS = {"train": 1_000_000, "val": 2_000_000, "heldout": 3_000_000, "demo": 4_000_000}


def background(rng, w, h):
    """A textured background: a smooth colour field, optionally stripes or a checkerboard, and grain."""
    coarse = rng.uniform(40, 215, (int(rng.integers(2, 6)), int(rng.integers(2, 6)), 3)).astype(np.float32)
    img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    kind = rng.integers(0, 3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 1:  # stripes at a random angle
        angle, period = rng.uniform(0, math.pi), rng.uniform(8, 40)
        wave = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
        img += (wave[..., None] * rng.uniform(10, 35, 3)).astype(np.float32)
    elif kind == 2:  # checkerboard
        cell = rng.uniform(12, 48)
        board = ((xx // cell + yy // cell) % 2 * 2 - 1).astype(np.float32)
        img += board[..., None] * rng.uniform(10, 35, 3).astype(np.float32)
    img += rng.normal(0, rng.uniform(3, 12), (h, w, 3)).astype(np.float32)
    return img


def outline(rng, cls, cx, cy, r):
    """Vertices (float, pixel units) of a shape of class `cls` inside the circle (cx, cy, r)."""
    theta = rng.uniform(0, 2 * math.pi)
    if cls == 0:  # circle or ellipse, as a fine polygon
        a, b = r, r * rng.uniform(0.6, 1.0)
        t = np.linspace(0, 2 * math.pi, 96, endpoint=False)
        x, y = a * np.cos(t), b * np.sin(t)
    elif cls == 1:  # rectangle of aspect 1:1 to 1:2
        half = math.atan(rng.uniform(0.5, 1.0))  # half-angle between diagonals
        t = np.array([half, math.pi - half, math.pi + half, -half])
        x, y = r * np.cos(t), r * np.sin(t)
    else:  # triangle, not too thin
        a, b = rng.uniform(1.7, 2.4, 2)  # arcs between vertices, so every angle is 30°-60°+
        t = np.array([0, a, a + b])
        x, y = r * np.cos(t), r * np.sin(t)
    c, s = math.cos(theta), math.sin(theta)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], 1)


def scene(split, index):
    """(BGR uint8 image, [(class, polygon Nx2 float)]) of scene `index` of `split`."""
    rng = np.random.default_rng(SPLITS[split] + index)
    w, h = int(rng.integers(384, 481)), int(rng.integers(288, 385))
    img = background(rng, w, h)
    objects, circles = [], []
    for _ in range(int(rng.integers(2, 7))):
        for _attempt in range(30):  # place without overlap (objects keep their whole outline)
            r = rng.uniform(20, 72)
            cx, cy = rng.uniform(r + 4, w - r - 4), rng.uniform(r + 4, h - r - 4)
            if all(math.hypot(cx - x, cy - y) > r + q + 6 for x, y, q in circles):
                break
        else:
            continue
        circles.append((cx, cy, r))
        cls = int(rng.integers(0, len(CLASSES)))
        poly = outline(rng, cls, cx, cy, r)
        mask = mask_of(poly, w, h)
        # A colour that stands out from the background under the shape, with a soft shading gradient.
        under = img[mask > 0].mean(0)
        for _ in range(20):
            colour = rng.uniform(0, 255, 3)
            if np.abs(colour - under).sum() > 150:
                break
        yy, xx = np.nonzero(mask)
        direction = rng.normal(0, 1, 2)
        shade = ((xx - cx) * direction[0] + (yy - cy) * direction[1]) / r * rng.uniform(0, 20)
        img[yy, xx] = colour + shade[:, None]
        objects.append((cls, poly))
    img += rng.normal(0, 2, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), objects


def mask_of(poly, w, h):
    """Binary mask of a polygon (OpenCV's fillPoly at 1/16 pixel): the shapes the scenes paint, and the ground truth."""
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(np.asarray(poly) * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return mask


def segment_line(cls, poly, w, h):
    """A YOLO segmentation label line (normalised polygon) for a ground-truth object."""
    pts = np.asarray(poly) / np.array([w, h])
    return " ".join([str(cls)] + [f"{v:.6f}" for v in pts.reshape(-1)])


def box_line(cls, poly, w, h):
    """A YOLO detection label line (normalised centre and size) for a ground-truth object."""
    x0, y0 = np.asarray(poly).min(0)
    x1, y1 = np.asarray(poly).max(0)
    return f"{cls} {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}"
