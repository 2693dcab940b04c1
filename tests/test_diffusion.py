"""The RL-free diffusion core against closed forms: DDPM's cosine schedule and posterior, EDM
(Karras et al. 2022)."""

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from adept.diffusion import EDM, EDMConfig, Preconditioning, edm_loss, heun_sample, sigma_steps
from adept.diffusion.ddpm import DiffusionSchedule, cosine_alphas_cumprod
from adept.diffusion.edm import sample_sigmas

MU, STD = 1.5, 0.7  # the 1-D Gaussian data of the numeric tests


def gaussian_denoiser(mu: float, std: float):
    """The optimal denoiser of x₀ ~ N(μ, std²): D*(x; σ) = E[x₀ | x₀ + σn = x]."""

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        shrink = (std**2 / (std**2 + sigma**2)).view(-1, *([1] * (x.dim() - 1)))
        return mu + shrink * (x - mu)

    return denoise


def test_cosine_schedule_closed_form_for_k10():
    K, s = 10, 0.008
    f = [math.cos(((t / K + s) / (1 + s)) * math.pi / 2) ** 2 for t in range(K + 1)]
    expected = [f[t] / f[0] for t in range(1, K + 1)]
    abar = cosine_alphas_cumprod(K)
    np.testing.assert_allclose(abar[:-1].numpy(), expected[:-1], rtol=1e-12)
    # the last step's β is clipped at 0.999, so ᾱ_K = ᾱ_{K-1} · 0.001
    assert abar[-1].item() == pytest.approx(expected[-2] * 0.001, rel=1e-9)
    assert (abar[1:] < abar[:-1]).all()


def test_posterior_coefficients_for_k10():
    sched = DiffusionSchedule(10)
    abar = cosine_alphas_cumprod(10)
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    beta = 1 - abar / abar_prev
    for k in range(10):
        expected_var = beta[k] * (1 - abar_prev[k]) / (1 - abar[k])
        assert sched.posterior_variance[k].item() == pytest.approx(
            expected_var.item(), rel=1e-5, abs=1e-9
        )
        assert sched.betas[k].item() == pytest.approx(beta[k].item(), rel=1e-5)
    assert sched.posterior_variance[0].item() == 0.0, "the last denoising step adds no noise"
    assert sched.posterior_mean_coef_x0[0].item() == pytest.approx(1.0)
    # x_k built by add_noise and x0 recovered by predict_x0 with the true noise
    x0, noise = torch.randn(5, 3), torch.randn(5, 3)
    xk = sched.add_noise(x0, noise, torch.full((5,), 4))
    torch.testing.assert_close(sched.predict_x0(xk, noise, 4), x0, rtol=1e-4, atol=1e-4)


def test_sigma_steps_are_rho_spaced_from_max_to_min_then_zero():
    sigmas = sigma_steps(5, sigma_min=0.002, sigma_max=80.0, rho=7.0).double()
    assert sigmas.shape == (6,) and sigmas[-1] == 0
    assert sigmas[0].item() == pytest.approx(80.0) and sigmas[4].item() == pytest.approx(0.002)
    assert bool((sigmas[1:] < sigmas[:-1]).all())
    # EDM eq. 5 at i = 2 of N = 5: the midpoint in σ^{1/ρ}
    middle = ((80.0 ** (1 / 7) + 0.002 ** (1 / 7)) / 2) ** 7
    assert sigmas[2].item() == pytest.approx(middle, rel=1e-5)
    with pytest.raises(ValueError, match="at least 2"):
        sigma_steps(1, 0.002, 80.0, 7.0)


