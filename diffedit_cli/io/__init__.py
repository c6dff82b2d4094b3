"""Files in and out: model folders (config.json + safetensors per component), the Hub, official-checkpoint
conversion, weight downloads, images, latent files and the atomic writer they all use."""
