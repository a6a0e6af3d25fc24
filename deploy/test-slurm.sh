#!/usr/bin/env bash
# Runs deploy/slurm-scan.sbatch for real on a single-node Slurm cluster of this machine
# (deploy/slurm-local.sh) and checks what users rely on:
#
#   1. a 3-task array over a corpus, waited for with `sbatch --wait`, leaves parts that hold
#      exactly the rows of one full `synthscan scan` of the same corpus (same paths, each once,
#      same status, hash, size, label and score), and `synthscan report` reads them;
#   2. a task cancelled with scancel while it scans leaves no visible part (only the other two),
#      and resubmitting just that task completes the dataset: again exactly one row per file.
#
#   deploy/test-slurm.sh [SYNTHSCAN_BINARY]     # default: target/release/synthscan
#
# Needs root, the Debian packages slurm-wlm and munge, uv (pyarrow compares the rows) and the
# CPU ONNX Runtime (scripts/install-ort). Exit 0 only when every check holds.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$(realpath "${1:-$root/target/release/synthscan}")"
[[ -x "$bin" ]] || { echo "error: no synthscan binary at $bin (cargo build --release)" >&2; exit 1; }

work="$(mktemp -d /tmp/synthscan-slurm-test.XXXXXX)"
export SLURM_LOCAL_DIR="$work/cluster"
cleanup() {
  "$root/deploy/slurm-local.sh" down >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  tail -n 20 "$work"/log/*.log >&2 2>/dev/null || true
  exit 1
}

"$root/deploy/slurm-local.sh" up
# shellcheck disable=SC1091
. "$SLURM_LOCAL_DIR/env"

# Three copies of samples/: 96 images, about 32 per task.
corpus="$work/corpus"
mkdir -p "$corpus" "$work/log"
for i in 1 2 3; do cp -r "$root/samples" "$corpus/copy$i"; done

echo "== one full scan (the reference)"
"$bin" --quiet scan "$corpus" --out "$work/full.parquet" --device cpu --no-progress

# The recipe's CPU settings: no GPU to ask for, one CPU and 2 GB per task, so the 3 tasks queue
# on a small machine instead of being refused.
export N=3 DEVICE=cpu THREADS=1 SYNTHSCAN="$bin"
submit() {
  sbatch --parsable --gres=none --cpus-per-task=1 --mem=2G --time=00:15:00 \
    --output="$work/log/%A_%a.log" "$@"
}

# Compares the parts in a folder with the full scan, row by row.
same_rows() {
  uv run --quiet --no-project --with 'pyarrow>=17' python3 - "$work/full.parquet" "$1" <<'PY'
import os, sys
import pyarrow.parquet as pq
full_path, outdir = sys.argv[1], sys.argv[2]
visible = sorted(n for n in os.listdir(outdir) if not n.startswith((".", "_")))
want = [f"part-{i}-of-3.parquet" for i in range(3)]
assert visible == want, f"visible files {visible}, expected {want}"
cols = ["path", "status", "blake3", "size_bytes", "label", "score"]
def rows(tables):
    out = {}
    for t in tables:
        for r in t.select(cols).to_pylist():
            assert r["path"] not in out, f"{r['path']} has two rows"
            out[r["path"]] = r
    return out
full = rows([pq.read_table(full_path)])
parts = rows([pq.read_table(os.path.join(outdir, n)) for n in visible])
assert parts.keys() == full.keys(), (
    f"{len(parts)} rows in the parts, {len(full)} in the full scan; "
    f"missing {sorted(full.keys() - parts.keys())[:5]}, extra {sorted(parts.keys() - full.keys())[:5]}")
for p, f in full.items():
    g = parts[p]
    for c in ["status", "blake3", "size_bytes", "label"]:
        assert g[c] == f[c], f"{p}: {c} {g[c]!r} in the parts, {f[c]!r} in the full scan"
    # Batches are made up differently per shard; scores agree to float rounding.
    assert (g["score"] is None) == (f["score"] is None) and (
        g["score"] is None or abs(g["score"] - f["score"]) < 1e-4), f"{p}: score {g['score']} vs {f['score']}"
print(f"the 3 parts hold exactly the {len(full)} rows of the full scan")
PY
}

# The states of a job's tasks, counted: "COMPLETED x3".
states() {
  scontrol -o show job "$1" | grep -o 'JobState=[A-Z_]*' | cut -d= -f2 | sort | uniq -c \
    | awk '{printf "%s%s x%s", sep, $2, $1; sep=", "}'
}

echo "== a 3-task array, waited for with sbatch --wait"
out="$work/verdicts"
job="$(submit --wait --array=0-2 "$root/deploy/slurm-scan.sbatch" "$corpus" "$out")" \
  || fail "the array job failed: $(states "${job:-0}" 2>/dev/null)"
echo "job $job: $(states "$job")"
[[ "$(scontrol -o show job "$job" | grep -c 'JobState=COMPLETED')" == 3 ]] \
  || fail "not every task completed: $(states "$job")"
same_rows "$out" || fail "the parts do not hold the rows of the full scan"
full_rows="$("$bin" report --json "$work/full.parquet" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rows"])')"
"$bin" report "$out" | tee "$work/report.txt"
part_rows="$("$bin" report --json "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rows"])')"
[[ "$part_rows" == "$full_rows" ]] || fail "report reads $part_rows rows from the parts, $full_rows from the full scan"

echo "== cancel one task while it scans, then resubmit it"
out2="$work/verdicts-fault"
# Every file waits 100 ms before it is read, so each task scans for a few seconds.
job2="$(SYNTHSCAN_TEST_PAUSE_DECODE="$corpus/:100" \
  submit --array=0-2 "$root/deploy/slurm-scan.sbatch" "$corpus" "$out2")"
# Task 1 is mid-scan once its unfinished output file exists.
for _ in $(seq 600); do
  compgen -G "$out2/.task-*/.part-1-of-3.parquet.*.partial" >/dev/null && break
  sleep 0.1
done
compgen -G "$out2/.task-*/.part-1-of-3.parquet.*.partial" >/dev/null \
  || fail "task 1 never started writing: $(states "$job2")"
scancel "${job2}_1"
while [[ -n "$(squeue -h -j "$job2")" ]]; do sleep 0.5; done
echo "job $job2: $(states "$job2")"
scontrol -o show job "${job2}_1" | grep -q 'JobState=CANCELLED' \
  || fail "task 1 was not cancelled: $(states "$job2")"
[[ "$(scontrol -o show job "$job2" | grep -c 'JobState=COMPLETED')" == 2 ]] \
  || fail "tasks 0 and 2 did not complete: $(states "$job2")"
visible="$(cd "$out2" && ls -1 | tr '\n' ' ')"
[[ "$visible" == "part-0-of-3.parquet part-2-of-3.parquet " ]] \
  || fail "after the cancel the folder shows: $visible"
echo "after the cancel: $visible(no part 1, nothing partial)"
echo "hidden leftovers of the cancelled task: $(cd "$out2" && ls -A | grep '^\.' | tr '\n' ' ')"
job3="$(submit --wait --array=1 "$root/deploy/slurm-scan.sbatch" "$corpus" "$out2")" \
  || fail "the resubmitted task failed"
echo "job $job3 (task 1 again): $(states "$job3")"
same_rows "$out2" || fail "after the resubmission the parts do not hold the rows of the full scan"
"$bin" report "$out2" >/dev/null || fail "report cannot read the parts"
echo "PASS: Slurm recipe (array of 3, cancel and resubmit one task)"
