"""File-level runs behind the CLI: inputs -> batches -> outputs with per-file failures (runner), on real photos
with alignment and paste-back (photos), style mixing (stylemix), GAE swap / recombine (swapping) and the
direction-file commands (directions)."""
