"""The data tests' shapes dataset and the config that trains on it (``tiny_cfg``)."""
from tests._support.shapes_datasets import tiny_data_cfg, tiny_shapes  # noqa: F401
