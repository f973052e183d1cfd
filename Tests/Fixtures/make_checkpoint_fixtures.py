#!/usr/bin/env python3
"""Makes the Checkpoint fixtures: tiny models saved in the real file formats by the reference code, special
tensors (bf16, fp64, int64, bool, 0-d, non-contiguous, offset views, shared storage), a protocol-4 file, files
that must be refused (legacy, TorchScript, ONNX-like bytes, YOLOv8-seg/pose/cls/obb, YOLO11, SAM 2-style), and
malicious pickles. `manifest.json` records, for every tensor torch loads, its dtype, shape and an FNV-1a 64-bit
hash of its contiguous bytes (and of the bytes converted to float32), so Swift compares bit for bit.

Run from the repository root with requirements.txt, torch, ultralytics and segment-anything installed:
    python Tests/Fixtures/make_checkpoint_fixtures.py              # the tiny fixtures (committed)
    python Tests/Fixtures/make_checkpoint_fixtures.py --full DIR   # random-init sam_b.pt, sam_l.pt, yolov8n.pt,
                                                                   # yolov8x.pt in DIR (not committed; for info/benchmarks)
    python Tests/Fixtures/make_checkpoint_fixtures.py --full DIR --vit-h   # and sam_h.pt (ViT-H, 2.6 GB)
"""
import argparse
import copy
import io
import json
import os
import pickle
import shutil
import struct
import zipfile
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent / "checkpoints"
MARKER = "/tmp/autoannotate-pwned-marker"


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def describe(t: torch.Tensor):
    c = t.detach().contiguous()
    raw = c.view(torch.uint8).numpy().tobytes() if c.dtype in (torch.bfloat16,) else c.numpy().tobytes()
    return {"dtype": str(c.dtype).replace("torch.", ""), "shape": list(c.shape), "bytes": fnv1a64(raw),
            "float32": fnv1a64(c.to(torch.float32).numpy().tobytes())}


def state_dict_manifest(sd):
    return {k: describe(v) for k, v in sd.items()}


def segment_anything_modeling():
    """`segment_anything.modeling` without the package's __init__, which imports torchvision for the predictor's
    transforms; the only torchvision wheel for torch 2.13.0+cpu on this index is a CUDA build that cannot load."""
    import importlib.util
    import sys
    import types
    if "segment_anything" not in sys.modules:
        spec = importlib.util.find_spec("segment_anything")
        package = types.ModuleType("segment_anything")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["segment_anything"] = package
    import segment_anything.modeling as modeling
    return modeling


def tiny_sam(seed=0, width=16):
    """A SAM with every module of vit_b's code path but small widths (segment_anything's classes); `width`, the
    prompt and decoder width (16; 128 gives the decoder's cross attentions 64 channels, above 8 heads × 7 tokens)."""
    from functools import partial
    m = segment_anything_modeling()
    ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer = (
        m.ImageEncoderViT, m.MaskDecoder, m.PromptEncoder, m.Sam, m.TwoWayTransformer)
    torch.manual_seed(seed)
    return Sam(
        image_encoder=ImageEncoderViT(depth=2, embed_dim=16, img_size=1024, mlp_ratio=4, num_heads=2, patch_size=16,
                                      norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), qkv_bias=True, use_rel_pos=True,
                                      global_attn_indexes=[1], window_size=14, out_chans=width),
        prompt_encoder=PromptEncoder(embed_dim=width, image_embedding_size=(64, 64), input_image_size=(1024, 1024), mask_in_chans=16),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(depth=2, embedding_dim=width, mlp_dim=32, num_heads=8),
                                 transformer_dim=width, iou_head_depth=3, iou_head_hidden_dim=16),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375]).eval()


def tiny_yolo(cfg_name, nc=3, seed=0):
    """An Ultralytics model from an official yaml with the widths scaled down to a few channels."""
    from ultralytics.nn.tasks import ClassificationModel, DetectionModel, OBBModel, PoseModel, SegmentationModel, yaml_model_load
    cfg = yaml_model_load(cfg_name)
    cfg["scales"] = {"n": [0.33, 0.0625, 64]}
    cfg["scale"] = "n"
    cfg["nc"] = nc
    torch.manual_seed(seed)
    kind = {"-seg": SegmentationModel, "-pose": PoseModel, "-cls": ClassificationModel, "-obb": OBBModel}
    cls = next((c for suffix, c in kind.items() if suffix in cfg_name), DetectionModel)
    model = cls(cfg, ch=3, nc=nc, verbose=False)
    model.names = {i: f"class{i}" for i in range(nc)}
    model.args = {"imgsz": 640}
    return model


