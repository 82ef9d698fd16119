"""The diffusion models trained by the project and shipped with the package, sha256-verified (chapters 4-8).

Each model is ``checkpoints/<name>.pt`` (EMA weights only, a few MB) with ``checkpoints/<name>.json``
beside it recording the file's sha256, the exact training command, its wall time and speed.
They were trained with the project's own CLI (``python -m ddpm_core.train``; the shipped records keep the flags of the time, ``--steps`` for today's ``--train-steps``) on a 2-core CPU,
8×8 digits, DDPM's linear schedule with T = 1000:

- ``"digits"``: unconditional, $L_\\text{simple}$ [DDPM eq. 14].
- ``"digits-vlb"``: the same command and step count with ``--loss vlb``, for DDPM Table 2's
  $L_\\text{simple}$ vs $L_\\text{vlb}$ comparison in chapter 4.
- ``"digits-cond"``: class-conditional with label dropout 0.1, for classifier-free guidance.
- chapter 9's variations of ``"digits"``, one change each, same command and step count otherwise:
  ``"digits-v"`` (``--prediction v``), ``"digits-cosine"`` (``--schedule cosine``),
  ``"digits-minsnr"`` (``--loss min_snr``) and ``"digits-hybrid"`` (``--loss hybrid``: learned
  variances, the UNet outputs 2C channels).
- ``"digits-flow"``: chapter 10's flow-matching model (``--prediction velocity``).

Rebuild one: train, then ``python -m ddpm_core.weights.pretrained RUN_DIR/checkpoint.pt NAME``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .._checks import check_choice
from ..diffusion.learned_variance import split_learned_output
from ..diffusion.parameterization import as_eps_model
from ..diffusion.schedule import NoiseSchedule
from ..model.unet import UNet, UNetConfig
from ..utils import default_device
from .checkpoint import CheckpointError, file_sha256, load_checkpoint
from .shipped import SHIPPED_DIR, load_shipped, write_shipped

__all__ = ["Pretrained", "load_pretrained", "available_pretrained", "export_pretrained", "PRETRAINED_DIR"]

PRETRAINED_DIR = SHIPPED_DIR
PRETRAINED_NAMES = ("digits", "digits-cond", "digits-vlb", "digits-v", "digits-cosine", "digits-minsnr",
                    "digits-hybrid", "digits-flow")


@dataclass(frozen=True)
class Pretrained:
    """A shipped model, ready to sample: ``dc.ddim_sample(p.model, p.schedule, (16, *p.image_shape))``."""

    name: str
    model: nn.Module
    """UNet with the EMA weights, eval mode, on the requested (default) device."""
    schedule: NoiseSchedule
    """The schedule it was trained with, on the model's device."""
    image_shape: tuple[int, int, int]
    """(C, H, W) of its images."""
    config: dict
    """The run's configs as plain dicts: "unet", "train", "schedule", "data"."""
    info: dict
    """The JSON record: command, wall_time_s, steps_per_s, sha256, ..."""
    history: dict = field(default_factory=dict, repr=False)
    """The run's :class:`~ddpm_core.training.TrainHistory` as a dict (loss per step, per t-bucket)."""

    @property
    def num_classes(self) -> int | None:
        return self.config["unet"].get("num_classes")

    @property
    def prediction(self) -> str:
        """What the network outputs: "eps", "x0", "v" or "velocity" (flow matching)."""
        return self.config["train"].get("prediction", "eps")

    @property
    def learned_variance(self) -> bool:
        """Whether the network also outputs its variances ((B, 2C, H, W), ``split_learned_output``)."""
        return bool(self.config["unet"].get("learned_variance", False))

    @property
    def eps_model(self):
        """The network as a noise predictor ``(xt, t) -> eps_theta``, for every sampler and the bound.

        An x0- or v-model is converted (``as_eps_model``); a learned-variance model keeps its
        eps channels. A flow model has no noise schedule to convert with: sample it with
        ``flow_sample``.
        """
        if self.prediction == "velocity":
            raise ValueError(f"{self.name!r} is a flow-matching model: sample it with dc.flow_sample(p.model, ...)")
        if self.learned_variance:
            return lambda xt, t, *y: split_learned_output(self.model(xt, t, *y), xt)[0]
        return as_eps_model(self.model, self.schedule, self.prediction)


