#!/usr/bin/env python3
"""Memory of a whole job over many images: is it flat from 10 to N?

    python scripts/memory.py PHOTOS DET_MODEL SAM_MODEL --images 10 60 [--threads 2] [--binary .build/release/autoannotate]

For each count, writes that many copies of the photos in PHOTOS (JPEG/PNG; brightness × 0.8–1.2 and JPEG quality
70–95, seeded) into a temporary folder, runs `autoannotate data=… det_model=… sam_model=… threads=…` under
`/usr/bin/time -f %M`, samples its VmRSS every 2 s, and prints the peak and where the samples settle. Needs OpenCV
and NumPy (the fixtures' virtual environment has both).
"""
import argparse
import collections
import os
import subprocess
import tempfile
import time

import cv2
import numpy as np


def copies(photos, folder, count):
    sources = [cv2.imread(os.path.join(photos, name)) for name in sorted(os.listdir(photos))
               if name.lower().endswith((".jpg", ".jpeg", ".png"))]
    rng = np.random.default_rng(7)
    for i in range(count):
        image = np.clip(sources[i % len(sources)].astype(np.float32) * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8)
        cv2.imwrite(os.path.join(folder, f"img{i:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(70, 96))])


def run(binary, folder, output, det, sam, threads):
    command = ["/usr/bin/time", "-f", "%M", binary, f"data={folder}", f"det_model={det}", f"sam_model={sam}",
               f"output_dir={output}", f"threads={threads}"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples = []
    while process.poll() is None:
        try:  # the job is /usr/bin/time's child
            child = open(f"/proc/{process.pid}/task/{process.pid}/children").read().split()
            for line in open(f"/proc/{child[0]}/status"):
                if line.startswith("VmRSS:"):
                    samples.append(int(line.split()[1]) / 1024)
        except (OSError, IndexError):
            pass
        time.sleep(2)
    lines = process.stderr.read().strip().splitlines()
    return float(lines[-1]) / 1024, lines[-2] if len(lines) > 1 else "", samples


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos")
    parser.add_argument("det_model")
    parser.add_argument("sam_model")
    parser.add_argument("--images", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--binary", default=".build/release/autoannotate")
    args = parser.parse_args()
    for count in args.images:
        with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryDirectory() as output:
            copies(args.photos, folder, count)
            peak, summary, samples = run(args.binary, folder, output, args.det_model, args.sam_model, args.threads)
            level, times = collections.Counter(round(s, 1) for s in samples).most_common(1)[0] if samples else (0, 0)
            print(f"{count} images: peak RSS {peak:.0f} MB; {len(samples)} samples, {times} of them at {level:.1f} MB, "
                  f"the last {samples[-1]:.1f} MB" if samples else f"{count} images: peak RSS {peak:.0f} MB")
            print(f"  {summary}")


if __name__ == "__main__":
    main()
