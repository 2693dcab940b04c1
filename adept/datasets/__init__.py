"""Datasets by name: making them with the D4RL protocol (random, medium, expert, replay and
mixed data, the online SAC that trains their policies) and finding them (names, files, cache).

They sit above the agents (the online SAC trains one); reading and sampling the files is
:mod:`adept.data`'s, below the agents.
"""

from adept.datasets.generate import dataset_names, make_dataset
from adept.datasets.registry import cached_path, data_dir, load_dataset

__all__ = ["cached_path", "data_dir", "dataset_names", "load_dataset", "make_dataset"]
