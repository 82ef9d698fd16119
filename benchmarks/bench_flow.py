"""Flow matching against diffusion on digits, and EDM's stochastic sampler: digits-FID against NFE.

Three groups of rows, each sampled N times per seed for several seeds and scored under the two
feature extractors of ``bench_samplers.py`` (the book's digit CNN, ``dc.digits_fid``, and the
independent scikit-learn MLP, ``dc.independent_digits_fid``), next to both real-vs-real floors at
the same N, with the wall time of every run:

- the shipped flow-matching model ``"digits-flow"`` (same UNet, command and step count as
  ``"digits"``, ``--prediction velocity``), sampled with ``dc.flow_sample`` (Euler and Heun,
  uniform in τ = t/T) at NFE ≈ 5, 10, 20, 50, 100;
- the diffusion model ``"digits"`` with Euler (= DDIM) and Heun on the same grid of t and, like
  ``flow_sample``, without clipping x̂0: the like-for-like partner of the flow rows
  (``bench_samplers.py`` clips x̂0 in every sampler);
- EDM's stochastic sampler (churn, ``dc.churn_sample``, EDM's ImageNet-64 settings, Karras
  spacing, x̂0 clipped as in ``bench_samplers.py``) on ``"digits"`` at a few NFE;
- a seed check (``"seed_check"`` in the JSON): the headline rows (DPM-Solver++(2M) with 10 and 20
  NFE, Heun with 19, the flow model with Heun at 19, and DDPM-1000) again with more seeds
  (default 10, seeds 0, 1, ...), because three seeds of N = 500 can be lucky: every ODE sampler
  shares its seed's x_T.

Writes a JSON that ships with the package (``dc.load_benchmark("flow")``), which chapter 10 loads.

    OMP_NUM_THREADS=1 python benchmarks/bench_flow.py [--num-samples 500] [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import ddpm_core as dc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_samplers import RESULTS, run, steps_for_nfe  # noqa: E402  (the same scoring and seeds)

FLOW_SOLVERS = ("euler", "heun")
SEED_CHECK = (("dpmpp_2m", "karras", 10), ("dpmpp_2m", "uniform", 20), ("heun", "uniform", 10))
"""The diffusion ODE samplers of the seed check: (solver, spacing, steps), the headline rows of bench_samplers.py."""


def flow_rows(flow, nfes, seeds, n):
    """The flow model with Euler and Heun, uniform in τ = t/T (``flow_sample`` does not clip)."""
    for solver in FLOW_SOLVERS:
        for nfe in nfes:
            S = steps_for_nfe(solver, nfe)
            sample = lambda g, k: dc.flow_sample(flow.model, (k, 1, 8, 8), S, solver, generator=g, progress=False,
                                                 num_steps=flow.schedule.num_steps)
            yield {"sampler": f"flow {solver}", "model": "digits-flow", "solver": solver, "spacing": "uniform",
                   "clip_x0": False, "steps": S, "nfe": dc.solver_nfe(solver, S), **run(sample, seeds, n)}


def unclipped_rows(diffusion, nfes, seeds, n):
    """The diffusion model with the same solvers and grid of t, not clipping x̂0: the flow rows' partners."""
    for solver in FLOW_SOLVERS:
        for nfe in nfes:
            S = steps_for_nfe(solver, nfe)
            sample = lambda g, k: dc.solver_sample(diffusion.model, diffusion.schedule, (k, 1, 8, 8), S, solver,
                                                   "uniform", clip_x0=False, generator=g)
            yield {"sampler": f"diffusion {solver}, no clip", "model": "digits", "solver": solver,
                   "spacing": "uniform", "clip_x0": False, "steps": S, "nfe": dc.solver_nfe(solver, S),
                   **run(sample, seeds, n)}


def churn_rows(diffusion, nfes, seeds, n):
    """EDM's Algorithm 2 (its ImageNet-64 settings), Karras spacing, x̂0 clipped as in bench_samplers.py."""
    for nfe in nfes:
        S = steps_for_nfe("heun", nfe)
        sample = lambda g, k: dc.churn_sample(diffusion.model, diffusion.schedule, (k, 1, 8, 8), S, "karras",
                                              clip_x0=True, generator=g, progress=False)
        yield {"sampler": "EDM churn/karras", "model": "digits", "solver": "churn", "spacing": "karras",
               "clip_x0": True, "steps": S, "nfe": dc.churn_nfe(S), **run(sample, seeds, n)}


