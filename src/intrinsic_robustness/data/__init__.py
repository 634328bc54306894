"""Datasets: real images (digits, IDX files) and generated ones that keep their latent codes."""
