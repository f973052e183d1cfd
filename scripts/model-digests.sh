#!/bin/sh
# Prints the size and SHA-256 of every official model file, to record them in
# Sources/ModelCache/KnownModels.swift (a digest goes there only once checked like this). Needs network access
# and about 5 GB of disk; run it from the repository root: scripts/model-digests.sh [DIR]
set -eu
dir=${1:-$(mktemp -d)}
release=https://github.com/ultralytics/assets/releases/download/v8.4.0
meta=https://dl.fbaipublicfiles.com/segment_anything
for url in $release/yolov8n.pt $release/yolov8s.pt $release/yolov8m.pt $release/yolov8l.pt $release/yolov8x.pt \
           $release/sam_b.pt $release/sam_l.pt $release/mobile_sam.pt \
           $meta/sam_vit_b_01ec64.pth $meta/sam_vit_l_0b3195.pth $meta/sam_vit_h_4b8939.pth; do
    name=$(basename "$url")
    [ -f "$dir/$name" ] || curl -fL --retry 3 -o "$dir/$name" "$url"
    printf '"%s": (size: %s, sha256: "%s"),\n' "$name" "$(stat -c %s "$dir/$name")" "$(sha256sum "$dir/$name" | cut -d' ' -f1)"
done
