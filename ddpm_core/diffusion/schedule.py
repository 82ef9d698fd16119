r"""Noise schedules $\beta_1, \dots, \beta_T$ and every per-timestep quantity derived from them (chapter 1).

Arrays have length $T+1$ and are indexed by the paper's timestep $t$ itself: index 0 is clean
data ($\beta_0 = 0$, $\bar\alpha_0 = 1$), index $t \in 1..T$ is step $t$. Everything is computed
in float64 (products of a thousand numbers near 1 lose digits in float32) and stored as float32.
$1 - \bar\alpha_t$ is stored too: computed from a float32 $\bar\alpha_t \approx 1$ it would keep
only a few digits at small t ($1 - \bar\alpha_1 = \beta_1 = 10^{-4}$ is off by 1.7e-4 relative).
Every per-t coefficient a sampler needs is computed here, once per schedule, never per step.
A schedule round-trips through a plain dict: ``NoiseSchedule.from_config(s.to_config())``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .._checks import check_choice, check_int, check_number

REVERSE_VARIANCES = ("beta", "beta_tilde")
"""The two fixed choices of the reverse variance sigma_t^2 in DDPM §3.2."""
SCHEDULE_NAMES = ("linear", "cosine", "custom")
"""The constructors a schedule config can name."""


@dataclass(frozen=True)
class NoiseSchedule:
    r"""A variance schedule and the quantities of $q$ derived from it, all of shape (T+1,).

    Attributes:
        name: "linear", "cosine" or "custom".
        betas: $\beta_t$, with ``betas[0] = 0``.
        alphas: $\alpha_t = 1 - \beta_t$.
        alpha_bars: $\bar\alpha_t = \prod_{s=1}^t \alpha_s$, with ``alpha_bars[0] = 1``.
        one_minus_alpha_bars: $1 - \bar\alpha_t$, the variance of $q(x_t|x_0)$, computed in float64.
        beta_tildes: $\tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t$ [DDPM eq. 7]
            (``beta_tildes[0] = 0`` and, since $\bar\alpha_0 = 1$, ``beta_tildes[1] = 0``).
        snr: $\mathrm{SNR}(t) = \bar\alpha_t / (1-\bar\alpha_t)$ [VDM eq. 4]; ``snr[0] = inf``.
        posterior_coef_x0: $\frac{\sqrt{\bar\alpha_{t-1}}\beta_t}{1-\bar\alpha_t}$, the weight of
            $x_0$ in $\tilde\mu_t$ [DDPM eq. 7].
        posterior_coef_xt: $\frac{\sqrt{\alpha_t}(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}$, the weight
            of $x_t$ in $\tilde\mu_t$ [DDPM eq. 7].
    """

    name: str
    betas: Tensor
    alphas: Tensor
    alpha_bars: Tensor
    one_minus_alpha_bars: Tensor
    beta_tildes: Tensor
    snr: Tensor
    posterior_coef_x0: Tensor
    posterior_coef_xt: Tensor
    config: dict = field(default_factory=dict, repr=False, compare=False)
    """The constructor and arguments that built it (see :meth:`to_config`)."""

    def __post_init__(self) -> None:
        # sigma_t^2 for each choice of DDPM §3.2, once per schedule (see reverse_variances)
        tilde = None
        if self.num_steps >= 2:
            tilde = self.beta_tildes.clone()
            tilde[1] = tilde[2]
        object.__setattr__(self, "_reverse_variances", {"beta": self.betas, "beta_tilde": tilde})

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def from_betas(cls, betas, name: str = "custom") -> "NoiseSchedule":
        r"""Build a schedule from $\beta_1..\beta_T$ (length T; each in (0, 1))."""
        betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
        return cls._build(betas, name, {"name": "custom", "betas": betas.tolist()})

    @classmethod
    def _build(cls, betas: Tensor, name: str, config: dict) -> "NoiseSchedule":
        """Every quantity from float64 betas (T,), computed in float64, stored as float32."""
        if betas.numel() < 1:
            raise ValueError("betas must hold at least one value (T >= 1)")
        if not torch.isfinite(betas).all() or (betas <= 0).any() or (betas >= 1).any():
            raise ValueError(
                f"every beta must lie in (0, 1), got values in [{betas.min().item():.3g}, {betas.max().item():.3g}]"
            )
        betas = torch.cat([betas.new_zeros(1), betas])  # (T+1,), betas[0] = 0
        alphas = 1.0 - betas
        alpha_bars = torch.cumprod(alphas, dim=0)  # alpha_bars[0] = 1
        alpha_bars_prev = torch.cat([alpha_bars.new_ones(1), alpha_bars[:-1]])
        one_minus = 1.0 - alpha_bars
        denom = torch.where(one_minus > 0, one_minus, torch.ones_like(one_minus))  # t=0: 0/0 -> 0
        beta_tildes = torch.where(one_minus > 0, (1.0 - alpha_bars_prev) / denom * betas, 0.0)
        snr = alpha_bars / one_minus  # snr[0] = 1/0 = inf
        coef_x0 = torch.where(one_minus > 0, alpha_bars_prev.sqrt() * betas / denom, 0.0)
        coef_xt = torch.where(one_minus > 0, alphas.sqrt() * (1.0 - alpha_bars_prev) / denom, 0.0)
        f32 = lambda v: v.to(torch.float32)  # noqa: E731
        return cls(name, f32(betas), f32(alphas), f32(alpha_bars), f32(one_minus), f32(beta_tildes), f32(snr),
                   f32(coef_x0), f32(coef_xt), config)

    @classmethod
    def linear(cls, num_steps: int = 1000, beta_1: float = 1e-4, beta_T: float = 0.02) -> "NoiseSchedule":
        r"""DDPM's linear schedule, $\beta_t$ evenly spaced from $\beta_1$ to $\beta_T$ [DDPM §4].

        The defaults are the paper's: $T = 1000$, $\beta_1 = 10^{-4}$, $\beta_T = 0.02$.
        """
        check_int("num_steps", num_steps, 1)
        for name, b in (("beta_1", beta_1), ("beta_T", beta_T)):
            check_number(name, b, 0.0, 1.0, open_low=True, open_high=True)
        return cls._build(torch.linspace(beta_1, beta_T, num_steps, dtype=torch.float64), "linear",
                          {"name": "linear", "num_steps": num_steps, "beta_1": beta_1, "beta_T": beta_T})

    @classmethod
    def cosine(cls, num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> "NoiseSchedule":
        r"""The cosine schedule of Improved DDPM [IDDPM eq. 17].

        $\bar\alpha_t = f(t)/f(0)$ with $f(t) = \cos^2\!\big(\frac{t/T + s}{1 + s}\cdot\frac{\pi}{2}\big)$,
        then $\beta_t = \min(1 - \bar\alpha_t/\bar\alpha_{t-1},\ \text{max\_beta})$. The clip keeps
        $\beta_T < 1$ (unclipped, $\bar\alpha_T = 0$ and $\beta_T = 1$); $\bar\alpha_t$ is then
        recomputed from the clipped $\beta_t$, as in IDDPM's code.
        """
        check_int("num_steps", num_steps, 1)
        check_number("s", s, 0.0, 1.0, open_high=True)
        check_number("max_beta", max_beta, 0.0, 1.0, open_low=True, open_high=True)
        t = torch.arange(num_steps + 1, dtype=torch.float64)
        f = torch.cos((t / num_steps + s) / (1 + s) * math.pi / 2) ** 2
        alpha_bar = f / f[0]
        betas = (1.0 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)
        return cls._build(betas, "cosine", {"name": "cosine", "num_steps": num_steps, "s": s, "max_beta": max_beta})

    # -- plain configs ------------------------------------------------------------------------
    def to_config(self) -> dict:
        """The plain dict (JSON and ``torch.load(weights_only=True)`` safe) that rebuilds this schedule."""
        return dict(self.config)

    @classmethod
    def from_config(cls, config: dict) -> "NoiseSchedule":
        """The schedule a :meth:`to_config` dict describes.

        Also reads the checkpoints written before ``to_config`` existed, whose dict holds every
        constructor's arguments at once (``name``, ``num_steps``, ``beta_1``, ``beta_T``,
        ``cosine_s``): each constructor takes only its own.
        """
        name = config.get("name")
        check_choice("config['name']", name, SCHEDULE_NAMES)
        if name == "custom":
            return cls.from_betas(config["betas"])
        if name == "linear":
            return cls.linear(config["num_steps"], config["beta_1"], config["beta_T"])
        return cls.cosine(config["num_steps"], config.get("s", config.get("cosine_s", 0.008)),
                          config.get("max_beta", 0.999))

    # -- helpers ------------------------------------------------------------------------------
    @property
    def num_steps(self) -> int:
        """T, the number of diffusion steps."""
        return self.betas.shape[0] - 1

    @property
    def device(self) -> torch.device:
        return self.betas.device

    def to(self, device) -> "NoiseSchedule":
        """A copy with every array on ``device``."""
        return dataclasses.replace(self, **{
            f.name: getattr(self, f.name).to(device)
            for f in dataclasses.fields(self) if isinstance(getattr(self, f.name), Tensor)
        })

    def reverse_variances(self, variance: str = "beta_tilde") -> Tensor:
        r"""$\sigma_t^2$ of $p_\theta(x_{t-1}|x_t)$ for each t, shape (T+1,) [DDPM §3.2].

        ``"beta_tilde"``: $\sigma_t^2 = \tilde\beta_t$, the posterior variance (optimal when $x_0$ is
        a single point); ``"beta"``: $\sigma_t^2 = \beta_t$ (optimal for $x_0 \sim N(0, I)$).
        At $t = 1$, $\tilde\beta_1 = 0$ would make the decoder $p_\theta(x_0|x_1)$ a point mass, so
        ``"beta_tilde"`` uses $\tilde\beta_2$ there, as DDPM's and IDDPM's code do (sampling adds no
        noise at $t = 1$ either way).
        """
        check_choice("variance", variance, REVERSE_VARIANCES)
        v = self._reverse_variances[variance]
        if v is None:
            raise ValueError("variance='beta_tilde' needs T >= 2 (beta_tilde_1 = 0); use variance='beta'")
        return v

    def __repr__(self) -> str:
        return (f"NoiseSchedule(name={self.name!r}, num_steps={self.num_steps}, "
                f"beta_1={self.betas[1].item():.3g}, beta_T={self.betas[-1].item():.3g}, "
                f"alpha_bar_T={self.alpha_bars[-1].item():.3g}, device={self.device})")
