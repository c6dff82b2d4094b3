"""Training data that the project generates: procedural toy faces and GROUP(C, 1) data for the GAE."""