def ultralytics_checkpoint(model, path, ema=False):
    """Saved as Ultralytics' strip_optimizer leaves a release file: the pickled model in fp16."""
    import ultralytics
    half = copy.deepcopy(model).half()
    ckpt = {"date": "2026-11-25T00:00:00", "version": ultralytics.__version__, "license": "AGPL-3.0 License",
            "docs": "https://docs.ultralytics.com", "epoch": -1, "best_fitness": None,
            "model": None if ema else half, "ema": half if ema else None, "updates": None, "optimizer": None,
            "train_args": {"imgsz": 640, "data": "coco8.yaml"}}
    torch.save(ckpt, path)
    return half


def yolo_manifest(half, path):
    """State dict (as `state_dict()` gives it) of the pickled model, plus the attributes a loader needs."""
    sd = half.state_dict()
    layers = [{"i": m.i, "f": m.f, "type": m.type} for m in half.model]
    bn_eps = sorted({m.eps for m in half.modules() if isinstance(m, torch.nn.BatchNorm2d)})
    head = half.model[-1]
    n_layers = len([m for m in half.modules() if len(m._modules) == 0])
    from ultralytics import YOLO
    info = YOLO(str(path)).info(verbose=True)  # Ultralytics' own numbers for `autoannotate info`
    return {"file": path.name, "kind": "yolo", "task": type(half).__name__, "state_dict": state_dict_manifest(sd),
            "info": {"layers": info[0], "parameters": info[1], "gradients": info[2], "gflops": info[3]},
            "keys": list(sd.keys()), "names": {str(k): v for k, v in half.names.items()},
            "stride": [float(s) for s in half.stride], "yaml_file": half.yaml.get("yaml_file"),
            "nc": getattr(head, "nc", None), "reg_max": getattr(head, "reg_max", None), "layers": layers,
            "bn_eps": bn_eps, "leaf_modules": n_layers, "parameters": sum(p.numel() for p in half.parameters())}


def malicious(path, payload_class):
    torch.save({"weights": torch.ones(2), "trap": payload_class()}, path)


class RunsOsSystem:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


class RunsExec:
    def __reduce__(self):
        return (exec, (f"open({MARKER!r}, 'w').write('pwned')",))


class RunsSubprocess:
    def __reduce__(self):
        import subprocess
        return (subprocess.check_output, (["touch", MARKER],))


