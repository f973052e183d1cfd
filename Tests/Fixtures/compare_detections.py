#!/usr/bin/env python3
"""Compares `autoannotate detect format=json` output with Ultralytics' predictions recorded by
make_yolo_fixtures.py --full (yolo_reference.json): per image, box counts, classes, order, and the largest
coordinate and confidence differences.

    autoannotate detect model=DIR/yolov8x_boost.pt source=bus.jpg > ours.json
    python Tests/Fixtures/compare_detections.py DIR/yolo_reference.json "yolov8x_boost.pt bus.jpg" ours.json
"""
import json
import sys

reference = json.load(open(sys.argv[1]))[sys.argv[2]]
ours = json.load(open(sys.argv[3]))[0]["detections"]
n = len(reference["conf"])
print(f"{sys.argv[2]}: Ultralytics {n} boxes, ours {len(ours)}")
same_classes = all(o["class_id"] == c for o, c in zip(ours, reference["cls"]))
coord = max((abs(a - b) for o, r in zip(ours, reference["xyxy"]) for a, b in zip(o["xyxy"], r)), default=0.0)
conf = max((abs(o["confidence"] - c) for o, c in zip(ours, reference["conf"])), default=0.0)
print(f"  same count: {len(ours) == n}, same classes in order: {same_classes}, max |Δxyxy| {coord:.5f} px, max |Δconf| {conf:.2e}")
