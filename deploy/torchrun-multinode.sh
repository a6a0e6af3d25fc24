#!/usr/bin/env bash
# Train on several nodes with torchrun's rendezvous: run this same command on every node.
#
#   NNODES=2 GPUS=8 MASTER=node0:29500 deploy/torchrun-multinode.sh /data/kaggle/train.csv out/rn18
#
# Every node must see the data at the same path and write checkpoints to a shared folder
# (only rank 0 writes; every rank reads it on --resume).
set -euo pipefail
data="${1:?usage: $0 DATA OUTPUT_DIR [train flags...]}"
out="${2:?usage: $0 DATA OUTPUT_DIR [train flags...]}"
shift 2
cd "$(dirname "${BASH_SOURCE[0]}")/../train"
exec uv run torchrun \
  --nnodes "${NNODES:-2}" \
  --nproc_per_node "${GPUS:-8}" \
  --rdzv-backend c10d \
  --rdzv-endpoint "${MASTER:?set MASTER=host:port of one node}" \
  --rdzv-id "${RDZV_ID:-synthscan-train}" \
  -m train fit --data-path "$data" --output-dir "$out" --mode ddp "$@"
