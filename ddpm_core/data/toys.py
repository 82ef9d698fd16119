r"""2-D toy distributions: two moons, a swiss roll, and Gaussian mixtures whose score is exact (chapter 8)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .._checks import check_int, check_number

__all__ = ["two_moons", "swiss_roll", "GaussianMixture2D"]


def _standardize(x: np.ndarray) -> Tensor:
    x = (x - x.mean(0)) / x.std(0)
    return torch.from_numpy(x.astype(np.float32))


def two_moons(n: int, noise: float = 0.05, seed: int | None = 0, standardize: bool = True) -> Tensor:
    """Two interleaving half circles (sklearn ``make_moons``), (n, 2) float32.

    ``standardize`` rescales each coordinate of this draw to mean 0, std 1, the scale of the
    diffusion's prior N(0, I).
    """
    from sklearn.datasets import make_moons

    check_int("n", n, 1)
    x, _ = make_moons(n_samples=n, noise=noise, random_state=seed)
    return _standardize(x) if standardize else torch.from_numpy(x.astype(np.float32))


def swiss_roll(n: int, noise: float = 0.5, seed: int | None = 0, standardize: bool = True) -> Tensor:
    """The 2-D swiss roll (sklearn ``make_swiss_roll``, coordinates x and z), (n, 2) float32."""
    from sklearn.datasets import make_swiss_roll

    check_int("n", n, 1)
    x, _ = make_swiss_roll(n_samples=n, noise=noise, random_state=seed)
    x = x[:, [0, 2]]
    return _standardize(x) if standardize else torch.from_numpy(x.astype(np.float32))


def _cpu64(x: Tensor) -> Tensor:
    """x in float64 on the CPU (differentiable): the mixture's exact formulas run there on any device."""
    return x.to("cpu", torch.float64)


