"""End-to-end benchmark: the scanner against the Python baseline, same model, same machine,
same threads, same run, plus the two ceilings (decode alone, inference alone), for each model,
at FP32 and, where the manifest lists an INT8 variant, at INT8 (scanner and baseline alike).

    bench/run [--corpus bench/corpus] [--models efficientnet-lite0-gen] [--repeats 3]
              [--threads N] [--subset jpeg]

The scanner also runs with --full-decode, which gives the speed-up of partial JPEG decoding
(large JPEGs at reduced scale for resize models, only the crop's window for crop models) and,
from the same rows, how far that moved each image's score.
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


def precisions_of(model: Path) -> list[str]:
    """FP32, and INT8 when the manifest lists that variant."""
    variants = json.loads(model.read_text()).get("variants", [])
    return ["fp32", *(v["precision"] for v in variants if v["precision"] == "int8")]


def bench_model(args: argparse.Namespace, model: Path, inputs: list[str], tmp: Path) -> dict:
    threads = str(args.threads)
    precisions = precisions_of(model)
    # scanner-fp32, full-fp32 (the same with --full-decode), baseline-fp32, and so on.
    contenders = [f"{who}-{p}" for p in precisions for who in ("scanner", "baseline")]
    contenders.insert(1, "full-fp32")
    rates: dict[str, list[float]] = {c: [] for c in contenders}
    rss = dict.fromkeys(rates, 0)
    summaries: dict[str, dict] = {}
    scanner_cmd = [
        str(SCANNER), "--quiet", "scan", *inputs, "--model", str(model),
        "-j", threads, "--decode-threads", threads, "-b", str(args.batch_size),
    ]  # fmt: skip
    for r in range(args.repeats):
        # Rotate the order so no contender always runs on a warmer page cache.
        shift = r % len(contenders)
        for who in contenders[shift:] + contenders[:shift]:
            kind, precision = who.split("-")
            if kind == "scanner":
                summary_path = tmp / "summary.json"
                out, wall, peak = run_measured(
                    [*scanner_cmd, "--precision", precision,
                     "--out", str(tmp / f"s-{precision}.parquet"),
                     "--summary-json", str(summary_path)]
                )  # fmt: skip
                summaries[precision] = json.loads(summary_path.read_text())
                rates[who].append(summaries[precision]["rows"] / wall)
            elif kind == "full":
                out, wall, peak = run_measured(
                    [*scanner_cmd, "--precision", precision, "--full-decode",
                     "--out", str(tmp / "f.parquet")]
                )  # fmt: skip
                rates[who].append(len(scores(tmp / "f.parquet")) / wall)
            else:
                baseline_cmd = [
                    sys.executable, str(REPO / "bench" / "baseline.py"), *inputs[:1],
                    "--model", str(model), "--out", str(tmp / f"b-{precision}.parquet"),
                    "--workers", threads, "--threads", threads,
                    "--batch-size", str(args.batch_size), "--precision", precision,
                ]  # fmt: skip
                out, wall, peak = run_measured(baseline_cmd)
                rates[who].append(json.loads(out)["images"] / wall)
            rss[who] = max(rss[who], peak)

    infer_rates = {
        p: statistics.median(
            ceiling("infer", str(model), threads, "--precision", p) for _ in range(args.repeats)
        )
        for p in precisions
    }
    reduced, full = scores(tmp / "s-fp32.parquet"), scores(tmp / "f.parquet")
    deltas = [
        abs(reduced[p][0] - full[p][0])
        for p in full
        if full[p][0] is not None and reduced[p][0] is not None
    ]
    result = {
        "precisions": precisions,
        "rates": rates,
        "rss_mib": rss,
        "infer_ceiling": infer_rates,
        "stages": {p: stage_rates(summaries[p]) for p in precisions},
        "reduced_vs_full": {
            "images": len(deltas),
            "changed": sum(d > 0 for d in deltas),
            "max_abs_diff": max(deltas, default=0.0),
            "mean_abs_diff": statistics.fmean(deltas) if deltas else 0.0,
            "label_changes": sum(reduced[p][1] != full[p][1] for p in full),
        },
    }
    if "int8" in precisions:
        # What quantization did to this corpus's verdicts, scanner against scanner.
        int8 = scores(tmp / "s-int8.parquet")
        both = [p for p in reduced if reduced[p][0] is not None and int8[p][0] is not None]
        result["int8_vs_fp32"] = {
            "images": len(both),
            "max_abs_diff": max((abs(reduced[p][0] - int8[p][0]) for p in both), default=0.0),
            "label_changes": sum(reduced[p][1] != int8[p][1] for p in both),
        }
    return result


def stage_rates(summary: dict) -> dict[str, float]:
    """Images per busy second of each stage's threads."""
    rates = {}
    for stage, busy in summary["stages"].items():
        per_thread = {
            "decode": summary["decode_threads"],
            "resize": summary["decode_threads"],
            "infer": summary["infer_workers"],
        }.get(stage, 1)
        rates[stage] = summary["rows"] / (busy / per_thread) if busy > 0 else float("inf")
    return rates


