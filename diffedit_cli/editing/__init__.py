"""Operations on semantic codes: classifier attribute edits and top-k truncation (attributes), direction files
and PCA / few-shot directions (directions), named edits resolved for a model (sources), GAE swap and
recombination (swapping). Style mixing of HDAE levels is :mod:`diffedit_cli.hierarchy`."""
