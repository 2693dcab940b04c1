"""Trajectory segments: fixed-length windows of consecutive transitions inside one episode.

Trajectory diffusion models (Policy-Guided Diffusion, DyDiff) train on windows of L consecutive
transitions. A window never crosses an episode's end — the row after a terminal or a timeout
belongs to another episode. Which windows:

- from each episode's first transition every ``stride`` rows, as long as the window fits;
- plus, when the episode ends in a terminal, the window that holds it so every terminal is seen by
  the model: PGD's ending on it (``short = "drop"``), or, with padding, the one ending one row
  after it on the absorbing state — so that a model reading each row's next state from the row
  after it (PGD's segments) keeps the terminal transition itself;
- episodes shorter than L: ``short = "drop"`` skips them (PGD's rule); ``short = "pad"`` keeps one
  window from the first row of each that ends in a terminal, padded after it (DyDiff pads too).
  On the random locomotion datasets this is the difference between using every episode and 15 %
  of them: hopper-random's median episode has 19 transitions, and all but one end in a terminal.
  Short episodes cut by a timeout are dropped either way: nothing is known of what follows them.

Padding continues the episode's end as an absorbing state: the observation and next observation
are the last real next observation, the action and reward are 0, and the terminal flag repeats the
episode's (1 after a terminal, 0 after a timeout or the data's end); ``mask`` is False on padded
rows, so a loss can leave them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from adept.data.transitions import Transitions


def segment_starts(
    data: Transitions, length: int, stride: int = 1, short: Literal["drop", "pad"] = "pad"
) -> np.ndarray:
    """First rows of the windows of ``length`` transitions (see the module docstring),
    sorted, ``[M]`` int64."""
    if length < 1 or stride < 1:
        raise ValueError(f"segments need length ≥ 1 and stride ≥ 1, got {length} and {stride}")
    starts: list[np.ndarray] = []
    for first, last in zip(data.episode_starts, data.episode_ends, strict=True):
        size = int(last - first + 1)
        if size < length:
            if short == "pad" and data.terminals[last]:
                starts.append(np.array([first]))
            continue
        grid = np.arange(first, last - length + 2, stride)
        if data.terminals[last]:
            grid = np.union1d(grid, [last - length + (2 if short == "pad" else 1)])
        starts.append(grid)
    if not starts:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(starts).astype(np.int64)


@dataclass(frozen=True)
class Segments:
    """Windows of L transitions, ``[M, L, ...]`` arrays named as in :class:`Transitions`."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    mask: np.ndarray
    """True on real rows, False on the padding after an episode's end."""
    starts: np.ndarray
    """Row of D where each window starts, ``[M]``."""

    def __len__(self) -> int:
        return len(self.starts)


def gather_segments(data: Transitions, starts: np.ndarray, length: int) -> Segments:
    """The windows of ``length`` rows from ``starts`` (:func:`segment_starts`), padded as the
    module docstring says where an episode ends inside one."""
    starts = np.asarray(starts, dtype=np.int64)
    episode = np.searchsorted(data.episode_ends, starts)  # the episode of each start
    last = data.episode_ends[episode]  # [M]
    rows = starts[:, None] + np.arange(length)[None, :]  # [M, L]
    mask = rows <= last[:, None]
    clipped = np.minimum(rows, last[:, None])
    observations = data.observations[clipped]
    actions = data.actions[clipped]
    rewards = data.rewards[clipped]
    next_observations = data.next_observations[clipped]
    terminals = data.terminals[clipped]
    pad = ~mask
    if pad.any():
        end_state = data.next_observations[last]  # [M, obs]
        observations = np.where(pad[..., None], end_state[:, None], observations)
        next_observations = np.where(pad[..., None], end_state[:, None], next_observations)
        actions = np.where(pad[..., None], 0.0, actions).astype(data.actions.dtype)
        rewards = np.where(pad, 0.0, rewards).astype(data.rewards.dtype)
        terminals = np.where(pad, data.terminals[last][:, None], terminals)
    return Segments(
        observations=observations,
        actions=actions,
        rewards=rewards,
        next_observations=next_observations,
        terminals=terminals,
        mask=mask,
        starts=starts,
    )
