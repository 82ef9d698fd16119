"""DistributedDataParallel: two gloo processes on CPU follow one process at the same global batch."""

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ddpm_core.data import load_digits
from ddpm_core.training import TrainConfig, build_model, train
from ddpm_core.model import UNetConfig

CONFIG = TrainConfig(num_train_steps=4, batch_size=16, warmup_steps=1)
UNET = UNetConfig(base_channels=8, dropout=0.0)  # dropout masks differ across ranks by design


def _worker(rank: int, world: int, init_file: str, out_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = train(CONFIG, UNET, data=load_digits(split="train"), progress=False, device="cpu")
        if rank == 0:
            torch.save({"model": result.model.state_dict(), "loss": result.history.loss}, out_file)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
def test_two_gloo_processes_match_one_process(tmp_path):
    init_file, out_file = str(tmp_path / "init"), str(tmp_path / "ddp.pt")
    mp.spawn(_worker, args=(2, init_file, out_file), nprocs=2, join=True)
    ddp = torch.load(out_file, weights_only=True)
    single = train(CONFIG, UNET, data=load_digits(split="train"), progress=False, device="cpu")
    # The global-batch loss of every step agrees (a rank training on the wrong shard, or gradients
    # not averaged, would show at the first or second step) ...
    torch.testing.assert_close(torch.tensor(ddp["loss"]), torch.tensor(single.history.loss), atol=1e-6, rtol=1e-6)
    # ... and so do the weights, up to float summation order. Adam's first steps amplify it for
    # parameters whose gradient is ~0 (zero-initialized layers: update ≈ lr·sign(g)), so compare the
    # whole parameter vector, relative to how far training moved it.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(CONFIG.seed)
        init = build_model(CONFIG, UNET).state_dict()
    flat = lambda sd: torch.cat([v.flatten() for v in sd.values()])  # noqa: E731
    moved = (flat(single.model.state_dict()) - flat(init)).norm()
    gap = (flat(ddp["model"]) - flat(single.model.state_dict())).norm()
    assert moved > 0 and gap < 1e-2 * moved, (gap, moved)
