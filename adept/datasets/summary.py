"""A dataset's summary: sizes, episode returns, and the behaviour policy's normalized score."""

from __future__ import annotations

from typing import Any

import numpy as np

from adept.data.transitions import Transitions
from adept.envs import normalized_score

SYNTHETIC_KINDS = ("synther",)
"""Kinds of generated data whose transitions are independent draws, stored as one-step episodes:
they have no episode returns and no behaviour score."""


def is_synthetic(data: Transitions) -> bool:
    return data.kind in SYNTHETIC_KINDS


def summarize(data: Transitions) -> dict[str, Any]:
    """Numbers ``adept data info`` prints, as a JSON-compatible dict.

    The behaviour score is the mean over all episodes in the data, including the last one when
    the data ends mid-episode (as D4RL tables do). Synthetic data (:data:`SYNTHETIC_KINDS`) gets
    per-transition reward statistics instead.
    """
    if is_synthetic(data):
        return _summarize_synthetic(data)
    returns = data.episode_returns()
    lengths = data.episode_lengths()
    out: dict[str, Any] = {
        "source": data.source,
        "env_id": data.env_id,
        "kind": data.kind,
        "transitions": len(data),
        "episodes": data.num_episodes,
        "obs_dim": data.obs_dim,
        "act_dim": data.act_dim,
        "terminals": int(data.terminals.sum()),
        "timeouts": int(data.timeouts.sum()),
        "has_action_log_probs": data.action_log_probs is not None,
        "episode_length_mean": float(lengths.mean()),
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "return_min": float(returns.min()),
        **{f"return_p{q}": float(np.percentile(returns, q)) for q in (10, 25, 50, 75, 90)},
        "return_max": float(returns.max()),
    }
    if data.env_id is not None:
        scores = normalized_score(returns, data.env_id, data.metadata)
        out["normalized_score_mean"] = float(scores.mean())
        out["normalized_score_max"] = float(scores.max())
    for key in PROVENANCE:
        if key in data.metadata:
            out[key] = data.metadata[key]
    for prefix in ("", "medium_"):
        reached = data.metadata.get(f"{prefix}reached_target")
        if reached is not None and not bool(reached):
            steps = data.metadata.get(f"{prefix}sac_steps")
            target = float(data.metadata.get(f"{prefix}target_return", float("nan")))
            what = "medium half: " if prefix else ""
            out["note"] = (
                f"{what}the SAC run stopped at its budget ({steps} steps) before the medium target "
                f"return {target:.0f}"
            )
    return out


def _summarize_synthetic(data: Transitions) -> dict[str, Any]:
    out: dict[str, Any] = {
        "source": data.source,
        "env_id": data.env_id,
        "kind": data.kind,
        "transitions": len(data),
        "obs_dim": data.obs_dim,
        "act_dim": data.act_dim,
        "terminals": int(data.terminals.sum()),
        "reward_mean": float(data.rewards.mean()),
        "reward_std": float(data.rewards.std()),
        "reward_min": float(data.rewards.min()),
        "reward_max": float(data.rewards.max()),
    }
    for key in ("source_dataset", "source_fingerprint", "synther_preset"):
        if key in data.metadata:
            out[key] = data.metadata[key]
    out["note"] = (
        "synthetic transitions: independent draws of a generator, each stored as a one-step "
        "episode, so there are no episode returns and no behaviour score"
    )
    return out


#: Metadata shown by ``adept data info`` when present (learned kinds add the SAC run's facts).
PROVENANCE = (
    "seed",
    "num_steps",
    "behavior",
    "sac_steps",
    "sac_budget",
    "sac_eval_return",
    "sac_wall_time_s",
    "target_return",
    "reached_target",
    "medium_sac_steps",
    "medium_target_return",
    "medium_reached_target",
    "expert_sac_steps",
    "recipe_revision",
    "adept_version",
    "gymnasium_version",
    "mujoco_version",
    "created",
)


def format_summary(summary: dict[str, Any]) -> str:
    """Aligned ``key  value`` lines for the terminal."""
    width = max(len(k) for k in summary)
    lines = []
    for key, value in summary.items():
        text = f"{value:.3f}" if isinstance(value, float) else str(value)
        lines.append(f"{key:<{width}}  {text}")
    return "\n".join(lines)
