"""Step counts, sampler and timestep spacing every generating command uses unless told otherwise.

Chosen from the reconstruction-vs-network-calls curves in docs/speed.md: quadratic spacing (timesteps dense at
low noise) for inversion and decoding, and DPM-Solver++ 2M as the decoder, reconstruct better in 20 + 50 network
calls than the official setting in 350. The official Diff-AE setting is
``--sampler ddim --spacing uniform --steps 100 --inv-steps 250`` (with ``--precision fp32`` it reproduces the
official numbers). Kept free of torch so the command line can read them at start-up.
"""

SAMPLER = "dpmpp-2m"      # decoder: ddim | dpmpp-2m
SPACING = "quadratic"     # timesteps of inversion and decoding: uniform (the model's own) | quadratic
STEPS = 20                # decoding steps = network calls
INV_STEPS = 50            # DDIM inversion steps for x_T

OFFICIAL_SAMPLER = "ddim"
OFFICIAL_SPACING = "uniform"
OFFICIAL_STEPS = 100
OFFICIAL_INV_STEPS = 250

PRECISIONS = ("fp32", "fp16", "bf16")  # the network's compute precision (fp32: the official numbers)
