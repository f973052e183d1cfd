#!/usr/bin/env python3
"""OpenCV's side of `autoannotate-bench`: times cv2.imread and the Ultralytics-style letterbox resize on the
JPEG the Swift benchmark wrote. Usage: bench_opencv.py JPEG THREADS REPEATS (the bench passes these)."""
import sys
import time

import cv2

path, threads, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cv2.setNumThreads(threads)


def best(fn):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


img = cv2.imread(path)
h, w = img.shape[:2]
decode = best(lambda: cv2.imread(path))
r = min(640 / h, 640 / w)
size = (round(w * r), round(h * r))
resize = best(lambda: cv2.copyMakeBorder(cv2.resize(img, size, interpolation=cv2.INTER_LINEAR), 0, 0, 0, 0,
                                         cv2.BORDER_CONSTANT, value=(114, 114, 114)))
print(f"JPEG decode {w}×{h} (cv2.imread {cv2.__version__}, {threads} threads): {decode * 1000:.2f} ms, "
      f"{w * h / 1e6 / decode:.2f} MP/s (OpenCV)")
print(f"resize {w}×{h} → {size[0]}×{size[1]} INTER_LINEAR (cv2.resize): {resize * 1000:.2f} ms (OpenCV)")
