"""Schola's Hydra config tree (loaded as pkg://schola.conf)."""
