"""Ingest latency and sustained throughput of `synthscan watch`.

Latency is measured from the moment a file is complete (its rename into the watched folder has
returned) to the moment a finalized Parquet part holding its row is visible in the output folder,
at a steady rate of new files. Throughput is the rate at which a large burst of files dropped at
once becomes visible.

    cargo build --release
    uv run --project train python bench/watch_latency.py [--rate 20] [--seconds 30] \
        [--burst 20000] [--roll-secs 2] [--settle 1]

Needs pyarrow. Images are small generated PNGs (64x64) and the model is the tiny test network,
so the figures measure the watcher (detection, pipeline, part rolling), not a production model.
"""

import argparse
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def png(i, w=64, h=64):
    rows = b"".join(
        b"\x00" + bytes(((x * 7 + y * 3 + i) % 256) for x in range(w * 3)) for y in range(h)
    )

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


class Visibility(threading.Thread):
    """Polls the output folder and records when each path's row first becomes visible."""

    def __init__(self, out, period=0.01):
        super().__init__(daemon=True)
        self.out, self.period = out, period
        self.read_parts, self.seen = set(), {}
        self.lock = threading.Lock()
        self.running = True

    def run(self):
        while self.running:
            now = time.time()
            for name in sorted(os.listdir(self.out)):
                if not (name.startswith("part-") and name.endswith(".parquet")):
                    continue
                if name in self.read_parts:
                    continue
                paths = pq.read_table(os.path.join(self.out, name), columns=["path"])
                with self.lock:
                    for p in paths.column("path").to_pylist():
                        self.seen.setdefault(p, now)
                self.read_parts.add(name)
            time.sleep(self.period)

    def count(self, paths):
        with self.lock:
            return sum(1 for p in paths if p in self.seen)


def drop(staging, target_dir, name, data):
    """Writes in a staging folder and renames in, so 'complete' is one well-defined instant."""
    tmp = os.path.join(staging, name)
    with open(tmp, "wb") as f:
        f.write(data)
    final = os.path.join(target_dir, name)
    os.rename(tmp, final)
    return os.path.realpath(final), time.time()


def wait_all(vis, paths, timeout):
    t = time.time()
    while vis.count(paths) < len(paths):
        if time.time() - t > timeout:
            raise SystemExit(f"only {vis.count(paths)} of {len(paths)} rows after {timeout}s")
        time.sleep(0.01)


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, round((len(values) - 1) * q))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=20.0, help="files per second, steady phase")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the steady phase")
    ap.add_argument("--burst", type=int, default=20000, help="files in the throughput burst")
    ap.add_argument("--roll-secs", default="2")
    ap.add_argument("--settle", default="1")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/synthscan"))
    ap.add_argument("--model", default=os.path.join(ROOT, "tests/fixtures/tiny-cnn.json"))
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="watch-bench-")
    inp, out, staging = (os.path.join(work, d) for d in ("in", "out", "staging"))
    for d in (inp, out, staging):
        os.makedirs(d)
    # Open for the watcher's whole life; the process ends (and the file with it) below.
    log = open(os.path.join(work, "watch.log"), "w+")  # noqa: SIM115
    cmd = [
        args.binary,
        "watch",
        inp,
        "--out",
        out,
        "--model",
        args.model,
        "--roll-secs",
        args.roll_secs,
        "--settle",
        args.settle,
    ]
    env = dict(os.environ, RUST_LOG="synthscan=info", NO_COLOR="1")
    proc = subprocess.Popen(cmd, stderr=log, stdout=subprocess.DEVNULL, env=env, cwd=ROOT)
    try:
        t = time.time()
        while "existing files queued" not in Path(log.name).read_text():
            if proc.poll() is not None or time.time() - t > 60:
                raise SystemExit("watch did not start:\n" + Path(log.name).read_text())
            time.sleep(0.05)
        vis = Visibility(out)
        vis.start()

        # Steady rate: latency from complete to visible in a finalized part.
        n = int(args.rate * args.seconds)
        blobs = [png(i) for i in range(n)]
        done = {}
        start = time.time()
        for i, data in enumerate(blobs):
            sub = os.path.join(inp, "steady", f"d{i % 10}")
            os.makedirs(sub, exist_ok=True)
            path, at = drop(staging, sub, f"s{i:06}.png", data)
            done[path] = at
            delay = start + (i + 1) / args.rate - time.time()
            if delay > 0:
                time.sleep(delay)
        wait_all(vis, list(done), 120)
        lat = [(vis.seen[p] - t) * 1000 for p, t in done.items()]

        # Burst: sustained files/s from the first file complete to the last row visible.
        # The files are written beforehand and renamed in, so that the offered rate is bounded
        # by renames, not by this script writing files.
        moves = []
        for i in range(args.burst):
            sub = os.path.join(inp, "burst", f"d{i % 20}")
            os.makedirs(sub, exist_ok=True)
            tmp = os.path.join(staging, f"b{i:06}.png")
            with open(tmp, "wb") as f:
                f.write(png(i + 7))
            moves.append((tmp, os.path.join(sub, f"b{i:06}.png")))
        burst = []
        first = time.time()
        for tmp, final in moves:
            os.rename(tmp, final)
            burst.append(os.path.realpath(final))
        written = time.time()
        wait_all(vis, burst, 600)
        last = max(vis.seen[p] for p in burst)
        vis.running = False
    finally:
        proc.terminate()
        code = proc.wait(timeout=60)

    print(f"command: {' '.join(cmd[1:2])} ... --roll-secs {args.roll_secs} --settle {args.settle}")
    print(f"cores: {os.cpu_count()}, watch exit code after SIGTERM: {code}")
    print(
        f"steady {args.rate:g} files/s for {args.seconds:g}s ({len(lat)} files): "
        f"latency p50 {pct(lat, 0.5):.0f} ms, p99 {pct(lat, 0.99):.0f} ms, "
        f"mean {statistics.mean(lat):.0f} ms, max {max(lat):.0f} ms"
    )
    print(
        f"burst of {len(burst)} files: renamed in within {written - first:.2f}s, all visible after "
        f"{last - first:.2f}s: {len(burst) / (last - first):.0f} files/s sustained"
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
