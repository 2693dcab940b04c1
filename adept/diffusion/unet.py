"""A 1-D temporal U-Net: the denoiser of trajectory diffusion (Janner et al. 2022's Diffuser
network; Policy-Guided Diffusion and DyDiff use variants of it).

Input and output are sequences ``[B, L, C]`` (L time steps of C channels, e.g. the rows
[s, a, r, terminal] of a trajectory segment). Convolutions run along time; each level halves the
length on the way down and doubles it on the way up, with skip connections between levels of the
same length. Every residual block adds a projection of the embedding of the noise level (and of
the optional condition) between its two convolutions; GroupNorm and Mish as in Diffuser. The
output convolution starts at zero, so under EDM's preconditioning the untrained denoiser is
D(x; σ) = c_skip(σ) x. Any L works: the sequence is padded at its end (edge values) to a multiple
of 2^(levels − 1) and the output cropped back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from adept.diffusion.denoisers import FourierEmbedding


@dataclass(frozen=True)
class UNetSize:
    """Width ``dim`` of the first level, width multiples ``mults`` per level, kernel along time."""

    dim: int
    mults: tuple[int, ...]
    kernel: int


UNET_SIZES: dict[str, UNetSize] = {
    # seconds: tests and quick checks
    "smoke": UNetSize(8, (1, 2), 3),
    # ≈ 0.3M parameters: trains at CPU speed on segments of a few dozen rows
    "cpu": UNetSize(32, (1, 2, 4), 5),
    # DyDiff's released network (Decision-Diffuser-style TemporalUnet: 128, (1, 4, 8), kernel 5)
    "dydiff": UNetSize(128, (1, 4, 8), 5),
    # Policy-Guided Diffusion's (1024 features, 3 levels doubling, kernel 3)
    "pgd": UNetSize(1024, (1, 2, 4), 3),
}
"""Named sizes of :class:`TemporalUNet`: a CPU default and the papers' networks."""


class ConvBlock(nn.Sequential):
    """Conv1d along time (same length) → GroupNorm → Mish."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, groups: int):
        super().__init__(
            nn.Conv1d(in_ch, out_ch, kernel, padding=kernel // 2),
            nn.GroupNorm(_groups(out_ch, groups), out_ch),
            nn.Mish(),
        )


class TemporalResBlock(nn.Module):
    """Two :class:`ConvBlock` with the embedding projected and added between them, plus a skip
    (a 1×1 convolution when the width changes)."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, kernel: int, groups: int):
        super().__init__()
        self.first = ConvBlock(in_ch, out_ch, kernel, groups)
        self.second = ConvBlock(out_ch, out_ch, kernel, groups)
        self.emb = nn.Sequential(nn.Mish(), nn.Linear(emb_dim, out_ch))
        self.skip = nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, C, L]``, ``emb`` ``[B, E]``."""
        h = self.first(x) + self.emb(emb).unsqueeze(-1)
        return self.second(h) + self.skip(x)


class LevelBlocks(nn.Module):
    """The two residual blocks of one U-Net level."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, kernel: int, groups: int):
        super().__init__()
        self.first = TemporalResBlock(in_ch, out_ch, emb_dim, kernel, groups)
        self.second = TemporalResBlock(out_ch, out_ch, emb_dim, kernel, groups)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x, emb), emb)


class TemporalUNet(nn.Module):
    """F(x_in, c_noise, cond) over sequences for :class:`adept.diffusion.edm.EDM`: ``x_in``
    ``[B, L, channels]``, ``c_noise`` ``[B]`` → ``[B, L, channels]``. The optional condition is
    either one vector per sequence, ``cond`` ``[B, cond_dim]``, added to the noise embedding,
    or one per row, ``cond`` ``[B, L, cond_channels]``, read beside ``x_in`` by the first
    convolution (DyDiff's action sequence); None when neither is set."""

    def __init__(
        self,
        channels: int,
        dim: int = 32,
        mults: tuple[int, ...] = (1, 2, 4),
        kernel: int = 5,
        groups: int = 8,
        cond_dim: int = 0,
        cond_channels: int = 0,
    ):
        super().__init__()
        if not mults:
            raise ValueError("the U-Net needs at least one level (mults)")
        if cond_dim and cond_channels:
            raise ValueError("a condition per sequence (cond_dim) or per row (cond_channels)")
        self.cond_channels = cond_channels
        self.levels = len(mults)
        emb_dim = 4 * dim
        self.noise = nn.Sequential(
            FourierEmbedding(dim), nn.Linear(dim, emb_dim), nn.Mish(), nn.Linear(emb_dim, emb_dim)
        )
        self.cond = (
            nn.Sequential(nn.Linear(cond_dim, emb_dim), nn.Mish(), nn.Linear(emb_dim, emb_dim))
            if cond_dim
            else None
        )
        widths = [dim * m for m in mults]
        self.inp = nn.Conv1d(channels + cond_channels, widths[0], kernel, padding=kernel // 2)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        previous = widths[0]
        for i, width in enumerate(widths):
            self.down.append(LevelBlocks(previous, width, emb_dim, kernel, groups))
            last = i == len(widths) - 1
            self.downsample.append(
                nn.Identity() if last else nn.Conv1d(width, width, 3, stride=2, padding=1)
            )
            previous = width
        self.mid = LevelBlocks(previous, previous, emb_dim, kernel, groups)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, width in reversed(list(enumerate(widths))):
            self.up.append(LevelBlocks(previous + width, width, emb_dim, kernel, groups))
            self.upsample.append(
                nn.Identity()
                if i == 0
                else nn.ConvTranspose1d(width, widths[i - 1], 4, stride=2, padding=1)
            )
            previous = width if i == 0 else widths[i - 1]
        self.out = nn.Sequential(
            ConvBlock(widths[0], widths[0], kernel, groups), nn.Conv1d(widths[0], channels, 1)
        )
        head = self.out[1]
        assert isinstance(head, nn.Conv1d)
        nn.init.zeros_(head.weight)
        assert head.bias is not None
        nn.init.zeros_(head.bias)

    def forward(
        self, x: torch.Tensor, c_noise: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        emb = self.noise(c_noise)
        if (self.cond is not None or self.cond_channels) and cond is None:
            raise ValueError("this network is conditional: pass cond")
        if self.cond is not None:
            emb = emb + self.cond(cond)
        elif self.cond_channels:
            assert cond is not None
            x = torch.cat([x, cond], dim=-1)
        length = x.shape[1]  # the output has x_in's channels, not the condition's
        multiple = 2 ** (self.levels - 1)
        padded = -length % multiple
        h = x.transpose(1, 2)  # [B, C, L]: convolutions run along time
        if padded:
            h = F.pad(h, (0, padded), mode="replicate")
        h = self.inp(h)
        skips = []
        for blocks, down in zip(self.down, self.downsample, strict=True):
            h = blocks(h, emb)
            skips.append(h)
            h = down(h)
        h = self.mid(h, emb)
        for blocks, up in zip(self.up, self.upsample, strict=True):
            h = up(blocks(torch.cat([h, skips.pop()], dim=1), emb))
        out = self.out(h)[..., :length]
        return out.transpose(1, 2)


def _groups(channels: int, groups: int) -> int:
    """The largest group count ≤ ``groups`` that divides ``channels``."""
    return max(g for g in range(1, min(groups, channels) + 1) if channels % g == 0)
