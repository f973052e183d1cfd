#!/usr/bin/env bash
# Builds Examples/Consumer as a user's package would depend on this one: by URL and version, from a tagged clone of
# the committed HEAD (a debug build, the quicker to compile), then runs it on two demo images. A product with unsafe
# build flags fails the build here.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q --bare "$root" "$work/autoannotate.git"
git -C "$work/autoannotate.git" tag 0.1.0 HEAD
git -C "$work/autoannotate.git" archive 0.1.0 Examples/Consumer | tar -x -C "$work"
mv "$work/Examples/Consumer" "$work/consumer"
mkdir "$work/images"
cp "$root"/Examples/Demo/images/shapes_{0,1}.jpg "$work/images/"
export AUTOANNOTATE_PACKAGE_URL="file://$work/autoannotate.git" AUTOANNOTATE_PACKAGE_VERSION=0.1.0
cd "$work/consumer"
swift build
.build/debug/consumer "$root/Examples/Demo/shapes_yolov8.pt" "$root/Examples/Demo/shapes_sam.pt" "$work/images"
