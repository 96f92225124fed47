"""Evaluation: image generation from held-out fMRI (sampling) and its scoring (metrics)."""
