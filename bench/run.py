"""End-to-end benchmark: the scanner against the Python baseline, same model, same machine,
same threads, same run, plus the two ceilings (decode alone, inference alone), for each model.

    bench/run [--corpus bench/corpus] [--models resnet18-demo,vit-tiny-demo] [--repeats 3]
              [--threads N] [--subset jpeg]

The scanner also runs with --full-decode, which gives the speed-up of decoding large JPEGs at
reduced scale and, from the same rows, how far that moved each image's score.
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

import pyarrow.parquet as pq

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


def scores(path: Path) -> dict[str, tuple[float | None, str | None]]:
    return {r["path"]: (r["score"], r["label"]) for r in pq.read_table(path).to_pylist()}


def bench_model(args: argparse.Namespace, model: Path, inputs: list[str], tmp: Path) -> dict:
    threads = str(args.threads)
    rates: dict[str, list[float]] = {"scanner": [], "full": [], "baseline": []}
    rss = dict.fromkeys(rates, 0)
    summary: dict = {}
    scanner_cmd = [
        str(SCANNER), "--quiet", "scan", *inputs, "--model", str(model),
        "-j", threads, "--decode-threads", threads, "-b", str(args.batch_size),
    ]  # fmt: skip
    for r in range(args.repeats):
        # Rotate the order so no contender always runs on a warmer page cache.
        order = ["scanner", "full", "baseline"]
        order = order[r % 3 :] + order[: r % 3]
        for who in order:
            if who == "scanner":
                summary_path = tmp / "summary.json"
                out, wall, peak = run_measured(
                    [*scanner_cmd, "--out", str(tmp / "s.parquet"),
                     "--summary-json", str(summary_path)]
                )  # fmt: skip
                summary = json.loads(summary_path.read_text())
                rates[who].append(summary["rows"] / wall)
            elif who == "full":
                out, wall, peak = run_measured(
                    [*scanner_cmd, "--full-decode", "--out", str(tmp / "f.parquet")]
                )
                rates[who].append(len(scores(tmp / "f.parquet")) / wall)
            else:
                baseline_cmd = [
                    sys.executable, str(REPO / "bench" / "baseline.py"), *inputs[:1],
                    "--model", str(model), "--out", str(tmp / "b.parquet"),
                    "--workers", threads, "--threads", threads,
                    "--batch-size", str(args.batch_size),
                ]  # fmt: skip
                out, wall, peak = run_measured(baseline_cmd)
                rates[who].append(json.loads(out)["images"] / wall)
            rss[who] = max(rss[who], peak)

    infer_rate = statistics.median(
        ceiling("infer", str(model), threads) for _ in range(args.repeats)
    )
    reduced, full = scores(tmp / "s.parquet"), scores(tmp / "f.parquet")
    deltas = [
        abs(reduced[p][0] - full[p][0])
        for p in full
        if full[p][0] is not None and reduced[p][0] is not None
    ]
    stage_rates = {}
    for stage, busy in summary["stages"].items():
        per_thread = {
            "decode": summary["decode_threads"],
            "resize": summary["decode_threads"],
            "infer": summary["infer_workers"],
        }.get(stage, 1)
        stage_rates[stage] = summary["rows"] / (busy / per_thread) if busy > 0 else float("inf")
    return {
        "rates": rates,
        "rss_mib": rss,
        "infer_ceiling": infer_rate,
        "stages": stage_rates,
        "reduced_vs_full": {
            "images": len(deltas),
            "changed": sum(d > 0 for d in deltas),
            "max_abs_diff": max(deltas, default=0.0),
            "mean_abs_diff": statistics.fmean(deltas) if deltas else 0.0,
            "label_changes": sum(reduced[p][1] != full[p][1] for p in full),
        },
    }


def ceiling(kind: str, target: str, threads: str) -> float:
    out, _, _ = run_measured([str(CEILINGS), kind, target, "--threads", threads])
    return float(json.loads(out)["images_per_sec"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=REPO / "bench" / "corpus")
    ap.add_argument("--subset", default="jpeg", help="corpus subfolder(s), comma separated")
    ap.add_argument(
        "--models",
        default="resnet18-demo,vit-tiny-demo",
        help="model names (from models/) or manifest paths, comma separated",
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args()

    inputs = [str(args.corpus / s) for s in args.subset.split(",")]
    n_images = sum(1 for d in inputs for p in Path(d).rglob("*") if p.is_file())
    models = [
        Path(m) if m.endswith(".json") else REPO / "models" / f"{m}.json"
        for m in args.models.split(",")
    ]
    tmp = Path(tempfile.mkdtemp())
    threads = str(args.threads)
    # The input side does not depend on the model (all take 224x224).
    decode_rate = statistics.median(
        ceiling("decode", inputs[0], threads) for _ in range(args.repeats)
    )
    full_decode_rate = statistics.median(
        float(json.loads(run_measured(
            [str(CEILINGS), "decode", inputs[0], "--threads", threads, "--full-decode"]
        )[0])["images_per_sec"])
        for _ in range(args.repeats)
    )  # fmt: skip
    results = {m.stem: bench_model(args, m, inputs, tmp) for m in models}

    lines = [
        f"Corpus: {n_images} files in {', '.join(Path(i).name for i in inputs)}; "
        f"{args.threads} threads; batch {args.batch_size}; {args.repeats} repeats, "
        "median (min-max).",
        f"Hardware: {hardware()}.",
        "",
        "| model | contender | images/s | peak RSS |",
        "|---|---|---|---|",
    ]
    notes = []
    for name, r in results.items():
        rates, rss = r["rates"], r["rss_mib"]
        shared = 1 / (1 / decode_rate + 1 / r["infer_ceiling"])
        scanner, baseline = (statistics.median(rates[k]) for k in ("scanner", "baseline"))
        full = statistics.median(rates["full"])
        lines += [
            f"| {name} | synthscan scan (Parquet) | {spread(rates['scanner'])} "
            f"| {rss['scanner']} MiB |",
            f"| {name} | synthscan scan --full-decode | {spread(rates['full'])} "
            f"| {rss['full']} MiB |",
            f"| {name} | Python baseline (DataLoader + onnxruntime + pyarrow) "
            f"| {spread(rates['baseline'])} | {rss['baseline']} MiB |",
            f"| {name} | ceiling: ONNX Runtime alone on pre-made tensors "
            f"| {r['infer_ceiling']:.1f} | |",
            f"| {name} | shared-core ceiling 1/(1/decode + 1/infer) | {shared:.1f} | |",
        ]
        p = r["reduced_vs_full"]
        notes += [
            f"- {name}: scanner / baseline **{scanner / baseline:.2f}x**; scanner / shared-core "
            f"ceiling **{100 * scanner / shared:.0f}%**; reduced JPEG decoding "
            f"{scanner / full:.2f}x the full decode end to end, moving {p['changed']} of "
            f"{p['images']} scores by at most {p['max_abs_diff']:.4f} (mean "
            f"{p['mean_abs_diff']:.5f}), {p['label_changes']} labels changed",
            "  - per-stage throughput inside the scanner (images per busy second of the "
            "stage's threads, last run): "
            + ", ".join(f"{k} {v:.0f}/s" for k, v in r["stages"].items() if v != float("inf")),
        ]
    lines += [
        f"| all | ceiling: decode + resize alone, all threads | {decode_rate:.1f} | |",
        f"| all | ceiling: the same with --full-decode | {full_decode_rate:.1f} | |",
        "",
        *notes,
    ]
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.md").write_text(text)
    record = {
        "models": results,
        "decode_ceiling": decode_rate,
        "full_decode_ceiling": full_decode_rate,
        "hardware": hardware(),
        "images": n_images,
        "threads": args.threads,
    }
    (args.out / "latest.json").write_text(json.dumps(record, indent=2))
    print(text)


if __name__ == "__main__":
    main()
