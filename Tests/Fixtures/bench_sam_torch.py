#!/usr/bin/env python3
"""PyTorch's side of `autoannotate-bench sam`: Ultralytics' SAM (built from the same checkpoint) — image encoder on
1×3×1024×1024, and prompt encoder + mask decoder for 1, 10 and 50 boxes — with the same thread count.
Usage: bench_sam_torch.py MODEL THREADS ENCODER_REPEATS DECODER_REPEATS [--json]
(--json: one JSON object instead of text, for scripts/benchmark.py)"""
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torchvision_shim  # noqa: E402,F401
import torch  # noqa: E402
from ultralytics.models.sam.build import build_sam  # noqa: E402

as_json = "--json" in sys.argv
args = [a for a in sys.argv[1:] if a != "--json"]
model_path, threads, enc_repeats, dec_repeats = args[0], int(args[1]), int(args[2]), int(args[3])
torch.set_num_threads(threads)
model = build_sam(model_path).eval()


def best(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


with torch.inference_mode():
    x = torch.rand(1, 3, 1024, 1024)
    encoder = best(lambda: model.image_encoder(x), enc_repeats)
    features = model.image_encoder(x)
    if not as_json:
        print(f"torch {torch.__version__} image encoder: {encoder:.2f} s (min of {enc_repeats}, {threads} threads)", flush=True)
    decoder = {}
    for n in (1, 10, 50):
        boxes = torch.rand(n, 4) * 512
        boxes[:, 2:] += boxes[:, :2]

        def decode():
            sparse, dense = model.prompt_encoder(points=None, boxes=boxes, masks=None)
            return model.mask_decoder(image_embeddings=features, image_pe=model.prompt_encoder.get_dense_pe(),
                                      sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False)
        decoder[str(n)] = best(decode, dec_repeats)
        if not as_json:
            print(f"torch mask decoder, {n} boxes: {decoder[str(n)] * 1000:.0f} ms", flush=True)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
if as_json:
    print(json.dumps({"torch": torch.__version__, "encoder_seconds": encoder, "decoder_seconds": decoder,
                      "peak_rss_mb": rss, "threads": threads}))
else:
    print(f"torch peak RSS {rss:.0f} MB", flush=True)
