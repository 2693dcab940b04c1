"""Data-layer speed: dataset generation, loading, and device-side batch sampling.

Run alone (no other torch job on the machine)::

    python -m benchmarks.data                        # 1M steps per env, the D4RL size
    python -m benchmarks.data --num-steps 100000 --envs hopper
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro

from adept.data import ReplayBuffer, load_hdf5, resolve_device
from adept.datasets import make_dataset


@dataclass(frozen=True)
class Args:
    num_steps: int = 1_000_000
    """Transitions per generated dataset."""
    envs: tuple[str, ...] = ("hopper", "halfcheetah", "walker2d")
    """Environments to generate random data for."""
    batch_size: int = 256
    """Batch size for the sampling benchmark."""
    batches: int = 20_000
    """Batches drawn in the sampling benchmark."""
    device: str = "auto"
    """Device for the sampling benchmark."""


def main(args: Args) -> None:
    device = resolve_device(args.device)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}")
    print(
        f"| dataset | steps | make (s) | steps/s | load (s) | batches/s (size {args.batch_size}) |"
    )
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for env in args.envs:
            name = f"{env}-random"
            path = Path(tmp) / f"{name}.hdf5"
            start = time.perf_counter()
            make_dataset(name, path, num_steps=args.num_steps, progress=False)
            make_s = time.perf_counter() - start

            start = time.perf_counter()
            data = load_hdf5(path)
            load_s = time.perf_counter() - start

            buffer = ReplayBuffer.from_transitions(data, device=device)
            buffer.sample(args.batch_size)
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(args.batches):
                batch = buffer.sample(args.batch_size)
            if device.type == "cuda":
                torch.cuda.synchronize()
            sample_rate = args.batches / (time.perf_counter() - start)
            del batch
            print(
                f"| {name} | {args.num_steps} | {make_s:.1f} | {args.num_steps / make_s:,.0f} "
                f"| {load_s:.2f} | {sample_rate:,.0f} |"
            )


if __name__ == "__main__":
    main(tyro.cli(Args))
