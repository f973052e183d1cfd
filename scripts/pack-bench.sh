#!/bin/sh
# Packs the release autoannotate-bench with every shared library it loads and the dynamic loader, to run on another
# x86-64 Linux machine without a Swift toolchain or these packages (a lent machine):
#
#     scripts/pack-bench.sh /tmp/bench.tar.xz
#     # there: tar xJf bench.tar.xz && cd bench && lib/ld-linux-x86-64.so.2 --library-path lib ./autoannotate-bench bf16
set -eu
out=${1:?usage: scripts/pack-bench.sh OUT.tar.xz}
swift build -c release --product autoannotate-bench
dir=$(mktemp -d)
mkdir -p "$dir/bench/lib"
cp .build/release/autoannotate-bench "$dir/bench/"
ldd .build/release/autoannotate-bench | awk '$3 ~ /^\// { print $3 }' | xargs -I{} cp -L {} "$dir/bench/lib/"
cp -L /lib64/ld-linux-x86-64.so.2 "$dir/bench/lib/"
tar cJf "$out" -C "$dir" bench
rm -rf "$dir"
ls -l "$out"
