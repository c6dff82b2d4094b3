"""Benchmarks on generated faces: reconstruction / editing / sampling quality and metrics (benchmarks), the HDAE
comparison (comparison), GAE benchmarks (gae) and the semantic-code health check (semantics)."""
