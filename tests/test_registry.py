import functools

import h5py
import numpy as np
import pytest

import adept.datasets.registry as registry
from adept.base.errors import AdeptError
from adept.cli import main
from adept.datasets.generate import make_dataset
from adept.datasets.registry import cached_path, data_dir, load_dataset


def test_data_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ADEPT_DATA_DIR", str(tmp_path / "d"))
    assert data_dir() == tmp_path / "d"
    assert cached_path("hopper-random") == tmp_path / "d" / "hopper-random.hdf5"
    assert cached_path("hopper-random", 5000, 2).name == "hopper-random-seed2-n5000.hdf5"


def test_project_name_is_made_on_demand_then_cached(monkeypatch):
    calls = []

    def small_make(name, out, num_steps=None, seed=0, progress=True, reuse=None):
        calls.append(name)
        return make_dataset(name, out, num_steps=1200, progress=False, reuse=reuse)

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


def test_cached_file_of_an_older_recipe_revision_is_remade(monkeypatch, capsys):
    calls = []

    def small_make(name, out, num_steps=None, seed=0, progress=True, reuse=None):
        calls.append(name)
        return make_dataset(name, out, num_steps=300, progress=False, reuse=reuse)

    monkeypatch.setattr(registry, "make_dataset", small_make)
    path = small_make("hopper-random", cached_path("hopper-random"))
    with h5py.File(path, "a") as f:  # as made before the random recipe got its own stream
        del f["metadata"].attrs["recipe_revision"]
    load_dataset("hopper-random")
    assert calls == ["hopper-random", "hopper-random"]
    assert "made by revision 1 of the random recipe, which now makes revision 2" in (
        capsys.readouterr().err
    )
    load_dataset("hopper-random")
    assert len(calls) == 2, "the remade file is current"


def test_info_never_starts_making_a_dataset(tmp_path, capsys):
    make_dataset("hopper-random", cached_path("hopper-medium", 300), 300, progress=False)
    with pytest.raises(SystemExit) as exc:
        main(["data", "info", "hopper-medium"])
    assert exc.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "hopper-medium is not made yet" in err and "adept data make hopper-medium" in err
    assert "(hopper-medium-n300.hdf5)" in err, "points to the variants that exist"
    assert not cached_path("hopper-medium").exists()


def test_suffixed_project_name_makes_and_reuses_its_own_file(capsys):
    data = load_dataset("hopper-random-seed3-n700", progress=False)
    assert len(data) == 700 and data.metadata["seed"] == 3
    assert cached_path("hopper-random", 700, 3).exists()
    assert not cached_path("hopper-random").exists(), "the default file is not made"
    assert "making it" in capsys.readouterr().err
    again = load_dataset("hopper-random-seed3-n700")
    np.testing.assert_array_equal(again.observations, data.observations)
    assert "making it" not in capsys.readouterr().err, "the second load reuses the file"


def test_suffixed_project_name_errors():
    with pytest.raises(AdeptError, match="unknown dataset name 'hopper-randm'"):
        load_dataset("hopper-randm-n700")
    with pytest.raises(AdeptError, match=r"adept data make walker2d-random --num-steps 900"):
        load_dataset("walker2d-random-n900", make_missing=False)


def test_dataset_labels_are_one_folder_name():
    from adept.datasets.registry import dataset_label

    assert dataset_label("hopper-random-n5000") == "hopper-random-n5000"
    assert dataset_label("/data/d4rl/hopper_medium-v2.hdf5") == "hopper_medium-v2"
    assert dataset_label("minari:mujoco/hopper/medium-v0") == "mujoco_hopper_medium-v0"
