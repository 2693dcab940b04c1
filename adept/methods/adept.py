"""ADEPT+X (``--method adept``) and Diff+X (``--method diffusion``): a guided diffusion world
model evaluates the current policy π by imagined rollouts, and is re-fitted with importance
weights so that it stays accurate where π goes.

The ADEPT paper's Algorithm 1, as the shared training loop runs it:

    set-up (:meth:`ADEPTMethod.setup`)
        fit β on D; pre-train the world model p_θ on D          (adept.world_models.pretrain)
    every agent step (:meth:`ADEPTMethod.sample`, then the agent's update)
        the agent trains on a batch mixing real rows of D and imagined rows of the model buffer
    every ``rollout.every`` steps, a round (:meth:`ADEPTMethod.after_update`)
        re-fit p_θ on D with weights π/β                         (adept.world_models.importance)
        evaluate π in the model: rollouts of H steps → model buffer (adept.world_models.rollout)

The paper's loop evaluates, then updates the agent, then re-fits; a round here re-fits, then
evaluates, and the agent's updates fall between rounds — the same cycle. Diff+X is ADEPT without
the re-fit (``--adept.refit.rule none``; ``--method diffusion`` is that): the model stays as
pre-trained and the rollouts still follow the current policy.

The set-up is a pure function of the data, the world-model and pre-training configs and the
generator's seed — not of the agent — so Diff+IQL, ADEPT+IQL and ADEPT+SAC on one dataset and
seed share one result, computed once and kept in the artifact store (:mod:`adept.store.artifacts`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from adept.agents import BC, Agent, AgentSpec, BCConfig
from adept.base.errors import AdeptError
from adept.base.rng import Stream
from adept.data.buffer import Batch, ReplayBuffer
from adept.data.transitions import Transitions
from adept.methods.base import Method, mixed_sample
from adept.store.artifacts import cached
from adept.world_models.diagnostics import Diagnostics, DiagnosticsConfig
from adept.world_models.importance import BehaviorModel, RefitConfig, Refitter
from adept.world_models.model import WorldModel, WorldModelConfig
from adept.world_models.pretrain import PretrainConfig, holdout_mask, pretrain, pretrain_key
from adept.world_models.rollout import RolloutConfig, RolloutResult, StateBounds, rollout

MODEL_DATA = Stream("the world model's training rows (re-fits)", 1)
HOLDOUT = Stream("held-out rows (diagnostics)", 2)
MODEL_BUFFER = Stream("the imagined rows the agent samples", 3)
DIAGNOSTICS = Stream("diagnostics' start states and draws", 4)


@dataclass(frozen=True)
class MixConfig:
    """What the agent trains on: real rows of D and imagined rows of the model buffer."""

    real_ratio: float = 0.5
    """Share of real transitions in each agent batch, the rest from the model buffer
    (docs/adept-defaults.md: the best of 0.25, 0.5 and 0.8)."""
    real_ratio_final: float | None = None
    """If set, the real share moves linearly from ``real_ratio`` at step 0 to this at the last
    step: less imagined data as the agent gets better at exploiting the model."""
    buffer_size: int = 50_000
    """Capacity of the model buffer (a ring): about five rounds of rollouts, so the agent trains
    on data from recent policies (stale rollouts evaluate a policy that is gone)."""
    flush_on_refit: bool = False
    """Empty the model buffer at each re-fit, so the agent trains only on rollouts of the model
    as it is now. Off: the paper's ADEPT; on, it kept ADEPT+IQL's gain where the paper's rose
    and collapsed (docs/adept-defaults.md). Without a re-fit (Diff+X) nothing is flushed."""


@dataclass(frozen=True)
class ADEPTConfig:
    """The world model and ADEPT's loop, by concern. Where the paper gives a value, the default
    is the paper's; where it leaves one open, the default was measured: docs/adept-defaults.md."""

    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    refit: RefitConfig = field(default_factory=RefitConfig)
    mix: MixConfig = field(default_factory=MixConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    generator_seed: int | None = None
    """Seed of the generative model's set-up (β's fit, pre-training, the held-out split); None:
    the run's seed. A fixed seed makes a grid's runs share one pre-trained model per dataset
    (one cache entry), so their spread is the RL's alone."""
    cache: bool = True
    """Reuse pre-trained world models and β fits from the artifact cache under
    $ADEPT_DATA_DIR/artifacts; results are identical either way."""


class ADEPTMethod(Method):
    """ADEPT+X: Algorithm 1 of the ADEPT paper on the shared loop (module docstring)."""

    name = "adept"
    options = "adept"
    options_type = ADEPTConfig
    label = "ADEPT"
    refit_rule: Literal["is", "uniform", "none"] | None = None
    """A re-fit rule this method always uses, whatever ``--adept.refit.rule`` says (None: that
    option's)."""

    def __init__(
        self,
        data: Transitions,
        buffer: ReplayBuffer,
        batch_size: int,
        config: ADEPTConfig,
        seed: int = 0,
        num_steps: int | None = None,
    ):
        """``num_steps``: the run's length, needed by ``mix.real_ratio_final``'s schedule."""
        super().__init__(data, buffer, batch_size)
        if self.refit_rule is not None:
            config = dataclasses.replace(config, refit=RefitConfig(rule=self.refit_rule))
        c = self.config = config
        check_config(c, data)
        if c.mix.real_ratio_final is not None and not num_steps:
            raise AdeptError("--adept.mix.real-ratio-final needs the run's number of steps")
        self.num_steps = num_steps
        self.device = buffer.device
        self.seed = seed
        self.model_seed = seed if c.generator_seed is None else c.generator_seed
        holdout = holdout_mask(len(data), c.pretrain.holdout_fraction, self.model_seed)
        train_part, held_part = data.subset(~holdout), data.subset(holdout)
        self.model_data = ReplayBuffer.from_transitions(
            train_part, device=self.device, seed=MODEL_DATA.offset(seed)
        )
        held = ReplayBuffer.from_transitions(
            held_part, device=self.device, seed=HOLDOUT.offset(seed)
        )
        self.world_model = WorldModel(train_part, c.world_model, self.device)
        self.bounds = StateBounds(data.stats(), self.device) if c.rollout.clip else None
        self.model_buffer = ReplayBuffer(
            c.mix.buffer_size,
            data.obs_dim,
            data.act_dim,
            device=self.device,
            seed=MODEL_BUFFER.offset(seed),
        )
        self.diagnostics = Diagnostics(
            c.diagnostics, held, buffer, data.env_id, DIAGNOSTICS.offset(seed), self.device
        )
        self.caution = c.rollout.caution()
        self.behavior: BehaviorModel | None = None
        self.refitter: Refitter | None = None

    @staticmethod
    def check(config: Any, data: Transitions) -> None:
        check_config(config, data)

    # --- set-up: fit β on D, pre-train the world model on D --------------------------------

    def setup(self, agent: Agent) -> dict[str, float]:
        c = self.config

        def make() -> dict[str, Any]:
            return pretrain(self.data, c.world_model, c.pretrain, self.model_seed, self.device)

        if c.cache:
            key = pretrain_key(self.data, c.world_model, c.pretrain, self.model_seed, self.device)
            result = cached("pretrain", key, make)
        else:
            result = make()
        self.world_model.load_state_dict_all(result["world_model"])
        self.behavior = self._behavior_model(result.get("behavior"))
        if c.refit.rule != "none":
            self.refitter = Refitter(self.world_model, c.refit)
        metrics = {k: float(v) for k, v in result["metrics"].items()}
        if c.rollout.start == 0:
            metrics.update({k: float(v) for k, v in self._rollouts(agent).items()})
        return metrics

    def _behavior_model(self, bc_state: dict[str, Any] | None) -> BehaviorModel:
        c = self.config.pretrain
        if c.behavior == "logged":
            return BehaviorModel("logged")
        assert bc_state is not None
        spec = AgentSpec.from_data(self.data, max(c.behavior_steps, 1), self.device)
        bc = BC(spec, BCConfig())
        bc.load_state_dict(bc_state)
        return BehaviorModel("bc", bc)

    # --- every step: the agent's batch mixes real and imagined rows ------------------------

    def real_rows(self, step: int) -> int:
        """Real transitions in the agent batch of ``step``."""
        c = self.config.mix
        ratio = c.real_ratio
        if c.real_ratio_final is not None and self.num_steps:
            progress = min(step / max(self.num_steps - 1, 1), 1.0)
            ratio += (c.real_ratio_final - c.real_ratio) * progress
        return round(self.batch_size * ratio)

    def sample(self, step: int) -> Batch:
        return mixed_sample(self.buffer, self.model_buffer, self.batch_size, self.real_rows(step))

    # --- every round: re-fit with importance weights, then evaluate π in the model ----------

    def rolls_after(self, step: int) -> bool:
        """Whether a round (re-fit, diagnostics, rollouts) follows update ``step``."""
        done = step + 1
        return done % self.config.rollout.every == 0 and done >= self.config.rollout.start

    def after_update(self, step: int, agent: Agent) -> dict[str, torch.Tensor]:
        if not self.rolls_after(step):
            return {}
        metrics = self.before_rollouts(step, agent)
        metrics.update(self._rollouts(agent))
        return metrics

    def before_rollouts(
        self, step: int, agent: Agent, refit: bool = True
    ) -> dict[str, torch.Tensor]:
        """A round's work before its rollouts: the re-fit (``refit=False``: done already), the
        diagnostics, the flush of the model buffer."""
        c = self.config
        metrics: dict[str, torch.Tensor] = {}
        if self.refitter is not None and refit:
            assert self.behavior is not None
            metrics.update(self.refitter.round(self.model_data, agent, self.behavior))
        if c.diagnostics.model_error:
            # before a flush, so that Q on model rows is measured on the imagination the agent
            # trained on since the last round (it has its own RNG: the run is unchanged)
            metrics.update(
                self.diagnostics.model_error(
                    self.world_model, agent, self.behavior, self.model_buffer
                )
            )
        if self.refitter is not None and c.mix.flush_on_refit:
            self.model_buffer.clear()
        if self.diagnostics.wants_true_error((step + 1) // c.rollout.every):
            metrics.update(self.diagnostics.true_error(self.world_model, agent, c.rollout.horizon))
        return metrics

    def _rollouts(self, agent: Agent) -> dict[str, torch.Tensor]:
        """Policy evaluation in the model: imagined rollouts of π into the model buffer."""
        result = rollout(
            agent,
            self.world_model,
            self.rollout_starts(),
            self.config.rollout.horizon,
            self.bounds,
            caution=self.caution,
        )
        return self.store_rollouts(result)

    def rollout_starts(self) -> torch.Tensor:
        """A round's start states: dataset states drawn uniformly."""
        return self.buffer.sample(self.config.rollout.batch_size).observations

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

    # --- what a resume needs ---------------------------------------------------------------

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The re-fit's optimizer (without a re-fit the model trains nothing after set-up)."""
        return [] if self.refitter is None else [self.refitter.trained().optimizer]

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            **super().state_dict(),
            "world_model": self.world_model.state_dict_all(),
            "model_data": self.model_data.state_dict(),
            "model_buffer": self.model_buffer.state_dict(include_data=True),
            **self.diagnostics.state_dict(),
        }
        if self.behavior is not None and self.behavior.bc is not None:
            state["behavior"] = self.behavior.bc.state_dict()
        if self.refitter is not None:
            state["refitter"] = self.refitter.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any], agent: Agent) -> None:
        super().load_state_dict(state, agent)
        self.world_model.load_state_dict_all(state["world_model"])
        self.model_data.load_state_dict(state["model_data"])
        self.model_buffer.load_state_dict(state["model_buffer"])
        self.diagnostics.load_state_dict(state, agent)
        self.behavior = self._behavior_model(state.get("behavior"))
        if self.config.refit.rule != "none":
            self.refitter = Refitter(self.world_model, self.config.refit)
            self.refitter.load_state_dict(state["refitter"])


