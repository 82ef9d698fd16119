"""digits-FID: the Fréchet formula, the shipped classifier, the real-vs-real floor."""

import json

import numpy as np
import pytest
import torch

from ddpm_core.checkpoint import file_sha256
from ddpm_core.data import load_digits
from ddpm_core.metrics import (CHECKPOINT_DIR, classifier_accuracy, digits_fid, digits_fid_floor, digits_quality,
                               frechet_distance, load_digits_classifier)


@pytest.fixture(scope="module")
def classifier():
    return load_digits_classifier()


def test_frechet_distance_closed_form():
    mu, sigma = np.zeros(3), np.eye(3)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)
    # 1-D: (0 - 1)^2 + 1 + 4 - 2*sqrt(1*4) = 2
    assert frechet_distance(np.zeros(1), np.eye(1), np.ones(1), 4 * np.eye(1)) == pytest.approx(2.0)
    # a dead feature (zero variance in both sets) changes nothing
    s2 = np.diag([1.0, 2.0, 0.0])
    assert frechet_distance(mu, np.diag([1.0, 1.0, 0.0]), mu, s2) == pytest.approx(
        frechet_distance(mu[:2], np.eye(2), mu[:2], s2[:2, :2]))


def test_shipped_classifier(classifier):
    meta = json.loads((CHECKPOINT_DIR / "digits_classifier.json").read_text())
    assert file_sha256(CHECKPOINT_DIR / meta["file"]) == meta["sha256"]
    x, y = load_digits(split="test")
    acc = classifier_accuracy(classifier, x, y)
    assert acc >= 0.97 and acc == pytest.approx(meta["test_accuracy"])


def test_real_digits_score_near_the_floor_and_noise_far_above(classifier):
    floor = digits_fid_floor(classifier)
    assert 0.5 < floor < 10
    x, _ = load_digits(split="all")
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
    real = digits_fid(x[perm[:800]], x[perm[800:]], classifier)
    noise = digits_quality(torch.randn(800, 1, 8, 8, generator=torch.Generator().manual_seed(0)).clamp(-1, 1),
                           classifier)
    assert real < 2 * floor
    assert noise.fid > 20 * floor
    good = digits_quality(x[perm[:800]], classifier, reference=x[perm[800:]])
    assert good.confident_fraction > 0.9 and good.class_coverage == 1.0
    assert noise.confident_fraction < good.confident_fraction - 0.3
    assert sum(good.class_counts) == round(good.confident_fraction * 800)


def test_bad_input(classifier):
    with pytest.raises(ValueError, match="samples"):
        digits_fid(torch.zeros(1, 1, 8, 8), classifier=classifier)
    with pytest.raises(ValueError, match="NaN"):
        digits_fid(torch.full((4, 1, 8, 8), float("nan")), classifier=classifier)
