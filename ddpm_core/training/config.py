r"""What a training run depends on: :class:`TrainConfig`, each default with its reason, and its validation (chapter 6).

A run is a function of its config (and its data): the trainer, the command line (generated
from these fields, see :mod:`.cli`) and the checkpoints all read it from here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from .._checks import check_choice, check_int, check_number
from ..diffusion.objectives import OBJECTIVE_LOSSES, TRAINED_PREDICTIONS, check_objective
from ..diffusion.schedule import NoiseSchedule

__all__ = ["TrainConfig", "schedule_from_config", "DATASETS", "LOSSES", "PREDICTIONS", "SCHEDULES", "MIXED_PRECISION"]

DATASETS = ("digits", "mnist", "fashion-mnist")
LOSSES = OBJECTIVE_LOSSES
PREDICTIONS = TRAINED_PREDICTIONS
SCHEDULES = ("linear", "cosine")
MIXED_PRECISION = ("auto", "bf16", "fp16", "no")
POSITIVE_INTS = ("image_size", "num_train_steps", "batch_size", "num_steps", "log_every", "num_t_buckets",
                 "num_sample_images", "sample_steps")
NON_NEGATIVE_INTS = ("warmup_steps", "checkpoint_every", "sample_every", "seed")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; each default says why."""

    dataset: str = field(default="digits", metadata={"choices": DATASETS})
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
    loss: str = field(default="simple", metadata={"choices": LOSSES})
    """"simple": the MSE of the prediction's target (L_simple for eps [DDPM eq. 14]); "min_snr": reweighted to
    min(SNR, gamma) on the x0-error [MinSNR]; "vlb": a one-sample bound [DDPM eq. 5]; "hybrid": learned
    variances (the UNet gets C more output channels) with L_simple + 0.001 L_vlb [IDDPM eq. 16]."""
    prediction: str = field(default="eps", metadata={"choices": PREDICTIONS})
    """What the network outputs: "eps" (DDPM), "x0", "v" [Salimans & Ho 2022], or "velocity": flow matching on
    the linear path x = (1 - t/T) x0 + (t/T) eps, which ignores the noise schedule (chapter 10)."""
    min_snr_gamma: float = 5.0
    """Min-SNR's gamma for loss="min_snr" (the paper's default)."""
    class_conditional: bool = False
    """Train ε_θ(x_t, t, y) with labels, for classifier-free guidance."""
    p_uncond: float = 0.1
    """Probability of replacing the label by the null label during training [CFG §4: 0.1 or 0.2]."""
    schedule: str = field(default="linear", metadata={"choices": SCHEDULES})
    """DDPM's linear schedule; "cosine" is IDDPM's."""
    num_steps: int = 1000
    """T, the paper's value."""
    beta_1: float = 1e-4
    """DDPM's β_1."""
    beta_T: float = 0.02
    """DDPM's β_T."""
    cosine_s: float = 0.008
    """IDDPM's offset s (used when schedule="cosine")."""
    mixed_precision: str = field(default="auto", metadata={"choices": MIXED_PRECISION})
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
        for f in fields(self):
            if "choices" in f.metadata:
                check_choice(f.name, getattr(self, f.name), f.metadata["choices"])
        for name in POSITIVE_INTS:
            check_int(name, getattr(self, name), 1)
        for name in NON_NEGATIVE_INTS:
            check_int(name, getattr(self, name), 0)
        for name in ("lr", "grad_clip"):
            check_number(name, getattr(self, name), 0.0, open_low=True)
        check_number("weight_decay", self.weight_decay, 0.0)
        check_number("ema_decay", self.ema_decay, 0.0, 1.0, open_high=True)
        check_number("p_uncond", self.p_uncond, 0.0, 1.0)
        check_number("min_snr_gamma", self.min_snr_gamma, 0.0, open_low=True)
        check_objective(self.prediction, self.loss)
        if self.max_minutes is not None:
            check_number("max_minutes", self.max_minutes, 0.0, open_low=True)
        if self.num_t_buckets > self.num_steps:
            raise ValueError(f"num_t_buckets ({self.num_t_buckets}) must be <= num_steps ({self.num_steps})")

    def schedule_config(self) -> dict:
        """The :meth:`NoiseSchedule.to_config` dict of the schedule this run trains with."""
        return schedule_from_config(self).to_config()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def schedule_from_config(config: TrainConfig) -> NoiseSchedule:
    """The NoiseSchedule a TrainConfig names."""
    if config.schedule == "linear":
        return NoiseSchedule.linear(config.num_steps, config.beta_1, config.beta_T)
    return NoiseSchedule.cosine(config.num_steps, config.cosine_s)
