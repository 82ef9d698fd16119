"""Atomic, verifiable checkpoint files: one plain-data format for runs and shipped weights (chapter 6).

A checkpoint is one ``torch.save`` file holding only plain data (tensors, dicts, lists, numbers,
strings), so it loads with ``torch.load(weights_only=True)``, which runs no pickled code:

``format``/``version``, ``step``, ``model`` (state dict), ``ema`` (``EMA.state_dict()`` or None),
``optimizer`` and ``lr_scheduler`` (state dicts or None), ``configs`` (plain dicts, e.g. the
UNet, training and schedule configs), ``rng`` (torch CPU/CUDA generator states and the trainer's
own generator, or None), ``history`` and ``extra`` (plain data).

Saving writes a temporary file in the target folder, flushes it to disk, then renames it over the
target with ``os.replace`` (atomic on POSIX and Windows): a crash mid-save leaves the previous
checkpoint intact, never a half-written one.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

from typing import TYPE_CHECKING

import torch
from torch import nn

from .._checks import check_int
from ..model.ema import unwrap_model

if TYPE_CHECKING:
    from ..model.ema import EMA

__all__ = ["save_checkpoint", "load_checkpoint", "file_sha256", "rng_state", "set_rng_state",
           "CheckpointError", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "ddpm_core.checkpoint"
CHECKPOINT_VERSION = 1
_HASH_CHUNK = 1 << 20  # read files 1 MiB at a time when hashing
_FILE_MODE = 0o644  # rw-r--r--, what open() would give under the usual umask 022


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, of another format, or fails its sha256 check."""


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_HASH_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def rng_state(generator: torch.Generator | None = None) -> dict:
    """Torch's global CPU (and CUDA) RNG states, plus ``generator``'s: what resuming needs."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generator": generator.get_state() if generator is not None else None,
    }


def set_rng_state(state: dict, generator: torch.Generator | None = None) -> None:
    """Restore what :func:`rng_state` saved (CUDA states only where CUDA is available)."""
    torch.set_rng_state(state["torch"].cpu())  # RNG states are CPU byte tensors, whatever map_location did
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    if generator is not None and state.get("generator") is not None:
        generator.set_state(state["generator"].cpu())


def save_checkpoint(path: str | Path, *, model: nn.Module, step: int = 0, ema: EMA | None = None,
                    optimizer: torch.optim.Optimizer | None = None, lr_scheduler=None,
                    configs: dict | None = None, rng: dict | None = None, history: dict | None = None,
                    extra: dict | None = None) -> str:
    """Write a checkpoint atomically (temp file + ``os.replace``) and return its sha256.

    Args:
        path: target file; its folder is created.
        model: the trained model (a DDP wrapper is unwrapped).
        step: optimizer steps taken so far.
        ema, optimizer, lr_scheduler: saved through their ``state_dict()`` when given.
        configs: name → plain dict (use ``dataclasses.asdict`` / ``to_dict``), e.g.
            ``{"unet": ..., "train": ..., "schedule": ...}``.
        rng: from :func:`rng_state`; history, extra: plain data.
    """
    path = Path(path)
    check_int("step", step, 0)
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "step": step,
        "model": unwrap_model(model).state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "lr_scheduler": lr_scheduler.state_dict() if lr_scheduler is not None else None,
        "configs": dict(configs or {}),
        "rng": rng,
        "history": history,
        "extra": dict(extra or {}),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)  # mkstemp creates 0600; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return file_sha256(path)


def load_checkpoint(path: str | Path, sha256: str | None = None, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`, safely (``weights_only=True``).

    Args:
        path: the file.
        sha256: expected hex digest; when given, the file's bytes are checked before loading.
        map_location: where tensors go (default CPU).

    Returns:
        The checkpoint dict (see the module docstring).

    Raises:
        CheckpointError: missing file, sha256 mismatch, corrupt or truncated file, or not a
            ``ddpm_core`` checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if sha256 is not None:
        if not isinstance(sha256, str) or len(sha256) != 64:
            raise ValueError(f"sha256 must be a 64-character hex string, got {sha256!r}")
        actual = file_sha256(path)
        if actual != sha256.lower():
            raise CheckpointError(
                f"sha256 mismatch for {str(path)!r}: expected {sha256.lower()}, got {actual}; the file "
                "is corrupt, truncated or not the one recorded (re-download or retrain it)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, pickle.UnpicklingError,
            zipfile.BadZipFile) as e:
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or unreadable "
                              f"({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a ddpm_core checkpoint (no format={CHECKPOINT_FORMAT!r})")
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{str(path)!r} has checkpoint version {state.get('version')!r}; "
                              f"this ddpm_core reads version {CHECKPOINT_VERSION}")
    return state
