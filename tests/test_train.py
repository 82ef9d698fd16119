"""Training: the loss goes down, runs are reproducible, resume equals an uninterrupted run, CLI."""

import json

import pytest
import torch

from ddpm_core.weights.checkpoint import load_checkpoint
from ddpm_core.data import load_digits
from ddpm_core.diffusion.losses import loss_simple
from ddpm_core.training import TrainConfig, main, schedule_from_config, train
from ddpm_core.model import UNetConfig

TINY = UNetConfig(base_channels=8, dropout=0.0)
TINY_DROPOUT = UNetConfig(base_channels=8, dropout=0.1)  # dropout exercises the global RNG on resume


@pytest.fixture(scope="module")
def digits():
    return load_digits(split="train")


def test_training_lowers_the_loss_on_a_fixed_batch(digits):
    x0 = digits[0][:16]
    g = torch.Generator().manual_seed(0)
    config = TrainConfig(num_train_steps=60, batch_size=16, lr=2e-3, warmup_steps=5, log_every=20)
    s = schedule_from_config(config)
    t = torch.randint(1, 1001, (16,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    before = train(TrainConfig(num_train_steps=1, batch_size=16), TINY, data=x0, progress=False).model
    after = train(config, TINY, data=x0, progress=False)
    with torch.no_grad():
        loss_before = loss_simple(before, s, x0, t, eps).item()
        loss_after = loss_simple(after.model, s, x0, t, eps).item()
    assert loss_after < 0.7 * loss_before
    assert len(after.history.loss) == 60 and len(after.history.t_bucket_loss) == 3
    assert len(after.history.t_bucket_loss[0]) == config.num_t_buckets
    assert after.history.t_bucket_steps == [20, 40, 60]
    elapsed = after.history.t_bucket_elapsed_s
    assert len(elapsed) == 3 and 0 < elapsed[0] < elapsed[1] < elapsed[2] <= after.history.elapsed_s


def test_runs_are_reproducible_and_leave_the_callers_rng_alone(digits):
    config = TrainConfig(num_train_steps=3, batch_size=8)
    torch.manual_seed(123)
    a = train(config, TINY_DROPOUT, data=digits, progress=False)
    after_a = torch.rand(1)
    torch.manual_seed(123)
    b = train(config, TINY_DROPOUT, data=digits, progress=False)
    assert torch.equal(torch.rand(1), after_a)  # train() ran inside fork_rng
    assert a.history.loss == b.history.loss
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k])


def test_resume_equals_uninterrupted_bitwise(tmp_path, digits):
    config = TrainConfig(num_train_steps=6, batch_size=8, checkpoint_every=0, log_every=2)
    full = train(config, TINY_DROPOUT, data=digits, out=tmp_path / "full", progress=False)
    # stop at step 3, between two rows of the per-t-bucket log
    train(TrainConfig(num_train_steps=3, batch_size=8, checkpoint_every=0, log_every=2), TINY_DROPOUT,
          data=digits, out=tmp_path / "part", progress=False)
    resumed = train(config, TINY_DROPOUT, data=digits, out=tmp_path / "part",
                    resume=tmp_path / "part" / "checkpoint.pt", progress=False)
    assert resumed.step == full.step == 6
    assert resumed.history.loss == full.history.loss
    torch.testing.assert_close(torch.tensor(resumed.history.t_bucket_loss), torch.tensor(full.history.t_bucket_loss),
                               rtol=0, atol=0, equal_nan=True)
    for a, b in ((full.model, resumed.model), (full.ema.model, resumed.ema.model)):
        for k, v in a.state_dict().items():
            assert torch.equal(v, b.state_dict()[k]), k
    # the checkpoints themselves match too (optimizer moments included)
    ca = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    cb = load_checkpoint(tmp_path / "part" / "checkpoint.pt")
    for k, v in ca["optimizer"]["state"].items():
        assert torch.equal(v["exp_avg_sq"], cb["optimizer"]["state"][k]["exp_avg_sq"])


def test_resume_refuses_a_different_run(tmp_path, digits):
    train(TrainConfig(num_train_steps=1, batch_size=8), TINY, data=digits, out=tmp_path, progress=False)
    with pytest.raises(ValueError, match="lr"):
        train(TrainConfig(num_train_steps=2, batch_size=8, lr=1e-2), TINY, data=digits,
              resume=tmp_path / "checkpoint.pt", progress=False)


def test_conditional_vlb_run_with_samples_and_time_budget(tmp_path, digits):
    config = TrainConfig(num_train_steps=50, batch_size=8, loss="vlb", class_conditional=True,
                         sample_every=1, num_sample_images=4, sample_steps=2, max_minutes=1e-6)
    result = train(config, UNetConfig(base_channels=8, num_classes=10), data=digits, out=tmp_path,
                   progress=False)
    assert result.step == 1  # the time budget stopped it after one step
    assert (tmp_path / "samples_000001.png").is_file()
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 1
    with pytest.raises(ValueError, match="labels"):
        train(config, UNetConfig(base_channels=8, num_classes=10), data=digits[0], progress=False)


def test_config_errors():
    with pytest.raises(ValueError, match="loss"):
        TrainConfig(loss="l1")
    with pytest.raises(ValueError, match="p_uncond"):
        TrainConfig(p_uncond=2.0)
    with pytest.raises(ValueError, match="mixed_precision"):
        TrainConfig(mixed_precision="fp8")
    with pytest.raises(ValueError, match="data contains NaN"):
        train(TrainConfig(num_train_steps=1, batch_size=4), TINY,
              data=torch.full((4, 1, 8, 8), float("nan")), progress=False)


