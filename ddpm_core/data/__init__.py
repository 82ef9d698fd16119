"""Data: image datasets on the 8-bit grid of [-1, 1], the pixel convention and image grids, 2-D toys (chapters 1, 6, 8).

Loaders return ``(x, y)``: x (N, C, H, W) float32 in $[-1, 1]$, y (N,) int64.
"""

from .images import DATA_RANGE, from_image, image_grid, image_to_png, is_png, to_image
from .datasets import DIGITS_SPLIT_SEED, DIGITS_TEST_SIZE, NUM_CLASSES, load_digits, load_mnist
from .toys import GaussianMixture2D, swiss_roll, two_moons
