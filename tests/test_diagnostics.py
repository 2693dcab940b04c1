import numpy as np
import pytest
import torch

from adept.data.hdf5 import load_hdf5
from adept.datasets.generate import make_dataset
from adept.world_models.true_dynamics import TrueDynamics, true_model_error


@pytest.mark.parametrize("name", ["hopper-random", "halfcheetah-random", "walker2d-random"])
def test_true_dynamics_reproduce_recorded_transitions(tmp_path, name):
    data = load_hdf5(make_dataset(name, tmp_path / "d.hdf5", num_steps=300, seed=0, progress=False))
    truth = TrueDynamics(data.env_id)
    idx = np.flatnonzero(truth.exact(data.observations))
    assert len(idx) > 20
    next_obs, rewards, terminated = truth.step(data.observations[idx], data.actions[idx])
    np.testing.assert_allclose(next_obs, data.next_observations[idx], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(rewards, data.rewards[idx], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(terminated, data.terminals[idx])


class Oracle:
    """A 'world model' that is the simulator: its true error must be zero."""

    def __init__(self, truth):
        self.truth = truth

    def step(self, obs, act):
        s, r, d = self.truth.step(obs.numpy(), act.numpy())
        return torch.as_tensor(s), torch.as_tensor(r), torch.as_tensor(d)


def test_velocity_clip_marks_inexact_observations():
    truth = TrueDynamics("Walker2d-v5")
    obs = np.zeros((2, 17), dtype=np.float32)
    obs[1, 12] = 10.0
    assert truth.exact(obs).tolist() == [True, False]
    assert TrueDynamics("HalfCheetah-v5").exact(np.full((1, 17), 50.0)).all()


class Shifted(Oracle):
    def step(self, obs, act):
        s, r, d = super().step(obs, act)
        return s + 0.1, r + 1.0, d


class Optimist(Oracle):
    def step(self, obs, act):
        s, r, d = super().step(obs, act)
        return s, r + 1.0, d


def test_true_error_of_an_exact_and_a_biased_model(tmp_path):
    from adept.agents import BC, AgentSpec

    data = load_hdf5(
        make_dataset("halfcheetah-random", tmp_path / "d.hdf5", num_steps=200, progress=False)
    )
    truth = TrueDynamics(data.env_id)
    torch.manual_seed(0)
    agent = BC(AgentSpec(17, 6, torch.zeros(17), torch.ones(17), 1.0, 1, torch.device("cpu")))
    start = torch.as_tensor(data.observations[:16])
    exact = true_model_error(Oracle(truth), agent, truth, start, horizon=3)  # type: ignore[arg-type]
    np.testing.assert_allclose(exact.per_step, 0.0, atol=1e-4)
    np.testing.assert_allclose(exact.reward_per_step, 0.0, atol=1e-4)
    biased = true_model_error(Shifted(truth), agent, truth, start, horizon=3)  # type: ignore[arg-type]
    assert biased.one_step == pytest.approx(0.1 * np.sqrt(17), rel=1e-3)
    assert biased.reward_per_step[0] == pytest.approx(1.0, rel=1e-3)
    assert biased.h_step > biased.one_step, "open-loop error compounds"
    # HalfCheetah never terminates: 3 steps of r̂ = r + 1 imagine 3 more than the real return
    assert exact.return_gap == pytest.approx(0.0, abs=1e-3)
    optimist = true_model_error(Optimist(truth), agent, truth, start, horizon=3)  # type: ignore[arg-type]
    assert optimist.return_gap == pytest.approx(3.0, rel=1e-3)
    np.testing.assert_allclose(optimist.per_step, 0.0, atol=1e-4)


def test_transition_error_is_zero_on_recorded_data_and_measures_a_shift(tmp_path):
    from adept.world_models.true_dynamics import transition_error

    data = load_hdf5(
        make_dataset("hopper-random", tmp_path / "d.hdf5", num_steps=300, seed=0, progress=False)
    )
    truth = TrueDynamics(data.env_id)
    arrays = (data.observations, data.actions, data.rewards, data.next_observations)
    exact = transition_error(truth, *arrays, data.terminals)
    assert exact.checked == int(truth.exact(data.observations).sum()) > 20
    assert exact.state_error.max() < 1e-3 and exact.reward_error.max() < 1e-3
    assert exact.share_within(0.01) == 1.0 and not exact.terminal_mismatch.any()
    shifted_next = data.next_observations.copy()
    shifted_next[:, 0] += 0.1  # every s′ off by 0.1 in one dimension
    flipped = ~data.terminals
    shifted = transition_error(truth, *arrays[:2], data.rewards + 0.5, shifted_next, flipped)
    np.testing.assert_allclose(shifted.state_error, 0.1, atol=1e-3)
    assert shifted.terminal_mismatch.all()
    np.testing.assert_allclose(shifted.reward_error, 0.5, atol=1e-3)
    assert shifted.share_within(0.05) == 0.0 and shifted.share_within(0.2) == 1.0


@pytest.mark.slow
def test_segment_error_is_zero_on_recorded_segments_and_grows_with_a_drift(tmp_path):
    from adept.data.segments import gather_segments, segment_starts
    from adept.world_models.true_dynamics import segment_error

    data = load_hdf5(
        make_dataset("hopper-random", tmp_path / "d.hdf5", num_steps=2000, seed=0, progress=False)
    )
    starts = segment_starts(data, length=8, stride=4, short="drop")
    seg = gather_segments(data, starts, 8)
    truth = TrueDynamics(data.env_id)
    errors, alive = segment_error(truth, seg.observations, seg.actions)
    assert errors.shape == (7,) and alive[0] == truth.exact(seg.observations[:, 0]).sum() > 5
    assert np.nanmax(errors) < 1e-3, "the recorded segments are the simulator's own trajectories"
    drifted = seg.observations.copy()
    drifted[:, 3:, 0] += 0.1 * np.arange(1, 6)  # off by 0.1, 0.2, ... from step 3 on
    errors, _ = segment_error(truth, drifted, seg.actions)
    np.testing.assert_allclose(errors[:2], 0.0, atol=1e-3)
    np.testing.assert_allclose(errors[2:], 0.1 * np.arange(1, 6), atol=1e-3)
