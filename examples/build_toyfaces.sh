#!/usr/bin/env bash
# Builds a complete toy-face model folder around a trained autoencoder: the latent DDIM, the
# attribute classifier and the GAE are trained on its codes; the oracle is copied from the shipped
# default (it judges pixels, so it does not depend on the autoencoder).
#   bash examples/build_toyfaces.sh AUTOENCODER_DIR OUT [DATA]
# AUTOENCODER_DIR: a component folder (config.json + model.safetensors), e.g. a run's
# autoencoder/ or snapshots/autoencoder_0005000; DATA: `diffedit data toyfaces` output
# (default runs/data/toyfaces). Afterwards OUT works as --model OUT.
# Environment: LATENT_STEPS=N (default 20000); GAE=0 skips the GAE (an HDAE model has none).
set -euo pipefail
cd "$(dirname "$0")/.."
AE="${1:?usage: build_toyfaces.sh AUTOENCODER_DIR OUT [DATA]}"
OUT="${2:?usage: build_toyfaces.sh AUTOENCODER_DIR OUT [DATA]}"
DATA="${3:-runs/data/toyfaces}"
if [ -e "$OUT" ]; then echo "error: $OUT exists; pick a new folder" >&2; exit 1; fi
ORACLE="$(python -c 'from diffedit_cli.io.models import resolve_model; print(resolve_model("toyfaces").path / "oracle")')"
mkdir -p "$OUT"
cp -r "$AE" "$OUT/autoencoder"
cp -r "$ORACLE" "$OUT/oracle"
cat > "$OUT/model_index.json" <<JSON
{"diffedit_format": 1, "name": "$(basename "$OUT")", "components": ["autoencoder", "oracle"], "trained_with": "diffedit train"}
JSON
timed() { local t0=$SECONDS; "$@"; echo "  ($((SECONDS - t0)) s)"; }
timed python -m diffedit_cli train latent --model "$OUT" --data "$DATA/images" --steps "${LATENT_STEPS:-20000}" --quiet
timed python -m diffedit_cli train classifier --model "$OUT" --data "$DATA/images" --labels "$DATA/list_attr.txt" \
    --epochs 100 --lr 3e-3 --quiet
if [ "${GAE:-1}" != 0 ]; then
  timed python -m diffedit_cli train gae --model "$OUT" --groups 2000 --steps 12000 --lr 3e-4 --save-every 500 --quiet
fi
echo "built $OUT"
