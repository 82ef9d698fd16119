"""The digit classifier behind the book's sample-quality metric: a small CNN, its training, its shipped weights (chapter 7).

Its 128-d penultimate features are what :mod:`ddpm_core.evaluation.metrics` compares; its
weights ship as ``checkpoints/digits_classifier.pt`` (rebuild: ``python -m
ddpm_core.evaluation.classifier``).
"""

from __future__ import annotations

import json
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.datasets import DIGITS_TEST_SIZE, NUM_CLASSES, load_digits
from ..weights.shipped import SHIPPED_DIR, load_shipped, write_shipped

__all__ = ["DigitsClassifier", "train_digits_classifier", "load_digits_classifier", "classifier_accuracy",
           "FEATURE_DIM", "DIGIT_SIZE"]

CLASSIFIER_NAME = "digits_classifier"
DIGIT_SIZE = 8
"""The classifier sees 8×8 images; other sizes are resized (antialiased bilinear) first."""
FEATURE_DIM = 128
"""Size of the penultimate features the Fréchet distance uses (vs. Inception's 2,048)."""


class DigitsClassifier(nn.Module):
    """A small CNN for 8×8 digits in [-1, 1]: two 3×3 convs, a 2×2 max-pool, a 128-d feature layer."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),  # (B, 64, 4, 4)
            nn.Flatten(),  # (B, 1024)
            nn.Linear(64 * 4 * 4, FEATURE_DIM), nn.ReLU(),  # (B, 128) penultimate features
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    @staticmethod
    def _prepare(x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"x must be (N, 1, H, W) images in [-1, 1], got "
                             f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        x = x.float().clamp(-1, 1)
        if x.shape[-2:] != (DIGIT_SIZE, DIGIT_SIZE):
            x = F.interpolate(x, size=(DIGIT_SIZE, DIGIT_SIZE), mode="bilinear", antialias=True,
                              align_corners=False)
        return x

    def features(self, x: Tensor) -> Tensor:
        """(N, 1, H, W) → (N, 128) penultimate activations."""
        return self.body(self._prepare(x))

    def forward(self, x: Tensor) -> Tensor:
        """(N, 1, H, W) → (N, 10) logits."""
        return self.head(self.dropout(self.features(x)))


def _random_shift(x: Tensor, generator: torch.Generator) -> Tensor:
    """Augmentation: shift each image by -1, 0 or +1 pixel in each direction (zero = -1 padded)."""
    B = x.shape[0]
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)  # (B, 1, 10, 10)
    dy, dx = torch.randint(0, 3, (2, B), generator=generator)
    rows = (dy[:, None] + torch.arange(DIGIT_SIZE))[:, :, None]  # (B, 8, 1)
    cols = (dx[:, None] + torch.arange(DIGIT_SIZE))[:, None, :]  # (B, 1, 8)
    return padded[torch.arange(B)[:, None, None], 0, rows, cols][:, None]  # (B, 1, 8, 8)


def train_digits_classifier(epochs: int = 40, batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                            progress: bool = False) -> tuple[DigitsClassifier, float]:
    """Train :class:`DigitsClassifier` on the digits train split; return it (eval mode) and its
    accuracy on the held-out test digits. Runs in well under a minute on a CPU; seeded, and
    the caller's global RNG is left untouched."""
    x, y = load_digits(split="train")
    x_test, y_test = load_digits(split="test")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        model = DigitsClassifier()
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        for epoch in range(epochs):
            model.train()
            perm = torch.randperm(len(x), generator=g)
            for i in range(0, len(x), batch_size):
                idx = perm[i:i + batch_size]
                loss = F.cross_entropy(model(_random_shift(x[idx], g)), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            sched.step()
            if progress:
                print(f"epoch {epoch + 1}/{epochs}: test accuracy {classifier_accuracy(model, x_test, y_test):.4f}")
    model.eval()
    return model, classifier_accuracy(model, x_test, y_test)


@torch.no_grad()
def classifier_accuracy(model: DigitsClassifier, x: Tensor, y: Tensor) -> float:
    """Fraction of ``x`` classified as ``y``."""
    was_training = model.training
    model.eval()
    acc = (model(x).argmax(1) == y).float().mean().item()
    model.train(was_training)
    return acc


def load_digits_classifier(device=None) -> DigitsClassifier:
    """The shipped classifier (``checkpoints/digits_classifier.pt``), sha256-verified, eval mode."""
    state, _ = load_shipped(CLASSIFIER_NAME)
    model = DigitsClassifier()
    model.load_state_dict(state["model"])
    return model.to(device if device is not None else "cpu").eval().requires_grad_(False)


def _export_classifier(dest=SHIPPED_DIR) -> dict:
    """Train the classifier and write ``digits_classifier.pt`` + ``.json`` (the shipped weights)."""
    t0 = time.perf_counter()
    model, accuracy = train_digits_classifier()
    wall = time.perf_counter() - t0
    record = {"command": "python -m ddpm_core.evaluation.classifier", "wall_time_s": round(wall, 1),
              "test_accuracy": accuracy, "test_size": DIGITS_TEST_SIZE, "torch": torch.__version__}
    return write_shipped(CLASSIFIER_NAME, model, record, dest, extra={"test_accuracy": accuracy})




if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(_export_classifier(), indent=2))
