"""The training command, generated from :class:`TrainConfig` and :class:`UNetConfig` (chapter 6).

Every field of the two configs is a flag, named after the field, whose help is the comment
under the field (its attribute docstring) and whose default is the field's default, so no flag
can drift from the config. Two fields get names that cannot be confused: ``num_train_steps`` is
``--train-steps`` (optimizer steps) and ``num_steps`` is ``--diffusion-steps`` (T).
``UNetConfig.in_channels``, ``num_classes`` and ``learned_variance`` follow from the data,
``--class-conditional`` and ``--loss hybrid``.

    python -m ddpm_core.train --dataset digits --train-steps 1700 --out runs/digits
    torchrun --nproc_per_node=2 -m ddpm_core.train --dataset digits --train-steps 1700 --out runs/ddp
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import os
import shlex
import sys
import textwrap
from pathlib import Path

import torch
import torch.distributed as dist

from ..data.datasets import NUM_CLASSES
from ..model.unet import UNetConfig
from .config import TrainConfig
from .history import TrainResult
from .loop import train

__all__ = ["build_parser", "main", "FLAG_NAMES"]

FLAG_NAMES = {"num_train_steps": "train-steps", "num_steps": "diffusion-steps"}
"""Fields whose flag is not simply the field's name with dashes."""
RENAMED = {"--steps": "--train-steps", "--num-steps": "--diffusion-steps"}
"""Flags of earlier versions (still in the shipped models' recorded commands) and their names now."""
DERIVED_UNET_FIELDS = ("in_channels", "num_classes", "learned_variance")
PROG = "python -m ddpm_core.train"


def field_docs(cls) -> dict[str, str]:
    """The attribute docstring under each field of a dataclass, by field name."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _add_fields(group, cls, skip=()) -> None:
    """One flag per field of ``cls``, typed by its default, with the field's docstring as help."""
    docs = field_docs(cls)
    hints = {f.name: f for f in dataclasses.fields(cls)}
    defaults = cls()
    for name, f in hints.items():
        if name in skip:
            continue
        flag = "--" + FLAG_NAMES.get(name, name.replace("_", "-"))
        default = getattr(defaults, name)
        kwargs = {"default": default, "dest": name, "help": docs.get(name, "").replace("%", "%%")}
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, tuple):
            kwargs.update(type=lambda v: tuple(int(m) for m in v.split(",")), metavar="N,N,...")
        elif default is None:  # an optional number (max_minutes)
            kwargs["type"] = float
        else:
            kwargs["type"] = type(default)
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        group.add_argument(flag, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m ddpm_core.train``."""
    p = argparse.ArgumentParser(prog=PROG, allow_abbrev=False,
                                description="Train a DDPM noise predictor (Algorithm 1) and write checkpoint.pt "
                                            "and train_info.json to --out.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_fields(p.add_argument_group("training (TrainConfig)"), TrainConfig)
    _add_fields(p.add_argument_group("network (UNetConfig)"), UNetConfig, skip=DERIVED_UNET_FIELDS)
    run = p.add_argument_group("this run")
    run.add_argument("--out", required=True, help="run folder: checkpoint.pt, train_info.json, sample grids")
    run.add_argument("--resume", default=None, help="checkpoint to continue from")
    run.add_argument("--data-root", default="data", help="where MNIST is downloaded")
    run.add_argument("--device", default=None, help="default: cuda, then mps, then cpu")
    run.add_argument("--threads", type=int, default=None,
                     help="torch CPU threads (1 is fastest when other processes share the cores)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def parse_configs(argv: list[str]) -> tuple[TrainConfig, UNetConfig, argparse.Namespace]:
    """The two configs and the run options a command line gives."""
    parser = build_parser()
    for old, new in RENAMED.items():
        if any(a == old or a.startswith(old + "=") for a in argv):
            parser.error(f"{old} is now {new} ({new.lstrip('-')} cannot be confused with the other step count)")
    args = vars(parser.parse_args(argv))
    train_config = TrainConfig(**{f.name: args[f.name] for f in dataclasses.fields(TrainConfig)})
    unet_config = UNetConfig(**{f.name: args[f.name] for f in dataclasses.fields(UNetConfig)
                                if f.name not in DERIVED_UNET_FIELDS},
                             num_classes=NUM_CLASSES if train_config.class_conditional else None,
                             learned_variance=train_config.loss == "hybrid")
    return train_config, unet_config, argparse.Namespace(**args)


def main(argv: list[str] | None = None) -> TrainResult:
    """``python -m ddpm_core.train ...`` (or under ``torchrun``): train, then write
    ``OUT/checkpoint.pt`` and ``OUT/train_info.json`` (command, wall time, steps/s, sha256)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    config, unet_config, args = parse_configs(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)  # this CLI process only
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    prefix = f"torchrun --nproc_per_node={world} -m ddpm_core.train" if world > 1 else PROG
    command = f"{prefix} {shlex.join(argv)}"
    try:
        result = train(config, unet_config, out=args.out, resume=args.resume, device=args.device,
                       progress=not args.no_progress, data_root=args.data_root, command=command)
        if not dist.is_initialized() or dist.get_rank() == 0:
            _write_info(args.out, command, result, world)
        return result
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _write_info(out: str, command: str, result: TrainResult, world: int) -> None:
    """``OUT/train_info.json``: what was run, how long it took, and the checkpoint's sha256."""
    last = result.history.loss[-100:]
    info = {"command": command, "step": result.step, "wall_time_s": round(result.history.elapsed_s, 1),
            "steps_per_s": round(result.steps_per_s, 3), "final_loss_mean_last_100": sum(last) / max(1, len(last)),
            "checkpoint_sha256": result.checkpoint_sha256, "world_size": world,
            "device": str(result.schedule.device), "torch": torch.__version__, "num_threads": torch.get_num_threads()}
    Path(out, "train_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))
