"""Published figures that reports quote beside ours.

The ADEPT paper (Fang & Lan, "Learning from Random Demonstrations: Offline Reinforcement
Learning with Importance-Sampled Diffusion Models") reports D4RL v2 normalized scores after 1M
gradient steps: Table 1 for the model-free agents it ran (SAC, IQL) and quotes (TD3+BC), and
appendix Table 4's "baseline" column for ADEPT+IQL, and Table 1's SynthER column (one figure per
dataset, not naming its agent; the figures are those SynthER's paper reports with IQL, so they
stand beside our SynthER+IQL). Our datasets follow the D4RL protocol on
Gymnasium v5 envs (docs/datasets.md), and our budgets are smaller, so these numbers put ours in
context; they are not a target a CPU run should match. The paper gives no per-dataset number
for Diff+X (only curves), nor for ADEPT+SAC in a form the text preserves.
"""

from __future__ import annotations

SOURCE = (
    "ADEPT paper, D4RL v2, 1M steps (Table 1; ADEPT+IQL: Table 4; SynthER+IQL: Table 1's "
    "SynthER column)"
)

#: (dataset, method label) → normalized score, mean over the paper's seeds.
PAPER_SCORES: dict[tuple[str, str], float] = {
    # Table 1, random ("rnd")
    ("halfcheetah-random", "SAC"): 30.5,
    ("walker2d-random", "SAC"): 4.1,
    ("hopper-random", "SAC"): 11.3,
    ("halfcheetah-random", "TD3+BC"): 11.3,
    ("walker2d-random", "TD3+BC"): 0.6,
    ("hopper-random", "TD3+BC"): 8.6,
    ("halfcheetah-random", "IQL"): 12.5,
    ("walker2d-random", "IQL"): 5.4,
    ("hopper-random", "IQL"): 7.5,
    # Table 1, medium-replay ("mix")
    ("halfcheetah-medium-replay", "SAC"): 29.9,
    ("walker2d-medium-replay", "SAC"): 21.0,
    ("hopper-medium-replay", "SAC"): 70.4,
    ("halfcheetah-medium-replay", "TD3+BC"): 44.8,
    ("walker2d-medium-replay", "TD3+BC"): 85.6,
    ("hopper-medium-replay", "TD3+BC"): 64.4,
    ("halfcheetah-medium-replay", "IQL"): 44.2,
    ("walker2d-medium-replay", "IQL"): 94.7,
    ("hopper-medium-replay", "IQL"): 73.9,
    # Table 1, the SynthER column (SynthER's IQL figures)
    ("halfcheetah-random", "SynthER+IQL"): 17.2,
    ("walker2d-random", "SynthER+IQL"): 4.2,
    ("hopper-random", "SynthER+IQL"): 7.7,
    ("halfcheetah-medium-replay", "SynthER+IQL"): 46.6,
    ("walker2d-medium-replay", "SynthER+IQL"): 83.3,
    ("hopper-medium-replay", "SynthER+IQL"): 103.2,
    # Table 4, "baseline" column (ADEPT+IQL with K = 10, IS batch 1024, clipping)
    ("halfcheetah-random", "ADEPT+IQL"): 39.5,
    ("walker2d-random", "ADEPT+IQL"): 23.6,
    ("hopper-random", "ADEPT+IQL"): 37.5,
    ("halfcheetah-medium-replay", "ADEPT+IQL"): 59.3,
    ("walker2d-medium-replay", "ADEPT+IQL"): 85.5,
    ("hopper-medium-replay", "ADEPT+IQL"): 104.0,
}


def paper_score(dataset: str, label: str) -> float | None:
    """The paper's figure for a dataset (project name, e.g. hopper-random) and a method label."""
    return PAPER_SCORES.get((dataset, label))
