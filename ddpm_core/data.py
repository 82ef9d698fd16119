r"""Data: 8×8 digits (offline), MNIST / Fashion-MNIST (online), and 2-D toy distributions.

Introduced in chapter 6 (Training); the 2-D toys and :class:`GaussianMixture2D` in chapter 8.

Images follow one convention (DESIGN.md §6): pixels are first put on the 8-bit grid
{0, ..., 255} like any image file, then scaled to $[-1, 1]$ by $x = v / 127.5 - 1$ [DDPM §3.3],
so that the bound in bits/dim is the usual 8-bit one and the 256-bin decoder applies alike to
every dataset. Loaders return ``(x, y)``: x (N, C, H, W) float32 in $[-1, 1]$, y (N,) int64.
"""

from __future__ import annotations

import math
import socket
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "load_digits", "load_mnist", "to_image", "from_image",
    "two_moons", "swiss_roll", "GaussianMixture2D",
    "DIGITS_TEST_SIZE", "DIGITS_SPLIT_SEED",
]

PIXEL_LEVELS = 256
"""8-bit images: 256 gray levels, the grid the discretized decoder assumes [DDPM §3.3]."""
HALF_RANGE = (PIXEL_LEVELS - 1) / 2
"""127.5: maps {0..255} onto [-1, 1] by v / 127.5 - 1."""
DIGITS_MAX = 16
"""sklearn's digits hold integer intensities 0..16 (4×4 pixel counts of the original 32×32 bitmaps)."""
DIGITS_TEST_SIZE = 300
"""Held-out digits (of 1,797): 1,497 train / 300 test, enough to measure a classifier to ~±1 %."""
DIGITS_SPLIT_SEED = 0
"""The fixed seed of the stratified train/test split, so every chapter sees the same split."""
DOWNLOAD_TIMEOUT_S = 10.0
"""Socket timeout while downloading MNIST: fail fast (no hang) when there is no network."""


