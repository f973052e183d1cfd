#!/usr/bin/env python3
"""The performance benchmark of issue #7 in one command: builds the release binaries, makes the random-init
full-size checkpoints if DIR lacks them, times our SAM encoder and mask decoder, and YOLOv8 n and x forwards,
beside PyTorch (Ultralytics' modules) and ONNX Runtime (the SAM encoder exported at opset 17), all with the same
thread count and one after the other on the same machine, and prints one table.

    python scripts/benchmark.py DIR [--threads 2] [--sam sam_b.pt ...] [--job PHOTOS]

DIR holds (or receives) sam_b.pt, sam_l.pt, yolov8n.pt, yolov8x.pt (`make_checkpoint_fixtures.py --full DIR`).
--job PHOTOS adds the whole job (`compare_auto_annotate.py`: Ultralytics' auto_annotate and ours on the same
photos), which needs DIR/yolov8x_boost.pt (`make_yolo_fixtures.py --full DIR`) and DIR/ellipse_sam_b.pt
(`make_ellipse_sam.py DIR`). Run it with the Python that has torch, ultralytics, onnx and onnxruntime
(Tests/Fixtures/requirements.txt). Every time is the minimum of its repeats; the machine is noisy, so compare
ratios measured in one run, not times across runs.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "Tests" / "Fixtures"
BENCH = ROOT / ".build" / "release" / "autoannotate-bench"
CLI = ROOT / ".build" / "release" / "autoannotate"


def log(message):
    print(message, file=sys.stderr, flush=True)


def run_measured(command, may_fail=False):
    """Runs a command; returns its stdout and its own peak RSS in MB (wait4 on the child alone). A failing command
    ends the benchmark, unless `may_fail`: then its stdout is None and its stderr is printed."""
    log("$ " + " ".join(map(str, command)))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(list(map(str, command)), stdout=out, stderr=err if may_fail else None)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode()
        err.seek(0)
        errors = err.read().decode()
    if process.returncode != 0:
        if may_fail:
            return None, errors.strip()
        sys.exit(f"failed ({process.returncode}): {' '.join(map(str, command))}")
    return text, usage.ru_maxrss / 1024


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--sam", nargs="+", default=["sam_b.pt"], help="SAM checkpoints in DIR (sam_l.pt takes minutes)")
    parser.add_argument("--yolo", nargs="+", default=["yolov8n.pt", "yolov8x.pt"])
    parser.add_argument("--yolo-repeats", type=int, default=15,
                        help="forwards per model and size, each side (the minimum is kept: yolov8n's 50 ms need many)")
    parser.add_argument("--encoder-repeats", type=int, default=2)
    parser.add_argument("--job", type=Path, help="a folder of photos for the whole-job comparison")
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()
    python, threads = sys.executable, str(args.threads)

    if not args.no_build:
        log("$ swift build -c release")
        subprocess.run(["swift", "build", "-c", "release"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    if not all((args.dir / name).exists() for name in args.sam + args.yolo):
        subprocess.run([python, FIXTURES / "make_checkpoint_fixtures.py", "--full", args.dir], check=True)

    rows = []  # (what, ours, reference, ratio text, GFLOP/s, × floor, peak RSS, goal)
    gemm = "the kernel the SAM runs report"
    for name in args.sam:
        model = args.dir / name
        ours, _ = run_measured([BENCH, "sam", "--model", model, "--threads", threads,
                                "--encoder-repeats", args.encoder_repeats, "--json"])
        ours = json_lines(ours)[0]
        torch_text, _ = run_measured([python, FIXTURES / "bench_sam_torch.py", model, threads, args.encoder_repeats, 3, "--json"])
        torch = json_lines(torch_text)[0]
        onnx_text, _ = run_measured([python, FIXTURES / "bench_sam_onnx.py", model, threads, args.encoder_repeats, "--json"])
        onnx = json_lines(onnx_text)[0]
        encoder, gflops, rate = ours["encoder_seconds"], ours["encoder_gflops"], ours["sgemm_gflops_per_s"]
        variant = ours["variant"]
        gemm = "our kernel" if ours["gemm"] == "ours" else "OpenBLAS"
        gemm += f" (OpenBLAS's core: {ours['openblas_core']})"
        rows.append((f"{variant} encoder", f"{encoder:.2f} s", f"torch {torch['encoder_seconds']:.2f} s",
                     f"{torch['encoder_seconds'] / encoder:.2f}x", f"{gflops / encoder:.0f}", f"{encoder * rate / gflops:.2f}",
                     f"{ours['peak_rss_mb']} / {torch['peak_rss_mb']:.0f}", "1"))
        rows.append((f"{variant} encoder", "", f"ORT {onnx['encoder_seconds']:.2f} s", f"{onnx['encoder_seconds'] / encoder:.2f}x",
                     "", "", f"ORT {onnx['peak_rss_mb']:.0f}", "1"))
        for boxes in ("1", "10", "50"):
            mine, theirs = ours["decoder_seconds"][boxes], torch["decoder_seconds"][boxes]
            share = f" ({100 * mine / encoder:.0f}% of enc.)" if boxes == "50" else ""
            rows.append((f"{variant} decoder {boxes} box{'es' if boxes != '1' else ''}", f"{mine * 1000:.0f} ms{share}",
                         f"torch {theirs * 1000:.0f} ms", f"{theirs / mine:.2f}x", "", "", "", "3" if boxes == "50" else ""))
        rows.append(("the MLP's product alone (best GEMM)", "", "", "", f"{rate:.0f}", "1.00", "", ""))
        sustained = ours["sgemm_sustained_gflops_per_s"]
        rows.append((f"{variant} encoder against it run for as long", "", "", "", f"{sustained:.0f}", f"{encoder * sustained / gflops:.2f}", "", "1"))
        bf16_text, refusal = run_measured([BENCH, "bf16", "--model", model, "--threads", threads, "--repeats", args.encoder_repeats],
                                          may_fail=True)
        if bf16_text is None:
            log(refusal)
            rows.append((f"{variant} encoder bf16", "refused: no AVX512-BF16", "", "", "", "", "", "4"))
        else:
            bf16 = json_lines(bf16_text)[0]
            rows.append((f"{variant} encoder bf16 ({bf16['kernel']})", f"{bf16['bf16_seconds']:.2f} s", f"our fp32 {bf16['fp32_seconds']:.2f} s",
                         f"{bf16['speedup']:.2f}x", f"{bf16['bf16_gflops_per_s']:.0f}", "", "", "4"))
            rows.append((f"  embedding error {bf16['embedding_relative_error']:.1e}, masks equal {100 * bf16['mask_pixels_equal']:.2f} %",
                         "", "", "", "", "", "", "4"))
            if bf16["kernel"] != "AMX":  # the dot products' rate bounds what bf16 can gain (AMX tiles are another unit)
                fma, dot = bf16["fp32_fma_gmacs_per_core"], bf16["bf16_dot_gmacs_per_core"]
                rows.append((f"  one core: bf16 dot {dot:.0f}, fp32 FMA {fma:.0f} G mult-adds/s", "", "", f"{dot / fma:.2f}x", "", "", "", "4"))

    for name in args.yolo:
        model = args.dir / name
        ours_text, _ = run_measured([BENCH, "yolo", "--model", model, "--threads", threads, "--repeats", args.yolo_repeats, "--json"])
        torch_text, _ = run_measured([python, FIXTURES / "bench_yolo_torch.py", model, threads, args.yolo_repeats, "640x640", "480x640", "--json"])
        theirs = {r["size"]: r for r in json_lines(torch_text)}
        for mine in json_lines(ours_text):
            reference = theirs[mine["size"]]
            h, w = mine["size"].split("x")
            rows.append((f"{Path(name).stem} forward {w}x{h}", f"{mine['seconds'] * 1000:.0f} ms",
                         f"torch {reference['seconds'] * 1000:.0f} ms", f"{reference['seconds'] / mine['seconds']:.2f}x",
                         f"{mine['gflops'] / mine['seconds']:.0f}", "", "", "2"))

    image = next(iter(sorted((args.job or FIXTURES / "sam").glob("*.jpg"))))
    _, segment_rss = run_measured([CLI, "segment", f"model={args.dir / args.sam[0]}", f"source={image}",
                                   "bboxes=10,10,200,300;50,60,400,380", f"threads={threads}"])
    rows.append((f"`autoannotate segment` ({args.sam[0]})", "", "", "", "", "", f"{segment_rss:.0f}", "1"))

    if args.job:
        text, _ = run_measured([python, FIXTURES / "compare_auto_annotate.py", CLI, args.job,
                                args.dir / "yolov8x_boost.pt", args.dir / "ellipse_sam_b.pt", threads])
        log(text)
        m = re.search(r"whole job on (\d+) images: Ultralytics ([\d.]+) s .*peak RSS (\d+) MB\), ours ([\d.]+) s .*peak RSS (\d+) MB\)", text)
        count, theirs, their_rss, mine, my_rss = m.groups()
        rows.append((f"whole job, {count} photos (yolov8x + sam_b)", f"{float(mine):.1f} s", f"Ultralytics {float(theirs):.1f} s",
                     f"{float(theirs) / float(mine):.2f}x", "", "", f"{my_rss} / {their_rss}", "5"))

    header = ("what", "ours", "reference", "ref/ours", "GFLOP/s", "x floor", "peak RSS MB (ours / ref)", "goal")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    print(f"{threads} threads; fp32 products on {gemm}; x floor = our best time / (GFLOPs / the best rate of that product, OpenBLAS or our kernel alone, "
          "measured between our runs); ref/ours > 1: ours faster")
    for row in [header, tuple("-" * w for w in widths)] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())


if __name__ == "__main__":
    main()
