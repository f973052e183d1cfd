#!/usr/bin/env python3
"""Makes the SegmentAnything fixtures: a tiny SAM in Meta's state-dict format whose IoU head predicts about
0.9 (so Ultralytics keeps its masks), test photos, and what Ultralytics 8.4.190's SAM predictor gives for them:
the image embedding, low-resolution logits, predicted IoUs and the final binary masks for box, point and
box+point prompts, single- and multi-mask.

    python Tests/Fixtures/make_sam_fixtures.py                 # the committed tiny fixtures (Tests/Fixtures/sam)
    python Tests/Fixtures/make_sam_fixtures.py --wide          # the same with a 128-wide decoder (Tests/Fixtures/sam_wide):
        its cross attentions have 64 channels, above 8 heads × 7 tokens, so box prompts take the decoder's low-rank path
    python Tests/Fixtures/make_sam_fixtures.py --full DIR [l]  # the same for DIR/sam_b.pt (or sam_l.pt) (from
        make_checkpoint_fixtures.py --full) on bus.jpg and zidane.jpg, written to DIR/sam_fixtures (sam_l_fixtures); then
        AUTOANNOTATE_SAM_FIXTURES=DIR/sam_fixtures swift test -c release -Xswiftc -enable-testing --filter PredictorTests

The tiny model is the one of checkpoints/tiny_sam.pt (segment_anything's classes, small widths) loaded into
Ultralytics' own SAMModel modules, so the reference is Ultralytics' code path end to end (its LetterBox, its
normalisation, its prompt scaling and its scale_masks), with `conf=0.25` as `SAM.predict` sets it.
"""
import json
import shutil
import sys
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import torchvision_shim  # noqa: E402,F401  (before ultralytics: see the module)
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from make_yolo_fixtures import scene  # noqa: E402

OUT = HERE / "sam"


def ultralytics_tiny_sam(state, width=16):
    from ultralytics.models.sam.modules.decoders import MaskDecoder
    from ultralytics.models.sam.modules.encoders import ImageEncoderViT, PromptEncoder
    from ultralytics.models.sam.modules.sam import SAMModel
    from ultralytics.models.sam.modules.transformer import TwoWayTransformer
    model = SAMModel(
        image_encoder=ImageEncoderViT(depth=2, embed_dim=16, img_size=1024, mlp_ratio=4, num_heads=2, patch_size=16,
                                      norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), qkv_bias=True, use_rel_pos=True,
                                      global_attn_indexes=[1], window_size=14, out_chans=width),
        prompt_encoder=PromptEncoder(embed_dim=width, image_embedding_size=(64, 64), input_image_size=(1024, 1024), mask_in_chans=16),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(depth=2, embedding_dim=width, mlp_dim=32, num_heads=8),
                                 transformer_dim=width, iou_head_depth=3, iou_head_hidden_dim=16))
    model.load_state_dict(state, strict=True)
    return model.eval()


