"""The export checked by the tools that read it (pinned in requirements.txt): the README's demo job, exported as
YOLO, COCO (polygons and RLE) and LabelMe, then

- Ultralytics 8.4.190: `check_det_dataset` on data.yaml, every image of both splits found with its label file and
  read as segments (not boxes), the labels equal to the job's own label files, and a one-epoch `segment` training
  run (a random-init yolov8n-seg, CPU, tiny image size) that goes through;
- pycocotools 2.0.11: both annotation files load; every annotation's mask from its polygons equals the RLE export's
  mask, and its area and box equal pycocotools' own;
- LabelMe 6.3.1: every JSON file loads with its image (sizes checked by LabelMe), one shape per polygon.

    python Tests/Fixtures/check_export.py .build/release/autoannotate [--train]
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import torchvision_shim  # noqa: E402,F401

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEMO = ROOT / "Examples/Demo"


def run(*arguments):
    result = subprocess.run([str(a) for a in arguments], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(map(str, arguments))}: exit {result.returncode}\n{result.stderr}")
    return result.stdout


def check_yolo(dataset, job, train):
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(dataset / "data.yaml"))
    found = 0
    for split in ("train", "val"):
        images = sorted((dataset / "images" / split).rglob("*.jpg"))
        built = YOLODataset(img_path=data[split], data=data, task="segment", augment=False)
        assert len(built.labels) == len(images), f"{split}: {len(built.labels)} labels for {len(images)} images"
        for label in built.labels:
            name = pathlib.Path(label["im_file"]).stem
            ours = (job / f"{name}.txt").read_text().splitlines()
            assert len(label["segments"]) == len(ours), f"{name}: {len(label['segments'])} segments, job has {len(ours)}"
            exported = (dataset / "labels" / split / f"{name}.txt").read_text().splitlines()
            assert exported == ours, f"{name}: the exported label differs from the job's"
            found += 1
    print(f"yolo: check_det_dataset passed; {found} images found with their segment labels in train and val")
    if train:
        from ultralytics import YOLO

        with tempfile.TemporaryDirectory() as project:
            model = YOLO("yolov8n-seg.yaml")
            model.train(data=str(dataset / "data.yaml"), epochs=1, imgsz=160, batch=2, workers=0, device="cpu",
                        plots=False, project=project, name="run", verbose=False, amp=False)
        print("yolo: one epoch of 'segment' training ran")


def check_coco(polygons, rle):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    compared = 0
    for split in ("train", "val"):
        a = COCO(str(polygons / "annotations" / f"instances_{split}.json"))
        b = COCO(str(rle / "annotations" / f"instances_{split}.json"))
        assert sorted(a.getImgIds()) == sorted(b.getImgIds())
        for image_id in a.getImgIds():
            info = a.loadImgs(image_id)[0]
            assert (polygons / "images" / split / info["file_name"]).exists()
            for x, y in zip(a.loadAnns(a.getAnnIds(imgIds=image_id)), b.loadAnns(b.getAnnIds(imgIds=image_id))):
                mask = a.annToMask(x)
                assert np.array_equal(mask, b.annToMask(y)), f"annotation {x['id']}: polygon and RLE masks differ"
                merged = mask_utils.merge(mask_utils.frPyObjects(x["segmentation"], info["height"], info["width"]))
                assert x["area"] == int(mask_utils.area(merged)) == int(mask.sum()), f"annotation {x['id']}: area"
                assert np.allclose(x["bbox"], mask_utils.toBbox(merged)), f"annotation {x['id']}: bbox"
                compared += 1
    print(f"coco: both splits load in pycocotools; {compared} masks equal between polygons and RLE, areas and boxes too")


def check_labelme(dataset):
    from labelme import LabelFile

    files = sorted(dataset.rglob("*.json"))
    shapes = 0
    for path in files:
        loaded = LabelFile(str(path))
        assert loaded.image_data, f"{path}: no image"
        shapes += len(loaded.shapes)
    print(f"labelme: {len(files)} files load with their images ({shapes} polygons)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--train", action="store_true", help="also run one epoch of Ultralytics' segment training")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        work = pathlib.Path(work)
        job = work / "labels"
        run(args.binary, f"data={DEMO / 'images'}", f"det_model={DEMO / 'shapes_yolov8.pt'}",
            f"sam_model={DEMO / 'shapes_sam.pt'}", "imgsz=480", f"output_dir={job}")
        for name, extra in [("yolo", ["val=0.34"]), ("coco", ["val=0.34"]), ("coco_rle", ["val=0.34", "rle=True"]),
                            ("labelme", [])]:
            run(args.binary, "export", f"output_dir={job}", f"format={name.split('_')[0]}", f"dataset={work / name}",
                *extra)
        check_yolo(work / "yolo", job, args.train)
        check_coco(work / "coco", work / "coco_rle")
        check_labelme(work / "labelme")


if __name__ == "__main__":
    main()
