"""Training: the config, one step of Algorithm 1, the run around it, its records, the command line (chapter 6).

``import ddpm_core as dc`` loads this layer only when a name from it is first used
(``dc.train``, ``dc.TrainConfig``, ...), so loading a shipped model never imports the trainer.
"""

from .config import TrainConfig, schedule_from_config
from .step import StepOutput, autocast_dtype, train_step
from .history import StepLog, TrainHistory, TrainResult
from .loop import build_model, load_dataset, train
from .cli import main

__all__ = ["TrainConfig", "TrainHistory", "TrainResult", "StepOutput", "train", "train_step", "load_dataset",
           "build_model", "schedule_from_config", "autocast_dtype", "main"]
