"""Weights on disk: the checkpoint file format, the weights shipped in the package, the shipped diffusion models (chapters 4-8).

Loading a shipped model needs only the model and the schedule: never the trainer.
"""

from .checkpoint import CheckpointError, file_sha256, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .shipped import SHIPPED_DIR, load_shipped, shipped_record, write_shipped
from .pretrained import Pretrained, available_pretrained, export_pretrained, load_pretrained
