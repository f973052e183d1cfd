#!/usr/bin/env python3
"""Same-minute A/B timing of two builds (or two settings) of an `autoannotate-bench` command.

This machine's speed drifts by ±15 % between minutes, so a change is judged by running the two sides in turn, round
after round (A B, B A, A B, ...), and comparing the minimum and median of every time each side printed, and the
ratio of the two sides' medians within each round (their geometric mean over the rounds):

    python scripts/ab.py --rounds 4 /tmp/bench-before .build/release/autoannotate-bench -- sam --model sam_b.pt --decoder-only 50
    python scripts/ab.py --rounds 4 --env-b AUTOANNOTATE_GEMM=openblas .build/release/autoannotate-bench -- yolo --model yolov8x.pt

With one binary, both sides run it; `--env-a` / `--env-b` set environment variables for one side. Every
"<label>: <number> ms" or "<label>: <number> s" in the output is a sample, grouped by its label (digits dropped).
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
from collections import defaultdict

SAMPLE = re.compile(r"^(?P<label>[^:\n]+):\s*(?P<value>[\d.]+)\s*(?P<unit>ms|s)\b", re.M)


def run(binary, arguments, extra):
    env = dict(os.environ, **extra)
    out = subprocess.run([binary, *arguments], capture_output=True, text=True, env=env, check=True).stdout
    for m in SAMPLE.finditer(out):
        value = float(m["value"]) * (1 if m["unit"] == "ms" else 1000)
        yield re.sub(r"[\d.]+ ?(ms|s)\b", "", m["label"]).strip(), value


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--env-a", action="append", default=[], metavar="VAR=VALUE")
    parser.add_argument("--env-b", action="append", default=[], metavar="VAR=VALUE")
    parser.add_argument("binaries", nargs="+", help="A and B (or one binary for both sides), then -- and the bench arguments")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args, arguments = parser.parse_args(argv[:split]), argv[split + 1:]
    if len(args.binaries) > 2:
        parser.error("give one or two binaries, then -- and the bench arguments")
    a, b = (args.binaries * 2)[:2]
    sides = {"A": (a, dict(v.split("=", 1) for v in args.env_a)), "B": (b, dict(v.split("=", 1) for v in args.env_b))}
    samples, rounds = defaultdict(list), defaultdict(list)
    for r in range(args.rounds):
        this_round = defaultdict(list)
        for side in ("A", "B") if r % 2 == 0 else ("B", "A"):
            binary, extra = sides[side]
            for label, value in run(binary, arguments, extra):
                samples[(label, side)].append(value)
                this_round[(label, side)].append(value)
        for label in dict.fromkeys(label for label, _ in this_round):
            if this_round[(label, "A")] and this_round[(label, "B")]:
                rounds[label].append(statistics.median(this_round[(label, "A")]) / statistics.median(this_round[(label, "B")]))
    print(f"A = {a} {args.env_a or ''}\nB = {b} {args.env_b or ''}")
    for label in dict.fromkeys(label for label, _ in samples):
        row = []
        for side in ("A", "B"):
            x = samples[(label, side)]
            row.append(f"{side}: min {min(x):.0f} ms, median {statistics.median(x):.0f} ms (n={len(x)})" if x else f"{side}: -")
        medians = [statistics.median(samples[(label, s)]) for s in ("A", "B") if samples[(label, s)]]
        ratio = f"   A/B median {medians[0] / medians[1]:.2f}" if len(medians) == 2 else ""
        print(f"{label}\n  {row[0]}\n  {row[1]}{ratio}")
        if len(rounds[label]) > 1:
            # Each round's two sides ran back to back: the ratio of their medians carries little of the drift
            # between rounds, which the pooled medians above do.
            pairs = rounds[label]
            print(f"  per round A/B: {' '.join(f'{x:.2f}' for x in pairs)}; geometric mean {statistics.geometric_mean(pairs):.3f}, "
                  f"B faster in {sum(x > 1 for x in pairs)} of {len(pairs)}")


if __name__ == "__main__":
    main()
