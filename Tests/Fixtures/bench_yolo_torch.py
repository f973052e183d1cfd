#!/usr/bin/env python3
"""PyTorch's side of `autoannotate-bench yolo`: Ultralytics' fused fp32 YOLOv8 forward on the same input sizes
with the same thread count. Usage: bench_yolo_torch.py MODEL THREADS REPEATS HxW [HxW ...] [--json]
(--json: one JSON object per size instead of text, for scripts/benchmark.py)"""
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torchvision_shim  # noqa: E402,F401
import torch  # noqa: E402
from ultralytics import YOLO  # noqa: E402

as_json = "--json" in sys.argv
args = [a for a in sys.argv[1:] if a != "--json"]
model_path, threads, repeats, sizes = args[0], int(args[1]), int(args[2]), args[3:]
torch.set_num_threads(threads)
model = YOLO(model_path).model.float().fuse().eval()
for size in sizes:
    h, w = map(int, size.split("x"))
    x = torch.rand(1, 3, h, w)
    with torch.inference_mode():
        for _ in range(2):
            model(x)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    if as_json:
        print(json.dumps({"model": Path(model_path).name, "size": size, "seconds": min(times), "threads": threads}), flush=True)
    else:
        print(f"torch {torch.__version__} {h}x{w}: {min(times) * 1000:.1f} ms (min of {repeats}, {threads} threads)", flush=True)
