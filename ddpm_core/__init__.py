"""ddpm_core: the tested package behind the DDPM book.

``import ddpm_core as dc`` gives everything a chapter needs. Importing changes no global state:
chapters call ``dc.seed_everything``, ``dc.default_device`` and ``dc.apply_book_style`` themselves.
Equation tags in docstrings: [DDPM] Ho et al. 2020; [IDDPM] Nichol & Dhariwal 2021; [DDIM] Song,
Meng & Ermon 2021; [SDE] Song et al. 2021; [CFG] Ho & Salimans 2022; [VDM] Kingma et al. 2021.
"""

# core math (chapters 1-4, 7)
from .utils import default_device, extract, randn, seed_everything, wide_float
from .schedule import REVERSE_VARIANCES, NoiseSchedule
from .forward import q_mean_variance, q_sample, q_step_mean_variance, q_step_sample
from .posterior import eps_from_x0, p_mean_variance, q_posterior, x0_from_eps
from .likelihood import discretized_gaussian_log_likelihood, normal_kl
from .elbo import ElboTerms, elbo_terms, prior_bpd, vlb_term_bpd
from .losses import loss_simple, loss_vlb
from .sampling import Trajectory, ddim_sample, ddim_step, ddim_timesteps, ddpm_sample, ddpm_step
from .notebook import device_note, glue, in_colab

# model, data, training (helper block: unet, data, ema, checkpoint, train, guidance, metrics, pretrained)
from .unet import LayerInfo, UNet, UNetConfig, count_flops, layer_summary, sinusoidal_embedding
from .data import (GaussianMixture2D, from_image, load_digits, load_mnist, swiss_roll, to_image,
                   two_moons)
from .ema import EMA
from .checkpoint import CheckpointError, file_sha256, load_checkpoint, save_checkpoint
from .training import TrainConfig, TrainHistory, TrainResult, train
from .guidance import guided
from .metrics import (DigitsClassifier, DigitsQuality, digits_fid, digits_fid_floor, digits_quality,
                      digits_reference_split, frechet_distance, load_digits_classifier,
                      train_digits_classifier)
from .pretrained import Pretrained, available_pretrained, load_pretrained
from .benchmark_results import available_benchmarks, load_benchmark

# widgets and viz (helper block)
from .viz import apply_book_style, fig_to_png, figure_frames, image_grid, image_to_png, images_figure, show_images
from .widgets import figure_slider, frame_slider, slider_timesteps

__version__ = "0.1.0"
