from pathlib import Path

import h5py
import numpy as np
import pytest

from adept.base.errors import AdeptError
from adept.data.hdf5 import infer_from_filename, load_hdf5, read_behavior_policy, save_hdf5
from adept.datasets.registry import load_dataset
from tests.helpers import d4rl_arrays, write_d4rl


def test_d4rl_file_keeps_next_observations_timeouts_and_log_probs(d4rl_file: Path):
    data = load_hdf5(d4rl_file)
    arrays = d4rl_arrays()
    # The terminal step keeps its own next state, not the next episode's first observation.
    assert data.terminals[3] and not data.timeouts[3]
    np.testing.assert_array_equal(data.next_observations[3], np.full(11, 99.0))
    assert not np.array_equal(data.next_observations[3], data.observations[4])
    # The timed-out transition is kept, and flagged as a timeout, not a terminal.
    assert len(data) == 7 and data.timeouts[6] and not data.terminals[6]
    np.testing.assert_array_equal(data.next_observations, arrays["next_observations"])
    np.testing.assert_allclose(data.action_log_probs, -3 * np.log(2), rtol=1e-6)
    assert data.env_id == "Hopper-v5" and data.kind == "random"
    assert data.metadata["algorithm"] == "random"


def test_log_probs_are_optional(tmp_path: Path):
    arrays = d4rl_arrays()
    del arrays["infos/action_log_probs"]
    assert load_hdf5(write_d4rl(tmp_path / "x.hdf5", arrays)).action_log_probs is None


@pytest.mark.parametrize(
    ("name", "env_id", "kind"),
    [
        ("hopper_medium_replay-v2.hdf5", "Hopper-v5", "medium-replay"),
        ("halfcheetah_medium_expert-v2.hdf5", "HalfCheetah-v5", "medium-expert"),
        ("walker2d-medium-v2.hdf5", "Walker2d-v5", "medium"),
        ("walker2d_expert-v2.hdf5", "Walker2d-v5", "expert"),
        ("mystery.hdf5", None, None),
    ],
)
def test_env_and_kind_from_d4rl_file_names(name, env_id, kind):
    guess = infer_from_filename(Path(name))
    assert guess.get("env_id") == env_id and guess.get("kind") == kind


def test_round_trip_with_metadata_and_policy(tmp_path: Path, d4rl_file: Path):
    data = load_hdf5(d4rl_file)
    weights = {"trunk/0.weight": np.ones((2, 3), dtype=np.float32)}
    out = save_hdf5(data, tmp_path / "sub" / "copy.hdf5", {"seed": 7, "steps": [1, 2]}, weights)
    back = load_hdf5(out)
    for name, value in data.arrays().items():
        np.testing.assert_array_equal(getattr(back, name), value)
    assert back.metadata["seed"] == 7 and back.metadata["steps"] == [1, 2]
    assert back.env_id == "Hopper-v5"
    np.testing.assert_array_equal(
        read_behavior_policy(out)["trunk/0.weight"], weights["trunk/0.weight"]
    )
    assert sorted(p.name for p in out.parent.iterdir()) == ["copy.hdf5"], "no temp file left"


def test_failed_write_leaves_nothing(tmp_path: Path, d4rl_file: Path, monkeypatch):
    data = load_hdf5(d4rl_file)

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(h5py.Group, "create_group", boom)
    with pytest.raises(RuntimeError):
        save_hdf5(data, tmp_path / "out" / "x.hdf5")
    assert list((tmp_path / "out").iterdir()) == []


def test_missing_file(tmp_path: Path):
    with pytest.raises(AdeptError, match="not found"):
        load_hdf5(tmp_path / "absent.hdf5")


def test_not_hdf5(tmp_path: Path):
    path = tmp_path / "x.hdf5"
    path.write_text("hello")
    with pytest.raises(AdeptError, match="not an HDF5 file"):
        load_hdf5(path)


def test_truncated_file(tmp_path: Path, d4rl_file: Path):
    path = tmp_path / "cut.hdf5"
    raw = d4rl_file.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(AdeptError, match="truncated"):
        load_hdf5(path)


def test_missing_keys_are_listed(tmp_path: Path):
    arrays = d4rl_arrays()
    del arrays["next_observations"], arrays["timeouts"]
    with pytest.raises(
        AdeptError, match=r"lacks required D4RL key\(s\) next_observations, timeouts"
    ):
        load_hdf5(write_d4rl(tmp_path / "x.hdf5", arrays))


def test_nan_in_file_names_field_and_count(tmp_path: Path):
    arrays = d4rl_arrays()
    arrays["rewards"][[1, 2, 5]] = np.nan
    with pytest.raises(AdeptError, match="'rewards' holds 3 NaN/inf"):
        load_hdf5(write_d4rl(tmp_path / "x.hdf5", arrays))


def test_dims_that_do_not_match_the_env(d4rl_file: Path):
    with pytest.raises(AdeptError, match="obs/action dims 11/3 but Walker2d-v5 has 17/6"):
        load_dataset(str(d4rl_file), env_id="Walker2d-v5")
