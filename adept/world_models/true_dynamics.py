"""Ground truth for world-model error: the simulator itself, set to any state.

The v5 locomotion envs (Hopper, HalfCheetah, Walker2d) observe ``[qpos[1:], qvel]``: everything but
the x position, on which their dynamics and rewards do not depend. So the true next state of any
(s, a) is one simulator step from qpos = [0, s[:nq−1]], qvel = s[nq−1:]. This measures a world
model's real one-step and H-step error under the current policy — a benchmark diagnostic that
never feeds training.

Hopper and Walker2d clip the observed velocities to ±10, so an observation with a velocity at the
clip does not determine the state. That is rare in Hopper data but common in Walker2d-random
(79 % of states: random torques spin the joints fast). Error measurements therefore start only
from observations inside the clip, and follow the simulator's full state from there on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from adept.agents.base import Agent
from adept.base.errors import AdeptError
from adept.envs import make_env
from adept.world_models.model import WorldModel

#: Observed-velocity clip of the v5 envs that have one.
VELOCITY_CLIP = {"Hopper": 10.0, "Walker2d": 10.0}


class TrueDynamics:
    """s′, r, terminated of the real MuJoCo env for a batch of observation-action pairs."""

    def __init__(self, env_id: str):
        self.velocity_clip = VELOCITY_CLIP.get(env_id.split("-v")[0], np.inf)
        self.env = make_env(env_id, disable_env_checker=True).unwrapped
        model = self.env.model  # type: ignore[attr-defined]
        self.nq, self.nv = int(model.nq), int(model.nv)
        obs_dim = int(np.prod(self.env.observation_space.shape or ()))
        if obs_dim != self.nq - 1 + self.nv:
            raise AdeptError(
                f"{env_id} does not observe [qpos[1:], qvel]; its simulator cannot be set to s"
            )

    @staticmethod
    def of(env_id: str | None, wanted: bool = True) -> TrueDynamics | None:
        """The simulator of ``env_id`` for a diagnostic, or None when it is not ``wanted``, the
        data names no env, or the env's state cannot be set from an observation."""
        if not wanted or env_id is None:
            return None
        try:
            return TrueDynamics(env_id)
        except AdeptError:
            return None

    def exact(self, obs: np.ndarray) -> np.ndarray:
        """Which observations determine the state (no velocity at the clip), ``[N]`` bool."""
        return (np.abs(obs[:, self.nq - 1 :]) < self.velocity_clip).all(axis=1)

    def state(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(qpos ``[N, nq]`` with x = 0, qvel ``[N, nv]``) of observations."""
        qpos = np.concatenate([np.zeros((len(obs), 1)), obs[:, : self.nq - 1]], axis=1)
        return qpos.astype(np.float64), obs[:, self.nq - 1 :].astype(np.float64)

    def step_state(
        self, qpos: np.ndarray, qvel: np.ndarray, act: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One simulator step from full states: next qpos, qvel, obs, rewards, terminated."""
        n = len(qpos)
        next_qpos, next_qvel = np.empty_like(qpos), np.empty_like(qvel)
        next_obs = np.empty((n, self.nq - 1 + self.nv), dtype=np.float32)
        rewards = np.empty(n, dtype=np.float32)
        terminated = np.empty(n, dtype=bool)
        data = self.env.data  # type: ignore[attr-defined]
        for i in range(n):
            self.env.set_state(qpos[i], qvel[i])  # type: ignore[attr-defined]
            next_obs[i], rewards[i], terminated[i], _, _ = self.env.step(act[i])
            next_qpos[i], next_qvel[i] = data.qpos, data.qvel
        return next_qpos, next_qvel, next_obs, rewards, terminated

    def step(self, obs: np.ndarray, act: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``[N, obs_dim]``, ``[N, act_dim]`` → next obs ``[N, obs_dim]``, rewards, terminated.

        Exact for observations inside the velocity clip (see :meth:`exact`).
        """
        return self.step_state(*self.state(obs), act)[2:]

    def close(self) -> None:
        self.env.close()


@dataclass(frozen=True)
class TrueError:
    """World-model error against the simulator, mean L2 over states, per imagined step."""

    per_step: np.ndarray
    """Mean ‖ŝ_h − s_h‖₂ at h = 1..H over trajectories still alive in the real env."""
    reward_per_step: np.ndarray
    """Mean |r̂_h − r_h| at h = 1..H."""
    return_gap: float = float("nan")
    """Mean over trajectories of Σ_h (r̂_h − r_h) while alive in the real env: how much the
    model's imagined return of the same actions exceeds the real one (> 0: optimism)."""

    @property
    def one_step(self) -> float:
        return float(self.per_step[0])

    @property
    def h_step(self) -> float:
        return float(self.per_step[-1])


@torch.no_grad()
def true_model_error(
    world_model: WorldModel,
    agent: Agent,
    truth: TrueDynamics,
    start_obs: torch.Tensor,
    horizon: int,
) -> TrueError:
    """Error of the model against the simulator along the current policy's real trajectories.

    The policy acts in the real env from ``start_obs`` (closed loop, stochastic actions); the
    model is fed the same actions open loop from the same start, so step h shows how its error
    compounds; step 1 is the one-step error. Starts whose velocities sit at the observation clip
    are skipped (their state is unknown); all-skipped gives NaN.
    """
    device = start_obs.device
    real = start_obs.cpu().numpy()
    keep = truth.exact(real)
    if not keep.any():
        nan = np.full(1, np.nan)
        return TrueError(nan, nan)
    real, model_obs = real[keep], start_obs[torch.as_tensor(keep, device=device)]
    qpos, qvel = truth.state(real)
    alive = np.ones(len(real), dtype=bool)
    gap = np.zeros(len(real))
    per_step, reward_per_step = [], []
    for _ in range(horizon):
        act = agent.sample_actions(torch.as_tensor(real, device=device))
        qpos, qvel, next_real, r_real, term = truth.step_state(qpos, qvel, act.cpu().numpy())
        pred, r_pred, _ = world_model.step(model_obs, act)
        err = np.linalg.norm(pred.cpu().numpy() - next_real, axis=-1)
        r_err = np.abs(r_pred.cpu().numpy() - r_real)
        per_step.append(float(err[alive].mean()))
        reward_per_step.append(float(r_err[alive].mean()))
        gap += np.where(alive, r_pred.cpu().numpy() - r_real, 0.0)
        alive &= ~term
        if not alive.any():
            break
        real, model_obs = next_real, pred
    return TrueError(np.asarray(per_step), np.asarray(reward_per_step), float(gap.mean()))


@dataclass(frozen=True)
class TransitionError:
    """How far stored or generated transitions (s, a, r, s′) are from the simulator's."""

    state_error: np.ndarray
    """‖s′ − s′_true‖₂ per checked transition ``[M]``."""
    reward_error: np.ndarray
    """|r − r_true| per checked transition ``[M]``."""
    terminal_mismatch: np.ndarray
    """Whether the transition's terminal flag differs from the env's per checked transition."""
    checked: int
    """Transitions checked: those whose s determines the state (:meth:`TrueDynamics.exact`)."""

    def share_within(self, tolerance: float) -> float:
        """Fraction of checked transitions with ‖s′ − s′_true‖₂ ≤ ``tolerance``."""
        return float((self.state_error <= tolerance).mean()) if self.checked else float("nan")


def transition_error(
    truth: TrueDynamics,
    observations: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    next_observations: np.ndarray,
    terminals: np.ndarray,
) -> TransitionError:
    """Each transition's s′ and r against one simulator step from s under a — the dynamics error
    of a generator's samples (SynthER reports it for its own). Actions are given to the env as
    they are (MuJoCo clamps the controls to their range; the control cost sees them unclipped)."""
    keep = truth.exact(observations)
    true_next, true_reward, true_terminal = truth.step(observations[keep], actions[keep])
    state = np.linalg.norm(next_observations[keep] - true_next, axis=-1)
    reward = np.abs(rewards[keep] - true_reward)
    mismatch = terminals[keep].astype(bool) != true_terminal
    return TransitionError(state, reward, mismatch, int(keep.sum()))


def segment_error(
    truth: TrueDynamics, observations: np.ndarray, actions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Error of generated trajectory segments against the simulator replaying their actions.

    ``observations`` ``[M, L, obs]`` and ``actions`` ``[M, L, act]``: the simulator is set to
    each segment's first state and driven open loop by its actions; step t compares the
    segment's s_t with the simulator's. Returns the mean ‖s_t − s_t^true‖₂ at t = 1..L−1 over
    segments whose simulated episode is still alive (NaN where none is), and how many were alive
    — the error-along-the-horizon axis on which trajectory diffusion (PGD, DyDiff) is compared
    with one-step models. Segments whose first state sits at the velocity clip are skipped.
    """
    keep = truth.exact(observations[:, 0])
    obs, act = observations[keep], actions[keep]
    qpos, qvel = truth.state(obs[:, 0])
    alive = np.ones(len(obs), dtype=bool)
    errors, counts = [], []
    for t in range(obs.shape[1] - 1):
        qpos, qvel, true_next, _, terminated = truth.step_state(qpos, qvel, act[:, t])
        err = np.linalg.norm(obs[:, t + 1] - true_next, axis=-1)
        counts.append(int(alive.sum()))
        errors.append(float(err[alive].mean()) if alive.any() else float("nan"))
        alive &= ~terminated
    return np.asarray(errors), np.asarray(counts)
