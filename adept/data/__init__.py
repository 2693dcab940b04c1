"""Data layer: one transition format, loaders, generators and device-side sampling."""

from adept.data.buffer import Batch, ReplayBuffer, resolve_device
from adept.data.generate import dataset_names, make_dataset
from adept.data.hdf5 import load_hdf5, save_hdf5
from adept.data.minari_io import load_minari
from adept.data.registry import cached_path, data_dir, load_dataset
from adept.data.segments import Segments, gather_segments, segment_starts
from adept.data.transitions import DatasetStats, Stats, Transitions

__all__ = [
    "Batch",
    "DatasetStats",
    "ReplayBuffer",
    "Segments",
    "Stats",
    "Transitions",
    "cached_path",
    "data_dir",
    "dataset_names",
    "gather_segments",
    "load_dataset",
    "load_hdf5",
    "load_minari",
    "make_dataset",
    "resolve_device",
    "save_hdf5",
    "segment_starts",
]
