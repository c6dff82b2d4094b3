#!/usr/bin/env bash
# Regenerates the README pictures in docs/images/ from the shipped default model.
#   bash examples/readme_pictures.sh [MODEL]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${1:-toyfaces}"
OUT=docs/images
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$OUT"
python -m diffedit_cli data toyfaces --n 8 --seed 77 --out "$TMP/faces" --no-masks --quiet
# reconstructions: input | decode of (z_sem, inverted x_T)
python -m diffedit_cli edit "$TMP/faces/images" --model "$MODEL" --attr Smiling=0 --compare --out "$TMP/recon" --quiet
python - "$TMP/recon" "$OUT/reconstructions.png" <<'PY'
import sys
from pathlib import Path
from PIL import Image
tiles = [Image.open(p).convert("RGB") for p in sorted(Path(sys.argv[1]).glob("*.png"))]
w, h = tiles[0].size
sheet = Image.new("RGB", (4 * w, ((len(tiles) + 3) // 4) * h), "white")
for i, tile in enumerate(tiles):
    sheet.paste(tile, ((i % 4) * w, (i // 4) * h))
sheet.save(sys.argv[2])
PY
# alpha sweeps
python -m diffedit_cli edit examples/face2.png --model "$MODEL" --attr Smiling --alpha-sweep -0.5:0.5:5 --compare --out "$OUT/sweep_smiling.png" --overwrite --quiet
python -m diffedit_cli edit examples/face.png --model "$MODEL" --attr Eyeglasses --alpha-sweep -0.5:0.5:5 --compare --out "$OUT/sweep_eyeglasses.png" --overwrite --quiet
# interpolation
python -m diffedit_cli interpolate examples/face.png examples/face2.png --model "$MODEL" --frames 8 --out "$TMP/interp" --quiet
cp "$TMP/interp/grid.png" "$OUT/interpolation.png"
cp "$TMP/interp/interpolation.gif" "$OUT/interpolation.gif"
# samples
python -m diffedit_cli sample --n 16 --model "$MODEL" --seed 1 --out "$TMP/samples" --quiet
cp "$TMP/samples/grid.png" "$OUT/samples.png"
python -m diffedit_cli sample --n 8 --where Smiling --model "$MODEL" --seed 2 --out "$TMP/smiling" --quiet
cp "$TMP/smiling/grid.png" "$OUT/samples_smiling.png"
echo "pictures written to $OUT"
