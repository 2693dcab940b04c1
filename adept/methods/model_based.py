"""World-model methods plugged into the shared training loop: Diff+X and ADEPT.

ADEPT's closed loop (the paper's Algorithm 1), as the loop calls it:

    setup:          fit β on D; pre-train the world model on D; first rollouts with π_0
    every step:     the agent trains on a batch mixing real data and model data
    every M steps:  IS world-model update with weights π/β on real data      (adapt)
                    rollouts of the current π in the adapted model → buffer  (evaluate)

``--method diffusion`` is the paper's Diff+X ablation: the same world model, trained once,
the same rollouts, no IS re-fit. ``--method none`` is X alone
(:class:`adept.methods.base.Method`).

The setup's β fit and pre-training (:func:`adept.world_models.pretrain.pretrain`) are a pure
function of the data, the world-model config, the pre-training fields and the seed — not of the
agent — so Diff+IQL, ADEPT+IQL and ADEPT+SAC on one dataset and seed share one result, computed
once and kept in the artifact store (:mod:`adept.store.artifacts`).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from adept.agents import BC, Agent, AgentSpec, BCConfig
from adept.base.errors import AdeptError
from adept.base.rng import Stream, seeded
from adept.data.buffer import Batch, ReplayBuffer
from adept.data.transitions import Transitions
from adept.methods.base import Method, mixed_sample
from adept.nets import Actor
from adept.store.artifacts import cached
from adept.world_models.importance import BehaviorModel, Refitter, importance_weights
from adept.world_models.model import WorldModel, WorldModelConfig
from adept.world_models.pretrain import holdout_mask, pretrain, pretrain_key
from adept.world_models.rollout import Caution, RolloutResult, StateBounds, rollout
from adept.world_models.true_dynamics import TrueDynamics, true_model_error

MODEL_DATA = Stream("the world model's training rows (re-fits)", 1)
HOLDOUT = Stream("held-out rows (diagnostics)", 2)
MODEL_BUFFER = Stream("the imagined rows the agent samples", 3)
DIAGNOSTICS = Stream("diagnostics' start states and draws", 4)


@dataclass(frozen=True)
class ModelBasedConfig:
    """The world model, its pre-training and the closed loop of Diff+X and ADEPT. Where the
    paper gives a value, the default is the paper's; where it leaves one open (the schedule),
    the default was measured: docs/adept-defaults.md."""

    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)
    pretrain_steps: int = 40_000
    """World-model pre-training steps on D (batch ``model_batch_size``), once per dataset, seed
    and config (then cached): ≈ 9 min on 2 CPU cores at the default width. The error against
    MuJoCo still falls from 20k to 40k (docs/adept-defaults.md)."""
    pretrain_seed: int | None = None
    """Seed of β's fit, the world model's pre-training and its held-out split; None: the run's
    seed. A fixed seed makes the runs of a grid share one pre-trained model per dataset (one
    cache entry), so their spread is the RL's alone — the protocol of a comparison whose
    world model is trained once per dataset."""
    model_batch_size: int = 256
    """Batch size of world-model pre-training (the paper: 256)."""
    ema_decay: float = 0.999
    """Pre-training keeps an exponential moving average of the world model's weights with this
    decay per step (0: none); the average is what is selected and rolled out, as in SynthER and
    PGD (not in the paper; docs/adept-defaults.md). Re-fits average with ``refit_average``."""
    select_every: int = 2000
    """Every N pre-training steps (and at the last), measure the held-out loss of the (EMA)
    weights and keep the best; 0 keeps the last. The held-out rows are the 5 % split, never
    trained on; the loss is the conditional denoising + reward + terminal loss with fixed
    noise draws, so candidates are compared on equal terms."""
    select_rows: int = 8192
    """Held-out rows (a fixed random subset) of the selection loss."""
    select_patience: int = 0
    """Stop pre-training once this many held-out measurements in a row improved on the best by
    less than 1 % (MBPO's early stopping; ``pretrain_steps`` is then a cap); 0: never stop
    early. The 'ensemble' dynamics keep each member's best weights and pick elites here."""
    behavior: Literal["bc", "logged"] = "bc"
    """β for the IS weights: Gaussian BC fitted on D (the paper), or the dataset's exact logged
    log-probabilities ('logged'; needs action_log_probs in the data)."""
    behavior_steps: int = 10_000
    """Gradient steps of the BC fit of β (≈ 25 s on 2 CPU cores)."""
    horizon: int = 10
    """H, imagined steps per rollout (the paper: 10)."""
    rollout_every: int = 1000
    """Agent steps between rounds of (IS re-fit, rollouts); the paper leaves it open
    (docs/adept-defaults.md: four times as often scored the same at more cost)."""
    rollout_batch: int = 1024
    """Start states per rollout round (≤ rollout_batch × horizon new transitions)."""
    model_buffer_size: int = 50_000
    """Capacity of the synthetic-data ring buffer: about five rounds of rollouts, so the agent
    trains on data from recent policies (stale rollouts evaluate a policy that is gone)."""
    real_ratio: float = 0.5
    """Share of real transitions in each agent batch, the rest from the model buffer
    (docs/adept-defaults.md: the best of 0.25, 0.5 and 0.8)."""
    real_ratio_final: float | None = None
    """If set, the real share moves linearly from ``real_ratio`` at step 0 to this at the last
    step: less imagined data as the agent gets better at exploiting the model."""
    uncertainty_samples: int = 1
    """s′ samples per imagined step whose spread u = ‖std‖₂ measures the model's uncertainty
    (1: not measured; :class:`adept.world_models.rollout.Caution`)."""
    uncertainty_penalty: float = 0.0
    """λ of the MOPO-style penalized reward r̂ − λ u (needs ``uncertainty_samples`` ≥ 2)."""
    uncertainty_stop: float | None = None
    """End an imagined trajectory (as a timeout) at a step whose u exceeds this."""
    model_update_steps: int = 20
    """IS re-fit steps per round (ADEPT only; docs/adept-defaults.md: 100 scored the same at
    five times the cost)."""
    refit_lr: float | None = None
    """Adam's learning rate in re-fit steps (None: the world model's pre-training ``lr``)."""
    refit_average: float = 0.99
    """If > 0, re-fit steps train a copy of the world model and the model rolled out is an
    exponential moving average of the copy's weights with this decay per re-fit step (the
    re-fit's counterpart of pre-training's average; not in the paper); 0: re-fit steps train
    the rolled-out model itself, which undoes the pre-training average (docs/adept-defaults.md)."""
    is_batch_size: int = 1024
    """Real transitions per IS update (the paper: 1024; appendix ablation 256/1024/4096)."""
    refit: Literal["is", "uniform"] = "is"
    """ADEPT's re-fit weights: π/β importance weights (the paper), or 'uniform' — the same
    re-fit steps with equal weights, the control that tells the weights from the extra model
    training Diff+X never gets."""
    is_loss: Literal["weighted", "resample"] = "resample"
    """How the IS weights enter a re-fit step: the weighted loss on one batch (the paper's), or
    sampling-importance-resampling — a pool of ``is_resample_pool`` batches resampled ∝ w to one
    batch, trained unweighted (:mod:`adept.world_models.importance`), which reached a lower
    error under π (docs/adept-defaults.md)."""
    is_resample_pool: int = 8
    """Pool size, in IS batches, of ``is_loss = 'resample'``."""
    is_truncate: bool = True
    """Truncate extreme importance weights (Ionides 2008; :func:`importance_weights`)."""
    is_truncate_ratio: float | None = None
    """Largest allowed weight relative to the mean; None means √(IS batch), so ESS ≥ √N."""
    clip_generated: bool = True
    """Clip generated next states and rewards to the dataset's per-dimension range (the paper's
    clipping ablation). Reward and terminal are predicted from the stored, clipped s′."""
    flush_on_refit: bool = False
    """ADEPT: empty the model buffer at each re-fit, so the agent trains only on rollouts of the
    model as it is now (otherwise stale imagination stays for ``model_buffer_size`` rows). Off:
    the paper's ADEPT; on, it kept ADEPT+IQL's gain where the paper's rose and collapsed
    (docs/adept-defaults.md)."""
    rollout_start: int = 1000
    """Agent steps before the first round of re-fit and rollouts; until then the agent trains on
    real data only. 0 rolls out the untrained π₀ at set-up, whose imagined data describe a policy
    that is gone after the first few hundred updates."""
    holdout_fraction: float = 0.05
    """Share of D held out from world-model training to measure ε_m and ε_r."""
    diagnostics_batch: int = 1024
    """Held-out transitions and dataset states used per diagnostics measurement."""
    true_error_every: int = 5
    """Measure the model's true one-step and H-step error against MuJoCo every N rounds
    (0: never). A diagnostic only: it leaves the run as it is."""
    true_error_starts: int = 256
    """Start states of the true-error measurement."""
    diagnostics: bool = True
    """Log ε_m, ε_r (held-out, π-weighted) and ε_π each round. Diagnostics draw from random
    streams of their own, so switching them (or the true error) on or off leaves the run as it
    is, bit for bit."""
    cache: bool = True
    """Reuse pre-trained world models and β fits from the artifact cache under
    $ADEPT_DATA_DIR/artifacts; results are identical either way."""


class DiffusionMethod(Method):
    """Diff+X: a guided diffusion world model trained once; rollouts of the current policy."""

    name = "diffusion"
    options = "adept"
    adapts = False

    def __init__(
        self,
        data: Transitions,
        buffer: ReplayBuffer,
        batch_size: int,
        config: ModelBasedConfig,
        seed: int = 0,
        num_steps: int | None = None,
    ):
        """``num_steps``: the run's length, needed by ``real_ratio_final``'s schedule."""
        super().__init__(data, buffer, batch_size)
        self.config = config
        c = config
        check_config(c, data)
        if c.real_ratio_final is not None and not num_steps:
            raise AdeptError("--adept.real-ratio-final needs the run's number of steps")
        self.num_steps = num_steps
        self.device = buffer.device
        self.seed = seed
        self.model_seed = seed if c.pretrain_seed is None else c.pretrain_seed
        holdout = holdout_mask(len(data), c.holdout_fraction, self.model_seed)
        train_part, held_part = data.subset(~holdout), data.subset(holdout)
        self.model_data = ReplayBuffer.from_transitions(
            train_part, device=self.device, seed=MODEL_DATA.offset(seed)
        )
        self.holdout = ReplayBuffer.from_transitions(
            held_part, device=self.device, seed=HOLDOUT.offset(seed)
        )
        self.world_model = WorldModel(train_part, c.world_model, self.device)
        self.bounds = StateBounds(data.stats(), self.device) if c.clip_generated else None
        self.model_buffer = ReplayBuffer(
            c.model_buffer_size,
            data.obs_dim,
            data.act_dim,
            device=self.device,
            seed=MODEL_BUFFER.offset(seed),
        )
        # the diagnostics' own stream: start states and the seeds of their model/policy samples
        self.diagnostics_rng = torch.Generator(device=self.device)
        self.diagnostics_rng.manual_seed(DIAGNOSTICS.offset(seed))
        self.caution = Caution(c.uncertainty_samples, c.uncertainty_penalty, c.uncertainty_stop)
        self.behavior: BehaviorModel | None = None
        self.refitter: Refitter | None = None
        self.previous_actor: Actor | None = None
        self.truth = TrueDynamics.of(data.env_id, wanted=bool(c.true_error_every))

    @staticmethod
    def check(config: Any, data: Transitions) -> None:
        check_config(config, data)

    def setup(self, agent: Agent) -> dict[str, float]:
        c = self.config

        def make() -> dict[str, Any]:
            return pretrain(self.data, c, self.model_seed, self.device)

        if c.cache:
            key = pretrain_key(self.data, c, self.model_seed, self.device)
            result = cached("pretrain", key, make)
        else:
            result = make()
        self.world_model.load_state_dict_all(result["world_model"])
        self.behavior = self._behavior_model(result.get("behavior"))
        if self.adapts:
            self.refitter = Refitter(self.world_model, c)
        metrics = {k: float(v) for k, v in result["metrics"].items()}
        if c.rollout_start == 0:
            metrics.update({k: float(v) for k, v in self._rollouts(agent).items()})
        return metrics

    def _behavior_model(self, bc_state: dict[str, Any] | None) -> BehaviorModel:
        if self.config.behavior == "logged":
            return BehaviorModel("logged")
        assert bc_state is not None
        spec = AgentSpec.from_data(self.data, max(self.config.behavior_steps, 1), self.device)
        bc = BC(spec, BCConfig())
        bc.load_state_dict(bc_state)
        return BehaviorModel("bc", bc)

    def real_rows(self, step: int) -> int:
        """Real transitions in the agent batch of ``step``."""
        c = self.config
        ratio = c.real_ratio
        if c.real_ratio_final is not None and self.num_steps:
            progress = min(step / max(self.num_steps - 1, 1), 1.0)
            ratio += (c.real_ratio_final - c.real_ratio) * progress
        return round(self.batch_size * ratio)

    def sample(self, step: int) -> Batch:
        return mixed_sample(self.buffer, self.model_buffer, self.batch_size, self.real_rows(step))

    def rolls_after(self, step: int) -> bool:
        """Whether a rollout round (re-fit, diagnostics, rollouts) follows update ``step``."""
        done = step + 1
        return done % self.config.rollout_every == 0 and done >= self.config.rollout_start

    def after_update(self, step: int, agent: Agent) -> dict[str, torch.Tensor]:
        if not self.rolls_after(step):
            return {}
        metrics = self.before_rollouts(step, agent)
        metrics.update(self._rollouts(agent))
        return metrics

    def before_rollouts(
        self, step: int, agent: Agent, refit: bool = True
    ) -> dict[str, torch.Tensor]:
        """A round's work before its rollouts: the re-fit (ADEPT; ``refit=False``: done
        already), the diagnostics."""
        c = self.config
        done = step + 1
        metrics: dict[str, torch.Tensor] = {}
        if self.adapts and refit:
            metrics.update(self._adapt(agent))
        if c.diagnostics:
            # before a flush, so that Q on model rows is measured on the imagination the agent
            # trained on since the last round (it has its own RNG: the run is unchanged)
            metrics.update(self._diagnostics(agent))
        if self.adapts and c.flush_on_refit:
            self.model_buffer.clear()
        round_ = done // c.rollout_every
        if self.truth is not None and round_ % c.true_error_every == 0:
            metrics.update(self._true_error(agent))
        return metrics

    def _adapt(self, agent: Agent) -> dict[str, torch.Tensor]:
        """The re-fit toward the current policy's state-action distribution (ADEPT's update,
        or its uniform control)."""
        assert self.refitter is not None and self.behavior is not None
        return self.refitter.round(self.model_data, agent, self.behavior)

    def _rollouts(self, agent: Agent) -> dict[str, torch.Tensor]:
        """Policy evaluation in the model: imagined rollouts of π into the model buffer."""
        start = self.rollout_starts()
        result = rollout(
            agent, self.world_model, start, self.config.horizon, self.bounds, caution=self.caution
        )
        return self.store_rollouts(result)

    def rollout_starts(self) -> torch.Tensor:
        """A round's start states: dataset states drawn uniformly."""
        return self.buffer.sample(self.config.rollout_batch).observations

    def store_rollouts(self, result: RolloutResult) -> dict[str, torch.Tensor]:
        """Add a round's imagined transitions to the model buffer; their metrics."""
        self.model_buffer.add(result.transitions)
        metrics = {
            "rollout/mean_return": result.returns.mean(),
            "rollout/std_return": result.returns.std(),
            "rollout/mean_length": result.lengths.float().mean(),
            "rollout/terminal_fraction": result.transitions.terminals.mean(),
            "rollout/buffer_size": torch.tensor(float(len(self.model_buffer))),
        }
        if result.uncertainty is not None:
            metrics["rollout/uncertainty"] = result.uncertainty
        return metrics

    @contextlib.contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Run diagnostics on torch's global RNG seeded from :attr:`diagnostics_rng`, and give
        the training run its RNG back unchanged afterwards."""
        seed = int(
            torch.randint(2**62, (1,), generator=self.diagnostics_rng, device=self.device).item()
        )
        with seeded(seed, self.device):
            yield

    def _true_error(self, agent: Agent) -> dict[str, torch.Tensor]:
        """The model's one- and H-step error against MuJoCo along π's real trajectories."""
        assert self.truth is not None
        c = self.config
        with self._own_rng():
            start = self.buffer.sample(c.true_error_starts, self.diagnostics_rng).observations
            err = true_model_error(self.world_model, agent, self.truth, start, c.horizon)
        return {
            "world_model/true_error_1step": torch.tensor(err.one_step),
            "world_model/true_error_hstep": torch.tensor(err.h_step),
            "world_model/true_reward_error_1step": torch.tensor(float(err.reward_per_step[0])),
            "world_model/true_return_gap": torch.tensor(err.return_gap),
        }

    @torch.no_grad()
    def _diagnostics(self, agent: Agent) -> dict[str, torch.Tensor]:
        """ε_m, ε_r under π-weighted held-out data, and the policy shift ε_π since the last round.

        ε_m = Σ_i w_i ‖ŝ′_i − s′_i‖₂ and ε_r = Σ_i w_i |r̂_i − r_i| with self-normalized weights
        w ∝ π(a_i|s_i)/β(a_i|s_i) on held-out real transitions (uniform weights without β);
        ε_π = E_s KL(π_k(·|s) ‖ π_{k−1}(·|s)), a Monte-Carlo estimate on dataset states.
        """
        with self._own_rng():
            held = self.holdout.sample(self.config.diagnostics_batch, self.diagnostics_rng)
            next_obs, reward, _ = self.world_model.step(held.observations, held.actions)
            state_err = (next_obs - held.next_observations).norm(dim=-1)
            reward_err = (reward - held.rewards).abs()
            weights = torch.full_like(state_err, 1.0 / len(state_err))
            if self.behavior is not None and (
                self.behavior.kind == "bc" or held.action_log_probs is not None
            ):
                log_pi = agent.log_prob(held.observations, held.actions)
                log_beta = self.behavior.log_prob(held)
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
            if q_real is not None and len(self.model_buffer):
                imagined = self.model_buffer.sample(
                    self.config.diagnostics_batch, self.diagnostics_rng
                )
                q_model = agent.q_value(imagined.observations, imagined.actions)
                assert q_model is not None
                metrics["q/real"] = q_real.mean()
                metrics["q/model"] = q_model.mean()
            states = self.buffer.sample(self.config.diagnostics_batch, self.diagnostics_rng)
            if self.previous_actor is not None:
                act = agent.actor.sample(states.observations)
                kl = agent.actor.log_prob(states.observations, act) - self.previous_actor.log_prob(
                    states.observations, act
                )
                metrics["policy/eps_pi_kl"] = kl.mean()
        self.previous_actor = copy.deepcopy(agent.actor)
        return metrics

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """ADEPT's re-fit optimizer (Diff+X trains nothing after set-up)."""
        return [] if self.refitter is None else [self.refitter.trained().optimizer]

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            **super().state_dict(),
            "world_model": self.world_model.state_dict_all(),
            "model_data": self.model_data.state_dict(),
            "holdout": self.holdout.state_dict(),
            "model_buffer": self.model_buffer.state_dict(include_data=True),
            "diagnostics_rng": self.diagnostics_rng.get_state(),
        }
        if self.behavior is not None and self.behavior.bc is not None:
            state["behavior"] = self.behavior.bc.state_dict()
        if self.previous_actor is not None:
            state["previous_actor"] = self.previous_actor.state_dict()
        if self.refitter is not None:
            state["refitter"] = self.refitter.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any], agent: Agent) -> None:
        super().load_state_dict(state, agent)
        self.world_model.load_state_dict_all(state["world_model"])
        self.model_data.load_state_dict(state["model_data"])
        self.holdout.load_state_dict(state["holdout"])
        self.model_buffer.load_state_dict(state["model_buffer"])
        self.diagnostics_rng.set_state(state["diagnostics_rng"])
        self.behavior = self._behavior_model(state.get("behavior"))
        if self.adapts:
            self.refitter = Refitter(self.world_model, self.config)
            self.refitter.load_state_dict(state["refitter"])
        if "previous_actor" in state:
            self.previous_actor = copy.deepcopy(agent.actor)
            self.previous_actor.load_state_dict(state["previous_actor"])


