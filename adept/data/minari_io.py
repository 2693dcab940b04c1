"""Minari datasets from local disk (optional extra ``adept-rl[minari]``); nothing is downloaded.

A Minari episode stores T+1 observations (the reset state, then one per step) and separate
``terminations``/``truncations``; they map to ``observations = obs[:-1]``,
``next_observations = obs[1:]``, ``terminals = terminations``, ``timeouts = truncations``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from adept.base.errors import AdeptError
from adept.data.transitions import Transitions

_INSTALL_HINT = "install it with: pip install 'adept-rl[minari]'"


def _flat(obs: Any, dataset_id: str) -> np.ndarray:
    if isinstance(obs, dict):
        raise AdeptError(
            f"minari dataset {dataset_id} has dict observations ({', '.join(obs)}); "
            "only flat Box observations are supported"
        )
    return np.asarray(obs, dtype=np.float32).reshape(len(obs), -1)


def _step_info(infos: dict[str, Any], key: str, steps: int) -> np.ndarray | None:
    """A per-step info array; Minari stores T+1 infos (reset first), so drop the reset's."""
    if key not in infos:
        return None
    value = np.asarray(infos[key], dtype=np.float32).reshape(-1)
    if len(value) == steps + 1:
        value = value[1:]
    return value if len(value) == steps else None


def load_minari(dataset_id: str, env_id: str | None = None) -> Transitions:
    """Load a Minari dataset already on local disk (``minari.load_dataset(id)``, no download)."""
    try:
        import minari
    except ImportError as exc:
        raise AdeptError(
            f"reading 'minari:{dataset_id}' needs the minari package; {_INSTALL_HINT}"
        ) from exc
    # minari's documented location; asking minari itself would create the folder as a side effect
    root = Path(os.environ.get("MINARI_DATASETS_PATH", "~/.minari/datasets")).expanduser()
    if not (root / dataset_id / "data").exists():
        raise AdeptError(
            f"minari dataset {dataset_id} is not on local disk under {root}; fetch it on a "
            f"connected machine with 'minari download {dataset_id}' and copy it there "
            "(or point MINARI_DATASETS_PATH at it)"
        )
    try:
        dataset = minari.load_dataset(dataset_id, download=False)
    except Exception as exc:  # minari raises many types for a damaged folder
        raise AdeptError(
            f"minari dataset {dataset_id} could not be read ({exc}); re-fetch it"
        ) from exc

    parts: dict[str, list[np.ndarray]] = {
        "observations": [],
        "actions": [],
        "rewards": [],
        "next_observations": [],
        "terminals": [],
        "timeouts": [],
    }
    log_probs: list[np.ndarray] | None = []
    for episode in dataset.iterate_episodes():
        steps = len(episode.rewards)
        obs = _flat(episode.observations, dataset_id)
        parts["observations"].append(obs[:-1])
        parts["next_observations"].append(obs[1:])
        parts["actions"].append(np.asarray(episode.actions, dtype=np.float32).reshape(steps, -1))
        parts["rewards"].append(np.asarray(episode.rewards, dtype=np.float32))
        terminals = np.asarray(episode.terminations, dtype=bool)
        timeouts = np.array(episode.truncations, dtype=bool)
        # An episode is an episode even when its last step carries neither flag (a collection
        # stopped mid-episode): mark it a timeout, so the next episode is not read as its
        # continuation (segments, n-step targets and episode returns all follow these flags).
        timeouts[-1] |= not terminals[-1]
        parts["terminals"].append(terminals)
        parts["timeouts"].append(timeouts)
        lp = _step_info(episode.infos, "action_log_probs", steps)
        if lp is None or log_probs is None:
            log_probs = None
        else:
            log_probs.append(lp)
    if not parts["rewards"]:
        raise AdeptError(f"minari dataset {dataset_id} holds no episodes")

    stored = dataset.storage.metadata
    kind = dataset_id.rsplit("/", 1)[-1].rsplit("-v", 1)[0]
    metadata: dict[str, Any] = {"minari_id": dataset_id, "kind": kind}
    for key in ("ref_min_score", "ref_max_score", "algorithm_name"):
        value = stored.get(key)
        if value is not None:
            metadata[key] = value if key == "algorithm_name" else float(value)
    if env_id is None and dataset.env_spec is not None:
        env_id = dataset.env_spec.id
    if env_id is not None:
        metadata["env_id"] = env_id
    return Transitions(
        **{name: np.concatenate(chunks) for name, chunks in parts.items()},
        action_log_probs=None if log_probs is None else np.concatenate(log_probs),
        env_id=env_id,
        metadata=metadata,
        source=f"minari:{dataset_id}",
    )
