#!/usr/bin/env bash
# Regenerates the README pictures in docs/images/ from the shipped default model (and, for the HDAE
# section, the shipped HDAE(U)).
#   bash examples/readme_pictures.sh [MODEL [HDAE_MODEL]]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${1:-toyfaces}"
HDAE_MODEL="${2:-toyfaces-hdae}"
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
# the quick start's comparison (input | edit)
python -m diffedit_cli edit examples/face.png --model "$MODEL" --attr Smiling --alpha 0.7 --compare --out "$OUT/quickstart_smiling.png" --overwrite --quiet
# alpha sweeps: input | alpha -0.5 .. 0.5
for attr in Eyeglasses Wearing_Hat Black_Hair Smiling; do
  python -m diffedit_cli edit examples/face.png --model "$MODEL" --attr "$attr" --alpha-sweep -0.5:0.5:5 --compare --out "$OUT/sweep_$(echo "$attr" | tr 'A-Z' 'a-z').png" --overwrite --quiet
done
# interpolation
python -m diffedit_cli interpolate examples/face.png examples/face2.png --model "$MODEL" --frames 8 --out "$TMP/interp" --quiet
cp "$TMP/interp/grid.png" "$OUT/interpolation.png"
cp "$TMP/interp/interpolation.gif" "$OUT/interpolation.gif"
# samples
python -m diffedit_cli sample --n 16 --model "$MODEL" --seed 1 --out "$TMP/samples" --quiet
cp "$TMP/samples/grid.png" "$OUT/samples.png"
python -m diffedit_cli sample --n 8 --where Smiling --model "$MODEL" --seed 2 --out "$TMP/smiling" --quiet
cp "$TMP/smiling/grid.png" "$OUT/samples_smiling.png"
# style mixing: B's semantic code at levels 3-4 (the coarse UNet blocks), A's elsewhere; rows A, columns B
mkdir -p "$TMP/rows" "$TMP/cols"
cp "$TMP"/faces/images/00000[0-2].png "$TMP/rows/"
cp "$TMP"/faces/images/00000[3-5].png "$TMP/cols/"
python -m diffedit_cli style-mix "$TMP/rows" "$TMP/cols" --model "$MODEL" --levels 3-4 --out "$TMP/mix" --quiet
cp "$TMP/mix/grid.png" "$OUT/style_mix.png"
# the same on the HDAE(U): B's codes of levels 3-4, A's of levels 1-2; and a Smiling sweep on its whole code
python -m diffedit_cli style-mix "$TMP/rows" "$TMP/cols" --model "$HDAE_MODEL" --levels 3-4 --out "$TMP/mix_hdae" --quiet
cp "$TMP/mix_hdae/grid.png" "$OUT/style_mix_hdae.png"
python -m diffedit_cli edit examples/face.png --model "$HDAE_MODEL" --attr Smiling --alpha-sweep -0.5:0.5:5 --compare \
    --out "$OUT/sweep_smiling_hdae.png" --overwrite --quiet
# GAE swaps: A | B | A with B's slice
python -m diffedit_cli swap examples/face.png examples/face2.png --model "$MODEL" --attr accessories --compare --out "$OUT/swap_accessories.png" --overwrite --quiet
python -m diffedit_cli swap examples/face.png examples/face2.png --model "$MODEL" --attr hair --compare --out "$OUT/swap_hair.png" --overwrite --quiet
# PCA directions: the 6 leading components of 1000 faces' codes, swept on two faces
python -m diffedit_cli data toyfaces --n 1000 --seed 11 --out "$TMP/pool" --no-masks --quiet
python -m diffedit_cli directions pca "$TMP/pool/images" --model "$MODEL" --components 6 --out "$TMP/pca.safetensors" --quiet
python -m diffedit_cli directions show "$TMP/pca.safetensors" --inputs "$TMP/faces/images/000000.png" \
    --inputs "$TMP/faces/images/000003.png" --model "$MODEL" --alpha 0.5 --out "$OUT/directions_overview.png" --overwrite --quiet
echo "pictures written to $OUT"
