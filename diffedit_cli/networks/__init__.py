"""Every nn.Module of diffedit: the Diff-AE autoencoder and its blocks, HDAE, the latent DDIM MLP, the
attribute classifier, the GAE and the toy-face oracle. Networks import nothing from the rest of the package
but diffusion math, errors and the toy-face attribute names."""
