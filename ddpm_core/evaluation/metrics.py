r"""A sample-quality metric for 8×8 digits: a Fréchet distance on a small digit classifier's features.

Introduced in chapter 7 (Sampling). **This is not the FID of papers.** The FID of the literature
(Heusel et al. 2017) is the Fréchet distance between Inception-v3 pool features (2,048-d, trained on ImageNet
299×299 photos) of 50,000 samples and the training set. Inception features mean nothing on 8×8
gray digits, and 50,000 samples are out of reach on a CPU, so the book uses the same formula on
the 128-d penultimate features of :class:`DigitsClassifier`, a small CNN trained here on the
digits train split, with a few hundred samples. Its numbers are comparable only with each other
(same classifier, same N): read them next to the real-vs-real floor of :func:`digits_fid_floor`,
held-out real digits scored the same way, which is what a perfect model would get. The real digits
are split once into two fixed halves: 898 reference images, 899 held out for the floor.

The Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017):

$$d^2 = \|\mu_1 - \mu_2\|^2 + \operatorname{Tr}\big(\Sigma_1 + \Sigma_2 - 2(\Sigma_1\Sigma_2)^{1/2}\big).$$

Also: the fraction of samples the classifier labels with confidence (max softmax ≥ 0.9 by
default), and class coverage, the share of the ten digits that get at least a quarter of their
fair share of confident samples (a collapsed model scores low).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_int, check_number
from ..data.datasets import NUM_CLASSES, load_digits
from .classifier import DigitsClassifier, load_digits_classifier

__all__ = ["frechet_distance", "digits_fid", "digits_fid_floor", "digits_reference_split",
           "DigitsQuality", "digits_quality", "CONFIDENCE", "load_digits_classifier"]

CONFIDENCE = 0.9
"""A sample counts as a recognizable digit when the classifier's max softmax probability is ≥ this."""
COVERAGE_SHARE = 0.25
"""A class is covered when it gets ≥ 25 % of its fair share (1/10) of the confident samples."""
SQRTM_EPS = 1e-6
"""Diagonal offset when Σ1Σ2 is singular, the value of the reference FID implementation."""
FLOOR_SEED = 0
"""Seed of the random halves for the real-vs-real floor."""


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    r"""$\|\mu_1-\mu_2\|^2 + \operatorname{Tr}(\Sigma_1 + \Sigma_2 - 2(\Sigma_1\Sigma_2)^{1/2})$ (Heusel et al. 2017).

    The matrix square root is ``scipy.linalg.sqrtm``; its tiny imaginary part (round-off) is dropped.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError("mu1, mu2 must be (d,) and sigma1, sigma2 (d, d) with one d")
    # Features that are constant and equal in both sets (dead ReLUs) add exactly 0 to d^2 but
    # make both covariances singular: drop them before the matrix square root.
    live = (np.diag(sigma1) > 0) | (np.diag(sigma2) > 0) | (mu1 != mu2)
    mu1, mu2, sigma1, sigma2 = mu1[live], mu2[live], sigma1[np.ix_(live, live)], sigma2[np.ix_(live, live)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)  # checked just below
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():  # still singular: regularize as the reference FID code does
            offset = SQRTM_EPS * np.eye(mu1.size)
            covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


@torch.no_grad()
def _features(classifier: DigitsClassifier, x: Tensor, batch_size: int = 1000) -> np.ndarray:
    device = next(classifier.parameters()).device
    feats = [classifier.features(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(feats).double().numpy()  # (N, 128)


def _gaussian(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return f.mean(0), np.cov(f, rowvar=False)


def digits_reference_split() -> tuple[Tensor, Tensor]:
    """The two fixed, disjoint halves of the 1,797 real digits: (reference (898), held_out (899)).

    :func:`digits_fid` compares samples with ``reference``; :func:`digits_fid_floor` compares
    ``held_out`` with it, so a sample set of the same size is measured exactly like real data.
    """
    x, _ = load_digits(split="all")
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(FLOOR_SEED))
    half = len(x) // 2
    return x[perm[:half]], x[perm[half:]]


def digits_fid(samples: Tensor, reference: Tensor | None = None,
               classifier: DigitsClassifier | None = None) -> float:
    """Fréchet distance between ``samples`` and ``reference`` on the digit classifier's features.

    Not Inception FID (see the module docstring). The estimate is biased upward by an amount that
    shrinks with the number of images, so compare values at one N, and with
    ``digits_fid_floor(num_samples=N)``; N = 899 uses every held-out real digit for the floor.

    Args:
        samples: (N, 1, H, W) in [-1, 1] (N ≥ 2; a few hundred to 899).
        reference: real images; default the 898 reference digits of :func:`digits_reference_split`.
        classifier: default :func:`load_digits_classifier`.
    """
    if not isinstance(samples, Tensor) or samples.dim() != 4 or samples.shape[0] < 2:
        raise ValueError("samples must be an (N, 1, H, W) tensor with N >= 2")
    if not torch.isfinite(samples).all():
        raise ValueError("samples contain NaN or Inf values")
    classifier = load_digits_classifier() if classifier is None else classifier
    reference = digits_reference_split()[0] if reference is None else reference
    return frechet_distance(*_gaussian(_features(classifier, samples)),
                            *_gaussian(_features(classifier, reference)))


def digits_fid_floor(num_samples: int | None = None, classifier: DigitsClassifier | None = None) -> float:
    """The real-vs-real floor: :func:`digits_fid` of ``num_samples`` held-out real digits (default
    all 899) against the 898 reference digits. A model whose N samples were real digits would
    score about this; pass the N of the samples being judged."""
    held_out = digits_reference_split()[1]
    if num_samples is None:
        num_samples = len(held_out)
    check_int("num_samples", num_samples, 2, len(held_out))
    return digits_fid(held_out[:num_samples], classifier=classifier)


@dataclass(frozen=True)
class DigitsQuality:
    """Summary of a batch of digit samples (see :func:`digits_quality`)."""

    fid: float
    """:func:`digits_fid` against the 898 reference digits."""
    confident_fraction: float
    """Share of samples classified with max softmax ≥ the threshold."""
    class_coverage: float
    """Share of the 10 classes with ≥ 25 % of their fair share of confident samples."""
    class_counts: tuple[int, ...]
    """Confident samples per predicted class."""
    num_samples: int


@torch.no_grad()
def digits_quality(samples: Tensor, classifier: DigitsClassifier | None = None,
                   confidence: float = CONFIDENCE, reference: Tensor | None = None) -> DigitsQuality:
    """digits-FID, the confidently-classified fraction and class coverage of ``samples`` (N, 1, H, W)."""
    check_number("confidence", confidence, 0.0, 1.0, open_low=True, open_high=True)
    classifier = load_digits_classifier() if classifier is None else classifier
    device = next(classifier.parameters()).device
    probs = torch.cat([F.softmax(classifier(samples[i:i + 1000].to(device)), 1).cpu()
                       for i in range(0, len(samples), 1000)])  # (N, 10)
    p_max, label = probs.max(1)
    confident = p_max >= confidence
    counts = torch.bincount(label[confident], minlength=NUM_CLASSES)
    n_conf = int(confident.sum())
    covered = (counts >= COVERAGE_SHARE * n_conf / NUM_CLASSES) & (counts > 0)
    return DigitsQuality(fid=digits_fid(samples, reference, classifier),
                         confident_fraction=n_conf / len(samples),
                         class_coverage=covered.float().mean().item(),
                         class_counts=tuple(counts.tolist()), num_samples=len(samples))
