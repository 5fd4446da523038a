"""Adapters to other detection codebases: the only modules that import them (DESIGN.md §9)."""
