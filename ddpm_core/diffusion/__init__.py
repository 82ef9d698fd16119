r"""The pure mathematics of the diffusion: schedules, $q$, its posterior, likelihoods, the bound,
the losses and the samplers (chapters 1-4 and 7-8), what else a network could predict and how a
loss weighs it (chapter 9), faster ODE solvers and flow matching (chapter 10). Tensors in, tensors
out: no ``nn.Module`` is defined here, and nothing here trains; a model is any callable
``model(xt, t) -> eps_theta``.
"""

from .schedule import REVERSE_VARIANCES, NoiseSchedule
from .forward import q_mean_variance, q_sample, q_step_mean_variance, q_step_sample
from .posterior import eps_from_x0, p_mean_variance, q_posterior, x0_from_eps
from .likelihood import PIXEL_LEVELS, discretized_gaussian_log_likelihood, normal_kl, normal_pdf
from .elbo import ElboTerms, elbo_terms, prior_bpd, vlb_term_bpd
from .losses import loss_simple, loss_vlb
from .sampling import (SAMPLER_VARIANCES, Trajectory, ddim_sample, ddim_step, ddim_timesteps, ddpm_sample, ddpm_step, reverse_loop,
                       timestep_pairs)
from .guidance import guided
from .parameterization import (PREDICTION_TARGETS, as_eps_model, convert_prediction, eps_from_score, eps_from_v, score_from_eps,
                               v_from_eps_x0, x0_from_v)
from .weighting import LOSS_WEIGHTINGS, target_error_scale, x0_error_weight, x0_mse
from .solvers import (KARRAS_RHO, SOLVERS, SPACINGS, DPMSolverPP2MStep, HeunStep, dpmpp_2m_update, euler_step,
                      solver_nfe, solver_pairs, solver_sample, solver_step, solver_timesteps)
from .learned_variance import HYBRID_LAMBDA, learned_log_variance, loss_hybrid, split_learned_output, vlb_terms_learned
from .flow import (FLOW_SOLVERS, eps_from_velocity, flow_interpolate, flow_sample, flow_snr, flow_tau, flow_timesteps,
                   loss_flow_matching, velocity_from_eps, x0_from_velocity)
from .objectives import OBJECTIVE_LOSSES, TRAINED_PREDICTIONS, check_objective, training_loss
from .importance import ImportanceTSampler, estimator_variance, importance_probs
from .churn import CHURN_GAMMA_MAX, ChurnStep, churn_levels, churn_nfe, churn_noise, churn_pairs, churn_sample
