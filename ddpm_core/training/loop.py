r"""Training: DDPM's Algorithm 1, with the practical parts a real run needs (chapter 6).

Algorithm 1 [DDPM]: repeat { $x_0 \sim q(x_0)$; $t \sim U\{1..T\}$; $\epsilon \sim N(0, I)$;
gradient step on $\nabla_\theta \|\epsilon - \epsilon_\theta(\sqrt{\bar\alpha_t}x_0 +
\sqrt{1-\bar\alpha_t}\epsilon, t)\|^2$ } until converged. Around it: AdamW with linear warmup,
gradient-norm clipping and an EMA of the weights (DDPM App. B), mixed precision on CUDA,
class-conditional training with label dropout for classifier-free guidance [CFG Alg. 1],
checkpoints that resume bit-for-bit, and DistributedDataParallel under ``torchrun``.

Randomness: the batch indices, $t$, $\epsilon$ and the label dropout come from one
``torch.Generator`` seeded with ``TrainConfig.seed``; dropout inside the UNet uses torch's global
RNG, which :func:`train` seeds too, inside ``torch.random.fork_rng`` so the caller's RNG is left
as it was. Every rank draws the same *global* batch and keeps its own slice, so N processes at
global batch B follow one process at batch B (up to the order of floating-point sums).
The run itself (setup, resume, the loop, checkpoints) is here; one step is :func:`~.step.train_step`,
the records :mod:`.history`, the command line :mod:`.cli`.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from .._checks import check_tensor
from ..data.datasets import NUM_CLASSES, load_digits, load_mnist
from ..data.images import image_to_png
from ..diffusion.flow import flow_sample
from ..diffusion.parameterization import as_eps_model
from ..diffusion.sampling import ddim_sample
from ..diffusion.schedule import NoiseSchedule
from ..model.ema import EMA, unwrap_model
from ..model.unet import UNet, UNetConfig
from ..utils import default_device
from ..weights.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import TrainConfig, schedule_from_config
from .history import StepLog, TrainHistory, TrainResult
from .step import autocast_dtype, train_step

__all__ = ["train", "load_dataset", "build_model"]

RANK_SEED_STRIDE = 1_000_003
"""Rank r > 0 reseeds torch's global RNG (dropout) with seed + r · stride: distinct masks per rank."""
SAMPLE_SEED = 1234
"""Seed of the fixed x_T used for the periodic sample grids (so grids are comparable over time)."""
GRID_SCALE = 8
"""Sample grids are upscaled 8× nearest-neighbour (an 8×8 digit becomes 64×64 pixels)."""
FREE_TO_CHANGE = frozenset({"num_train_steps", "max_minutes", "log_every", "checkpoint_every", "sample_every",
                            "num_sample_images", "sample_steps", "channels_last", "compile"})
"""Settings a resumed run may change: none of them shapes the trajectory of the weights."""


def load_dataset(config: TrainConfig, root: str | Path = "data") -> tuple[Tensor, Tensor]:
    """The training split of ``config.dataset`` at ``config.image_size``: x (N, 1, S, S) in [-1, 1], y (N,)."""
    if config.dataset == "digits":
        return load_digits(config.image_size, split="train")
    return load_mnist(root, fashion=config.dataset == "fashion-mnist", split="train",
                      image_size=config.image_size)


def build_model(config: TrainConfig, unet_config: UNetConfig | None = None, in_channels: int = 1) -> UNet:
    """A UNet for this run: ``unet_config`` or the default, conditional when the run is."""
    if unet_config is None:
        unet_config = UNetConfig(in_channels=in_channels, learned_variance=config.loss == "hybrid",
                                 num_classes=NUM_CLASSES if config.class_conditional else None)
    if unet_config.learned_variance != (config.loss == "hybrid"):
        raise ValueError('loss="hybrid" needs unet_config.learned_variance=True, and only it')
    if config.class_conditional and unet_config.num_classes is None:
        raise ValueError("class_conditional=True needs unet_config.num_classes (e.g. 10)")
    if not config.class_conditional and unet_config.num_classes is not None:
        raise ValueError("unet_config.num_classes is set but class_conditional=False")
    return UNet(unet_config)


