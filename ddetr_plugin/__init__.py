"""Deformable DETR as a modular plugin for detection codebases."""

__version__ = "0.1.0"
