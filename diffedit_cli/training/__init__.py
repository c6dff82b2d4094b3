"""Training loops: the Diff-AE autoencoder, latent DDIM and classifier (diffae), the toy-face oracle (oracle),
the GAE (gae) and its joint fine-tuning with the autoencoder (gae_joint)."""