class DiffusionMethod(ADEPTMethod):
    """Diff+X: ADEPT without the re-fit — the world model trained once, rollouts of the current
    policy (``--method adept --adept.refit.rule none``; the ``--adept.refit.*`` options are
    not read)."""

    name = "diffusion"
    label = "Diff"
    unread_options = ("refit",)
    refit_rule = "none"


def check_config(config: ADEPTConfig, data: Transitions) -> None:
    """Refuse settings that cannot work with ``data``, before anything is written."""
    c = config

    def flag(name: str) -> str:
        return "--adept." + name.replace("_", "-")

    for name, ratio in (
        ("mix.real_ratio", c.mix.real_ratio),
        ("mix.real_ratio_final", c.mix.real_ratio_final),
    ):
        if ratio is not None and not 0.0 <= ratio <= 1.0:
            raise AdeptError(f"{flag(name)} must be in [0, 1], got {ratio}")
    r = c.rollout
    if (r.uncertainty_penalty != 0.0 or r.uncertainty_stop is not None) and (
        r.uncertainty_samples < 2
    ):
        raise AdeptError(
            "--adept.rollout.uncertainty-penalty and --adept.rollout.uncertainty-stop measure "
            "the spread of several s′ samples; set --adept.rollout.uncertainty-samples 2 or more"
        )
    if c.pretrain.behavior == "logged" and data.action_log_probs is None:
        raise AdeptError(
            f"--adept.pretrain.behavior logged needs action_log_probs in the dataset, and "
            f"{data.source} has none; use --adept.pretrain.behavior bc"
        )
    if not 0.0 < c.pretrain.holdout_fraction < 1.0:
        raise AdeptError(
            f"--adept.pretrain.holdout-fraction must be in (0, 1), got "
            f"{c.pretrain.holdout_fraction}"
        )
    for name, decay in (
        ("pretrain.ema_decay", c.pretrain.ema_decay),
        ("refit.average", c.refit.average),
    ):
        if not (decay == 0.0 or 0.0 < decay < 1.0):
            raise AdeptError(f"{flag(name)} must be in (0, 1), or 0 for none; got {decay}")
    if c.refit.lr is not None and not c.refit.lr > 0:
        raise AdeptError(f"--adept.refit.lr must be positive, got {c.refit.lr}")
    at_least = {
        "rollout.horizon": 1,
        "rollout.every": 1,
        "rollout.batch_size": 1,
        "rollout.uncertainty_samples": 1,
        "rollout.start": 0,
        "mix.buffer_size": 1,
        "refit.batch_size": 1,
        "refit.resample_pool": 1,
        "pretrain.select_rows": 1,
        "pretrain.select_every": 0,
        "pretrain.select_patience": 0,
        "world_model.block_layers": 1,
        "world_model.ensemble_elites": 1,
    }
    for name, low in at_least.items():
        section, leaf = name.split(".")
        value = getattr(getattr(c, section), leaf)
        if value < low:
            bound = "be positive" if low == 1 else f"be at least {low}"
            raise AdeptError(f"{flag(name)} must {bound}, got {value}")
    wm = c.world_model
    if wm.ensemble_elites > wm.ensemble_size:
        raise AdeptError(
            f"--adept.world-model.ensemble-elites ({wm.ensemble_elites}) must not exceed "
            f"--adept.world-model.ensemble-size ({wm.ensemble_size})"
        )
    if c.refit.truncate_ratio is not None and c.refit.truncate_ratio < 1:
        raise AdeptError(
            f"--adept.refit.truncate-ratio must be at least 1 (the mean weight), got "
            f"{c.refit.truncate_ratio}"
        )
