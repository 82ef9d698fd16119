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

The command line (:func:`main`, run by the thin module ``ddpm_core.train``)::

    python -m ddpm_core.train --dataset digits --steps 1700 --out runs/digits
    torchrun --nproc_per_node=2 -m ddpm_core.train --dataset digits --steps 1700 --out runs/ddp
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .data import load_digits, load_mnist, to_image
from .ema import EMA, unwrap_model
from ._checks import check_tensor
from .losses import _loss_simple_per_image, loss_vlb
from .sampling import ddim_sample
from .schedule import NoiseSchedule
from .unet import UNet, UNetConfig
from .utils import default_device, wide_float

__all__ = ["TrainConfig", "TrainHistory", "TrainResult", "train", "load_dataset", "build_model",
           "schedule_from_config", "main"]

DATASETS = ("digits", "mnist", "fashion-mnist")
LOSSES = ("simple", "vlb")
SCHEDULES = ("linear", "cosine")
MIXED_PRECISION = ("auto", "bf16", "fp16", "no")
NUM_CLASSES = 10
"""All three datasets have ten classes."""
RANK_SEED_STRIDE = 1_000_003
"""Rank r > 0 reseeds torch's global RNG (dropout) with seed + r · stride: distinct masks per rank."""
SAMPLE_SEED = 1234
"""Seed of the fixed x_T used for the periodic sample grids (so grids are comparable over time)."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; each default says why."""

    dataset: str = "digits"
    """"digits" (offline, sklearn), "mnist" or "fashion-mnist" (torchvision, needs the network)."""
    image_size: int = 8
    """8: digits' native size; at 16×16 a CPU needs far longer runs (DESIGN.md §8)."""
    num_train_steps: int = 1700
    """~8 minutes at ~3.5 steps/s on a 2-core CPU, the shipped "digits" run."""
    max_minutes: float | None = None
    """Optional time budget: stop (and checkpoint) after this many minutes even before num_train_steps."""
    batch_size: int = 128
    """DDPM's batch size (CIFAR-10); the global batch, split evenly across DDP ranks."""
    lr: float = 1e-3
    """DDPM uses 2e-4 for 800 k steps; a 0.65 M model trained for ~2 k steps learns faster at 1e-3."""
    weight_decay: float = 0.0
    """AdamW without decay is DDPM's Adam."""
    warmup_steps: int = 100
    """Linear LR warmup (DDPM: 5,000 of 800 k steps); 100 steps protect the first Adam updates."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to 1, as DDPM's code does."""
    ema_decay: float = 0.999
    """DDPM: 0.9999 over 800 k steps; an average over ~1 k steps suits a ~2 k-step run."""
    ema_warmup: bool = True
    """Decay min(d, (1+n)/(10+n)) so the EMA forgets the random init within a short run."""
    loss: str = "simple"
    """"simple" is L_simple [DDPM eq. 14]; "vlb" a one-sample estimate of the bound [DDPM eq. 5]."""
    class_conditional: bool = False
    """Train ε_θ(x_t, t, y) with labels, for classifier-free guidance."""
    p_uncond: float = 0.1
    """Probability of replacing the label by the null label during training [CFG §4: 0.1 or 0.2]."""
    schedule: str = "linear"
    """DDPM's linear schedule; "cosine" is IDDPM's."""
    num_steps: int = 1000
    """T, the paper's value."""
    beta_1: float = 1e-4
    """DDPM's β_1."""
    beta_T: float = 0.02
    """DDPM's β_T."""
    cosine_s: float = 0.008
    """IDDPM's offset s (used when schedule="cosine")."""
    mixed_precision: str = "auto"
    """"auto": bf16 autocast on a CUDA GPU with native bf16 (Ampere or newer), else fp16 with loss
    scaling (a T4 emulates bf16, slowly); none off CUDA.
    "bf16"/"fp16" force it, on a CPU too (how the tests exercise the GPU path; off by default there
    because the chapters' stored outputs are float32 results)."""
    channels_last: bool = False
    """NHWC memory layout for model and data: faster convolutions on tensor-core GPUs; ≤ 1.03× on a CPU."""
    compile: bool = False
    """``torch.compile`` the forward pass: pays off on a GPU in long runs; ~100 s cold start on a CPU."""
    seed: int = 0
    """Seeds the model's init, the data/t/ε generator and dropout: a run is a function of its config."""
    log_every: int = 50
    """Steps between snapshots of the per-t-bucket loss and updates of the progress bar."""
    num_t_buckets: int = 10
    """The loss is also tracked in this many equal ranges of t (for the loss-vs-t plot)."""
    checkpoint_every: int = 500
    """Steps between checkpoints in ``out`` (0: only at the end)."""
    sample_every: int = 0
    """Steps between sample grids in ``out`` (0: none); DDIM with ``sample_steps`` steps, EMA weights."""
    num_sample_images: int = 64
    """Images per sample grid."""
    sample_steps: int = 20
    """DDIM steps for the sample grids (~1 s for 64 images at 8×8 on CPU)."""

    def __post_init__(self) -> None:
        _choice("dataset", self.dataset, DATASETS)
        _choice("loss", self.loss, LOSSES)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)
        for name in ("image_size", "num_train_steps", "batch_size", "num_steps", "log_every",
                     "num_t_buckets", "num_sample_images", "sample_steps"):
            _positive_int(name, getattr(self, name))
        for name in ("warmup_steps", "checkpoint_every", "sample_every", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be a non-negative int, got {v!r}")
        for name in ("lr", "grad_clip"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.p_uncond <= 1.0:
            raise ValueError(f"p_uncond must lie in [0, 1], got {self.p_uncond}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes must be None or > 0, got {self.max_minutes}")
        if self.num_t_buckets > self.num_steps:
            raise ValueError(f"num_t_buckets ({self.num_t_buckets}) must be <= num_steps ({self.num_steps})")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _choice(name, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def _positive_int(name, v) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")


def schedule_from_config(config: TrainConfig) -> NoiseSchedule:
    """The NoiseSchedule a TrainConfig names."""
    if config.schedule == "linear":
        return NoiseSchedule.linear(config.num_steps, config.beta_1, config.beta_T)
    return NoiseSchedule.cosine(config.num_steps, config.cosine_s)


def load_dataset(config: TrainConfig, root: str | Path = "data") -> tuple[Tensor, Tensor]:
    """The training split of ``config.dataset`` at ``config.image_size``: x (N, 1, S, S) in [-1, 1], y (N,)."""
    if config.dataset == "digits":
        return load_digits(config.image_size, split="train")
    return load_mnist(root, fashion=config.dataset == "fashion-mnist", split="train",
                      image_size=config.image_size)


def build_model(config: TrainConfig, unet_config: UNetConfig | None = None, in_channels: int = 1) -> UNet:
    """A UNet for this run: ``unet_config`` or the default, conditional when the run is."""
    if unet_config is None:
        unet_config = UNetConfig(in_channels=in_channels,
                                 num_classes=NUM_CLASSES if config.class_conditional else None)
    if config.class_conditional and unet_config.num_classes is None:
        raise ValueError("class_conditional=True needs unet_config.num_classes (e.g. 10)")
    if not config.class_conditional and unet_config.num_classes is not None:
        raise ValueError("unet_config.num_classes is set but class_conditional=False")
    return UNet(unet_config)


@dataclass
class TrainHistory:
    """What a run records, as plain lists (checkpointed, so a resumed run keeps its past)."""

    step: list[int] = field(default_factory=list)
    """Step number (1-based) of each entry below."""
    loss: list[float] = field(default_factory=list)
    """Training loss of each step, averaged over the global batch."""
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    """Global gradient norm before clipping."""
    t_bucket_edges: list[int] = field(default_factory=list)
    """Bucket b holds t in [edges[b], edges[b+1]) (the last one includes T)."""
    t_bucket_steps: list[int] = field(default_factory=list)
    """The step at which each row of ``t_bucket_loss`` was taken."""
    t_bucket_elapsed_s: list[float] = field(default_factory=list)
    """Training wall time at each of those steps, once the device has finished them (so the
    difference of two entries is an honest speed on a GPU, and leaves out compile warm-up)."""
    t_bucket_loss: list[list[float]] = field(default_factory=list)
    """Mean per-image loss in each t-bucket since the previous row (NaN where no t fell); rank 0's shard."""
    pending_t_bucket_sum: list[float] = field(default_factory=list)
    """Per-bucket loss sums since the last row (so a checkpoint between rows loses nothing)."""
    pending_t_bucket_count: list[int] = field(default_factory=list)
    elapsed_s: float = 0.0
    """Training wall time so far, summed over resumed segments."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainHistory":
        return cls(**d)


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    model: UNet
    """The trained network (raw weights, train mode)."""
    ema: EMA
    """Its EMA; ``ema.model`` is the network to sample with."""
    schedule: NoiseSchedule
    history: TrainHistory
    step: int
    """Optimizer steps taken in all (including before a resume)."""
    steps_per_s: float
    """Speed of this call's steps."""
    checkpoint_sha256: str | None = None
    """sha256 of the final checkpoint, when ``out`` was given (rank 0)."""


def _autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for full precision.

    "auto" turns mixed precision on only on CUDA: bf16 where the GPU has it natively (compute
    capability 8.0 or newer), else fp16 with loss scaling. ``torch.cuda.is_bf16_supported()`` alone
    says yes on Colab's free T4 too, where bf16 is emulated and slower than fp16, hence
    ``including_emulation=False``. An explicit "bf16" or "fp16" also runs on a CPU, which is how the tests exercise
    the GPU path on a machine without one (whether it is faster there depends on the CPU: bf16 was
    1.27x float32 on the project's 2-core machine, see benchmarks/README.md).
    """
    if config.mixed_precision == "no" or (config.mixed_precision == "auto" and device.type != "cuda"):
        return None
    if config.mixed_precision == "bf16" or (
        config.mixed_precision == "auto" and torch.cuda.is_bf16_supported(including_emulation=False)
    ):
        return torch.bfloat16
    return torch.float16


def _to_device(x: Tensor, device: torch.device) -> Tensor:
    """Copy a host tensor to ``device``; on CUDA through pinned memory, so the host does not wait."""
    return x.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else x.to(device)


def _save_grid(x: Tensor, path: Path) -> None:
    """Save (N, C, H, W) samples in [-1, 1] as one PNG grid."""
    from PIL import Image

    n, c, h, w = x.shape
    ncol = math.ceil(math.sqrt(n))
    nrow = math.ceil(n / ncol)
    img = to_image(x, torch.uint8)  # (N, C, H, W) uint8
    grid = torch.zeros(c, nrow * (h + 1) + 1, ncol * (w + 1) + 1, dtype=torch.uint8)  # 1-px borders
    for i in range(n):
        r, col = divmod(i, ncol)
        grid[:, 1 + r * (h + 1):1 + r * (h + 1) + h, 1 + col * (w + 1):1 + col * (w + 1) + w] = img[i]
    arr = grid.permute(1, 2, 0).numpy()
    Image.fromarray(arr[:, :, 0] if c == 1 else arr).resize(
        (arr.shape[1] * 8, arr.shape[0] * 8), Image.NEAREST).save(path)


def _sample_grid(ema: EMA, schedule: NoiseSchedule, config: TrainConfig, shape, device, path: Path) -> None:
    """DDIM samples of the EMA model from a fixed x_T (a private generator: training RNG untouched)."""
    g = torch.Generator().manual_seed(SAMPLE_SEED)
    n = config.num_sample_images
    if config.class_conditional:
        y = (torch.arange(n) % NUM_CLASSES).to(device)
        model_fn = lambda xt, t: ema.model(xt, t, y)  # noqa: E731
    else:
        model_fn = ema.model
    x0 = ddim_sample(model_fn, schedule, (n, *shape), num_sample_steps=config.sample_steps,
                     generator=g, progress=False, device=device)
    _save_grid(x0.cpu(), path)


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
    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        return _train(config, unet_config, data, model, out, resume, device, progress, data_root,
                      command, distributed, rank, world)


def _train(config, unet_config, data, model, out, resume, device, progress, data_root, command,
           distributed, rank, world) -> TrainResult:
    # -- setup: data, model, optimizer, EMA, RNG ------------------------------------------------
    if data is None:
        data = load_dataset(config, data_root)
    x_all, y_all = (data, None) if isinstance(data, Tensor) else data
    if not isinstance(x_all, Tensor) or x_all.dim() != 4:
        raise ValueError("data must be x (N, C, H, W) or a tuple (x, y)")
    if config.class_conditional and y_all is None:
        raise ValueError("class_conditional=True needs labels: pass data=(x, y)")
    check_tensor("data", x_all)  # once here: the loop itself checks nothing (no GPU syncs)
    x_all = x_all.to(device)  # (N, C, H, W)
    y_all = y_all.to(device).long() if y_all is not None else None  # (N,)
    N, image_shape = x_all.shape[0], tuple(x_all.shape[1:])

    torch.manual_seed(config.seed)  # the model's init (inside fork_rng: the caller's RNG is untouched)
    if model is None:
        model = build_model(config, unet_config, in_channels=image_shape[0])
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
    g = torch.Generator().manual_seed(config.seed)  # batch indices, t, ε, label dropout
    if rank > 0:
        torch.manual_seed(config.seed + RANK_SEED_STRIDE * rank)  # distinct dropout masks per rank
    history = TrainHistory(t_bucket_edges=[round(1 + b * config.num_steps / config.num_t_buckets)
                                           for b in range(config.num_t_buckets)] + [config.num_steps + 1])
    step = 0
    configs = {"unet": unet_config.to_dict(), "train": config.to_dict(),
               "schedule": {"name": config.schedule, "num_steps": config.num_steps, "beta_1": config.beta_1,
                            "beta_T": config.beta_T, "cosine_s": config.cosine_s},
               "data": {"image_shape": list(image_shape)}}

    if resume is not None:
        ckpt = load_checkpoint(resume, map_location=device)
        _check_resumable(ckpt["configs"], configs)
        unwrap_model(model).load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        lr_scheduler.load_state_dict(ckpt["lr_scheduler"])
        ema.load_state_dict(ckpt["ema"])
        history = TrainHistory.from_dict(ckpt["history"])
        step = ckpt["step"]
        set_rng_state(ckpt["rng"], g)  # rank 0's global RNG; ranks > 0 get fresh dropout seeds
        if rank > 0:
            torch.manual_seed(config.seed + RANK_SEED_STRIDE * rank + step)

    if distributed:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    net = torch.compile(model) if config.compile else model  # the forward pass the loss calls
    amp_dtype = _autocast_dtype(config, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)  # loss scaling for fp16 only
    if resume is not None and ckpt["extra"].get("grad_scaler"):
        scaler.load_state_dict(ckpt["extra"]["grad_scaler"])
    if config.loss == "simple":
        loss_fn = lambda fn, x0, t, eps: _loss_simple_per_image(fn, schedule, x0, t, eps)  # noqa: E731
    else:  # the bound's estimate checks its arguments (a few syncs per step on a GPU)
        loss_fn = lambda fn, x0, t, eps: loss_vlb(fn, schedule, x0, t, eps, reduction="none")  # noqa: E731
    out = Path(out) if out is not None and rank == 0 else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    b_local = config.batch_size // world  # this rank's share of the global batch
    # The step's numbers stay on the device and reach the host (one sync) only every log_every
    # steps, at checkpoints and at the end: a .item() per step would stall a GPU on every step.
    edges = torch.tensor(history.t_bucket_edges, device=device)
    bucket_sum = torch.tensor(history.pending_t_bucket_sum or [0.0] * config.num_t_buckets,
                              dtype=wide_float(device), device=device)
    bucket_count = torch.tensor(history.pending_t_bucket_count or [0] * config.num_t_buckets,
                                dtype=torch.long, device=device)
    pending: list[Tensor] = []  # (loss, grad norm) of each step not yet in history

    def flush() -> None:
        if pending:
            loss_gn = torch.stack(pending).tolist()  # (n, 2); waits for the queued steps
            history.loss.extend(v[0] for v in loss_gn)
            history.grad_norm.extend(v[1] for v in loss_gn)
            pending.clear()
        history.pending_t_bucket_sum, history.pending_t_bucket_count = bucket_sum.tolist(), bucket_count.tolist()
        history.elapsed_s = elapsed_before + time.perf_counter() - t_start

    def checkpoint() -> str:
        nonlocal saved_step
        saved_step = step
        flush()
        return save_checkpoint(out / "checkpoint.pt", model=model, step=step, ema=ema, optimizer=optimizer,
                               lr_scheduler=lr_scheduler, configs=configs, rng=rng_state(g),
                               history=history.to_dict(),
                               extra={"command": command or "", "grad_scaler": scaler.state_dict()})

    bar = tqdm(total=config.num_train_steps, initial=step, desc="training",
               disable=not progress or rank != 0, dynamic_ncols=True)
    start_step, t_start, elapsed_before = step, time.perf_counter(), history.elapsed_s
    sha, saved_step = None, None
    while step < config.num_train_steps:
        # 1. x_0 ~ q(x_0): a global batch of B indices (every rank draws the same), with labels
        idx = torch.randint(N, (config.batch_size,), generator=g)  # (B,)
        # 2. t ~ U{1..T} and ε ~ N(0, I)                                       [DDPM Alg. 1]
        t = torch.randint(1, config.num_steps + 1, (config.batch_size,), generator=g)  # (B,)
        eps = torch.randn((config.batch_size, *image_shape), generator=g)  # (B, C, H, W)
        # 3. label dropout: y -> ∅ (index num_classes) with probability p_uncond  [CFG Alg. 1]
        drop = torch.rand(config.batch_size, generator=g) < config.p_uncond  # (B,)
        # 4. this rank's slice of the global batch
        sl = slice(rank * b_local, (rank + 1) * b_local)
        idx_l = _to_device(idx[sl], device)  # (b,)
        x0 = x_all[idx_l]  # (b, C, H, W)
        t_l, eps_l = _to_device(t[sl], device), _to_device(eps[sl], device)  # (b,), (b, C, H, W)
        if config.class_conditional:
            y = y_all[idx_l].masked_fill(_to_device(drop[sl], device), unet_config.num_classes)  # (b,)
            model_fn = lambda xt, tt: net(xt, tt, y)  # noqa: E731
        else:
            model_fn = net
        # 5. the loss: L_simple [DDPM eq. 14] or the bound's estimate [DDPM eq. 5], per image
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            per_image = loss_fn(model_fn, x0, t_l, eps_l)  # (b,)
        loss = per_image.float().mean()
        # 6. gradient step: backward (DDP averages over ranks), clip, AdamW, warmup, EMA
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        lr = lr_scheduler.get_last_lr()[0]
        lr_scheduler.step()
        ema.update(model)
        step += 1
        # 7. bookkeeping: global-batch loss, per-t-bucket loss (this rank's slice), progress
        loss_global = loss.detach()
        if distributed:
            dist.all_reduce(loss_global)
            loss_global /= world
        history.step.append(step)
        history.lr.append(lr)
        pending.append(torch.stack([loss_global.float(), grad_norm.float()]))
        b = torch.bucketize(t_l, edges, right=True) - 1  # (b,) bucket of each t
        bucket_sum.index_add_(0, b, per_image.detach().to(bucket_sum.dtype))
        bucket_count.index_add_(0, b, torch.ones_like(b))
        history.elapsed_s = elapsed_before + time.perf_counter() - t_start
        if step % config.log_every == 0:  # rows at fixed steps, so a resumed run logs the same rows
            flush()
            history.t_bucket_steps.append(step)
            history.t_bucket_elapsed_s.append(history.elapsed_s)
            history.t_bucket_loss.append((bucket_sum / bucket_count.clamp(min=1)).masked_fill(
                bucket_count == 0, float("nan")).tolist())
            bucket_sum.zero_(), bucket_count.zero_()
            bar.set_postfix(loss=f"{sum(history.loss[-config.log_every:]) / len(history.loss[-config.log_every:]):.4f}")
        bar.update(1)
        # 8. files (rank 0): sample grid, checkpoint
        if out is not None and config.sample_every and step % config.sample_every == 0:
            _sample_grid(ema, schedule, config, image_shape, device, out / f"samples_{step:06d}.png")
        if out is not None and config.checkpoint_every and step % config.checkpoint_every == 0:
            sha = checkpoint()
        # 9. time budget (rank 0 decides, so every rank stops at the same step)
        if config.max_minutes is not None and _time_is_up(t_start, config.max_minutes, distributed, device):
            break
    flush()
    bar.close()
    wall = time.perf_counter() - t_start
    if out is not None and saved_step != step:
        sha = checkpoint()
    steps_done = step - start_step
    return TrainResult(unwrap_model(model), ema, schedule, history, step,
                       steps_done / wall if wall > 0 else float("nan"), sha)


def _time_is_up(t_start: float, max_minutes: float, distributed: bool, device) -> bool:
    up = time.perf_counter() - t_start > 60.0 * max_minutes
    if not distributed:
        return up
    flag = torch.tensor([float(up)], device=device)
    dist.broadcast(flag, src=0)  # rank 0's clock decides for all
    return bool(flag.item())


def _check_resumable(saved: dict, now: dict) -> None:
    """A resumed run must have the same network, schedule, data shape and every training setting
    that shapes the trajectory (all but num_train_steps, max_minutes and the logging/file options)."""
    free = {"num_train_steps", "max_minutes", "log_every", "checkpoint_every", "sample_every",
            "num_sample_images", "sample_steps", "channels_last", "compile"}
    for key in ("unet", "schedule", "data"):
        if saved.get(key) != now[key]:
            raise ValueError(f"cannot resume: the checkpoint's {key} config {saved.get(key)} differs from {now[key]}")
    for k, v in now["train"].items():
        if k not in free and saved["train"].get(k) != v:
            raise ValueError(f"cannot resume: train config {k}={v!r} differs from the checkpoint's {saved['train'].get(k)!r}")


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m ddpm_core.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=DATASETS, default=d.dataset)
    p.add_argument("--image-size", type=int, default=d.image_size)
    p.add_argument("--steps", type=int, default=d.num_train_steps, help="num_train_steps")
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    p.add_argument("--ema-decay", type=float, default=d.ema_decay)
    p.add_argument("--loss", choices=LOSSES, default=d.loss)
    p.add_argument("--class-conditional", action="store_true")
    p.add_argument("--p-uncond", type=float, default=d.p_uncond)
    p.add_argument("--schedule", choices=SCHEDULES, default=d.schedule)
    p.add_argument("--num-steps", type=int, default=d.num_steps, help="T")
    p.add_argument("--mixed-precision", choices=MIXED_PRECISION, default=d.mixed_precision)
    p.add_argument("--channels-last", action="store_true", help="NHWC memory layout (GPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model's forward pass")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--base-channels", type=int, default=UNetConfig().base_channels)
    p.add_argument("--channel-mults", type=str, default=",".join(map(str, UNetConfig().channel_mults)))
    p.add_argument("--dropout", type=float, default=UNetConfig().dropout)
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--sample-every", type=int, default=d.sample_every)
    p.add_argument("--out", required=True, help="run folder: checkpoint.pt, train_info.json, sample grids")
    p.add_argument("--resume", default=None, help="checkpoint to continue from")
    p.add_argument("--data-root", default="data", help="where MNIST is downloaded")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (1 is fastest when other processes share the cores)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> TrainResult:
    """``python -m ddpm_core.train ...`` (or under ``torchrun``): train, then write
    ``OUT/checkpoint.pt`` and ``OUT/train_info.json`` (command, wall time, steps/s, sha256)."""
    args = _parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)  # this CLI process only
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    argv = sys.argv[1:] if argv is None else argv
    prefix = f"torchrun --nproc_per_node={world} -m ddpm_core.train" if world > 1 else "python -m ddpm_core.train"
    command = f"{prefix} {shlex.join(argv)}"
    config = TrainConfig(dataset=args.dataset, image_size=args.image_size, num_train_steps=args.steps,
                         max_minutes=args.max_minutes, batch_size=args.batch_size, lr=args.lr,
                         warmup_steps=args.warmup_steps, ema_decay=args.ema_decay, loss=args.loss,
                         class_conditional=args.class_conditional, p_uncond=args.p_uncond,
                         schedule=args.schedule, num_steps=args.num_steps,
                         mixed_precision=args.mixed_precision, channels_last=args.channels_last,
                         compile=args.compile, seed=args.seed,
                         checkpoint_every=args.checkpoint_every, sample_every=args.sample_every)
    unet_config = UNetConfig(base_channels=args.base_channels,
                             channel_mults=tuple(int(m) for m in args.channel_mults.split(",")),
                             dropout=args.dropout,
                             num_classes=NUM_CLASSES if args.class_conditional else None)
    try:
        result = train(config, unet_config, out=args.out, resume=args.resume, device=args.device,
                       progress=not args.no_progress, data_root=args.data_root, command=command)
        if not dist.is_initialized() or dist.get_rank() == 0:
            info = {"command": command, "step": result.step,
                    "wall_time_s": round(result.history.elapsed_s, 1),
                    "steps_per_s": round(result.steps_per_s, 3),
                    "final_loss_mean_last_100": sum(result.history.loss[-100:]) / max(1, len(result.history.loss[-100:])),
                    "checkpoint_sha256": result.checkpoint_sha256,
                    "world_size": world, "device": str(result.schedule.device),
                    "torch": torch.__version__, "num_threads": torch.get_num_threads()}
            Path(args.out, "train_info.json").write_text(json.dumps(info, indent=2) + "\n")
            print(json.dumps(info, indent=2))
        return result
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()