@dataclass
class _Run:
    """The state of one run: what setup builds, resume restores, and every step changes."""

    config: TrainConfig
    device: torch.device
    rank: int
    world: int
    x_all: Tensor  # (N, C, H, W) on the device
    y_all: Tensor | None  # (N,)
    model: nn.Module  # the module whose weights are trained (DDP-wrapped under torchrun)
    net: nn.Module  # what the loss calls: ``model``, or ``torch.compile(model)``
    optimizer: torch.optim.Optimizer
    lr_scheduler: torch.optim.lr_scheduler.LambdaLR
    ema: EMA
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    g: torch.Generator  # batch indices, t, ε, label dropout
    schedule: NoiseSchedule
    history: TrainHistory
    configs: dict
    step: int = 0

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.x_all.shape[1:])


def train(config: TrainConfig | None = None, unet_config: UNetConfig | None = None, *,
          data: tuple[Tensor, Tensor] | Tensor | None = None, model: UNet | None = None,
          out: str | Path | None = None, resume: str | Path | None = None, device=None,
          progress: bool = True, data_root: str | Path = "data", command: str | None = None) -> TrainResult:
    r"""Train $\epsilon_\theta$ with DDPM's Algorithm 1 (plus AdamW, warmup, clipping, EMA).

    Under an initialized ``torch.distributed`` process group (e.g. ``torchrun``) the model is
    wrapped in DistributedDataParallel and each rank trains on its slice of the global batch;
    only rank 0 writes files.

    Args:
        config: the run's :class:`TrainConfig` (default ``TrainConfig()``).
        unet_config: the network's :class:`UNetConfig`; default the ~0.65 M UNet (conditional on
            10 classes when ``config.class_conditional``).
        data: x (N, C, H, W) in [-1, 1], or (x, y) with y (N,) int64 labels; default
            :func:`load_dataset`.
        model: a UNet to train instead of a fresh one (then its init is the caller's).
        out: folder for ``checkpoint.pt`` and sample grids (rank 0); None writes nothing.
        resume: a checkpoint to continue from; the result equals an uninterrupted run (bitwise on
            CPU), as long as ``config`` differs only in ``num_train_steps`` / ``max_minutes`` / logging.
        device: default :func:`default_device` (each rank's own GPU under DDP).
        progress: show a tqdm bar with the loss (rank 0).
        data_root: where MNIST is downloaded.
        command: the command line recorded in the checkpoint (the CLI passes it).

    Returns:
        A :class:`TrainResult` (model, ema, schedule, history, step, steps/s, checkpoint sha256).
    """
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    if config.batch_size % world:
        raise ValueError(f"batch_size={config.batch_size} must be divisible by the number of processes ({world})")
    if device is None:
        device = (torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
                  if distributed and torch.cuda.is_available() else default_device())
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        run = _setup(config, unet_config, data, model, device, data_root, rank, world)
        if resume is not None:
            _resume(run, resume)
        if distributed:
            run.model = run.net = nn.parallel.DistributedDataParallel(
                run.model, device_ids=[device.index] if device.type == "cuda" else None)
        if config.compile:
            run.net = torch.compile(run.model)  # the forward pass the loss calls
        out = Path(out) if out is not None and rank == 0 else None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        return _loop(run, out, command, progress and rank == 0)


def _setup(config: TrainConfig, unet_config, data, model, device, data_root, rank: int, world: int) -> _Run:
    """Data on the device, the model (seeded init), optimizer, warmup, EMA, generator, empty history."""
    if data is None:
        data = load_dataset(config, data_root)
    x_all, y_all = (data, None) if isinstance(data, Tensor) else data
    if not isinstance(x_all, Tensor) or x_all.dim() != 4:
        raise ValueError("data must be x (N, C, H, W) or a tuple (x, y)")
    if config.class_conditional and y_all is None:
        raise ValueError("class_conditional=True needs labels: pass data=(x, y)")
    check_tensor("data", x_all)  # once here, on the host: NaN data fails before any step
    x_all = x_all.to(device)  # (N, C, H, W)
    y_all = y_all.to(device).long() if y_all is not None else None  # (N,)
    torch.manual_seed(config.seed)  # the model's init (inside fork_rng: the caller's RNG is untouched)
    if model is None:
        model = build_model(config, unet_config, in_channels=x_all.shape[1])
    unet_config = unwrap_model(model).config
    model.to(device).train()
    schedule = schedule_from_config(config).to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
        x_all = x_all.contiguous(memory_format=torch.channels_last)
    # fused AdamW: one kernel for all parameters on CUDA (the for-each version elsewhere)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                  fused=device.type == "cuda")
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / config.warmup_steps) if config.warmup_steps else 1.0)
    ema = EMA(model, config.ema_decay, warmup=config.ema_warmup)
    g = torch.Generator().manual_seed(config.seed)
    if rank > 0:
        torch.manual_seed(config.seed + RANK_SEED_STRIDE * rank)  # distinct dropout masks per rank
    edges = [round(1 + b * config.num_steps / config.num_t_buckets) for b in range(config.num_t_buckets)]
    amp_dtype = autocast_dtype(config.mixed_precision, device)
    configs = {"unet": unet_config.to_dict(), "train": config.to_dict(), "schedule": schedule.to_config(),
               "data": {"image_shape": list(x_all.shape[1:])}}
    return _Run(config, device, rank, world, x_all, y_all, model, model, optimizer, lr_scheduler, ema,
                torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16),  # loss scaling for fp16 only
                amp_dtype, g, schedule, TrainHistory(t_bucket_edges=edges + [config.num_steps + 1]), configs)


