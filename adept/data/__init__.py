"""Data formats: one transition format, its files (D4RL hdf5, Minari), segments and device-side
sampling. Making datasets and finding them by name live above the agents, in
:mod:`adept.datasets`."""

from adept.data.buffer import Batch, ReplayBuffer, resolve_device
from adept.data.hdf5 import load_hdf5, save_hdf5
from adept.data.minari_io import load_minari
from adept.data.segments import Segments, gather_segments, segment_starts
from adept.data.transitions import DatasetStats, Stats, Transitions

__all__ = [
    "Batch",
    "DatasetStats",
    "ReplayBuffer",
    "Segments",
    "Stats",
    "Transitions",
    "gather_segments",
    "load_hdf5",
    "load_minari",
    "resolve_device",
    "save_hdf5",
    "segment_starts",
]
