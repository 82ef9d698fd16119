r"""Importance sampling of t for the bound: draw t where its terms are large, weight by 1/(T p_t) (chapter 9).

The one-sample estimate of the bound's sum $\sum_{t=1}^T L_{t-1}$ draws one t and returns
$L_{t-1}/p_t$; for any $p$ with $p_t > 0$ its mean is the sum. With $p_t = 1/T$ (uniform) it is
DDPM's $T L_{t-1}$, whose variance is huge because a few small t carry most of the bound.
The variance, per image, is $\sum_t L_{t-1}^2/p_t - (\sum_t L_{t-1})^2$, smallest for
$p_t \propto |L_{t-1}|$. Improved DDPM estimates that from training: keep the last 10 values of
each term and draw $p_t \propto \sqrt{E[L_{t-1}^2]}$, uniformly until every t has its 10 values
[IDDPM eq. 17 and §3.3; improved-diffusion's ``LossSecondMomentResampler``, which also mixes in a
small uniform part so that no $p_t$ is 0].
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_int, check_number, check_tensor, check_timesteps

__all__ = ["ImportanceTSampler", "estimator_variance", "importance_probs"]


def importance_probs(second_moments: Tensor, uniform_prob: float = 0.001) -> Tensor:
    r"""$p_t \propto \sqrt{E[L_{t-1}^2]}$, mixed as $(1-u)\,p_t + u/T$ [IDDPM eq. 17]: (T,) probabilities.

    Args:
        second_moments: (T,) $E[L_{t-1}^2]$ for t = 1..T (index i is t = i + 1).
        uniform_prob: $u \in [0, 1]$, the uniform part.
    """
    check_tensor("second_moments", second_moments)
    if second_moments.dim() != 1 or (second_moments < 0).any():
        raise ValueError("second_moments must be a (T,) tensor of non-negative values")
    u = check_number("uniform_prob", uniform_prob, 0.0, 1.0)
    p = second_moments.double().sqrt()
    p = p / p.sum() if p.sum() > 0 else torch.full_like(p, 1.0 / len(p))
    return (1.0 - u) * p + u / len(p)


def estimator_variance(terms: Tensor, probs: Tensor | None = None) -> Tensor:
    r"""Variance of the one-sample estimate $L_{t-1}/p_t$, $t \sim p$, of $\sum_t L_{t-1}$, per image: (B,).

    $\mathrm{Var} = \sum_t L_{t-1}^2/p_t - (\sum_t L_{t-1})^2$, exactly (no sampling).

    Args:
        terms: (B, T) each image's terms $L_{t-1}$ for t = 1..T (e.g. ``elbo_terms(...).terms[:, 1:]``).
        probs: (T,) the distribution of t; default uniform, $1/T$.
    """
    check_tensor("terms", terms)
    if terms.dim() != 2:
        raise ValueError(f"terms must be (B, T), got shape {tuple(terms.shape)}")
    terms = terms.double()
    T = terms.shape[1]
    probs = torch.full((T,), 1.0 / T, dtype=torch.float64) if probs is None else probs.double()
    if probs.shape != (T,) or (probs <= 0).any() or abs(float(probs.sum()) - 1.0) > 1e-6:
        raise ValueError(f"probs must be a positive (T,) = ({T},) distribution")
    probs = probs.to(terms.device)
    return (terms.pow(2) / probs).sum(1) - terms.sum(1).pow(2)


class ImportanceTSampler:
    r"""Draws t in 1..T with $p_t \propto \sqrt{E[L_{t-1}^2]}$ from the last ``history`` losses of each t [IDDPM §3.3].

    Uniform until every t has ``history`` values. ``sample`` returns t and the weights
    $1/(T p_t)$ that keep the weighted mean of $T\,L_{t-1}$ unbiased; ``update`` records the
    losses of a batch.

    Args:
        num_steps: T.
        history: values kept per t (the paper's 10).
        uniform_prob: the uniform part mixed into $p$ (improved-diffusion's 0.001).
    """

    def __init__(self, num_steps: int, history: int = 10, uniform_prob: float = 0.001):
        self.num_steps = check_int("num_steps", num_steps, 1)
        self.history = check_int("history", history, 1)
        self.uniform_prob = check_number("uniform_prob", uniform_prob, 0.0, 1.0)
        self._losses = torch.zeros(num_steps, history, dtype=torch.float64)  # row i: t = i + 1
        self._count = torch.zeros(num_steps, dtype=torch.long)

    @property
    def ready(self) -> bool:
        """Whether every t has its ``history`` values (before that, t is uniform)."""
        return bool((self._count >= self.history).all())

    def probs(self) -> Tensor:
        """(T,) the current distribution of t = 1..T."""
        if not self.ready:
            return torch.full((self.num_steps,), 1.0 / self.num_steps, dtype=torch.float64)
        return importance_probs(self._losses.pow(2).mean(1), self.uniform_prob)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(B,) int64 timesteps in 1..T and (B,) float weights $1/(T p_t)$ (all 1 while uniform)."""
        check_int("batch_size", batch_size, 1)
        p = self.probs()
        idx = torch.multinomial(p, batch_size, replacement=True, generator=generator)
        return idx + 1, (1.0 / (self.num_steps * p[idx])).float()

    def update(self, t: Tensor, losses: Tensor) -> None:
        """Record each image's loss at its t (a FIFO of ``history`` values per t)."""
        t = check_timesteps(t, self.num_steps).cpu()
        check_tensor("losses", losses)
        if losses.shape != t.shape:
            raise ValueError(f"losses must have shape {tuple(t.shape)}, like t; got {tuple(losses.shape)}")
        for t_i, loss in zip(t.tolist(), losses.detach().double().cpu().tolist()):
            row = self._losses[t_i - 1]
            self._losses[t_i - 1] = torch.cat([row[1:], row.new_tensor([loss])])  # drop the oldest
            self._count[t_i - 1] += 1