def seed_check_rows(flow, diffusion, seeds, n):
    """The headline rows again with more seeds: three diffusion ODE samplers, the flow model, DDPM-1000."""
    s = diffusion.schedule
    for solver, spacing, S in SEED_CHECK:
        sample = lambda g, k: dc.solver_sample(diffusion.model, s, (k, 1, 8, 8), S, solver, spacing, clip_x0=True,
                                               generator=g)
        yield {"sampler": f"{solver}/{spacing}", "model": "digits", "solver": solver, "spacing": spacing,
               "clip_x0": True, "steps": S, "nfe": dc.solver_nfe(solver, S), **run(sample, seeds, n)}
    sample = lambda g, k: dc.flow_sample(flow.model, (k, 1, 8, 8), 10, "heun", generator=g, progress=False,
                                         num_steps=flow.schedule.num_steps)
    yield {"sampler": "flow heun", "model": "digits-flow", "solver": "heun", "spacing": "uniform", "clip_x0": False,
           "steps": 10, "nfe": dc.solver_nfe("heun", 10), **run(sample, seeds, n)}
    ddpm = lambda g, k: dc.ddpm_sample(diffusion.model, s, (k, 1, 8, 8), clip_x0=True, generator=g, progress=False)
    yield {"sampler": "DDPM-1000 (reference)", "model": "digits", "solver": "ddpm", "spacing": "uniform",
           "clip_x0": True, "steps": s.num_steps, "nfe": s.num_steps, **run(ddpm, seeds, n)}


def print_row(row):
    print(f"{row['sampler']:30s} NFE {row['nfe']:4d}  CNN {row['fid']:6.2f} ± {row['fid_sd']:.2f}  "
          f"MLP {row['fid_mlp']:6.3f} ± {row['fid_mlp_sd']:.3f}  {row['wall_s']:7.1f} s", flush=True)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num-samples", type=int, default=500)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--nfe", type=int, nargs="+", default=[5, 10, 20, 50, 100],
                   help="NFE of the flow rows and of their unclipped diffusion partners")
    p.add_argument("--churn-nfe", type=int, nargs="*", default=[10, 20, 50], help="NFE of the EDM churn rows")
    p.add_argument("--skip-diffusion", action="store_true", help="leave out the unclipped diffusion rows")
    p.add_argument("--check-seeds", type=int, default=10, help="seeds of the seed check (0: none)")
    p.add_argument("--json", type=Path, default=RESULTS / "flow.json")
    args = p.parse_args(argv)
    flow, diffusion = dc.load_pretrained("digits-flow"), dc.load_pretrained("digits")
    if flow.prediction != "velocity":
        raise SystemExit(f"digits-flow predicts {flow.prediction!r}, expected a velocity")
    n, seeds = args.num_samples, range(args.seeds)
    churn = dc.diffusion.churn
    res = {"num_samples": n, "seeds": list(seeds), "threads": torch.get_num_threads(),
           "floor": dc.digits_fid_floor(n), "floor_mlp": dc.independent_digits_fid_floor(n), "rows": [],
           "seed_check": {"seeds": list(range(args.check_seeds)), "rows": []},
           "models": {name: {k: pre.info.get(k) for k in ("command", "step", "sha256")}
                      for name, pre in (("digits-flow", flow), ("digits", diffusion))},
           "churn": {"s_churn": churn.EDM_S_CHURN, "s_tmin": churn.EDM_S_TMIN, "s_tmax": churn.EDM_S_TMAX,
                     "s_noise": churn.EDM_S_NOISE},
           "command": "python benchmarks/bench_flow.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    print(f"N = {n}, seeds {list(seeds)}; floors: CNN {res['floor']:.2f}, MLP {res['floor_mlp']:.3f}", flush=True)
    groups = [flow_rows(flow, args.nfe, seeds, n), churn_rows(diffusion, args.churn_nfe, seeds, n)]
    if not args.skip_diffusion:
        groups.insert(1, unclipped_rows(diffusion, args.nfe, seeds, n))
    for group in groups:
        for row in group:
            res["rows"].append(row)
            print_row(row)
    if args.check_seeds:
        print(f"seed check: seeds {res['seed_check']['seeds']}", flush=True)
        for row in seed_check_rows(flow, diffusion, range(args.check_seeds), n):
            res["seed_check"]["rows"].append(row)
            print_row(row)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.json}")
    return res


if __name__ == "__main__":
    main()