def test_preconditioning_closed_forms_and_unit_variance_targets():
    p = Preconditioning(sigma_data=STD)
    sigma = torch.tensor([0.01, 0.5, 3.0, 40.0], dtype=torch.float64)
    s2, d2 = sigma**2, STD**2
    torch.testing.assert_close(p.c_skip(sigma), d2 / (s2 + d2))
    torch.testing.assert_close(p.c_out(sigma), sigma * STD / (s2 + d2).sqrt())
    torch.testing.assert_close(p.c_in(sigma), 1 / (s2 + d2).sqrt())
    torch.testing.assert_close(p.c_noise(sigma), sigma.log() / 4)
    torch.testing.assert_close(p.loss_weight(sigma), (s2 + d2) / (sigma * STD) ** 2)
    # the network's input c_in·x and its target (x₀ − c_skip·x)/c_out have unit variance
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(200_000, generator=g, dtype=torch.float64) * STD
    for s in sigma.tolist():
        x = x0 + s * torch.randn(x0.shape, generator=g, dtype=torch.float64)
        sig = torch.tensor(s, dtype=torch.float64)
        assert (p.c_in(sig) * x).std().item() == pytest.approx(1.0, abs=0.01), s
        target = (x0 - p.c_skip(sig) * x) / p.c_out(sig)
        assert target.std().item() == pytest.approx(1.0, abs=0.01), s


def test_training_sigmas_are_log_normal():
    g = torch.Generator().manual_seed(1)
    log_sigma = sample_sigmas(200_000, p_mean=-1.2, p_std=1.2, generator=g).log()
    assert log_sigma.mean().item() == pytest.approx(-1.2, abs=0.01)
    assert log_sigma.std().item() == pytest.approx(1.2, abs=0.01)


def test_the_optimal_denoiser_scores_one_per_dimension():
    """With σ_d the data's std, λ(σ)·E‖D* − x₀‖² = λ(σ) σ²σ_d²/(σ² + σ_d²) = 1 at every σ."""
    g = torch.Generator().manual_seed(2)
    x0 = MU + STD * torch.randn(100_000, 3, generator=g, dtype=torch.float64)
    p = Preconditioning(sigma_data=STD)
    loss = edm_loss(gaussian_denoiser(MU, STD), x0, p, p_mean=-1.2, p_std=1.2, generator=g)
    assert loss.shape == (100_000,)
    assert loss.mean().item() == pytest.approx(1.0, abs=0.02)
    # a denoiser that ignores its input scores far worse
    blind = edm_loss(lambda x, s: torch.full_like(x, MU), x0, p, -1.2, 1.2, generator=g)
    assert blind.mean().item() > 2.0


@pytest.mark.parametrize(("churn", "steps"), [(0.0, 32), (80.0, 128)], ids=["ode", "churn"])
def test_heun_sampler_recovers_a_gaussian(churn, steps):
    config = EDMConfig(sigma_data=STD, s_churn=churn)
    g = torch.Generator().manual_seed(3)
    x = heun_sample(gaussian_denoiser(MU, STD), (20_000, 2), steps, config, generator=g)
    assert x.shape == (20_000, 2)
    assert x.mean().item() == pytest.approx(MU, abs=0.02)
    assert x.std().item() == pytest.approx(STD, rel=0.02)