class ADEPTMethod(DiffusionMethod):
    """ADEPT: Diff+X plus the importance-sampled world-model update before each rollout round."""

    name = "adept"
    adapts = True


def check_config(config: ModelBasedConfig, data: Transitions) -> None:
    """Refuse settings that cannot work with ``data``, before anything is written."""
    c = config
    if not 0.0 <= c.real_ratio <= 1.0:
        raise AdeptError(f"--adept.real-ratio must be in [0, 1], got {c.real_ratio}")
    if c.real_ratio_final is not None and not 0.0 <= c.real_ratio_final <= 1.0:
        raise AdeptError(f"--adept.real-ratio-final must be in [0, 1], got {c.real_ratio_final}")
    needs_samples = c.uncertainty_penalty != 0.0 or c.uncertainty_stop is not None
    if needs_samples and c.uncertainty_samples < 2:
        raise AdeptError(
            "--adept.uncertainty-penalty and --adept.uncertainty-stop measure the spread of "
            "several s′ samples; set --adept.uncertainty-samples 2 or more"
        )
    if c.behavior == "logged" and data.action_log_probs is None:
        raise AdeptError(
            f"--adept.behavior logged needs action_log_probs in the dataset, and "
            f"{data.source} has none; use --adept.behavior bc"
        )
    if not 0.0 < c.holdout_fraction < 1.0:
        raise AdeptError(f"--adept.holdout-fraction must be in (0, 1), got {c.holdout_fraction}")
    for flag, decay in (("ema-decay", c.ema_decay), ("refit-average", c.refit_average)):
        if not (decay == 0.0 or 0.0 < decay < 1.0):
            raise AdeptError(f"--adept.{flag} must be in (0, 1), or 0 for none; got {decay}")
    if c.refit_lr is not None and not c.refit_lr > 0:
        raise AdeptError(f"--adept.refit-lr must be positive, got {c.refit_lr}")
    at_least = {
        "horizon": 1,
        "rollout_every": 1,
        "rollout_batch": 1,
        "model_buffer_size": 1,
        "is_batch_size": 1,
        "is_resample_pool": 1,
        "uncertainty_samples": 1,
        "select_rows": 1,
        "rollout_start": 0,
        "select_every": 0,
        "select_patience": 0,
        "world_model.block_layers": 1,
        "world_model.ensemble_elites": 1,
    }
    for name, low in at_least.items():
        value = c.world_model if name.startswith("world_model.") else c
        value = getattr(value, name.split(".")[-1])
        if value < low:
            flag = "--adept." + name.replace("_", "-")
            bound = "be positive" if low == 1 else f"be at least {low}"
            raise AdeptError(f"{flag} must {bound}, got {value}")
    wm = c.world_model
    if wm.ensemble_elites > wm.ensemble_size:
        raise AdeptError(
            f"--adept.world-model.ensemble-elites ({wm.ensemble_elites}) must not exceed "
            f"--adept.world-model.ensemble-size ({wm.ensemble_size})"
        )
    if c.is_truncate_ratio is not None and c.is_truncate_ratio < 1:
        raise AdeptError(
            f"--adept.is-truncate-ratio must be at least 1 (the mean weight), got "
            f"{c.is_truncate_ratio}"
        )
