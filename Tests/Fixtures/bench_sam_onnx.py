#!/usr/bin/env python3
"""ONNX Runtime's side of the SAM encoder benchmark (scripts/benchmark.py): Ultralytics' SAM image encoder built
from the checkpoint, exported with `torch.onnx.export` (opset 17), timed on 1×3×1024×1024 by onnxruntime's CPU
provider with the same thread count, in a child process that imports only onnxruntime and numpy (so its peak RSS
is ONNX Runtime's own, not the exporter's).

Usage: bench_sam_onnx.py MODEL THREADS REPEATS [--json]
The exported file is cached beside the checkpoint as <model>_encoder_opset17.onnx.
(--json: one JSON object instead of text.)"""
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def export(model_path: Path, onnx_path: Path):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torchvision_shim  # noqa: F401
    import torch
    from ultralytics.nn.modules import transformer

    # Ultralytics' LayerNorm2d passes `x.shape[1:2]` to F.layer_norm, which the TorchScript exporter cannot make
    # constant; this is the same function written as segment-anything writes it (mean and variance over channels).
    def layer_norm_2d(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        return self.weight[:, None, None] * ((x - u) / torch.sqrt(s + self.eps)) + self.bias[:, None, None]

    transformer.LayerNorm2d.forward = layer_norm_2d
    from ultralytics.models.sam.build import build_sam

    encoder = build_sam(str(model_path)).eval().image_encoder
    partial = onnx_path.with_suffix(".partial")  # renamed when complete: an interrupted export is not reused
    with torch.inference_mode():
        torch.onnx.export(encoder, (torch.rand(1, 3, 1024, 1024),), str(partial), opset_version=17, dynamo=False,
                          input_names=["image"], output_names=["embedding"])
    partial.rename(onnx_path)


def run(onnx_path: str, threads: int, repeats: int, as_json: bool):
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, 1024, 1024), dtype=np.float32)
    session.run(None, {"image": x})  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        session.run(None, {"image": x})
        times.append(time.perf_counter() - t)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if as_json:
        print(json.dumps({"onnxruntime": ort.__version__, "encoder_seconds": min(times), "peak_rss_mb": rss,
                          "threads": threads}), flush=True)
    else:
        print(f"onnxruntime {ort.__version__} image encoder: {min(times):.2f} s (min of {repeats}, {threads} threads), "
              f"peak RSS {rss:.0f} MB", flush=True)


def main():
    as_json = "--json" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--json"]
    if args[0] == "--run":
        return run(args[1], int(args[2]), int(args[3]), as_json)
    model_path, threads, repeats = Path(args[0]), args[1], args[2]
    onnx_path = model_path.with_name(model_path.stem + "_encoder_opset17.onnx")
    if not onnx_path.exists():
        export(model_path, onnx_path)
    subprocess.run([sys.executable, __file__, "--run", str(onnx_path), threads, repeats] + (["--json"] if as_json else []),
                   check=True)


if __name__ == "__main__":
    main()