def test_the_ode_sampler_converges_at_second_order():
    """For Gaussian data the probability-flow ODE has the closed-form solution
    x(σ) = μ + (x(σ_max) − μ) √((s² + σ²) / (s² + σ_max²)); Heun's error against it falls ≈ 4×
    per doubling of the steps (Euler's would fall ≈ 2×)."""
    max_error = {}
    for n in (32, 64):
        config = EDMConfig(sigma_data=STD, s_churn=0.0)
        x = heun_sample(gaussian_denoiser(MU, STD), (1000, 1), n, config, generator=_seeded(3))
        start = torch.randn((1000, 1), generator=_seeded(3)) * config.sigma_max  # the same draw
        exact = MU + (start - MU) * STD / math.sqrt(STD**2 + config.sigma_max**2)
        max_error[n] = (x - exact).abs().max().item()
    assert max_error[64] < 0.02
    assert max_error[32] / max_error[64] > 3.0, max_error


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class _Affine(nn.Module):
    """F(x_in, c_noise, cond) = a·x_in + b: enough to fit a 1-D Gaussian's denoiser."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.zeros(()))
        self.b = nn.Parameter(torch.zeros(()))

    def forward(self, x, c_noise, cond):
        return self.a * x + self.b * torch.tanh(c_noise).view(-1, 1)


def test_edm_module_trains_and_samples():
    torch.manual_seed(5)
    model = EDM(_Affine(), EDMConfig(sigma_data=1.0))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    data = 0.5 * torch.randn(4096, 1)
    first = model.loss(data).mean().item()
    for _ in range(200):
        loss = model.loss(data[torch.randint(len(data), (512,))]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model.loss(data).mean().item() < first
    samples = model.sample((4096, 1), steps=16, generator=torch.Generator().manual_seed(6))
    assert samples.shape == (4096, 1) and torch.isfinite(samples).all()
    assert math.isclose(samples.std().item(), 0.5, rel_tol=0.25)


@pytest.mark.slow
def test_residual_mlp_starts_as_the_skip_and_learns_a_correlated_gaussian():
    from adept.diffusion.denoisers import ResidualMLP

    torch.manual_seed(7)
    model = EDM(ResidualMLP(2, hidden=64, depth=2), EDMConfig(sigma_data=0.5))
    x = torch.randn(8, 2)
    sigma = torch.full((8,), 2.0)
    torch.testing.assert_close(model.denoise(x, sigma), model.precond.c_skip(sigma)[:, None] * x)
    cov = torch.tensor([[0.25, 0.2], [0.2, 0.25]])  # correlation 0.8
    data = torch.randn(20_000, 2) @ torch.linalg.cholesky(cov).T
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(600):
        loss = model.loss(data[torch.randint(len(data), (256,))]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    samples = model.sample((4000, 2), steps=32, generator=_seeded(8))
    corr = torch.corrcoef(samples.T)[0, 1].item()
    assert corr == pytest.approx(0.8, abs=0.1), "the joint structure, not just the marginals"
    assert samples.std(0).tolist() == pytest.approx([0.5, 0.5], rel=0.15)


def test_a_conditional_residual_mlp_needs_its_condition():
    from adept.diffusion.denoisers import ResidualMLP

    net = ResidualMLP(3, hidden=16, depth=1, cond_dim=2)
    assert net(torch.randn(4, 3), torch.zeros(4), torch.randn(4, 2)).shape == (4, 3)
    with pytest.raises(ValueError, match="pass cond"):
        net(torch.randn(4, 3), torch.zeros(4))


def test_fourier_features_and_the_noise_level_reaching_the_network():
    from adept.diffusion.denoisers import FourierEmbedding, ResidualMLP

    torch.manual_seed(9)
    emb = FourierEmbedding(8, scale=16.0)
    c = torch.tensor([0.0, 0.3])
    angles = 2 * math.pi * c[:, None] * emb.freqs
    torch.testing.assert_close(emb(c), torch.cat([angles.cos(), angles.sin()], dim=-1))
    net = ResidualMLP(3, hidden=16, depth=2)
    with torch.no_grad():
        net.out[1].weight.normal_()  # past the zero initialization
    x = torch.randn(4, 3)
    low, high = net(x, torch.full((4,), -1.0)), net(x, torch.full((4,), 1.0))
    assert not torch.allclose(low, high), "F sees the noise level, not only c_in·x"


def test_gradient_guidance_follows_the_guided_probability_flow():
    """Guiding the optimal denoiser of N(μ, s²) with log g(x) = −(x − m)² / (2v) on channel 0 makes
    the probability-flow ODE linear, dx/dσ = σ (x − μ) / (s² + σ²) + λ σ (x − m) / v, whose
    solution is x(0) = s [x(σ_T) / Φ(σ_T) − ∫₀^{σ_T} b / Φ dσ] with Φ(σ) = √(s² + σ²) e^{λσ²/2v}
    and b(σ) = −σ μ / (s² + σ²) − λ σ m / v. The Heun sampler must land on it; channel 1, not
    guided, must come out exactly as without guidance."""
    from adept.diffusion.guidance import gradient_guided

    lam, m, v, sigma_max, n = 0.5, 2.0, 1.0, 3.0, 256
    config = EDMConfig(sigma_data=STD, sigma_max=sigma_max, s_churn=0.0)
    mask = torch.tensor([True, False])
    guided = gradient_guided(
        gaussian_denoiser(MU, STD), lambda x: -((x[:, 0] - m) ** 2) / (2 * v), lam, mask
    )
    x = heun_sample(guided, (500, 2), n, config, generator=_seeded(4))
    plain = heun_sample(gaussian_denoiser(MU, STD), (500, 2), n, config, generator=_seeded(4))
    assert torch.equal(x[:, 1], plain[:, 1]), "an unguided channel is left exactly as it was"

    sigma = torch.linspace(0.0, sigma_max, 200_001, dtype=torch.float64)
    phi = (STD**2 + sigma**2).sqrt() * torch.exp(lam * sigma**2 / (2 * v))
    b = -sigma * MU / (STD**2 + sigma**2) - lam * sigma * m / v
    integral = torch.trapezoid(b / phi, sigma)
    start = torch.randn((500, 2), generator=_seeded(4), dtype=torch.float32)[:, 0] * sigma_max
    exact = STD * (start.double() / phi[-1] - integral)
    error = (x[:, 0].double() - exact).abs().max().item()
    assert error < 2e-3, error
    assert (x[:, 0].mean() - plain[:, 0].mean()).item() > 0.1, "pulled toward m = 2"
    plain_denoiser = gaussian_denoiser(MU, STD)
    assert gradient_guided(plain_denoiser, lambda x: x.sum(1), 0.0) is plain_denoiser


def test_pgd_schedule_is_strongest_early_and_off_at_the_last_step():
    from adept.diffusion.guidance import guidance_schedule

    lam = guidance_schedule(8, coeff=2.0, cosine_coeff=0.3)
    expected = [2.0 * (1 - i / 8 + 0.3 * math.sin(math.pi * (i + 1) / 8)) for i in range(7)]
    torch.testing.assert_close(lam[:7], torch.tensor(expected, dtype=torch.float32))
    assert lam[-1].item() == 0.0


def test_policy_nudge_raises_log_pi_on_the_action_channel_only():
    """Data [s, a] ~ N(μ, std²) per dimension; a toy policy π(a | s) = N(a; s + 2, 0.5²). Zero
    guidance must leave the sampler exactly as it is; guidance must raise log π of the sampled
    actions and leave the state channel bit for bit."""
    from adept.diffusion.guidance import guidance_schedule, policy_nudge

    def log_pi(x):
        s, a = x[:, 0], x[:, 1]
        return -((a - s - 2.0) ** 2) / (2 * 0.5**2)

    mask = torch.tensor([False, True])
    config = EDMConfig(sigma_data=STD, s_churn=0.0)
    denoise, n = gaussian_denoiser(MU, STD), 64
    plain = heun_sample(denoise, (4000, 2), n, config, generator=_seeded(5))
    off = policy_nudge(log_pi, mask, guidance_schedule(n, coeff=0.0))
    unguided = heun_sample(denoise, (4000, 2), n, config, generator=_seeded(5), nudge=off)
    assert torch.equal(unguided, plain), "guidance 0 is the unguided sampler"
    on = policy_nudge(log_pi, mask, guidance_schedule(n, coeff=0.05))
    guided = heun_sample(denoise, (4000, 2), n, config, generator=_seeded(5), nudge=on)
    assert torch.equal(guided[:, 0], plain[:, 0]), "the states are not guided"
    gain = (log_pi(guided) - log_pi(plain)).mean().item()
    assert gain > 5.0, gain  # measured: mean log π −10.0 unguided → −0.16 guided
    assert torch.isfinite(guided).all()


def test_trainer_warms_up_then_anneals_to_zero():
    from adept.diffusion.training import DiffusionTrainer

    class Quadratic(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))

        def loss(self, batch):
            return ((self.w - batch) ** 2).sum(-1)

    trainer = DiffusionTrainer(Quadratic(), num_steps=20, lr=1.0, warmup=4, prefix="toy")
    lrs = [trainer.step(torch.zeros(2, 3))["toy/lr"].item() for _ in range(20)]
    # the lr reported after step k is the next step's: 0.1 + 0.9 k/4 during the warm-up
    assert lrs[:3] == pytest.approx([0.325, 0.55, 0.775])
    assert lrs[3] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in itertools.pairwise(lrs[3:])), "cosine: non-increasing"
