"""What a run records: :class:`TrainHistory` (loss per step, loss per range of t) and :class:`TrainResult` (chapter 6).

:class:`StepLog` keeps each step's numbers on the device and hands them to the history in
batches (one host sync every ``log_every`` steps, not one per step, which would stall a GPU).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from ..diffusion.schedule import NoiseSchedule
from ..model.ema import EMA
from ..model.unet import UNet
from ..utils import wide_float

__all__ = ["TrainHistory", "TrainResult", "StepLog"]


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


class StepLog:
    """The per-step numbers of a run on their way into a :class:`TrainHistory`.

    Loss and gradient norm of each step, and per-t-bucket loss sums, stay on ``device`` until
    :meth:`flush`; a row of the per-bucket table is closed every ``log_every`` steps.
    """

    def __init__(self, history: TrainHistory, num_buckets: int, device: torch.device):
        self.history = history
        self.edges = torch.tensor(history.t_bucket_edges, device=device)
        self.sum = torch.tensor(history.pending_t_bucket_sum or [0.0] * num_buckets, dtype=wide_float(device),
                                device=device)  # float64 where the device has it (not on MPS)
        self.count = torch.tensor(history.pending_t_bucket_count or [0] * num_buckets, dtype=torch.long,
                                  device=device)
        self.pending: list[Tensor] = []  # (loss, grad norm) of each step not yet in history
        self.elapsed_before, self.t_start = history.elapsed_s, time.perf_counter()

    def elapsed(self) -> float:
        """Training wall time so far, over all resumed segments."""
        return self.elapsed_before + time.perf_counter() - self.t_start

    def add(self, step: int, lr: float, loss: Tensor, grad_norm: Tensor, t: Tensor, per_image: Tensor) -> None:
        """Record one step: its global loss and grad norm, and each image's loss in the bucket of its t."""
        self.history.step.append(step)
        self.history.lr.append(lr)
        self.pending.append(torch.stack([loss.float(), grad_norm.float()]))
        b = torch.bucketize(t, self.edges, right=True) - 1  # (b,) bucket of each t
        self.sum.index_add_(0, b, per_image.detach().to(self.sum.dtype))
        self.count.index_add_(0, b, torch.ones_like(b))
        self.history.elapsed_s = self.elapsed()

    def flush(self) -> None:
        """Move the pending numbers into the history (waits for the queued steps)."""
        if self.pending:
            loss_gn = torch.stack(self.pending).tolist()  # (n, 2)
            self.history.loss.extend(v[0] for v in loss_gn)
            self.history.grad_norm.extend(v[1] for v in loss_gn)
            self.pending.clear()
        self.history.pending_t_bucket_sum = self.sum.tolist()
        self.history.pending_t_bucket_count = self.count.tolist()
        self.history.elapsed_s = self.elapsed()

    def close_row(self, step: int, window: int) -> float:
        """Flush, close one row of the per-t-bucket table, and return the mean loss of the last ``window`` steps."""
        self.flush()
        h = self.history
        h.t_bucket_steps.append(step)
        h.t_bucket_elapsed_s.append(h.elapsed_s)
        h.t_bucket_loss.append((self.sum / self.count.clamp(min=1)).masked_fill(self.count == 0, float("nan")).tolist())
        self.sum.zero_(), self.count.zero_()
        recent = h.loss[-window:]
        return sum(recent) / len(recent)
