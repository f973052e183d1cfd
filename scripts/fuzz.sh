#!/usr/bin/env bash
# Coverage-guided fuzzing of the readers of untrusted files (Sources/autoannotate-fuzz) with libFuzzer and
# AddressSanitizer: each target runs for SECONDS (default 60) from its committed corpus (Tests/Fuzz/TARGET) and the
# fixtures, within 2 GB and 10 s an input. A crash, a leak past the limits or a timeout stops the run with its input
# saved in Tests/Fuzz/TARGET: commit it, and the replay test (FuzzReplayTests) keeps it as a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
swift build -c release --scratch-path .build-fuzz --product autoannotate-fuzz \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING
fuzzer=.build-fuzz/release/autoannotate-fuzz
declare -A seeds=([checkpoint]=Tests/Fixtures/checkpoints [image]=Tests/Fixtures/imaging/inputs
    [boxes]=Tests/Fixtures/annotate/boxes [recipe]=Pipelines)
for target in checkpoint image boxes recipe; do
    work=$(mktemp -d)
    mkdir -p "Tests/Fuzz/$target"
    echo "fuzzing $target for $seconds s"
    AUTOANNOTATE_FUZZ_TARGET=$target "$fuzzer" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -max_len=1048576 -print_final_stats=1 -artifact_prefix="Tests/Fuzz/$target/" \
        "$work" "Tests/Fuzz/$target" "${seeds[$target]}"
    rm -rf "$work"
done
