"""Adapters into other detection codebases; the only package that imports them (each on its own)."""
