#!/usr/bin/env bash
# Measures a toy-face model the way its model card reports it: semantics, editing (with and without
# top-k), samples, GAE and reconstruction, on held-out faces; each table goes to OUT/<name>.txt with its
# wall-clock.
#   bash examples/eval_toyfaces.sh [MODEL] [OUT] [PRECISION]
# MODEL: a model name or folder (default toyfaces); OUT: default runs/eval-<model>; PRECISION: of the
# editing, sample and GAE runs (default fp32; semantics and reconstruction always run in fp32).
# RECON_N=N in the environment: faces of the reconstruction run (default 100).
# Needs the held-out and probe faces (the commands are printed when they are missing).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${1:-toyfaces}"
OUT="${2:-runs/eval-$(basename "$MODEL")}"
PRECISION="${3:-fp32}"
HELDOUT=runs/data/heldout
PROBE=runs/data/probe
for need in "$HELDOUT:--n 500 --seed 7" "$PROBE:--n 3000 --seed 11 --no-masks"; do
  if [ ! -d "${need%%:*}" ]; then
    echo "error: ${need%%:*} is missing: diffedit data toyfaces ${need#*:} --out ${need%%:*}" >&2
    exit 1
  fi
done
mkdir -p "$OUT"
measure() {
  local name="$1"; shift
  local t0=$SECONDS
  python -m diffedit_cli "$@" --quiet > "$OUT/$name.txt"
  echo "($((SECONDS - t0)) s: diffedit $*)" >> "$OUT/$name.txt"
  echo "$name: $((SECONDS - t0)) s"
}
measure semantics eval semantics "$HELDOUT" --model "$MODEL" --probe-data "$PROBE" --probe-n 3000 --n 64 --steps 10
measure edit eval edit "$HELDOUT" --model "$MODEL" --n 50 --alphas 0.3,0.5 --steps 20 --inv-steps 20 --precision "$PRECISION"
measure edit_topk64 eval edit "$HELDOUT" --model "$MODEL" --n 50 --alphas 0.3,0.5 --steps 20 --inv-steps 20 --topk 64 \
    --precision "$PRECISION"
measure sample eval sample "$HELDOUT" --model "$MODEL" --n 500 --steps 20 --latent-steps 100 --precision "$PRECISION"
measure gae eval gae --model "$MODEL" --probe-n 2000 --n 50 --steps 20 --inv-steps 20 --precision "$PRECISION"
measure recon eval recon "$HELDOUT" --model "$MODEL" --n "${RECON_N:-100}" --steps 100 --random-steps 20
echo "tables in $OUT"
