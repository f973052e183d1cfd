#!/usr/bin/env python3
"""End-to-end check and timing of the labelling job against Ultralytics' own auto_annotate, on the same images and
weights, 2 threads each: the same label files, the same line counts and classes, and every object's polygon
covering the same pixels (mask IoU of the two polygons rasterised with cv2.fillPoly).

    python Tests/Fixtures/compare_auto_annotate.py AUTOANNOTATE IMAGES DET SAM [THREADS]

AUTOANNOTATE is the release binary (.build/release/autoannotate). Use realistic masks (make_ellipse_sam.py):
random SAM masks are noise, whose polygons have tens of thousands of points.
"""
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import torchvision_shim  # noqa: E402,F401
import cv2  # noqa: E402
import numpy as np  # noqa: E402


def raster(line, width, height):
    values = np.array(line.split()[1:], dtype=np.float64).reshape(-1, 2) * [width, height]
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.round(values).astype(np.int32)], 1)
    return mask


def main():
    binary, images, det, sam = sys.argv[1:5]
    threads = int(sys.argv[5]) if len(sys.argv) > 5 else 2
    import torch
    import ultralytics.utils.torch_utils as torch_utils
    torch.set_num_threads(threads)
    torch_utils.NUM_THREADS = threads
    from ultralytics.data.annotator import auto_annotate
    count = len([p for p in Path(images).iterdir() if p.suffix.lower() in {".jpg", ".png"}])
    with tempfile.TemporaryDirectory() as tmp:
        reference, ours = Path(tmp) / "ultralytics", Path(tmp) / "ours"
        start = time.time()
        auto_annotate(data=images, det_model=det, sam_model=sam, output_dir=str(reference))
        theirs_seconds = time.time() - start
        theirs_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.time()
        # GNU time reports the child's own peak (a forked child's RUSAGE_CHILDREN would count this process's pages).
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", f"{tmp}/rss", binary, f"data={images}", f"det_model={det}",
                        f"sam_model={sam}", f"output_dir={ours}", "empty=skip", f"threads={threads}"], check=True)
        our_seconds = time.time() - start
        our_rss = int(Path(f"{tmp}/rss").read_text().split()[-1]) / 1024
        files = sorted(p.name for p in reference.glob("*.txt"))
        mine = sorted(p.name for p in ours.glob("*.txt"))
        print(f"label files: Ultralytics {files}, ours {mine}, same: {files == mine}")
        ious, lines, classes_equal, points = [], 0, True, []
        for name in files:
            image = next(p for p in Path(images).iterdir() if p.stem == Path(name).stem)
            height, width = cv2.imread(str(image)).shape[:2]
            a = (reference / name).read_text().splitlines()
            b = (ours / name).read_text().splitlines() if (ours / name).exists() else []
            print(f"{name}: {len(a)} lines (Ultralytics), {len(b)} lines (ours)")
            for x, y in zip(a, b):
                classes_equal &= x.split()[0] == y.split()[0]
                m, n = raster(x, width, height), raster(y, width, height)
                ious.append((m & n).sum() / max((m | n).sum(), 1))
                points.append(len(x.split()) // 2)
                lines += 1
        print(f"{lines} objects, classes equal in order: {classes_equal}, polygon mask IoU min {min(ious):.4f}, "
              f"mean {np.mean(ious):.4f}; polygon points median {int(np.median(points))}, max {max(points)}")
        print(f"whole job on {count} images: Ultralytics {theirs_seconds:.1f} s ({count / theirs_seconds:.3f} images/s, "
              f"peak RSS {theirs_rss:.0f} MB), ours {our_seconds:.1f} s ({count / our_seconds:.3f} images/s, peak RSS {our_rss:.0f} MB): "
              f"{theirs_seconds / our_seconds:.2f}x")


if __name__ == "__main__":
    main()
