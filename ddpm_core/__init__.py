"""ddpm_core: the tested package behind the DDPM book.

``import ddpm_core as dc`` gives everything a chapter needs. Importing changes no global state:
chapters call ``dc.seed_everything``, ``dc.default_device`` and ``dc.apply_book_style`` themselves.

The folders are the layers, each importing only those above it in this list:

- ``utils``, ``_checks``: device, seeding, the per-t broadcast; the shared argument checks.
- ``diffusion/``: the pure math (schedule, q, posterior, likelihood, bound, losses, samplers).
- ``model/``: the network ε_θ (UNet and its blocks, inspection, EMA of its weights).
- ``data/``: datasets on the 8-bit grid of [-1, 1], the pixel convention, image grids, 2-D toys.
- ``weights/``: the checkpoint format, shipped weights, the shipped diffusion models.
- ``evaluation/``: the digit classifier and the sample-quality metric.
- ``training/``: the config, one step of Algorithm 1, the run, its records, the command line
  (loaded on first use of one of its names, so loading a shipped model never imports it).
- ``notebook/``: the book's style, figures, sliders and glue.

Equation tags in docstrings: [DDPM] Ho et al. 2020; [IDDPM] Nichol & Dhariwal 2021; [DDIM] Song,
Meng & Ermon 2021; [SDE] Song et al. 2021; [CFG] Ho & Salimans 2022; [VDM] Kingma et al. 2021.
"""

import importlib

from .utils import default_device, extract, randn, seed_everything, wide_float
from .diffusion import (PIXEL_LEVELS, REVERSE_VARIANCES, ElboTerms, NoiseSchedule, Trajectory, ddim_sample,
                        ddim_step, ddim_timesteps, ddpm_sample, ddpm_step, discretized_gaussian_log_likelihood,
                        elbo_terms, eps_from_x0, guided, loss_simple, loss_vlb, normal_kl, normal_pdf,
                        p_mean_variance, prior_bpd, q_mean_variance, q_posterior, q_sample, q_step_mean_variance,
                        q_step_sample, reverse_loop, timestep_pairs, vlb_term_bpd, x0_from_eps,
                        PREDICTION_TARGETS, LOSS_WEIGHTINGS, convert_prediction, eps_from_score, eps_from_v,
                        score_from_eps, target_error_scale, v_from_eps_x0, x0_error_weight, x0_from_v, x0_mse,
                        HYBRID_LAMBDA, learned_log_variance, loss_hybrid, split_learned_output,
                        vlb_terms_learned, SOLVERS, SPACINGS, solver_nfe, solver_sample, solver_timesteps,
                        SAMPLER_VARIANCES, as_eps_model, FLOW_SOLVERS, eps_from_velocity, flow_interpolate,
                        flow_sample, flow_snr, flow_tau, flow_timesteps, loss_flow_matching, velocity_from_eps,
                        x0_from_velocity, OBJECTIVE_LOSSES, TRAINED_PREDICTIONS, training_loss,
                        ImportanceTSampler, estimator_variance, importance_probs, churn_nfe, churn_sample)
from .model import (EMA, LayerInfo, UNet, UNetConfig, count_flops, layer_summary, sinusoidal_embedding)
from . import data
from .data import (NUM_CLASSES, GaussianMixture2D, from_image, image_grid, image_to_png, load_digits, load_mnist,
                   swiss_roll, to_image, two_moons)
from .weights import (CheckpointError, Pretrained, available_pretrained, file_sha256, load_checkpoint,
                      load_pretrained, save_checkpoint)
from .evaluation import (DigitsClassifier, DigitsQuality, digits_fid, digits_fid_floor, digits_quality,
                         digits_reference_split, frechet_distance, independent_digits_fid,
                         independent_digits_fid_floor, load_digits_classifier, train_digits_classifier)
from .evaluation.benchmark_results import available_benchmarks, load_benchmark
from .notebook import (apply_book_style, ddim_vs_ddpm_diagram, device_note, digit_rows, fig_to_png, figure_frames,
                       figure_slider, frame_slider, glue, images_figure, in_colab, markov_chain_diagram, sci_notation,
                       show_images, slider_timesteps, trajectory_slider, unet_diagram)

from .notebook.style import OKABE_ITO

_LAZY = {name: "ddpm_core.training" for name in
         ("train", "train_step", "TrainConfig", "TrainHistory", "TrainResult", "StepOutput")}
_LAZY_MODULES = ("training",)


def __getattr__(name: str):
    """The training layer, imported on first use (PEP 562)."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _LAZY_MODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_LAZY_MODULES})


__version__ = "0.1.0"