def ceiling(kind: str, target: str, threads: str, *flags: str) -> float:
    out, _, _ = run_measured([str(CEILINGS), kind, target, "--threads", threads, *flags])
    return float(json.loads(out)["images_per_sec"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=REPO / "bench" / "corpus")
    ap.add_argument("--subset", default="jpeg", help="corpus subfolder(s), comma separated")
    ap.add_argument(
        "--models",
        default="efficientnet-lite0-gen",
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
        median = {k: statistics.median(v) for k, v in rates.items()}
        shared = {p: 1 / (1 / decode_rate + 1 / r["infer_ceiling"][p]) for p in r["precisions"]}
        for p in r["precisions"]:
            lines += [
                f"| {name} | synthscan scan --precision {p} (Parquet) "
                f"| {spread(rates[f'scanner-{p}'])} | {rss[f'scanner-{p}']} MiB |",
            ]
            if p == "fp32":
                lines.append(
                    f"| {name} | synthscan scan --precision fp32 --full-decode "
                    f"| {spread(rates['full-fp32'])} | {rss['full-fp32']} MiB |"
                )
            lines += [
                f"| {name} | Python baseline {p} (DataLoader + onnxruntime + pyarrow) "
                f"| {spread(rates[f'baseline-{p}'])} | {rss[f'baseline-{p}']} MiB |",
                f"| {name} | ceiling: ONNX Runtime {p} alone on pre-made tensors "
                f"| {r['infer_ceiling'][p]:.1f} | |",
                f"| {name} | shared-core ceiling {p} 1/(1/decode + 1/infer) | {shared[p]:.1f} | |",
            ]
        rf = r["reduced_vs_full"]
        scanner = median["scanner-fp32"]
        notes.append(
            f"- {name}: scanner / baseline (FP32) **{scanner / median['baseline-fp32']:.2f}x**; "
            f"scanner / shared-core ceiling (FP32) **{100 * scanner / shared['fp32']:.0f}%**; "
            f"partial JPEG decoding {scanner / median['full-fp32']:.2f}x the full decode end to "
            f"end, moving {rf['changed']} of {rf['images']} scores by at most "
            f"{rf['max_abs_diff']:.4f} (mean {rf['mean_abs_diff']:.5f}), "
            f"{rf['label_changes']} labels changed"
        )
        if "int8" in r["precisions"]:
            q, s8 = r["int8_vs_fp32"], median["scanner-int8"]
            notes.append(
                f"- {name} INT8: scanner INT8 / scanner FP32 **{s8 / scanner:.2f}x**; "
                f"scanner INT8 / Python FP32 baseline **{s8 / median['baseline-fp32']:.2f}x**; "
                f"scanner INT8 / baseline INT8 {s8 / median['baseline-int8']:.2f}x; "
                f"scanner INT8 / shared-core ceiling (INT8) **{100 * s8 / shared['int8']:.0f}%**;"
                f" ONNX Runtime INT8 / FP32 "
                f"{r['infer_ceiling']['int8'] / r['infer_ceiling']['fp32']:.2f}x; INT8 against "
                f"FP32 on this corpus: scores moved by at most {q['max_abs_diff']:.4f}, "
                f"{q['label_changes']} of {q['images']} labels changed"
            )
        for prec, stages in r["stages"].items():
            notes.append(
                f"  - per-stage throughput inside the scanner, {prec} (images per busy second "
                "of the stage's threads, last run): "
                + ", ".join(f"{k} {v:.0f}/s" for k, v in stages.items() if v != float("inf"))
            )
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
