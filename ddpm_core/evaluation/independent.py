r"""A second, independent feature extractor for the Fréchet distance on digits (chapter 10).

A Fréchet distance depends on its features: two extractors can rank the same two samplers in
opposite orders. So the book reports sampler comparisons under two of them and concludes only what
both support. The first is :class:`~ddpm_core.evaluation.classifier.DigitsClassifier` (a small CNN
in PyTorch, chapter 7). This one shares nothing with it but the data: a scikit-learn
``MLPClassifier`` (one hidden layer of 64 ReLU units, float64, trained by scikit-learn's Adam) on
the flattened 8×8 digits of the train split. Its features are the hidden activations
$\max(0, W_1 x + b_1)$, computed in NumPy.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
from torch import Tensor

from .._checks import check_int, check_tensor
from ..data.datasets import load_digits
from .metrics import digits_reference_split, frechet_distance

__all__ = ["independent_digits_model", "independent_features", "independent_digits_fid",
           "independent_digits_fid_floor", "INDEPENDENT_HIDDEN"]

INDEPENDENT_HIDDEN = 64
"""Hidden units of the MLP: its feature dimension (the CNN's is 128)."""
MLP_SEED = 0
"""``random_state`` of the MLP: its initial weights and the order of its mini-batches."""


@functools.lru_cache(maxsize=1)
def independent_digits_model():
    """The fitted scikit-learn ``MLPClassifier`` (trained once per process, about a second)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(split="train")
    mlp = MLPClassifier(hidden_layer_sizes=(INDEPENDENT_HIDDEN,), activation="relu", alpha=1e-4,
                        max_iter=300, random_state=MLP_SEED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a fixed budget: the same fit everywhere
        mlp.fit(x.flatten(1).double().numpy(), y.numpy())
    return mlp


def independent_features(x: Tensor) -> np.ndarray:
    r"""(N, 64) hidden activations $\max(0, W_1 x + b_1)$ of the MLP for images x (N, 1, 8, 8) in [-1, 1]."""
    check_tensor("x", x)
    if x.dim() != 4 or tuple(x.shape[1:]) != (1, 8, 8):
        raise ValueError(f"x must be (N, 1, 8, 8) digits, got shape {tuple(x.shape)}")
    mlp = independent_digits_model()
    flat = x.detach().cpu().double().clamp(-1, 1).flatten(1).numpy()
    return np.maximum(flat @ mlp.coefs_[0] + mlp.intercepts_[0], 0.0)


def _gaussian(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return f.mean(0), np.cov(f, rowvar=False)


def independent_digits_fid(samples: Tensor, reference: Tensor | None = None) -> float:
    """Fréchet distance between ``samples`` and the reference half of the digits, on the MLP's features."""
    if reference is None:
        reference = digits_reference_split()[0]
    if len(samples) < 2:
        raise ValueError("need at least 2 samples for a covariance")
    return frechet_distance(*_gaussian(independent_features(samples)), *_gaussian(independent_features(reference)))


def independent_digits_fid_floor(num_samples: int | None = None) -> float:
    """The real-vs-real floor on the MLP's features: the first ``num_samples`` held-out digits (default all 899)."""
    held_out = digits_reference_split()[1]
    n = len(held_out) if num_samples is None else check_int("num_samples", num_samples, 2, len(held_out))
    return independent_digits_fid(held_out[:n])
