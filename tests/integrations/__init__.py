"""Tests of the adapters into other codebases."""
