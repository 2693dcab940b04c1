import functools

import numpy as np
import pytest

import adept.data.registry as registry
from adept.data.generate import make_dataset
from adept.data.registry import cached_path, data_dir, load_dataset
from adept.errors import AdeptError


def test_data_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ADEPT_DATA_DIR", str(tmp_path / "d"))
    assert data_dir() == tmp_path / "d"
    assert cached_path("hopper-random") == tmp_path / "d" / "hopper-random.hdf5"
    assert cached_path("hopper-random", 5000, 2).name == "hopper-random-seed2-n5000.hdf5"


def test_project_name_is_made_on_demand_then_cached(monkeypatch):
    calls = []

    def small_make(name, out, progress=True):
        calls.append(name)
        return make_dataset(name, out, num_steps=1200, progress=False)

    monkeypatch.setattr(registry, "make_dataset", small_make)
    first = load_dataset("walker2d-random")
    second = load_dataset("walker2d-random")
    assert calls == ["walker2d-random"], "second load reads the cache"
    assert len(first) == 1200 and first.env_id == "Walker2d-v5" and first.kind == "random"
    np.testing.assert_array_equal(first.actions, second.actions)
    assert cached_path("walker2d-random").exists()


def test_path_spec(d4rl_file):
    assert len(load_dataset(str(d4rl_file))) == 7


def test_unknown_name_lists_valid_names():
    with pytest.raises(
        AdeptError, match=r"unknown dataset name 'hopper-mediocre'; valid names: .*hopper-random"
    ):
        load_dataset("hopper-mediocre")


def test_empty_minari_id():
    with pytest.raises(AdeptError, match="empty minari dataset id"):
        load_dataset("minari:")


def test_made_dataset_dims_match_env(tmp_path):
    path = make_dataset("hopper-random", tmp_path / "h.hdf5", 300, progress=False)
    make = functools.partial(load_dataset, str(path))
    assert make().obs_dim == 11
    with pytest.raises(AdeptError, match="dims 11/3 but HalfCheetah-v5 has 17/6"):
        make(env_id="HalfCheetah-v5")