class RunsEval:
    def __reduce__(self):
        return (eval, (f"__import__('os').system('touch {MARKER}')",))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--full", type=Path, help="also write random-init full-size checkpoints here")
    parser.add_argument("--vit-h", action="store_true", help="with --full: also sam_h.pt (ViT-H, 2.6 GB)")
    args = parser.parse_args()
    if args.full:
        return full_size(args.full, args.vit_h)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    manifest = {"torch": torch.__version__, "files": [], "refused": []}
    import ultralytics
    manifest["ultralytics"] = ultralytics.__version__

    # SAM: Meta's state-dict format, saved to a path (the zip's folder is the file stem, not "archive").
    sam = tiny_sam()
    sd = sam.state_dict()
    torch.save(sd, OUT / "tiny_sam.pt")
    manifest["files"].append({"file": "tiny_sam.pt", "kind": "sam", "state_dict": state_dict_manifest(sd), "keys": list(sd.keys()),
                              "parameters": sum(p.numel() for p in sam.parameters())})
    # The same weights in fp16 and pickle protocol 4, and as safetensors.
    torch.save({k: v.half() for k, v in sd.items()}, OUT / "tiny_sam_fp16_proto4.pt", pickle_protocol=4)
    manifest["files"].append({"file": "tiny_sam_fp16_proto4.pt", "kind": "sam",
                              "state_dict": state_dict_manifest({k: v.half() for k, v in sd.items()}), "keys": list(sd.keys())})
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in sd.items()}, str(OUT / "tiny_sam.safetensors"))
    manifest["files"].append({"file": "tiny_sam.safetensors", "kind": "sam", "state_dict": state_dict_manifest(sd), "keys": sorted(sd.keys())})

    # Special tensors: every storage dtype, views with offsets and strides, shared storage, a 0-d scalar.
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 7
    special = {"f32": base, "transposed": base.t(), "offset_view": base[1:, 2:5], "strided": base[::2, ::3],
               "f16": base.half(), "bf16": (base * 3).bfloat16(), "f64": base.double() / 3, "i64": torch.arange(-5, 7),
               "bool": base > 1.5, "scalar": torch.tensor(3.25), "shared_a": base[0], "shared_b": base[3],
               "expanded": torch.ones(3, 1).expand(3, 4), "empty": torch.zeros(0, 5)}
    buf = io.BytesIO()
    torch.save(special, buf)  # saved to a buffer: the zip's folder is "archive"
    (OUT / "special.pt").write_bytes(buf.getvalue())
    manifest["files"].append({"file": "special.pt", "kind": "tensors", "state_dict": state_dict_manifest(special), "keys": list(special.keys())})

    # Ultralytics YOLOv8 detection checkpoints: release form (model) and training form (ema).
    det = tiny_yolo("yolov8n.yaml")
    half = ultralytics_checkpoint(det, OUT / "tiny_yolov8.pt")
    manifest["files"].append(yolo_manifest(half, OUT / "tiny_yolov8.pt"))
    half = ultralytics_checkpoint(tiny_yolo("yolov8n.yaml", nc=5, seed=1), OUT / "tiny_yolov8_ema.pt", ema=True)
    manifest["files"].append(yolo_manifest(half, OUT / "tiny_yolov8_ema.pt"))

    # Files to refuse, with the word the error must contain.
    def refuse(name, contains):
        manifest["refused"].append({"file": name, "contains": contains})
    for suffix, word in [("-seg", "segmentation"), ("-pose", "pose"), ("-cls", "classification"), ("-obb", "oriented")]:
        ultralytics_checkpoint(tiny_yolo(f"yolov8n{suffix}.yaml"), OUT / f"tiny_yolov8{suffix}.pt")
        refuse(f"tiny_yolov8{suffix}.pt", word)
    ultralytics_checkpoint(tiny_yolo("yolo11n.yaml"), OUT / "tiny_yolo11.pt")
    refuse("tiny_yolo11.pt", "YOLO11")
    torch.save(sd, OUT / "legacy.pt", _use_new_zipfile_serialization=False)
    refuse("legacy.pt", "legacy")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(OUT / "torchscript.pt"))
    refuse("torchscript.pt", "TorchScript")
    (OUT / "model.onnx").write_bytes(b"\x08\x07\x12\x07pytorch\x1a\x052.1.0" + bytes(64))
    refuse("model.onnx", "ONNX")
    torch.save({"model": sd}, OUT / "sam2_like.pt")
    refuse("sam2_like.pt", "SAM 2")
    torch.save({"conv.weight": torch.zeros(3, 3)}, OUT / "unknown_state_dict.pt")
    refuse("unknown_state_dict.pt", "not a model")
    (OUT / "random.bin").write_bytes(bytes((i * 7919 + 13) % 256 for i in range(1000)))
    refuse("random.bin", "not a")
    full = (OUT / "tiny_sam.pt").read_bytes()
    (OUT / "truncated.pt").write_bytes(full[: len(full) // 2])
    refuse("truncated.pt", "truncated")
    missing = {k: v for k, v in sd.items() if k != "mask_decoder.iou_token.weight"}
    torch.save(missing, OUT / "sam_missing_key.pt")
    refuse("sam_missing_key.pt", "mask_decoder.iou_token.weight")
    misshaped = dict(sd)
    misshaped["mask_decoder.iou_token.weight"] = torch.zeros(1, 15)
    torch.save(misshaped, OUT / "sam_misshaped_key.pt")
    refuse("sam_misshaped_key.pt", "mask_decoder.iou_token.weight")

    # Malicious: torch.save of objects whose __reduce__ runs a command under torch.load.
    for name, cls in [("os_system", RunsOsSystem), ("exec", RunsExec), ("subprocess", RunsSubprocess), ("eval", RunsEval)]:
        malicious(OUT / f"malicious_{name}.pt", cls)
        refuse(f"malicious_{name}.pt", "refused")
    manifest["marker"] = MARKER

    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {len(manifest['files'])} loadable and {len(manifest['refused'])} refused fixtures ({total / 1e6:.1f} MB) to {OUT}")


def full_size(directory: Path, vit_h=False):
    """Random-init checkpoints of the real sizes, in the real formats (for `info`, parity and benchmarks)."""
    directory.mkdir(parents=True, exist_ok=True)
    from ultralytics.models.sam.build import build_sam_vit_b, build_sam_vit_h, build_sam_vit_l
    from ultralytics.nn.tasks import DetectionModel
    sams = [("sam_b.pt", build_sam_vit_b), ("sam_l.pt", build_sam_vit_l)] + ([("sam_h.pt", build_sam_vit_h)] if vit_h else [])
    for name, build in sams:
        torch.manual_seed(0)
        torch.save(build().state_dict(), directory / name)
    for scale in "nx":
        torch.manual_seed(0)
        model = DetectionModel(f"yolov8{scale}.yaml", verbose=False)
        model.names = {i: f"class{i}" for i in range(80)}
        ultralytics_checkpoint(model, directory / f"yolov8{scale}.pt")
    print(f"wrote {', '.join(name for name, _ in sams)}, yolov8n.pt, yolov8x.pt to {directory}")


if __name__ == "__main__":
    main()