class GaussianMixture2D:
    r"""A mixture of Gaussians in 2-D whose score is known exactly, also after diffusion.

    $p(x) = \sum_k \pi_k \, N(x; \mu_k, \Sigma_k)$. Diffusing to level $\bar\alpha$,
    $x_t = \sqrt{\bar\alpha}\,x_0 + \sqrt{1-\bar\alpha}\,\epsilon$ [DDPM eq. 4], gives again a
    mixture, with means $\sqrt{\bar\alpha}\mu_k$ and covariances $\bar\alpha\Sigma_k + (1-\bar\alpha)I$.
    Hence the exact score $\nabla_x \log p_t$ and the exact optimal noise prediction
    $\epsilon^*(x_t) = E[\epsilon \mid x_t]$, which Tweedie's formula ties together as
    $\epsilon^* = -\sqrt{1-\bar\alpha}\,\nabla\log p_t$ [SDE §3; DDPM eq. 11].
    Here :meth:`score_t` and :meth:`eps_star` are computed by two different routes (the mixture's
    gradient; Gaussian conditioning per component) so that the book can check that identity.
    All arithmetic is in float64; results are returned in the input's dtype.

    Args:
        means: (K, 2) component means.
        covs: (K, 2, 2) covariances, (K,) standard deviations (isotropic) or one float std.
        weights: (K,) mixture weights (normalized here); default uniform.
    """

    def __init__(self, means, covs=0.1, weights=None):
        self.means = torch.as_tensor(means, dtype=torch.float64)
        if self.means.dim() != 2 or self.means.shape[1] != 2:
            raise ValueError(f"means must have shape (K, 2), got {tuple(self.means.shape)}")
        K = self.means.shape[0]
        covs = torch.as_tensor(covs, dtype=torch.float64)
        if covs.dim() == 0:
            covs = covs.expand(K)
        if covs.dim() == 1:
            if covs.shape[0] != K or (covs <= 0).any():
                raise ValueError(f"covs as standard deviations must be {K} positive numbers")
            covs = covs[:, None, None] ** 2 * torch.eye(2, dtype=torch.float64)  # (K, 2, 2)
        if covs.shape != (K, 2, 2):
            raise ValueError(f"covs must have shape (K, 2, 2), (K,) or be a float, got {tuple(covs.shape)}")
        if (torch.linalg.eigvalsh(covs) <= 0).any():
            raise ValueError("every covariance in covs must be symmetric positive definite")
        self.covs = covs.clone()
        weights = torch.ones(K, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if weights.shape != (K,) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"weights must be {K} non-negative numbers with a positive sum")
        self.weights = weights / weights.sum()

    @classmethod
    def ring(cls, num_components: int = 8, radius: float = 2.0, std: float = 0.2) -> "GaussianMixture2D":
        """Equal-weight isotropic components evenly spaced on a circle (the classic 8-Gaussians toy)."""
        angles = torch.arange(num_components, dtype=torch.float64) * (2 * math.pi / num_components)
        return cls(radius * torch.stack([angles.cos(), angles.sin()], 1), std)

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    def __repr__(self) -> str:
        return f"GaussianMixture2D(num_components={self.num_components})"

    # -- the clean distribution ------------------------------------------------------------------
    def distribution(self, alpha_bar: float = 1.0) -> torch.distributions.MixtureSameFamily:
        r"""The torch distribution of $x_t$ at noise level $\bar\alpha$ (1.0 = the data itself)."""
        a = self._alpha_bar(alpha_bar)
        mix = torch.distributions.Categorical(probs=self.weights)
        comp = torch.distributions.MultivariateNormal(
            math.sqrt(a) * self.means, a * self.covs + (1 - a) * torch.eye(2, dtype=torch.float64))
        return torch.distributions.MixtureSameFamily(mix, comp)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw n points (n, 2) float32: a component k ~ π, then x = μ_k + L_k z with L_k L_kᵀ = Σ_k."""
        check_int("n", n, 1)
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)  # (n,)
        z = torch.randn(n, 2, generator=generator, dtype=torch.float64)  # (n, 2)
        L = torch.linalg.cholesky(self.covs)  # (K, 2, 2)
        return (self.means[k] + (L[k] @ z[:, :, None])[:, :, 0]).float()

    def log_prob(self, x: Tensor, alpha_bar: float = 1.0) -> Tensor:
        r"""$\log p_t(x)$ (nats), shape (N,), for x of shape (N, 2); ``alpha_bar=1`` is the data."""
        x = self._check_x(x)
        return self.distribution(alpha_bar).log_prob(_cpu64(x)).to(x.device, x.dtype)

    def score(self, x: Tensor) -> Tensor:
        r"""$\nabla_x \log p(x)$ of the clean mixture, (N, 2)."""
        return self.score_t(x, 1.0)

    # -- the diffused distribution -------------------------------------------------------------
    def _posterior(self, x: Tensor, a: float) -> tuple[Tensor, Tensor, Tensor]:
        """Component responsibilities r (N, K), and Σ_t^{-1}(x - √ᾱ μ_k) (N, K, 2)."""
        means_t = math.sqrt(a) * self.means  # (K, 2)
        covs_t = a * self.covs + (1 - a) * torch.eye(2, dtype=torch.float64)  # (K, 2, 2)
        diff = _cpu64(x)[:, None, :] - means_t[None]  # (N, K, 2)
        prec_diff = torch.linalg.solve(covs_t[None], diff[..., None])[..., 0]  # (N, K, 2)
        log_n = (-0.5 * (diff * prec_diff).sum(-1) - 0.5 * torch.logdet(covs_t)[None]
                 - math.log(2 * math.pi))  # (N, K), log N(x; μ_k,t, Σ_k,t)
        r = torch.softmax(log_n + self.weights.log()[None], dim=1)  # (N, K)
        return r, prec_diff, covs_t

    def score_t(self, x: Tensor, alpha_bar: float) -> Tensor:
        r"""Exact score of the diffused data, $\nabla_x \log p_t(x)$, (N, 2).

        $\nabla\log p_t(x) = -\sum_k r_k(x)\, \Sigma_{k,t}^{-1}(x - \sqrt{\bar\alpha}\mu_k)$ with
        responsibilities $r_k(x) \propto \pi_k N(x; \sqrt{\bar\alpha}\mu_k, \Sigma_{k,t})$.
        """
        x = self._check_x(x)
        r, prec_diff, _ = self._posterior(x, self._alpha_bar(alpha_bar))
        return (-(r[..., None] * prec_diff).sum(1)).to(x.device, x.dtype)

    def eps_star(self, xt: Tensor, alpha_bar: float) -> Tensor:
        r"""The optimal noise prediction $\epsilon^*(x_t) = E[\epsilon \mid x_t]$, (N, 2).

        Computed by Gaussian conditioning, not from the score: given component k, $\epsilon$ and
        $x_t$ are jointly Gaussian with $\mathrm{Cov}(\epsilon, x_t) = \sqrt{1-\bar\alpha}\,I$, so
        $E[\epsilon \mid x_t, k] = \sqrt{1-\bar\alpha}\,\Sigma_{k,t}^{-1}(x_t - \sqrt{\bar\alpha}\mu_k)$,
        and $\epsilon^* = \sum_k r_k(x_t) E[\epsilon \mid x_t, k]$. It is the minimizer of
        $L_\text{simple}$ at this noise level, and equals $-\sqrt{1-\bar\alpha}\,\nabla\log p_t(x_t)$.
        """
        xt = self._check_x(xt)
        a = self._alpha_bar(alpha_bar)
        r, _, covs_t = self._posterior(xt, a)
        means_t = math.sqrt(a) * self.means
        cov_eps_x = math.sqrt(1 - a) * torch.eye(2, dtype=torch.float64)  # Cov(ε, x_t | k)
        gain = cov_eps_x @ torch.linalg.inv(covs_t)  # (K, 2, 2): Cov(ε,x_t) Cov(x_t)^{-1}
        e_k = (gain[None] @ (_cpu64(xt)[:, None, :] - means_t[None])[..., None])[..., 0]  # (N, K, 2)
        return (r[..., None] * e_k).sum(1).to(xt.device, xt.dtype)

    def x0_star(self, xt: Tensor, alpha_bar: float) -> Tensor:
        r"""The optimal denoiser $E[x_0 \mid x_t] = (x_t - \sqrt{1-\bar\alpha}\,\epsilon^*)/\sqrt{\bar\alpha}$ [DDPM eq. 15]."""
        a = self._alpha_bar(alpha_bar)
        return (xt - math.sqrt(1 - a) * self.eps_star(xt, a)) / math.sqrt(a)

    # -- checks -------------------------------------------------------------------------------
    @staticmethod
    def _check_x(x) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 2 or x.shape[1] != 2:
            raise ValueError(f"x must have shape (N, 2), got {tuple(x.shape)}")
        return x

    @staticmethod
    def _alpha_bar(alpha_bar) -> float:
        if isinstance(alpha_bar, Tensor):
            if alpha_bar.numel() != 1:
                raise ValueError("alpha_bar must be a single number (one noise level per call)")
            alpha_bar = alpha_bar.item()
        return check_number("alpha_bar", alpha_bar, 0.0, 1.0, open_low=True)
