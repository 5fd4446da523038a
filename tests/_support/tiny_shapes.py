"""Tiny shapes datasets for end-to-end tests, registered through the config's IMPORTS in every process.

Generated on first use under ``$DDETR_DATASETS/shapes/`` (the tests point DDETR_DATASETS at a temporary folder).
"""
from ddetr_plugin.data import ShapesSpec, list_datasets, register_shapes

from .shapes_datasets import SMALL_SHAPES

if "tiny_shapes_train" not in list_datasets():
    register_shapes("tiny_shapes_train", ShapesSpec(num_images=16, seed=11, **SMALL_SHAPES), "tiny_train")
    register_shapes("tiny_shapes_val", ShapesSpec(num_images=4, seed=12, **SMALL_SHAPES), "tiny_val")
