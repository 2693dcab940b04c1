"""The temporal U-Net: shapes at any length, determinism, the zero start, its inputs reach the
output, and it learns the joint structure of short trajectories under EDM."""

import pytest
import torch

from adept.diffusion import EDM, EDMConfig
from adept.diffusion.unet import UNET_SIZES, TemporalUNet


@pytest.mark.parametrize("length", [1, 16, 31, 32])
def test_shapes_at_any_length_and_a_zero_start(length):
    torch.manual_seed(0)
    net = TemporalUNet(channels=5, dim=16, mults=(1, 2, 4), groups=4)
    x = torch.randn(3, length, 5)
    out = net(x, torch.randn(3))
    assert out.shape == (3, length, 5)
    assert torch.equal(out, torch.zeros_like(out)), "the head starts at zero"
    model = EDM(net, EDMConfig())
    sigma = torch.full((3,), 2.0)
    torch.testing.assert_close(
        model.denoise(x, sigma), model.precond.c_skip(sigma)[:, None, None] * x
    )


def _randomize_head(net: TemporalUNet) -> None:
    for p in net.out.parameters():
        torch.nn.init.normal_(p, std=0.1)


def test_deterministic_and_every_input_reaches_the_output():
    def make():
        torch.manual_seed(1)
        net = TemporalUNet(channels=3, dim=8, mults=(1, 2), groups=2, cond_dim=4).eval()
        _randomize_head(net)
        return net

    a, b = make(), make()
    x, c, cond = torch.randn(2, 12, 3), torch.randn(2), torch.randn(2, 4)
    out = a(x, c, cond)
    assert torch.equal(out, b(x, c, cond)), "same seed, same network, same output"
    assert not torch.allclose(out, a(x, c + 1.0, cond)), "the noise level reaches the output"
    assert not torch.allclose(out, a(x, c, cond + 1.0)), "the condition reaches the output"
    # time is local: changing the last step moves the first step's output less than its own
    x2 = x.clone()
    x2[:, -1] += 5.0
    delta = (a(x2, c, cond) - out).abs().sum(-1)  # [B, L]
    assert (delta[:, -1] > delta[:, 0]).all()
    with pytest.raises(ValueError, match="conditional"):
        a(x, c)


def test_a_per_row_condition_reaches_its_own_rows():
    """``cond_channels``: a condition per row (DyDiff's actions), read beside x_in; the output
        keeps x_in's channels, and changing one row's condition moves the outputs around that row
    most (convolutions are local in time)."""
    torch.manual_seed(3)
    net = TemporalUNet(channels=3, dim=8, mults=(1, 2), groups=2, cond_channels=2).eval()
    _randomize_head(net)
    x, c, cond = torch.randn(2, 12, 3), torch.randn(2), torch.randn(2, 12, 2)
    out = net(x, c, cond)
    assert out.shape == (2, 12, 3)
    moved = cond.clone()
    moved[:, 7] += 5.0
    delta = (net(x, c, moved) - out).abs().sum(-1)  # [B, L]
    assert ((delta.argmax(dim=1) - 7).abs() <= 2).all() and (delta[:, 0] < delta[:, 7]).all()
    with pytest.raises(ValueError, match="conditional"):
        net(x, c)
    with pytest.raises(ValueError, match=r"per sequence .* or per row"):
        TemporalUNet(channels=3, cond_dim=2, cond_channels=2)


def test_named_sizes_build():
    for name in ("cpu", "dydiff"):  # 'pgd' (1024 wide) builds too, but takes seconds
        size = UNET_SIZES[name]
        net = TemporalUNet(channels=4, dim=size.dim, mults=size.mults, kernel=size.kernel)
        assert net(torch.randn(1, 8, 4), torch.zeros(1)).shape == (1, 8, 4)


@pytest.mark.slow
def test_learns_the_joint_structure_of_straight_lines():
    """Trajectories x_t = a + b·t/L with random a, b: every sample must come out (nearly)
    straight, a property of the whole sequence that no per-step marginal has."""
    torch.manual_seed(2)
    length = 16
    t = torch.arange(length) / length
    params = torch.randn(4096, 2)
    data = (params[:, :1] + 2 * params[:, 1:] * t)[..., None]  # [N, L, 1]
    model = EDM(TemporalUNet(channels=1, dim=16, mults=(1, 2), groups=4), EDMConfig())
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(200):
        loss = model.loss(data[torch.randint(len(data), (128,))]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    samples = model.sample((256, length, 1), steps=24, generator=torch.Generator().manual_seed(3))

    def bend(x):  # mean |second difference| along time
        return (x[:, 2:] - 2 * x[:, 1:-1] + x[:, :-2]).abs().mean().item()

    spread = samples.std().item()
    # measured: bend 0.045 on samples of spread 1.7; noise of that spread 3.3 (the untrained
    # network's samples are such noise: D = c_skip x)
    assert bend(samples) < 0.1 * bend(torch.randn_like(samples) * spread), bend(samples)
    assert 0.5 < spread < 2.0
