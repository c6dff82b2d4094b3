"""Step counts and sampler every generating command uses unless told otherwise.

Chosen from the reconstruction-vs-network-calls curves in docs/speed.md: DPM-Solver++ 2M decodes as well as
DDIM in fewer steps, and inversion steps matter less than decoding steps. The official Diff-AE setting is
``--sampler ddim --steps 100 --inv-steps 250`` (with ``--precision fp32`` it reproduces the official numbers).
Kept free of torch so the command line can read them at start-up.
"""

SAMPLER = "dpmpp-2m"      # decoder: ddim | dpmpp-2m
STEPS = 50                # decoding steps = network calls
INV_STEPS = 100           # DDIM inversion steps for x_T

OFFICIAL_SAMPLER = "ddim"
OFFICIAL_STEPS = 100
OFFICIAL_INV_STEPS = 250
