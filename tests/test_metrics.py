"""digits-FID: the Fréchet formula, the shipped classifier, the real-vs-real floor."""

import json

import numpy as np
import pytest
import torch

from ddpm_core.weights.checkpoint import file_sha256
from ddpm_core.data import load_digits
from ddpm_core.evaluation import (classifier_accuracy, digits_fid, digits_fid_floor, digits_quality,
                                  digits_reference_split, frechet_distance, load_digits_classifier)
from ddpm_core.weights.shipped import SHIPPED_DIR as CHECKPOINT_DIR


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
    reference, held_out = digits_reference_split()
    assert len(reference) == 898 and len(held_out) == 899
    floor = digits_fid_floor(classifier=classifier)
    assert 0.5 < floor < 10
    assert digits_fid_floor(300, classifier) > floor  # fewer images, more upward bias
    x_test, _ = load_digits(split="test")  # real digits, scored against the reference
    noise = digits_quality(torch.randn(899, 1, 8, 8, generator=torch.Generator().manual_seed(0)).clamp(-1, 1),
                           classifier)
    assert digits_fid(x_test, classifier=classifier) < 3 * digits_fid_floor(300, classifier)
    assert noise.fid > 20 * floor
    good = digits_quality(held_out, classifier)
    assert good.fid == pytest.approx(floor)
    assert good.confident_fraction > 0.9 and good.class_coverage == 1.0
    assert noise.confident_fraction < good.confident_fraction - 0.3
    assert sum(good.class_counts) == round(good.confident_fraction * 899)


def test_bad_input(classifier):
    with pytest.raises(ValueError, match="samples"):
        digits_fid(torch.zeros(1, 1, 8, 8), classifier=classifier)
    with pytest.raises(ValueError, match="NaN"):
        digits_fid(torch.full((4, 1, 8, 8), float("nan")), classifier=classifier)
