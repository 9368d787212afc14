"""The latent video diffusion trainer (Video LDM / SVD style) that trains on vidcurate's shards."""
