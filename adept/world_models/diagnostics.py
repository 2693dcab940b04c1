"""What a world-model method measures each round without changing its run: the model's error on
held-out real data weighted toward the current policy, Q on real against imagined rows, the
policy's shift since the last round, and the model's true error against MuJoCo.

The measurements draw from a random stream of their own (:class:`Diagnostics` seeds torch's
global RNG from it and hands the run its RNG back unchanged), so switching them on or off leaves
the run as it is, bit for bit.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from adept.agents.base import Agent
from adept.base.rng import seeded
from adept.data.buffer import ReplayBuffer
from adept.nets import Actor
from adept.world_models.importance import BehaviorModel, importance_weights
from adept.world_models.model import WorldModel
from adept.world_models.true_dynamics import TrueDynamics, true_model_error


@dataclass(frozen=True)
class DiagnosticsConfig:
    """The measurements of each round, which leave the run as it is."""

    model_error: bool = True
    """Log ε_m, ε_r (held-out, π-weighted), Q on real and imagined rows, and ε_π each round."""
    batch_size: int = 1024
    """Held-out transitions and dataset states per measurement."""
    true_error_every: int = 5
    """Measure the model's true one-step and H-step error against MuJoCo every N rounds
    (0: never)."""
    true_error_samples: int = 256
    """Start states of the true-error measurement (each rolled out H steps in the model and in
    MuJoCo)."""


class Diagnostics:
    """The round's measurements of a world model (``config``), on the held-out rows ``holdout``
    and dataset states from ``data``, drawing from a generator seeded with ``seed``."""

    def __init__(
        self,
        config: DiagnosticsConfig,
        holdout: ReplayBuffer,
        data: ReplayBuffer,
        env_id: str | None,
        seed: int,
        device: torch.device,
    ):
        self.config = config
        self.holdout = holdout
        self.data = data
        self.device = device
        self.rng = torch.Generator(device=device)
        self.rng.manual_seed(seed)
        self.previous_actor: Actor | None = None
        self.truth = TrueDynamics.of(env_id, wanted=bool(config.true_error_every))

    def wants_true_error(self, round_: int) -> bool:
        """Whether round number ``round_`` measures the true error."""
        return self.truth is not None and round_ % self.config.true_error_every == 0

    @contextlib.contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Run on torch's global RNG seeded from :attr:`rng`, and give the training run its RNG
        back unchanged afterwards."""
        seed = int(torch.randint(2**62, (1,), generator=self.rng, device=self.device).item())
        with seeded(seed, self.device):
            yield

    @torch.no_grad()
    def model_error(
        self,
        world_model: WorldModel,
        agent: Agent,
        behavior: BehaviorModel | None,
        imagined: ReplayBuffer,
    ) -> dict[str, torch.Tensor]:
        """ε_m, ε_r under π-weighted held-out data, Q on real and on ``imagined`` rows, and the
        policy shift ε_π since the last call.

        ε_m = Σ_i w_i ‖ŝ′_i − s′_i‖₂ and ε_r = Σ_i w_i |r̂_i − r_i| with self-normalized weights
        w ∝ π(a_i|s_i)/β(a_i|s_i) on held-out real transitions (uniform weights without β);
        ε_π = E_s KL(π_k(·|s) ‖ π_{k−1}(·|s)), a Monte-Carlo estimate on dataset states.
        """
        n = self.config.batch_size
        with self._own_rng():
            held = self.holdout.sample(n, self.rng)
            next_obs, reward, _ = world_model.step(held.observations, held.actions)
            state_err = (next_obs - held.next_observations).norm(dim=-1)
            reward_err = (reward - held.rewards).abs()
            weights = torch.full_like(state_err, 1.0 / len(state_err))
            if behavior is not None and (
                behavior.kind == "bc" or held.action_log_probs is not None
            ):
                log_pi = agent.log_prob(held.observations, held.actions)
                log_beta = behavior.log_prob(held)
                weights = importance_weights(log_pi, log_beta, truncate=False).weights
            metrics = {
                "world_model/eps_m": (weights * state_err).sum(),
                "world_model/eps_r": (weights * reward_err).sum(),
                "world_model/eps_m_unweighted": state_err.mean(),
                "world_model/eps_r_unweighted": reward_err.mean(),
            }
            # Q on real data vs on the imagined data the agent trains on: exploitation of the
            # model shows as Q on model rows running away from Q on real ones
            q_real = agent.q_value(held.observations, held.actions)
            if q_real is not None and len(imagined):
                rows = imagined.sample(n, self.rng)
                q_model = agent.q_value(rows.observations, rows.actions)
                assert q_model is not None
                metrics["q/real"] = q_real.mean()
                metrics["q/model"] = q_model.mean()
            states = self.data.sample(n, self.rng)
            if self.previous_actor is not None:
                act = agent.actor.sample(states.observations)
                kl = agent.actor.log_prob(states.observations, act) - self.previous_actor.log_prob(
                    states.observations, act
                )
                metrics["policy/eps_pi_kl"] = kl.mean()
        self.previous_actor = copy.deepcopy(agent.actor)
        return metrics

    def true_error(
        self, world_model: WorldModel, agent: Agent, horizon: int
    ) -> dict[str, torch.Tensor]:
        """The model's one- and ``horizon``-step error against MuJoCo along π's real
        trajectories."""
        assert self.truth is not None
        with self._own_rng():
            start = self.data.sample(self.config.true_error_samples, self.rng).observations
            err = true_model_error(world_model, agent, self.truth, start, horizon)
        return {
            "world_model/true_error_1step": torch.tensor(err.one_step),
            "world_model/true_error_hstep": torch.tensor(err.h_step),
            "world_model/true_reward_error_1step": torch.tensor(float(err.reward_per_step[0])),
            "world_model/true_return_gap": torch.tensor(err.return_gap),
        }

    def state_dict(self) -> dict[str, Any]:
        """The held-out sampler, the generator and the last round's policy (flat keys of the
        method's checkpoint)."""
        state: dict[str, Any] = {
            "holdout": self.holdout.state_dict(),
            "diagnostics_rng": self.rng.get_state(),
        }
        if self.previous_actor is not None:
            state["previous_actor"] = self.previous_actor.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any], agent: Agent) -> None:
        self.holdout.load_state_dict(state["holdout"])
        self.rng.set_state(state["diagnostics_rng"])
        if "previous_actor" in state:
            self.previous_actor = copy.deepcopy(agent.actor)
            self.previous_actor.load_state_dict(state["previous_actor"])