def main():
    from ultralytics.models.sam.predict import Predictor
    full = Path(sys.argv[2]) if len(sys.argv) >= 3 and sys.argv[1] == "--full" else None
    variant = sys.argv[3] if len(sys.argv) == 4 else "b"  # b or l: which of DIR/sam_b.pt, DIR/sam_l.pt
    wide = sys.argv[1:] == ["--wide"]
    out = full / ("sam_fixtures" if variant == "b" else f"sam_{variant}_fixtures") if full else HERE / "sam_wide" if wide else OUT
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if wide:
        from make_checkpoint_fixtures import tiny_sam
        state = tiny_sam(seed=1, width=128).state_dict()
        # Layer norms start at γ = 1, β = 0; give the decoder's their own values, as trained weights have, so that the
        # low-rank path's handling of them is checked.
        generator = torch.Generator().manual_seed(2)
        for key in [k for k in state if k.startswith("mask_decoder.") and (".norm" in k or "output_upscaling.1." in k)]:
            state[key] = state[key] + 0.2 * torch.randn(state[key].shape, generator=generator)
    else:
        state = torch.load(full / f"sam_{variant}.pt" if full else HERE / "checkpoints" / "tiny_sam.pt")
    # Random SAM predicts IoUs around 0 and Ultralytics drops masks with IoU <= 0.25: make the IoU head's last
    # layer answer 0.9 ± a little (its bias), so every mask is kept and scores still differ per mask.
    last = "mask_decoder.iou_prediction_head.layers.2"
    state[last + ".weight"] = state[last + ".weight"] * 0.01
    state[last + ".bias"] = torch.full_like(state[last + ".bias"], 0.9)
    weights = f"sam_{variant}_iou.pt" if full else "tiny_sam_wide_iou.pt" if wide else "tiny_sam_iou.pt"
    torch.save(state, out / weights)
    if full:
        import ultralytics
        from ultralytics.models.sam.build import build_sam_vit_b, build_sam_vit_l
        model = {"b": build_sam_vit_b, "l": build_sam_vit_l}[variant]()
        model.load_state_dict(state)
        model.eval()
        assets = Path(ultralytics.__file__).parent / "assets"
        images = {"portrait.jpg": cv2.imread(str(assets / "bus.jpg")), "wide.jpg": cv2.imread(str(assets / "zidane.jpg"))}
    else:
        model = ultralytics_tiny_sam(state, width=128 if wide else 16)
        images = {"portrait.jpg": scene(810, 1080, 21), "wide.jpg": scene(451, 300, 22)}  # crop path; mid-pixel grid path
        if wide:
            images.pop("wide.jpg")
    for name, img in images.items():
        cv2.imwrite(str(out / name), img, [cv2.IMWRITE_JPEG_QUALITY, 90])

    predictor = Predictor(overrides=dict(conf=0.25, task="segment", mode="predict", imgsz=1024, save=False, verbose=False))
    predictor.setup_model(model=model, verbose=False)
    manifest = {"weights": weights, "images": [], "cases": []}
    cases = {"portrait.jpg": [dict(bboxes=[[100, 200, 500, 900]]),
                              dict(bboxes=[[100, 200, 500, 900], [300, 50, 800, 400], [0, 0, 810, 1080]]),
                              dict(points=[[[400, 500], [200, 700]]], labels=[[1, 0]]),
                              dict(points=[[[400, 500]]], labels=[[1]], multimask_output=True)],
             "wide.jpg": [dict(bboxes=[[40, 30, 300, 250]]), dict(points=[[[200, 150]]], labels=[[1]])]}
    if wide:  # 5 boxes (7 tokens each): the low-rank path; one box, one point (5 + 1 + padding), multimask: the other
        cases = {"portrait.jpg": [dict(bboxes=[[100, 200, 500, 900]]),
                                  dict(bboxes=[[100, 200, 500, 900], [300, 50, 800, 400], [0, 0, 810, 1080], [50, 600, 700, 1000],
                                               [400, 100, 780, 500]]),
                                  dict(points=[[[400, 500]]], labels=[[1]], multimask_output=True)]}
    if full:  # and 5 boxes on one image, which take the decoder's low-rank path
        cases["portrait.jpg"].append(dict(bboxes=[[100, 200, 500, 900], [300, 50, 800, 400], [0, 0, 810, 1080], [50, 600, 700, 1000],
                                                  [400, 100, 780, 500]]))
        cases["wide.jpg"] = [dict(bboxes=[[40, 30, 700, 650], [600, 100, 1200, 700]]), dict(points=[[[640, 360]]], labels=[[1]])]
    for name in images:
        path = str(out / name)
        predictor.set_image(path)
        embedding = predictor.features
        stem = Path(name).stem
        embedding.numpy().astype("<f4").tofile(out / f"embedding-{stem}.f32")
        manifest["images"].append({"image": name, "embedding": f"embedding-{stem}.f32", "shape": list(embedding.shape)})
        for i, case in enumerate(cases[name]):
            prompts = {k: v for k, v in case.items() if k != "multimask_output"}
            multimask = case.get("multimask_output", False)
            # Raw decoder outputs on the shared embedding, then the full predictor path for the final masks.
            im = predictor.preprocess([cv2.imread(path)])
            prepared = predictor._prepare_prompts(im.shape[2:], cv2.imread(path).shape[:2], prompts.get("bboxes"), prompts.get("points"),
                                                  prompts.get("labels"), None)
            with torch.no_grad():
                logits, scores = predictor._inference_features(embedding, *prepared, multimask)
            result = predictor(source=path, multimask_output=multimask, **prompts)[0]
            masks = result.masks.data.numpy().astype(np.uint8) if result.masks is not None else np.zeros((0,))
            key = f"{stem}-{i}"
            logits.numpy().astype("<f4").tofile(out / f"logits-{key}.f32")
            for j, m in enumerate(masks):
                cv2.imwrite(str(out / f"mask-{key}-{j}.png"), m * 255)
            manifest["cases"].append({"image": name, "name": key, "prompts": prompts, "multimask": multimask,
                                      "logits": f"logits-{key}.f32", "logits_shape": list(logits.shape),
                                      "scores": scores.tolist(), "masks": len(masks)})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {len(manifest['cases'])} SAM cases to {out}")


if __name__ == "__main__":
    main()