# ---------------------------------------------------------------------------------------------
# Pixel conventions
# ---------------------------------------------------------------------------------------------
def to_image(x: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Map model space [-1, 1] to image space: float in [0, 1] (default) or uint8 in {0..255}.

    Values outside [-1, 1] (a sampler's overshoot) are clipped.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    v = ((x.detach().float().clamp(-1, 1) + 1) * HALF_RANGE)  # [0, 255]
    if dtype == torch.uint8:
        return v.round().to(torch.uint8)
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be torch.uint8 or a float dtype, got {dtype}")
    return (v / (PIXEL_LEVELS - 1)).to(dtype)


def from_image(img) -> Tensor:
    """Map an image to model space [-1, 1]: uint8 {0..255} → v/127.5 − 1; float [0, 1] → 2v − 1."""
    img = torch.as_tensor(img)
    if img.dtype == torch.uint8:
        return img.float() / HALF_RANGE - 1.0
    if not img.is_floating_point():
        raise TypeError(f"img must be uint8 or float in [0, 1], got dtype {img.dtype}")
    if img.numel() and (img.min() < 0 or img.max() > 1):
        raise ValueError("a float img must lie in [0, 1]; pass uint8 for {0..255} images")
    return img.float() * 2.0 - 1.0


def _resize_8bit(v: Tensor, image_size: int) -> Tensor:
    """Bilinear (antialiased) resize of 8-bit images (N, C, H, W) kept on the 8-bit grid."""
    if v.shape[-1] == image_size and v.shape[-2] == image_size:
        return v
    out = F.interpolate(v.float(), size=(image_size, image_size), mode="bilinear",
                        align_corners=False, antialias=True)
    return out.round().clamp(0, PIXEL_LEVELS - 1).to(torch.uint8)


def _check_image_size(image_size) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 2:
        raise ValueError(f"image_size must be an int >= 2, got {image_size!r}")
    return image_size


# ---------------------------------------------------------------------------------------------
# Digits (offline) and MNIST (online)
# ---------------------------------------------------------------------------------------------
def load_digits(image_size: int = 8, split: str = "train") -> tuple[Tensor, Tensor]:
    """scikit-learn's 1,797 handwritten digits as 8-bit gray images scaled to [-1, 1].

    Each 0..16 intensity $v$ becomes the 8-bit level $\\mathrm{round}(255 v / 16)$, then
    $x = \\text{level} / 127.5 - 1$. With ``image_size != 8`` the 8-bit images are resized
    (bilinear, antialiased) and rounded back onto the 8-bit grid. The train/test split is a fixed
    stratified split (seed :data:`DIGITS_SPLIT_SEED`): 1,497 train, 300 test.

    Args:
        image_size: output height and width (8 native; 16 for a harder problem).
        split: "train", "test" or "all".

    Returns:
        x (N, 1, image_size, image_size) float32 in [-1, 1]; y (N,) int64 labels 0..9.
    """
    from sklearn.datasets import load_digits as _sk_load_digits
    from sklearn.model_selection import train_test_split

    _check_image_size(image_size)
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    bunch = _sk_load_digits()
    levels = np.rint(bunch.images * (PIXEL_LEVELS - 1) / DIGITS_MAX).astype(np.uint8)  # (1797, 8, 8)
    labels = bunch.target.astype(np.int64)
    if split != "all":
        idx_train, idx_test = train_test_split(np.arange(len(labels)), test_size=DIGITS_TEST_SIZE,
                                               random_state=DIGITS_SPLIT_SEED, stratify=labels)
        idx = np.sort(idx_train if split == "train" else idx_test)
        levels, labels = levels[idx], labels[idx]
    v = _resize_8bit(torch.from_numpy(levels)[:, None], image_size)  # (N, 1, S, S) uint8
    return from_image(v), torch.from_numpy(labels)


def load_mnist(root: str | Path = "data", fashion: bool = False, split: str = "train",
               image_size: int = 28, download: bool = True,
               timeout: float = DOWNLOAD_TIMEOUT_S) -> tuple[Tensor, Tensor]:
    """MNIST (or Fashion-MNIST) through torchvision, scaled to [-1, 1]; needs the network once.

    Fails fast with a clear error when the files are missing and cannot be downloaded (the socket
    timeout is set to ``timeout`` seconds during the download only, then restored); offline, use
    :func:`load_digits`.

    Args:
        root: folder for the downloaded files.
        fashion: Fashion-MNIST instead of MNIST.
        split: "train" (60,000) or "test" (10,000).
        image_size: 28 native; other sizes are resized on the 8-bit grid.
        download: try to download missing files.
        timeout: seconds before a download attempt gives up.

    Returns:
        x (N, 1, image_size, image_size) float32 in [-1, 1]; y (N,) int64 labels 0..9.
    """
    _check_image_size(image_size)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    try:
        from torchvision import datasets
    except ImportError as e:  # pragma: no cover - torchvision is in requirements.txt
        raise ImportError("load_mnist needs torchvision (pip install torchvision); "
                          "offline, use ddpm_core.load_digits() instead") from e
    cls = datasets.FashionMNIST if fashion else datasets.MNIST
    name = "Fashion-MNIST" if fashion else "MNIST"
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        ds = cls(root=str(root), train=(split == "train"), download=download)
    except Exception as e:  # torchvision raises RuntimeError/URLError/OSError on a failed download
        raise RuntimeError(
            f"could not load {name} from {str(root)!r} ({type(e).__name__}: {e}). It needs the network "
            f"once (or the files placed under {str(root)!r}). Offline, use ddpm_core.load_digits() "
            "(8×8 digits shipped with scikit-learn)."
        ) from e
    finally:
        socket.setdefaulttimeout(old_timeout)
    v = _resize_8bit(ds.data[:, None], image_size)  # (N, 1, S, S) uint8
    return from_image(v), ds.targets.long()


# ---------------------------------------------------------------------------------------------
# 2-D toys
# ---------------------------------------------------------------------------------------------
def _standardize(x: np.ndarray) -> Tensor:
    x = (x - x.mean(0)) / x.std(0)
    return torch.from_numpy(x.astype(np.float32))


def two_moons(n: int, noise: float = 0.05, seed: int | None = 0, standardize: bool = True) -> Tensor:
    """Two interleaving half circles (sklearn ``make_moons``), (n, 2) float32.

    ``standardize`` rescales each coordinate of this draw to mean 0, std 1, the scale of the
    diffusion's prior N(0, I).
    """
    from sklearn.datasets import make_moons

    _check_n(n)
    x, _ = make_moons(n_samples=n, noise=noise, random_state=seed)
    return _standardize(x) if standardize else torch.from_numpy(x.astype(np.float32))


def swiss_roll(n: int, noise: float = 0.5, seed: int | None = 0, standardize: bool = True) -> Tensor:
    """The 2-D swiss roll (sklearn ``make_swiss_roll``, coordinates x and z), (n, 2) float32."""
    from sklearn.datasets import make_swiss_roll

    _check_n(n)
    x, _ = make_swiss_roll(n_samples=n, noise=noise, random_state=seed)
    x = x[:, [0, 2]]
    return _standardize(x) if standardize else torch.from_numpy(x.astype(np.float32))


def _check_n(n) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")


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
        _check_n(n)
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
        if isinstance(alpha_bar, bool) or not isinstance(alpha_bar, (int, float)):
            raise TypeError(f"alpha_bar must be a float in (0, 1], got {type(alpha_bar).__name__}")
        if not 0.0 < float(alpha_bar) <= 1.0:
            raise ValueError(f"alpha_bar must lie in (0, 1], got {alpha_bar}")
        return float(alpha_bar)
