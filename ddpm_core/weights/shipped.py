"""Weights shipped inside the package: ``checkpoints/<name>.pt`` beside a JSON record of its sha256 (chapters 4-8).

One mechanism for every shipped network (the diffusion models of :mod:`.pretrained` and the
digit classifier of :mod:`ddpm_core.evaluation.classifier`): the record says which file holds
the weights, its sha256, and how it was made (command, wall time, ...); loading checks the
file's bytes against the record before ``torch.load`` reads them.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from .checkpoint import load_checkpoint, save_checkpoint

__all__ = ["SHIPPED_DIR", "shipped_record", "load_shipped", "write_shipped"]

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
"""The package's ``checkpoints/`` folder (package data, see pyproject.toml)."""


def shipped_record(name: str, folder: str | Path = SHIPPED_DIR) -> dict:
    """The JSON record ``<name>.json``; FileNotFoundError when this installation does not ship it."""
    path = Path(folder) / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"shipped weights {name!r} are not in this installation ({path} is missing)")
    return json.loads(path.read_text())


def load_shipped(name: str, map_location="cpu", folder: str | Path = SHIPPED_DIR) -> tuple[dict, dict]:
    """The checkpoint dict of shipped weights and their record, after checking the file's sha256.

    Raises:
        FileNotFoundError: no record. CheckpointError: the file is missing, corrupt or does not
            match the recorded sha256.
    """
    record = shipped_record(name, folder)
    state = load_checkpoint(Path(folder) / record["file"], sha256=record["sha256"], map_location=map_location)
    return state, record


def write_shipped(name: str, model: nn.Module, record: dict, folder: str | Path = SHIPPED_DIR, **checkpoint) -> dict:
    """Write ``<name>.pt`` (``model``'s weights and the ``checkpoint`` fields) and ``<name>.json``
    (``record`` with the file name and its sha256 first); return the full record."""
    folder = Path(folder)
    sha = save_checkpoint(folder / f"{name}.pt", model=model, **checkpoint)
    full = {"name": name, "file": f"{name}.pt", "sha256": sha, **record}
    (folder / f"{name}.json").write_text(json.dumps(full, indent=2) + "\n")
    return full
