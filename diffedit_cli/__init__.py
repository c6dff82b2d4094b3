"""diffedit: real-image editing with diffusion autoencoders (Diff-AE, HDAE, GAE)."""

__version__ = "0.1.0"
