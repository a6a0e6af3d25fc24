"""End-to-end benchmark: the scanner against the Python baseline, same model, same machine,
same threads, same run, plus the two ceilings (decode alone, inference alone).

    bench/run [--corpus bench/corpus] [--model models/resnet18-demo.json] [--repeats 3]
              [--threads N] [--subset jpeg]

Writes bench/results/latest.md (the table README shows) and latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCANNER = REPO / "target" / "release" / "synthscan"
CEILINGS = REPO / "target" / "release" / "examples" / "ceilings"


def run_measured(cmd: list[str]) -> tuple[str, float, int]:
    """Runs a command; returns its stdout, wall seconds and peak RSS in MiB (the largest of the
    process and the children it reaped, e.g. DataLoader workers)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, cwd=REPO)
        # wait4, unlike Popen.wait, reports this child's own resource use.
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.read()}")
        return out.read(), wall, usage.ru_maxrss // 1024


def hardware() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{model}, {os.cpu_count()} cores, {mem:.0f} GiB, {platform.system()} {platform.release()}"
    )


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=REPO / "bench" / "corpus")
    ap.add_argument("--subset", default="jpeg", help="corpus subfolder(s), comma separated")
    ap.add_argument("--model", type=Path, default=REPO / "models" / "resnet18-demo.json")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args()

    inputs = [str(args.corpus / s) for s in args.subset.split(",")]
    n_images = sum(1 for d in inputs for p in Path(d).rglob("*") if p.is_file())
    threads = str(args.threads)
    tmp = Path(tempfile.mkdtemp())
    scanner_rates, baseline_rates = [], []
    scanner_rss = baseline_rss = 0
    summary: dict = {}
    for r in range(args.repeats):
        # Alternate the order so neither contender always runs on a warmer page cache.
        order = ["scanner", "baseline"] if r % 2 == 0 else ["baseline", "scanner"]
        for who in order:
            if who == "scanner":
                out, wall, rss = run_measured(
                    [
                        str(SCANNER),
                        "--quiet",
                        "scan",
                        *inputs,
                        "--model",
                        str(args.model),
                        "--out",
                        str(tmp / "s.parquet"),
                        "-j",
                        threads,
                        "--decode-threads",
                        threads,
                        "-b",
                        str(args.batch_size),
                        "--summary-json",
                        str(tmp / "summary.json"),
                    ]
                )
                summary = json.loads((tmp / "summary.json").read_text())
                scanner_rates.append(summary["rows"] / wall)
                scanner_rss = max(scanner_rss, rss)
            else:
                out, wall, rss = run_measured(
                    [
                        sys.executable,
                        str(REPO / "bench" / "baseline.py"),
                        *inputs[:1],
                        "--model",
                        str(args.model),
                        "--out",
                        str(tmp / "b.parquet"),
                        "--workers",
                        threads,
                        "--threads",
                        threads,
                        "--batch-size",
                        str(args.batch_size),
                    ]
                )
                baseline_rates.append(json.loads(out)["images"] / wall)
                baseline_rss = max(baseline_rss, rss)

    def ceiling(kind: str, target: str) -> float:
        out, _, _ = run_measured([str(CEILINGS), kind, target, "--threads", threads])
        return float(json.loads(out)["images_per_sec"])

    decode_rate = statistics.median(ceiling("decode", inputs[0]) for _ in range(args.repeats))
    infer_rate = statistics.median(ceiling("infer", str(args.model)) for _ in range(args.repeats))
    shared = 1 / (1 / decode_rate + 1 / infer_rate)
    scanner_median = statistics.median(scanner_rates)
    baseline_median = statistics.median(baseline_rates)

    wall = summary["wall"]
    stage_rates = {}
    for stage, busy in summary["stages"].items():
        per_thread = {
            "decode": summary["decode_threads"],
            "resize": summary["decode_threads"],
            "infer": summary["infer_workers"],
        }.get(stage, 1)
        stage_rates[stage] = summary["rows"] / (busy / per_thread) if busy > 0 else float("inf")

    lines = [
        f"Corpus: {n_images} files in {', '.join(Path(i).name for i in inputs)}; model "
        f"`{args.model.stem}`; {args.threads} threads; batch {args.batch_size}; "
        f"{args.repeats} repeats, median (min-max).",
        f"Hardware: {hardware()}.",
        "",
        "| contender | images/s | peak RSS |",
        "|---|---|---|",
        f"| synthscan scan (Parquet) | {spread(scanner_rates)} | {scanner_rss} MiB |",
        f"| Python baseline (DataLoader + onnxruntime + pyarrow) | {spread(baseline_rates)} "
        f"| {baseline_rss} MiB |",
        f"| ceiling: decode + resize alone, all threads | {decode_rate:.1f} | |",
        f"| ceiling: ONNX Runtime alone on pre-made tensors | {infer_rate:.1f} | |",
        f"| shared-core ceiling 1/(1/decode + 1/infer) | {shared:.1f} | |",
        "",
        f"- scanner / baseline: **{scanner_median / baseline_median:.2f}x**",
        f"- scanner / shared-core ceiling: **{100 * scanner_median / shared:.0f}%**",
        "- per-stage throughput inside the scanner (images per busy second of the stage's "
        "threads, last run): "
        + ", ".join(f"{k} {v:.0f}/s" for k, v in stage_rates.items() if v != float("inf")),
    ]
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.md").write_text(text)
    (args.out / "latest.json").write_text(
        json.dumps(
            {
                "scanner": scanner_rates,
                "baseline": baseline_rates,
                "decode_ceiling": decode_rate,
                "infer_ceiling": infer_rate,
                "shared_ceiling": shared,
                "stages": stage_rates,
                "scanner_rss_mib": scanner_rss,
                "baseline_rss_mib": baseline_rss,
                "hardware": hardware(),
                "images": n_images,
                "threads": args.threads,
            },
            indent=2,
        )
    )
    print(text)


if __name__ == "__main__":
    main()
