import numpy as np
import torch

from adept.agents import BC, AgentSpec
from adept.data.transitions import DatasetStats, Stats, Transitions
from adept.world_models.model import WorldModel, WorldModelConfig
from adept.world_models.rollout import StateBounds, rollout


class ScriptedModel:
    """A world model with known answers: s′ = s + (1, 0); r = 100 + s′[0] (of the s′ it is
    given); done when s′[0] reaches s′[1]."""

    class Dynamics:
        def sample(self, obs, act):
            return obs + torch.tensor([1.0, 0.0])

    dynamics = Dynamics()

    def reward(self, obs, act, next_obs):
        return 100.0 + next_obs[:, 0], next_obs[:, 0] - next_obs[:, 1] + 0.5


def bounds(high: float = 1e6) -> StateBounds:
    states = Stats(
        np.full(2, -1e6, np.float32),
        np.ones(2, np.float32),
        np.full(2, -1e6, np.float32),
        np.full(2, high, np.float32),
    )
    rewards = Stats(np.float32(0), np.float32(1), np.float32(-5), np.float32(5))
    return StateBounds(DatasetStats(states, rewards), torch.device("cpu"))


def agent(obs_dim: int = 2) -> BC:
    torch.manual_seed(0)
    return BC(
        AgentSpec(
            obs_dim, 1, torch.zeros(obs_dim), torch.ones(obs_dim), 1.0, 1, torch.device("cpu")
        )
    )


def test_horizon_termination_timeouts_and_clipping():
    # start i: s = (0, i + 1) → s′[0] = h + 1 catches s[1] = i + 1 at step h = i
    start = torch.stack([torch.zeros(5), torch.arange(1.0, 6.0)], dim=1)
    result = rollout(agent(), ScriptedModel(), start, horizon=3, bounds=bounds())  # type: ignore[arg-type]
    assert result.lengths.tolist() == [1, 2, 3, 3, 3]
    batch = result.transitions
    assert len(batch) == 5 + 4 + 3
    # terminals where trajectories 0, 1, 2 stop; timeouts only for the ones alive at the horizon
    assert batch.terminals.sum().item() == 3
    assert batch.timeouts.sum().item() == 2
    assert not (batch.terminals.bool() & batch.timeouts.bool()).any()
    assert (batch.rewards == 5.0).all(), "rewards clipped to the dataset's max"
    torch.testing.assert_close(result.returns, 5.0 * result.lengths.float())
    # each step's observations continue from the previous step's next observations
    torch.testing.assert_close(batch.observations[5:9], batch.next_observations[1:5])


def test_states_are_clipped_and_reward_and_terminal_come_from_the_clipped_state():
    start = torch.tensor([[0.0, 100.0]])
    model = ScriptedModel()
    wide = bounds(high=2.5)
    wide.reward_high = torch.tensor(1000.0)
    result = rollout(agent(), model, start, horizon=4, bounds=wide)  # type: ignore[arg-type]
    batch = result.transitions
    assert batch.next_observations[:, 0].tolist() == [1.0, 2.0, 2.5]
    assert (batch.next_observations[:, 1] == 2.5).all()
    # r̂ = 100 + s′[0] of the stored, clipped s′; and s′[0] = s′[1] = 2.5 terminates at step 3
    assert batch.rewards.tolist() == [101.0, 102.0, 102.5]
    assert batch.terminals.tolist() == [0.0, 0.0, 1.0]


def test_without_bounds_nothing_is_clipped():
    start = torch.tensor([[0.0, 100.0]])
    result = rollout(agent(), ScriptedModel(), start, horizon=4, bounds=None)  # type: ignore[arg-type]
    batch = result.transitions
    assert batch.next_observations[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert batch.rewards.tolist() == [101.0, 102.0, 103.0, 104.0]
    assert batch.timeouts.tolist() == [0.0, 0.0, 0.0, 1.0]


def test_rollout_with_a_real_world_model_shapes():
    rng = np.random.default_rng(0)
    n = 64
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    data = Transitions(
        observations=obs,
        actions=rng.uniform(-1, 1, (n, 1)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32),
        next_observations=obs + 0.1,
        terminals=np.zeros(n, bool),
        timeouts=np.zeros(n, bool),
    )
    model = WorldModel(
        data, WorldModelConfig(hidden=32, depth=1, denoising_steps=3), torch.device("cpu")
    )
    stats = data.stats()
    result = rollout(
        agent(3),
        model,
        torch.as_tensor(obs[:10]),
        horizon=4,
        bounds=StateBounds(stats, torch.device("cpu")),
    )
    batch = result.transitions
    assert batch.observations.shape[1] == 3 and batch.actions.shape[1] == 1
    assert len(batch) == int(result.lengths.sum())
    assert (batch.next_observations <= torch.as_tensor(stats.states.max)).all()
    assert (batch.rewards >= float(stats.rewards.min)).all()
    assert result.lengths.max().item() <= 4


class NoisyModel:
    """s′ = s + σ ε in the first dimension, σ = s[1] (kept as is); r = 1; never terminal."""

    class Dynamics:
        def sample(self, obs, act):
            noise = torch.randn_like(obs) * obs[:, 1:2]
            noise[:, 1] = 0.0
            return obs + noise

    dynamics = Dynamics()

    def reward(self, obs, act, next_obs):
        return torch.ones(len(obs)), torch.full((len(obs),), -1.0)


def test_caution_penalizes_and_stops_where_the_samples_disagree():
    from adept.world_models.rollout import Caution

    torch.manual_seed(0)
    start = torch.tensor([[0.0, 0.0], [0.0, 1.0]])  # a certain and an uncertain trajectory
    plain = rollout(agent(), NoisyModel(), start, horizon=3, bounds=None)  # type: ignore[arg-type]
    assert plain.lengths.tolist() == [3, 3] and plain.uncertainty is None
    caution = Caution(samples=16, penalty=2.0, stop_above=0.5)
    result = rollout(agent(), NoisyModel(), start, 3, None, caution=caution)  # type: ignore[arg-type]
    assert result.lengths.tolist() == [3, 1], "the uncertain one ends at its first step"
    batch = result.transitions
    first = batch.rewards[:2]
    assert first[0].item() == 1.0, "no spread, no penalty"
    assert first[1].item() < 1.0 - 2 * 0.5, "penalized by 2·u with u > 0.5"
    assert batch.timeouts[1].item() == 1.0 and batch.terminals.sum().item() == 0.0
    assert result.uncertainty.item() > 0.0