def _resume(run: _Run, path: str | Path) -> None:
    """Continue from a checkpoint of the same run: weights, optimizer, warmup, EMA, history, RNG, step."""
    ckpt = load_checkpoint(path, map_location=run.device)
    _check_resumable(ckpt["configs"], run.configs)
    unwrap_model(run.model).load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.lr_scheduler.load_state_dict(ckpt["lr_scheduler"])
    run.ema.load_state_dict(ckpt["ema"])
    run.history = TrainHistory.from_dict(ckpt["history"])
    run.step = ckpt["step"]
    set_rng_state(ckpt["rng"], run.g)  # rank 0's global RNG; ranks > 0 get fresh dropout seeds
    if run.rank > 0:
        torch.manual_seed(run.config.seed + RANK_SEED_STRIDE * run.rank + run.step)
    if ckpt["extra"].get("grad_scaler"):
        run.scaler.load_state_dict(ckpt["extra"]["grad_scaler"])


def _check_resumable(saved: dict, now: dict) -> None:
    """A resumed run must have the same network, schedule, data shape and every training setting
    that shapes the trajectory (all but num_train_steps, max_minutes and the logging/file options)."""
    saved = {**saved, "schedule": NoiseSchedule.from_config(saved["schedule"]).to_config()}  # older format too
    for key in ("unet", "schedule", "data"):
        if saved.get(key) != now[key]:
            raise ValueError(f"cannot resume: the checkpoint's {key} config {saved.get(key)} differs from {now[key]}")
    for k, v in now["train"].items():
        if k not in FREE_TO_CHANGE and saved["train"].get(k) != v:
            raise ValueError(f"cannot resume: train config {k}={v!r} differs from the checkpoint's {saved['train'].get(k)!r}")


def _to_device(x: Tensor, device: torch.device) -> Tensor:
    """Copy a host tensor to ``device``; on CUDA through pinned memory, so the host does not wait."""
    return x.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else x.to(device)


def _draw_batch(run: _Run) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """Steps 1-4 of a training step: this rank's slice of a global batch x_0, t, ε (and labels y)."""
    c, B = run.config, run.config.batch_size
    # 1. x_0 ~ q(x_0): a global batch of B indices (every rank draws the same), with labels
    idx = torch.randint(run.x_all.shape[0], (B,), generator=run.g)  # (B,)
    # 2. t ~ U{1..T} and ε ~ N(0, I)                                       [DDPM Alg. 1]
    t = torch.randint(1, c.num_steps + 1, (B,), generator=run.g)  # (B,)
    eps = torch.randn((B, *run.image_shape), generator=run.g)  # (B, C, H, W)
    # 3. label dropout: y -> ∅ (index num_classes) with probability p_uncond  [CFG Alg. 1]
    drop = torch.rand(B, generator=run.g) < c.p_uncond  # (B,)
    # 4. this rank's slice of the global batch
    b = B // run.world
    sl = slice(run.rank * b, (run.rank + 1) * b)
    idx_l = _to_device(idx[sl], run.device)  # (b,)
    y = None
    if c.class_conditional:
        y = run.y_all[idx_l].masked_fill(_to_device(drop[sl], run.device), unwrap_model(run.model).num_classes)
    return run.x_all[idx_l], _to_device(t[sl], run.device), _to_device(eps[sl], run.device), y