def test_cli(tmp_path):
    main(["--train-steps", "2", "--batch-size", "8", "--base-channels", "8", "--out", str(tmp_path), "--no-progress"])
    info = json.loads((tmp_path / "train_info.json").read_text())
    assert info["command"].startswith("python -m ddpm_core.train --train-steps 2")
    assert info["step"] == 2 and info["steps_per_s"] > 0
    assert load_checkpoint(tmp_path / "checkpoint.pt", sha256=info["checkpoint_sha256"])["step"] == 2


def test_channels_last_follows_the_default_layout(digits):
    # The GPU-path option must not change the math: same seed, same losses up to float reordering.
    config = TrainConfig(num_train_steps=5, batch_size=8, warmup_steps=1)
    a = train(config, TINY, data=digits, progress=False)
    b = train(TrainConfig(num_train_steps=5, batch_size=8, warmup_steps=1, channels_last=True), TINY,
              data=digits, progress=False)
    assert a.history.loss == pytest.approx(b.history.loss, rel=1e-4)
    conv = next(m for m in b.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


# -- the GPU path (mixed precision, torch.compile), exercised on the CPU ------------------------
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_tracks_float32(digits, precision):
    config = TrainConfig(num_train_steps=8, batch_size=16, warmup_steps=1)
    full = train(config, TINY, data=digits, progress=False)
    mixed = train(TrainConfig(num_train_steps=8, batch_size=16, warmup_steps=1, mixed_precision=precision),
                  TINY, data=digits, progress=False)
    # same seed, same batches: the losses follow float32 to the half type's precision
    assert mixed.history.loss == pytest.approx(full.history.loss, rel=2e-2)
    assert mixed.history.loss != full.history.loss  # autocast really ran in the half type
    assert all(p.dtype == torch.float32 for p in mixed.model.parameters())  # master weights stay fp32


@pytest.mark.parametrize("native_bf16, expected", [(True, torch.bfloat16), (False, torch.float16)])
def test_auto_precision_takes_bf16_only_where_the_gpu_has_it_natively(monkeypatch, native_bf16, expected):
    # A T4 (Colab's free GPU) reports bf16 support through emulation; "auto" must pick fp16 there.
    from ddpm_core.training import autocast_dtype

    def is_bf16_supported(including_emulation=True):
        return native_bf16 or including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert autocast_dtype(TrainConfig().mixed_precision, torch.device("cuda")) is expected
    assert autocast_dtype(TrainConfig().mixed_precision, torch.device("cpu")) is None


def test_fp16_loss_scaler_is_checkpointed_and_resumes_bitwise(tmp_path, digits):
    config = TrainConfig(num_train_steps=4, batch_size=8, mixed_precision="fp16", checkpoint_every=0)
    full = train(config, TINY, data=digits, out=tmp_path / "full", progress=False)
    train(TrainConfig(num_train_steps=2, batch_size=8, mixed_precision="fp16", checkpoint_every=0), TINY,
          data=digits, out=tmp_path / "part", progress=False)
    scaler = load_checkpoint(tmp_path / "part" / "checkpoint.pt")["extra"]["grad_scaler"]
    assert scaler["scale"] > 1  # fp16 runs scale the loss up before backward
    resumed = train(config, TINY, data=digits, resume=tmp_path / "part" / "checkpoint.pt", progress=False)
    assert resumed.history.loss == full.history.loss
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_compiled_training_matches_eager(digits):
    # torch.compile (inductor, C++ code generation on a CPU) must not change the math.
    config = TrainConfig(num_train_steps=3, batch_size=8, warmup_steps=1)
    eager = train(config, TINY, data=digits, progress=False)
    torch._dynamo.reset()
    compiled = train(TrainConfig(num_train_steps=3, batch_size=8, warmup_steps=1, compile=True), TINY,
                     data=digits, progress=False)
    assert compiled.history.loss == pytest.approx(eager.history.loss, rel=1e-4)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # dynamo really captured it
    assert not hasattr(compiled.model, "_orig_mod")  # the result holds the plain module


def test_torchrun_command_trains_with_ddp_and_only_rank_0_writes(tmp_path):
    # The documented multi-process command, end to end: two gloo workers under torchrun.
    import os
    import subprocess
    import sys

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "ddpm_core.train",
           "--train-steps", "2", "--batch-size", "8", "--base-channels", "8", "--out", str(out), "--no-progress",
           "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RuntimeWarning" not in proc.stderr  # python -m runs a module the package did not import
    info = json.loads((out / "train_info.json").read_text())
    assert info["world_size"] == 2 and info["step"] == 2
    assert info["command"].startswith("torchrun --nproc_per_node=2 -m ddpm_core.train --train-steps 2")
    assert load_checkpoint(out / "checkpoint.pt", sha256=info["checkpoint_sha256"])["step"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "train_info.json"]  # rank 0 only


def test_the_command_module_is_not_the_trainer():
    import ddpm_core as dc

    with pytest.raises(ImportError, match="training command"):
        import ddpm_core.train  # noqa: F401
    assert callable(dc.train)  # the failed import left the function in place
