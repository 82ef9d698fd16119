"""Training with each objective of chapters 9-10: prediction target x loss, learned variances, flow matching."""

import pytest
import torch

import ddpm_core as dc
from ddpm_core.data import load_digits
from ddpm_core.model import UNetConfig
from ddpm_core.training import TrainConfig, main, train
from ddpm_core.training.cli import parse_configs
from ddpm_core.weights.checkpoint import load_checkpoint

TINY = dict(base_channels=8, dropout=0.0)


@pytest.fixture(scope="module")
def digits():
    return load_digits(split="train")[0][:64]


@pytest.mark.parametrize("kw", [dict(prediction="v"), dict(prediction="x0"), dict(loss="min_snr"),
                                dict(prediction="v", loss="min_snr"), dict(schedule="cosine"),
                                dict(prediction="velocity")])
def test_each_objective_lowers_its_loss_on_a_fixed_batch(digits, kw):
    x0 = digits[:16]
    config = TrainConfig(num_train_steps=25, batch_size=16, warmup_steps=1, lr=3e-3, ema_decay=0.0, log_every=1, **kw)
    s = dc.training.schedule_from_config(config)
    fixed = dict(t=torch.randint(1, 1001, (16,), generator=torch.Generator().manual_seed(0)),
                 eps=torch.randn(x0.shape, generator=torch.Generator().manual_seed(1)))

    def loss_of(model):
        with torch.no_grad():
            return dc.training_loss(model.eval(), s, x0, prediction=config.prediction, loss=config.loss, **fixed).item()

    before = train(TrainConfig(num_train_steps=1, batch_size=16, **kw), UNetConfig(**TINY), data=x0, progress=False)
    after = train(config, UNetConfig(**TINY), data=x0, progress=False)
    assert loss_of(after.model) < 0.8 * loss_of(before.model)


def test_hybrid_run_has_learned_variance_channels_and_samples(tmp_path, digits):
    unet = UNetConfig(learned_variance=True, **TINY)
    result = train(TrainConfig(num_train_steps=3, batch_size=8, loss="hybrid", sample_every=3, sample_steps=2),
                   unet, data=digits, out=tmp_path, progress=False)
    assert result.model.out[-1].out_channels == 2
    assert (tmp_path / "samples_step3.png").is_file() or any(tmp_path.glob("*.png"))
    out = result.model(torch.zeros(2, 1, 8, 8), torch.tensor([5, 500]))
    assert out.shape == (2, 2, 8, 8)
    x = dc.ddpm_sample(result.model, result.schedule, (2, 1, 8, 8), variance="learned", progress=False,
                       generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 1, 8, 8) and torch.isfinite(x).all()
    with pytest.raises(ValueError, match="hybrid"):
        train(TrainConfig(num_train_steps=1, batch_size=8, loss="simple"), unet, data=digits, progress=False)


def test_config_and_cli_reject_combinations_that_do_not_exist():
    with pytest.raises(ValueError, match="velocity"):
        TrainConfig(prediction="velocity", loss="min_snr")
    with pytest.raises(ValueError, match="hybrid"):
        TrainConfig(prediction="v", loss="hybrid")
    with pytest.raises(ValueError, match="prediction"):
        TrainConfig(prediction="score")
    with pytest.raises(ValueError, match="min_snr_gamma"):
        TrainConfig(min_snr_gamma=0.0)
    train_config, unet_config, _ = parse_configs(["--loss", "hybrid", "--out", "x"])
    assert unet_config.learned_variance and unet_config.out_channels == 2
    assert not parse_configs(["--prediction", "v", "--out", "x"])[1].learned_variance


def test_cli_trains_a_flow_model_and_the_checkpoint_says_so(tmp_path):
    main(["--train-steps", "2", "--batch-size", "8", "--base-channels", "8", "--prediction", "velocity",
          "--out", str(tmp_path), "--no-progress"])
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["configs"]["train"]["prediction"] == "velocity"
