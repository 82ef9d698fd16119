"""Chapter 10's Euler and DPM-Solver++(2M) steps against diffusers' schedulers, for one model output at a time.

Both sides use DDPM's linear betas 1e-4..0.02 with T = 1000 (diffusers builds them in float32, we in float64
and store float32, hence relative tolerances of 2e-4). Our paper timestep t is diffusers' index k = t - 1
(DESIGN.md §3), and our t' = 0 (clean data) is diffusers' final sigma 0. ``DPMSolverMultistepScheduler`` works
on x itself; ``EulerDiscreteScheduler`` works on x̄ = x/√ᾱ = x·√(σ² + 1) and feeds the model
``scale_model_input(x̄) = x``, so its states are compared after that change of coordinates. diffusers is a test
dependency (requirements.txt).
"""

import re
from pathlib import Path

import diffusers
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler

import ddpm_core as dc
from ddpm_core.diffusion import solvers as sv

T = 1000
RTOL, ATOL = 2e-4, 1e-5  # float32 schedules built two ways; diffusers' 1 - ᾱ in float32 is 8e-5 off at t = 1
# diffusers 0.42.1 calls np.array on a tensor in set_timesteps, which numpy 2 flags; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
GRIDS = [[1000, 700, 420, 150, 40], [1000, 999, 500, 2, 1], [37, 36, 12]]  # paper t, decreasing; the last step goes to 0


def test_diffusers_is_the_version_the_requirement_files_pin():
    root = Path(__file__).resolve().parent.parent
    pins = {re.search(r"^diffusers==(\S+)", (root / f).read_text(), re.M).group(1)
            for f in ("requirements.txt", "benchmarks/requirements.txt", "constraints.txt")}
    assert pins == {diffusers.__version__}, pins


@pytest.fixture(scope="module")
def s():
    return dc.NoiseSchedule.linear(T, 1e-4, 0.02)


def _diffusers_kwargs():
    return dict(num_train_timesteps=T, beta_start=1e-4, beta_end=0.02, beta_schedule="linear", prediction_type="epsilon")


def test_the_two_schedules_agree(s):
    sched = EulerDiscreteScheduler(**_diffusers_kwargs())
    torch.testing.assert_close(sched.alphas_cumprod.double(), s.alpha_bars[1:].double(), rtol=2e-5, atol=0)
    sigma = (s.one_minus_alpha_bars / s.alpha_bars).sqrt()[1:]  # (T,) our σ_t at t = 1..T
    # diffusers lists σ from high to low; its 1 - ᾱ in float32 loses digits at small t (8e-5 at t = 1)
    torch.testing.assert_close(sched.sigmas[:-1].flip(0), sigma, rtol=RTOL, atol=0)


def _x_and_eps(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


@pytest.mark.parametrize("grid", GRIDS, ids=str)
def test_euler_step_equals_euler_discrete_in_its_coordinates(s, grid):
    sched = EulerDiscreteScheduler(**_diffusers_kwargs())
    sched.set_timesteps(timesteps=[t - 1 for t in grid])  # diffusers' index k = t - 1; a final σ = 0 is appended
    sqrt_ab = s.alpha_bars.sqrt()
    for i, (t, t_prev) in enumerate(zip(grid, [*grid[1:], 0])):
        xt, eps = _x_and_eps((3, 1, 4, 4), i)
        x_bar = xt / sqrt_ab[t]  # diffusers' sample: x̄ = x/√ᾱ_t
        k = sched.timesteps[i]
        assert int(k) == t - 1
        torch.testing.assert_close(sched.scale_model_input(x_bar, k), xt, rtol=RTOL, atol=ATOL)  # the model sees x_t
        out = sched.step(eps, k, x_bar)
        x_prev, x0_hat = sv.euler_step(s, eps, xt, t, t_prev)
        torch.testing.assert_close(x_prev / sqrt_ab[t_prev], out.prev_sample, rtol=RTOL, atol=ATOL)  # x̄_{t'}
        torch.testing.assert_close(x0_hat, out.pred_original_sample, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("grid", GRIDS, ids=str)
def test_dpmpp_2m_step_equals_dpm_solver_multistep(s, grid):
    sched = DPMSolverMultistepScheduler(**_diffusers_kwargs(), algorithm_type="dpmsolver++", solver_order=2)
    sched.set_timesteps(timesteps=[t - 1 for t in grid])
    step = sv.DPMSolverPP2MStep()
    for i, (t, t_prev) in enumerate(zip(grid, [*grid[1:], 0])):
        xt, eps = _x_and_eps((3, 1, 4, 4), 10 + i)  # each step from a fresh state and output: one step at a time
        k = sched.timesteps[i]
        assert int(k) == t - 1
        theirs = sched.step(eps, k, xt).prev_sample
        ours, _ = step(s, eps, xt, t, t_prev)  # first order at i = 0 and on the step to 0, as diffusers
        torch.testing.assert_close(ours, theirs, rtol=RTOL, atol=ATOL)
        if 0 < i < len(grid) - 1:  # a second-order step: not the first-order update
            assert not torch.allclose(ours, sv.euler_step(s, eps, xt, t, t_prev)[0], rtol=1e-3, atol=1e-4)


def toy_model(xt, t):
    return 0.2 * xt + 0.001 * t.view(-1, *([1] * (xt.dim() - 1))).to(xt.dtype)


@pytest.mark.parametrize("solver", ["euler", "dpmpp_2m"])
@pytest.mark.parametrize("spacing", ["uniform", "karras"])
def test_whole_runs_equal_the_diffusers_loops(s, solver, spacing):
    grid = sv.solver_timesteps(s, 10, spacing)[::-1]
    x_T = torch.randn(2, 1, 3, 3, generator=torch.Generator().manual_seed(3))
    ours = sv.solver_sample(toy_model, s, None, 10, solver, spacing, x_T=x_T)
    if solver == "euler":
        sched = EulerDiscreteScheduler(**_diffusers_kwargs())
    else:
        sched = DPMSolverMultistepScheduler(**_diffusers_kwargs(), algorithm_type="dpmsolver++", solver_order=2)
    sched.set_timesteps(timesteps=[t - 1 for t in grid])
    sample = x_T / s.alpha_bars[grid[0]].sqrt() if solver == "euler" else x_T  # Euler's state is x̄
    for k in sched.timesteps:
        x_in = sched.scale_model_input(sample, k)  # x_t for both
        sample = sched.step(toy_model(x_in, torch.full((2,), int(k) + 1)), k, sample).prev_sample
    torch.testing.assert_close(ours, sample, rtol=RTOL, atol=ATOL)  # at σ = 0, x̄ = x
