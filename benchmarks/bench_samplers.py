"""Sample quality against network evaluations (NFE) for the ODE solvers, on the shipped digits model.

For every solver (Euler in σ = DDIM, Heun, DPM-Solver++(2M)) and time-step spacing (uniform,
quadratic, Karras' ρ = 7) at NFE ≈ 5, 10, 20, 50, 100, and for two references (DDPM-1000 and
DDIM-20 with η = 1): N samples per run, several sampling seeds, each scored under TWO feature
extractors, the book's digit CNN (``dc.digits_fid``) and an independent scikit-learn MLP
(``dc.independent_digits_fid``), next to each extractor's real-vs-real floor at the same N; plus
the wall time. Writes a JSON that ships with the package (``dc.load_benchmark("samplers")``).

    OMP_NUM_THREADS=1 python benchmarks/bench_samplers.py [--num-samples 500] [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

import ddpm_core as dc
from ddpm_core.diffusion.solvers import SPACINGS, solver_nfe, solver_sample

RESULTS = Path(__file__).resolve().parents[1] / "ddpm_core" / "results"  # shipped: chapter 10 loads it
SOLVER_NAMES = ("euler", "heun", "dpmpp_2m")


def steps_for_nfe(solver: str, nfe: int) -> int:
    """Steps S whose NFE is closest to ``nfe`` (Heun: 2S - 1, the others: S)."""
    return max(1, (nfe + 1) // 2) if solver == "heun" else nfe


def score(x: torch.Tensor) -> dict:
    """Both Fréchet distances of a batch of samples, clipped to [-1, 1] as an image file would be."""
    x = x.clamp(-1, 1).cpu()
    return {"fid": dc.digits_fid(x), "fid_mlp": dc.independent_digits_fid(x)}


def run(sample, seeds, n: int) -> dict:
    """``sample(generator, n)`` for each seed: per-seed scores and wall times, means and sds."""
    per_seed = []
    for seed in seeds:
        start = time.perf_counter()
        x = sample(torch.Generator().manual_seed(seed), n)
        per_seed.append({"seed": seed, "wall_s": time.perf_counter() - start, **score(x)})
    out = {"per_seed": per_seed, "num_samples": n}
    for key in ("fid", "fid_mlp", "wall_s"):
        values = [r[key] for r in per_seed]
        out[key] = statistics.fmean(values)
        out[key + "_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num-samples", type=int, default=500)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--nfe", type=int, nargs="+", default=[5, 10, 20, 50, 100])
    p.add_argument("--solvers", nargs="+", default=list(SOLVER_NAMES), choices=SOLVER_NAMES)
    p.add_argument("--spacings", nargs="+", default=list(SPACINGS), choices=SPACINGS)
    p.add_argument("--ddpm-samples", type=int, default=None, help="N of the DDPM-1000 reference (default N)")
    p.add_argument("--json", type=Path, default=RESULTS / "samplers.json")
    args = p.parse_args(argv)
    pre = dc.load_pretrained("digits")
    model, s, n, seeds = pre.model, pre.schedule, args.num_samples, range(args.seeds)
    shape = lambda k: (k, 1, 8, 8)
    res = {"num_samples": n, "seeds": list(seeds), "threads": torch.get_num_threads(),
           "floor": dc.digits_fid_floor(n), "floor_mlp": dc.independent_digits_fid_floor(n), "rows": [],
           "command": "python benchmarks/bench_samplers.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    print(f"N = {n}, seeds {list(seeds)}; floors: CNN {res['floor']:.2f}, MLP {res['floor_mlp']:.3f}", flush=True)

    def report(row):
        res["rows"].append(row)
        print(f"{row['sampler']:26s} NFE {row['nfe']:4d}  CNN {row['fid']:6.2f} ± {row['fid_sd']:.2f}  "
              f"MLP {row['fid_mlp']:6.3f} ± {row['fid_mlp_sd']:.3f}  {row['wall_s']:7.1f} s", flush=True)

    for solver in args.solvers:
        for spacing in args.spacings:
            for nfe in args.nfe:
                S = steps_for_nfe(solver, nfe)
                sample = lambda g, k: solver_sample(model, s, shape(k), S, solver, spacing, clip_x0=True, generator=g)
                report({"sampler": f"{solver}/{spacing}", "solver": solver, "spacing": spacing, "steps": S,
                        "nfe": solver_nfe(solver, S), **run(sample, seeds, n)})
    eta1 = lambda g, k: dc.ddim_sample(model, s, shape(k), 20, eta=1.0, clip_x0=True, generator=g, progress=False)
    report({"sampler": "DDIM-20, η=1 (reference)", "solver": "ddim_eta1", "spacing": "uniform", "steps": 20,
            "nfe": 20, **run(eta1, seeds, n)})
    n_ddpm = args.ddpm_samples or n
    ddpm = lambda g, k: dc.ddpm_sample(model, s, shape(k), clip_x0=True, generator=g, progress=False)
    report({"sampler": "DDPM-1000 (reference)", "solver": "ddpm", "spacing": "uniform", "steps": s.num_steps,
            "nfe": s.num_steps, **run(ddpm, seeds, n_ddpm)})
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.json}")
    return res


if __name__ == "__main__":
    main()