def available_pretrained() -> list[str]:
    """Names of the shipped models present in this installation."""
    return [n for n in PRETRAINED_NAMES if (PRETRAINED_DIR / f"{n}.json").is_file()]


def load_pretrained(name: str = "digits", device=None) -> Pretrained:
    """Load a shipped model after checking its sha256 against the JSON record beside it.

    Args:
        name: one of ``available_pretrained()`` (the list in the module docstring).
        device: default :func:`~ddpm_core.default_device`.

    Raises:
        ValueError: unknown name. FileNotFoundError: not shipped in this installation.
        CheckpointError: the weights file does not match its recorded sha256, or is corrupt.
    """
    check_choice("name", name, PRETRAINED_NAMES)
    state, info = load_shipped(name, folder=PRETRAINED_DIR)
    device = torch.device(device) if device is not None else default_device()
    configs = state["configs"]
    model = UNet(UNetConfig.from_dict(configs["unet"]))
    model.load_state_dict(state["model"])
    model.to(device).eval().requires_grad_(False)
    schedule = NoiseSchedule.from_config(configs["schedule"]).to(device)  # the checkpoint stores it
    return Pretrained(name=name, model=model, schedule=schedule,
                      image_shape=tuple(configs["data"]["image_shape"]), config=configs, info=info,
                      history=state.get("history") or {})


def export_pretrained(checkpoint: str | Path, name: str, dest: str | Path = PRETRAINED_DIR,
                      train_info: dict | None = None, note: str | None = None) -> dict:
    """Write ``dest/<name>.pt`` (the run's EMA weights, configs and history; no optimizer) and
    ``dest/<name>.json`` (sha256 and the run's record from ``train_info.json`` beside the checkpoint).

    Returns:
        The JSON record.
    """
    checkpoint = Path(checkpoint)
    state = load_checkpoint(checkpoint)
    if state.get("ema") is None:
        raise CheckpointError(f"{checkpoint} holds no EMA weights; export a training checkpoint")
    if train_info is None:
        info_path = checkpoint.parent / "train_info.json"
        train_info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    model = UNet(UNetConfig.from_dict(state["configs"]["unet"]))
    model.load_state_dict(state["ema"]["model"])
    record = {"source_checkpoint_sha256": file_sha256(checkpoint), "step": state["step"],
              "weights": "EMA", "num_params": sum(p.numel() for p in model.parameters()),
              **{k: v for k, v in train_info.items() if k not in ("checkpoint_sha256",)}}
    if note:
        record["note"] = note
    return write_shipped(name, model, record, dest, step=state["step"], configs=state["configs"],
                         history=state.get("history"),
                         extra={"weights": "ema", "ema_decay": state["ema"]["decay"],
                                "command": state["extra"].get("command", "")})


def _main(argv: list[str] | None = None) -> None:  # pragma: no cover
    import argparse  # the export command only: loading a model never needs it

    p = argparse.ArgumentParser(prog="python -m ddpm_core.weights.pretrained",
                                description="Export a training run's EMA weights as a shipped model.")
    p.add_argument("checkpoint", help="RUN_DIR/checkpoint.pt written by python -m ddpm_core.train")
    p.add_argument("name", choices=PRETRAINED_NAMES)
    p.add_argument("--dest", default=str(PRETRAINED_DIR))
    p.add_argument("--note", default=None, help="free text for the JSON record (e.g. the machine's load)")
    args = p.parse_args(argv)
    print(json.dumps(export_pretrained(args.checkpoint, args.name, args.dest, note=args.note), indent=2))


if __name__ == "__main__":  # pragma: no cover
    _main()