def _loop(run: _Run, out: Path | None, command: str | None, progress: bool) -> TrainResult:
    """Steps until ``num_train_steps`` (or the time budget), with logging, sample grids and checkpoints."""
    c = run.config
    log = StepLog(run.history, c.num_t_buckets, run.device)
    bar = tqdm(total=c.num_train_steps, initial=run.step, desc="training", disable=not progress, dynamic_ncols=True)
    start_step, sha, saved_step = run.step, None, None
    distributed = run.world > 1
    while run.step < c.num_train_steps:
        x0, t, eps, y = _draw_batch(run)  # steps 1-4
        lr = run.lr_scheduler.get_last_lr()[0]
        # 5-6. the loss, backward (DDP averages over ranks), clip, AdamW, warmup, EMA
        out_step = train_step(run.net, run.optimizer, run.schedule, x0, t, eps, y=y, loss=c.loss,
                              prediction=c.prediction, min_snr_gamma=c.min_snr_gamma,
                              grad_clip=c.grad_clip, lr_scheduler=run.lr_scheduler, ema=run.ema,
                              scaler=run.scaler, amp_dtype=run.amp_dtype)
        run.step += 1
        # 7. bookkeeping: global-batch loss, per-t-bucket loss (this rank's slice), progress
        loss_global = out_step.loss
        if distributed:
            dist.all_reduce(loss_global)
            loss_global /= run.world
        log.add(run.step, lr, loss_global, out_step.grad_norm, t, out_step.per_image)
        if run.step % c.log_every == 0:  # rows at fixed steps, so a resumed run logs the same rows
            bar.set_postfix(loss=f"{log.close_row(run.step, c.log_every):.4f}")
        bar.update(1)
        # 8. files (rank 0): sample grid, checkpoint
        if out is not None and c.sample_every and run.step % c.sample_every == 0:
            _sample_grid(run, out / f"samples_{run.step:06d}.png")
        if out is not None and c.checkpoint_every and run.step % c.checkpoint_every == 0:
            sha, saved_step = _checkpoint(run, log, out, command), run.step
        # 9. time budget (rank 0 decides, so every rank stops at the same step)
        if c.max_minutes is not None and _time_is_up(log.t_start, c.max_minutes, distributed, run.device):
            break
    log.flush()
    bar.close()
    wall = time.perf_counter() - log.t_start
    if out is not None and saved_step != run.step:
        sha = _checkpoint(run, log, out, command)
    steps_done = run.step - start_step
    return TrainResult(unwrap_model(run.model), run.ema, run.schedule, run.history, run.step,
                       steps_done / wall if wall > 0 else float("nan"), sha)


def _checkpoint(run: _Run, log: StepLog, out: Path, command: str | None) -> str:
    """Write ``out/checkpoint.pt`` (everything resuming needs) and return its sha256."""
    log.flush()
    return save_checkpoint(out / "checkpoint.pt", model=run.model, step=run.step, ema=run.ema,
                           optimizer=run.optimizer, lr_scheduler=run.lr_scheduler, configs=run.configs,
                           rng=rng_state(run.g), history=run.history.to_dict(),
                           extra={"command": command or "", "grad_scaler": run.scaler.state_dict()})


def _sample_grid(run: _Run, path: Path) -> None:
    """DDIM samples of the EMA model from a fixed x_T as one PNG (a private generator: training RNG untouched)."""
    c, model = run.config, run.ema.model
    n = c.num_sample_images
    if c.class_conditional:
        y = (torch.arange(n) % NUM_CLASSES).to(run.device)
        model = lambda xt, t: run.ema.model(xt, t, y)  # noqa: E731
    shape, g = (n, *run.image_shape), torch.Generator().manual_seed(SAMPLE_SEED)
    if c.prediction == "velocity":  # flow matching: Euler along the learned velocity
        x0 = flow_sample(model, shape, c.sample_steps, num_steps=c.num_steps, generator=g, progress=False,
                         device=run.device)
    else:
        x0 = ddim_sample(as_eps_model(model, run.schedule, c.prediction), run.schedule, shape,
                         num_sample_steps=c.sample_steps, generator=g, progress=False, device=run.device,
                         learned_variance=c.loss == "hybrid")
    path.write_bytes(image_to_png(x0, scale=GRID_SCALE, nrow=math.ceil(math.sqrt(n))))


def _time_is_up(t_start: float, max_minutes: float, distributed: bool, device) -> bool:
    up = time.perf_counter() - t_start > 60.0 * max_minutes
    if not distributed:
        return up
    flag = torch.tensor([float(up)], device=device)
    dist.broadcast(flag, src=0)  # rank 0's clock decides for all
    return bool(flag.item())
