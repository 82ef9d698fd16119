"""The second feature extractor (chapter 10): an independent scikit-learn MLP, and its Fréchet distance."""

import numpy as np
import pytest
import torch

import ddpm_core as dc
from ddpm_core.evaluation.independent import (INDEPENDENT_HIDDEN, independent_digits_fid,
                                              independent_digits_fid_floor, independent_digits_model,
                                              independent_features)


def test_the_mlp_is_a_good_digit_classifier_trained_on_the_train_split_only():
    x_test, y_test = dc.load_digits(split="test")
    mlp = independent_digits_model()
    accuracy = (mlp.predict(x_test.flatten(1).double().numpy()) == y_test.numpy()).mean()
    assert accuracy > 0.93  # features worth a Fréchet distance
    assert mlp.coefs_[0].shape == (64, INDEPENDENT_HIDDEN)


def test_features_are_the_hidden_relu_layer_of_the_fitted_mlp():
    x, _ = dc.load_digits(split="test")
    f = independent_features(x[:50])
    mlp = independent_digits_model()
    hidden = np.maximum(x[:50].flatten(1).double().numpy() @ mlp.coefs_[0] + mlp.intercepts_[0], 0)
    np.testing.assert_allclose(f, hidden)
    # the hidden layer really is what the classifier uses: its output layer on f gives predict_proba
    logits = f @ mlp.coefs_[1] + mlp.intercepts_[1]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probs / probs.sum(1, keepdims=True), mlp.predict_proba(x[:50].flatten(1).double().numpy()),
                               rtol=1e-6, atol=1e-9)


def test_fid_ranks_real_digits_far_below_noise_and_equals_zero_on_the_reference_itself():
    reference, held_out = dc.digits_reference_split()
    floor = independent_digits_fid_floor(300)
    noise = independent_digits_fid(torch.rand(300, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    assert independent_digits_fid(reference) == pytest.approx(0.0, abs=1e-6)
    assert floor == pytest.approx(independent_digits_fid(held_out[:300]))
    assert 0 < floor < noise / 10


def test_bad_input_raises():
    with pytest.raises(ValueError, match="8, 8"):
        independent_features(torch.zeros(3, 1, 28, 28))
    with pytest.raises(ValueError, match="2 samples"):
        independent_digits_fid(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError):
        independent_digits_fid_floor(1)
