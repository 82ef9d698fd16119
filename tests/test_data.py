"""Data: digits on the 8-bit grid and its fixed split, MNIST's offline error, 2-D toys, exact GMM scores."""

import math
import socket
import time

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sk_load_digits

from ddpm_core.data import (GaussianMixture2D, from_image, load_digits, load_mnist, swiss_roll, to_image,
                            two_moons)


def test_digits_shapes_range_and_8bit_grid():
    x, y = load_digits(split="all")
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float32
    assert y.shape == (1797,) and y.dtype == torch.int64
    assert x.min() == -1.0 and x.max() == 1.0
    levels = (x + 1) * 127.5
    torch.testing.assert_close(levels, levels.round(), rtol=0, atol=1e-4)
    expected = np.rint(sk_load_digits().images * 255 / 16)
    np.testing.assert_allclose(levels[:, 0].numpy(), expected, atol=1e-4)


def test_digits_split_is_fixed_disjoint_and_stratified():
    x_tr, y_tr = load_digits(split="train")
    x_te, y_te = load_digits(split="test")
    assert len(x_tr) == 1497 and len(x_te) == 300
    x_te2, _ = load_digits(split="test")
    assert torch.equal(x_te, x_te2)
    flat_tr = {tuple(v) for v in x_tr.flatten(1).tolist()}
    assert sum(tuple(v) in flat_tr for v in x_te.flatten(1).tolist()) < 5  # sklearn digits has a few duplicates
    assert torch.bincount(y_te).min() >= 28


def test_digits_16x16_stays_on_the_grid():
    x, _ = load_digits(16, split="test")
    assert x.shape == (300, 1, 16, 16)
    levels = (x + 1) * 127.5
    torch.testing.assert_close(levels, levels.round(), rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="split"):
        load_digits(split="val")


def test_image_round_trip():
    x, _ = load_digits(split="test")
    u8 = to_image(x, torch.uint8)
    assert u8.dtype == torch.uint8
    torch.testing.assert_close(from_image(u8), x)
    f = to_image(x)
    assert 0 <= f.min() and f.max() <= 1
    torch.testing.assert_close(from_image(f), x, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="img"):
        from_image(torch.full((2,), 3.0))


def test_mnist_without_network_fails_fast_naming_the_offline_option(tmp_path, monkeypatch):
    torchvision = pytest.importorskip("torchvision")
    calls = []

    def no_network(*args, **kwargs):
        calls.append(socket.getdefaulttimeout())
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "MNIST", no_network)
    before = socket.getdefaulttimeout()
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match="load_digits"):
        load_mnist(tmp_path, timeout=3.0)
    assert time.perf_counter() - t0 < 10
    assert calls == [3.0]  # a short socket timeout during the download ...
    assert socket.getdefaulttimeout() == before  # ... restored afterwards


def test_toys():
    for x in (two_moons(500), swiss_roll(500)):
        assert x.shape == (500, 2) and x.dtype == torch.float32
        torch.testing.assert_close(x.std(0), torch.ones(2), atol=0.01, rtol=0)
    assert torch.equal(two_moons(50, seed=1), two_moons(50, seed=1))


@pytest.mark.parametrize("alpha_bar", [1.0, 0.7, 0.1, 1e-3])
def test_gmm_score_is_the_gradient_of_log_prob(alpha_bar):
    gmm = GaussianMixture2D([[0.0, 0.0], [2.0, 1.0], [-1.0, 2.0]],
                            [[[0.3, 0.1], [0.1, 0.2]], [[0.1, 0.0], [0.0, 0.5]], [[0.2, 0.0], [0.0, 0.2]]],
                            weights=[0.5, 0.3, 0.2])
    x = (torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2).requires_grad_()
    (grad,) = torch.autograd.grad(gmm.log_prob(x, alpha_bar).sum(), x)
    torch.testing.assert_close(gmm.score_t(x.detach(), alpha_bar), grad)
    if alpha_bar == 1.0:
        torch.testing.assert_close(gmm.score(x.detach()), grad)


@pytest.mark.parametrize("alpha_bar", [0.9, 0.5, 0.05])
def test_gmm_eps_star_is_tweedie_and_the_mmse(alpha_bar):
    gmm = GaussianMixture2D.ring()
    g = torch.Generator().manual_seed(0)
    x0 = gmm.sample(20_000, g).double()
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    xt = math.sqrt(alpha_bar) * x0 + math.sqrt(1 - alpha_bar) * eps  # [DDPM eq. 4]
    eps_star = gmm.eps_star(xt, alpha_bar)
    torch.testing.assert_close(eps_star, -math.sqrt(1 - alpha_bar) * gmm.score_t(xt, alpha_bar))
    mse = lambda e: (eps - e).pow(2).sum(1).mean().item()  # noqa: E731
    assert mse(eps_star) < min(mse(0.9 * eps_star), mse(1.1 * eps_star), mse(torch.zeros_like(eps)))
    x0_star = gmm.x0_star(xt, alpha_bar)
    assert (x0 - x0_star).pow(2).sum(1).mean() < (x0 - xt / math.sqrt(alpha_bar)).pow(2).sum(1).mean()


def test_gmm_sample_moments_and_bad_input():
    gmm = GaussianMixture2D([[1.0, -1.0]], [[[0.5, 0.2], [0.2, 0.3]]])
    x = gmm.sample(50_000, torch.Generator().manual_seed(0)).double()
    torch.testing.assert_close(x.mean(0), torch.tensor([1.0, -1.0], dtype=torch.float64), atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), gmm.covs[0], atol=0.02, rtol=0)
    with pytest.raises(ValueError, match="alpha_bar"):
        gmm.score_t(x[:2], 0.0)
    with pytest.raises(ValueError, match="means"):
        GaussianMixture2D([1.0, 2.0])
