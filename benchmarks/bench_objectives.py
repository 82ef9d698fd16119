"""Chapter 9's objectives side by side: the held-out bound term by term and digits-FID of each shipped variant of "digits".

The variants change one thing each from "digits" (eps-prediction, linear schedule, L_simple, fixed
variances) and keep its command and its 1,700 training steps otherwise: "digits-v" (v-prediction),
"digits-cosine" (cosine schedule), "digits-minsnr" (min-SNR-5 weighting), "digits-vlb" (trained on
the bound, chapter 4) and "digits-hybrid" (learned variances, L_hybrid). For each model:

- **the bound** (``dc.elbo_terms``) on all held-out digits of chapter 4's split, with
  ``--bound-draws`` independent draws of x_t per image and t (seeds 4, 5, ...; 4 is chapter 4's):
  each t's term averaged over images and draws (the curves of chapter 9), its second moment, L_T,
  L_0, the total with its spread over images (sd, 95 % CI) and between the draws, and every image's
  total per draw (so that two models can be compared image by image: the draws of x_t depend on the
  seed only, not on the model). digits-hybrid is evaluated with its learned variances and with its
  eps channels under the fixed σ² = β̃. Chapter 4's yardstick (the exact denoiser for independent
  pixels) and its per-pixel histogram baseline are evaluated on the same images;
- **samples**: N images per run for each of ``--seeds`` sampling seeds, DDPM-1000 ancestral sampling
  (σ² = β̃; digits-hybrid also with its learned variances) and DPM-Solver++(2M) with 20 steps
  (uniform spacing), x̂₀ clipped to [-1, 1] as in ``bench_samplers.py``; each run scored under two
  feature extractors (the book's CNN, ``dc.digits_fid``, and the independent MLP,
  ``dc.independent_digits_fid``) with both real-vs-real floors at the same N; wall times;
- the training command of each model (``p.info["command"]``).

Every (model, evaluation, seed) is one task; ``--workers`` processes run them side by side, one torch
thread each. Writes ``ddpm_core/results/objectives.json`` (``dc.load_benchmark("objectives")``).

    OMP_NUM_THREADS=1 python benchmarks/bench_objectives.py [--num-samples 500] [--seeds 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

import ddpm_core as dc

RESULTS = Path(__file__).resolve().parents[1] / "ddpm_core" / "results"  # shipped: chapter 9 loads it
MODELS = ("digits", "digits-v", "digits-cosine", "digits-minsnr", "digits-vlb", "digits-hybrid")
YARDSTICK = "yardstick"  # chapter 4's exact denoiser for independent pixels (no network)
BOUND_SEED = 4  # chapter 4's seed for the draws of x_t; further draws use 5, 6, ...
SOLVER_STEPS = 20  # DPM-Solver++(2M), uniform spacing: within 1.2x of DDPM-1000 in bench_samplers.py
LN2 = math.log(2.0)

_CACHE: dict = {}  # per worker process: loaded models


def _pretrained(name: str):
    if name not in _CACHE:
        _CACHE[name] = dc.load_pretrained(name, device="cpu")
    return _CACHE[name]


def histogram_bpd() -> float:
    """Chapter 4's baseline: independent per-pixel categoricals over the 256 levels (add-one smoothing)."""
    x_train, _ = dc.load_digits(split="train")
    x_test, _ = dc.load_digits(split="test")
    to_level = lambda x: dc.to_image(x, torch.uint8).long().flatten(1)  # (N, D) levels 0..255
    D = x_test[0].numel()
    counts = torch.ones(D, 256)
    counts.scatter_add_(1, to_level(x_train).T, torch.ones(D, len(x_train)))
    probs = counts / counts.sum(1, keepdim=True)  # (D, 256)
    return -torch.log2(probs.gather(1, to_level(x_test).T)).mean().item()


def yardstick_denoiser(s: dc.NoiseSchedule):
    """Chapter 4's yardstick: eps implied by E[x_0 | x_t] for independent pixels with the training histograms."""
    x_train, _ = dc.load_digits(split="train")
    levels17 = torch.unique(x_train).double()  # (17,)
    onehot = (x_train.flatten(1)[:, :, None] == levels17).double()  # (N, D, 17)
    log_pi = ((onehot.sum(0) + 1) / (len(x_train) + 17)).log()  # (D, 17), add-one smoothing

    def eps_model(xt, t):
        ab = s.alpha_bars[t].double().view(-1, 1, 1)  # (B, 1, 1)
        x = xt.double().flatten(1)[:, :, None]  # (B, D, 1)
        logits = log_pi - (x - ab.sqrt() * levels17) ** 2 / (2 * (1 - ab))  # (B, D, 17)
        x0_hat = (logits.softmax(-1) * levels17).sum(-1).view(xt.shape).float()
        return dc.eps_from_x0(s, xt, t, x0_hat)

    return eps_model


def _model_for(name: str, variance: str):
    """(model, schedule, variance for elbo_terms) of a shipped model or the yardstick."""
    if name == YARDSTICK:
        s = dc.NoiseSchedule.linear()
        return yardstick_denoiser(s), s, variance
    p = _pretrained(name)
    return (p.model if variance == "learned" else p.eps_model), p.schedule, variance


def bound_task(name: str, variance: str, num_images: int, seed: int) -> dict:
    """One draw of the bound for the first ``num_images`` held-out digits: per-t and per-image numbers."""
    torch.set_num_threads(1)
    x_test, _ = dc.load_digits(split="test")
    x0 = x_test[:num_images]
    model, s, variance = _model_for(name, variance)
    start = time.perf_counter()
    b = dc.elbo_terms(model, s, x0, generator=torch.Generator().manual_seed(seed), variance=variance,
                      progress=False)
    terms = b.terms.double()  # (B, T+1)
    return {"kind": "bound", "model": name, "variance": variance, "seed": seed,
            "wall_s": time.perf_counter() - start,
            "term_sum": terms.sum(0).tolist(), "term_sq_sum": terms.pow(2).sum(0).tolist(),
            "total": b.total.double().tolist(), "prior": b.prior.double().tolist(),
            "L0": terms[:, 1].tolist()}


def sample_task(name: str, sampler: str, seed: int, n: int) -> dict:
    """``n`` samples of one model with one sampler and seed, scored under both feature extractors."""
    torch.set_num_threads(1)
    p = _pretrained(name)
    g, shape = torch.Generator().manual_seed(seed), (n, *p.image_shape)
    start = time.perf_counter()
    if sampler == "ddpm1000":
        x = dc.ddpm_sample(p.eps_model, p.schedule, shape, clip_x0=True, generator=g, progress=False)
    elif sampler == "ddpm1000_learned":
        x = dc.ddpm_sample(p.model, p.schedule, shape, variance="learned", clip_x0=True, generator=g,
                           progress=False)
    else:
        x = dc.solver_sample(p.eps_model, p.schedule, shape, SOLVER_STEPS, "dpmpp_2m", "uniform", clip_x0=True,
                             generator=g)
    wall = time.perf_counter() - start
    x = x.clamp(-1, 1)
    return {"kind": "sample", "model": name, "sampler": sampler, "seed": seed, "wall_s": wall,
            "fid": dc.digits_fid(x), "fid_mlp": dc.independent_digits_fid(x)}


def _run(task):
    kind, args = task
    return (bound_task if kind == "bound" else sample_task)(*args)


def _bound_summary(draws: list[dict], num_images: int) -> dict:
    """Mean terms per t over images and draws; per-image totals averaged over draws, their spread."""
    n = num_images * len(draws)
    term_mean = [sum(col) / n for col in zip(*(d["term_sum"] for d in draws))]
    term_sq_mean = [sum(col) / n for col in zip(*(d["term_sq_sum"] for d in draws))]
    per_image = [statistics.fmean(col) for col in zip(*(d["total"] for d in draws))]  # (B,) mean over draws
    draw_means = [statistics.fmean(d["total"]) for d in draws]
    mean = lambda key: statistics.fmean(v for d in draws for v in d[key])
    sd = statistics.stdev(per_image)
    return {"total": statistics.fmean(per_image), "total_sd": sd, "total_ci": 1.96 * sd / math.sqrt(num_images),
            "draw_means": draw_means, "draw_sd": statistics.stdev(draw_means) if len(draws) > 1 else 0.0,
            "prior": mean("prior"), "L0": mean("L0"), "denoising": statistics.fmean(per_image) - mean("prior")
            - mean("L0"), "term_mean": [float(f"{v:.6g}") for v in term_mean],
            "term_sq_mean": [float(f"{v:.6g}") for v in term_sq_mean],
            "per_image_total": [[round(v, 5) for v in d["total"]] for d in draws],
            "wall_s": statistics.fmean(d["wall_s"] for d in draws)}


def _sample_summary(runs: list[dict], n: int) -> dict:
    runs = sorted(runs, key=lambda r: r["seed"])
    out = {"per_seed": [{k: r[k] for k in ("seed", "fid", "fid_mlp", "wall_s")} for r in runs], "num_samples": n}
    for key in ("fid", "fid_mlp", "wall_s"):
        values = [r[key] for r in runs]
        out[key] = statistics.fmean(values)
        out[key + "_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return out


def _tasks(models, args) -> list:
    """Longest first (DDPM-1000), so that the workers finish together."""
    seeds, draws = range(args.seeds), [BOUND_SEED + k for k in range(args.bound_draws)]
    n = args.num_samples
    ddpm, bounds, solver = [], [], []
    for name in models:
        learned = name != YARDSTICK and _pretrained(name).learned_variance
        variances = ["learned", "beta_tilde"] if learned else ["beta_tilde"]
        bounds += [("bound", (name, v, args.bound_images, d)) for v in variances for d in draws]
        if name == YARDSTICK or args.skip_samples:
            continue
        samplers = ["ddpm1000_learned", "ddpm1000"] if learned else ["ddpm1000"]
        ddpm += [("sample", (name, smp, seed, args.ddpm_samples or n)) for smp in samplers for seed in seeds]
        solver += [("sample", (name, f"dpmpp_2m_{SOLVER_STEPS}", seed, n)) for seed in seeds]
    return ddpm + bounds + solver


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--num-samples", type=int, default=500)
    p.add_argument("--ddpm-samples", type=int, default=None, help="N of the DDPM-1000 runs (default N)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--bound-images", type=int, default=300, help="first K held-out digits (300: all of them)")
    p.add_argument("--bound-draws", type=int, default=2)
    p.add_argument("--skip-samples", action="store_true", help="the bounds only")
    p.add_argument("--workers", type=int, default=2, help="processes, one torch thread each (1: in this process)")
    p.add_argument("--json", type=Path, default=RESULTS / "objectives.json")
    args = p.parse_args(argv)
    n, models = args.num_samples, list(args.models) + [YARDSTICK]
    tasks = _tasks(models, args)
    print(f"{len(tasks)} tasks on {args.workers} worker(s)", flush=True)
    start = time.perf_counter()
    if args.workers == 1:
        results = [_run(task) for task in tasks]
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.workers, mp_context=ctx) as pool:
            results = []
            for r in pool.map(_run, tasks):
                results.append(r)
                print(f"  {r['model']:14s} {r.get('sampler', r.get('variance')):18s} seed {r['seed']}: "
                      f"{r['wall_s']:6.1f} s", flush=True)
    res = {"command": "python benchmarks/bench_objectives.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "threads_per_worker": 1, "workers": args.workers, "wall_s": time.perf_counter() - start,
           "num_samples": n, "ddpm_samples": args.ddpm_samples or n, "seeds": list(range(args.seeds)),
           "solver": f"dpmpp_2m/uniform, {SOLVER_STEPS} steps",
           "bound": {"split": "test", "num_images": args.bound_images,
                     "draw_seeds": [BOUND_SEED + k for k in range(args.bound_draws)]},
           "floor": dc.digits_fid_floor(n), "floor_mlp": dc.independent_digits_fid_floor(n),
           "ddpm_floor": dc.digits_fid_floor(args.ddpm_samples or n),
           "ddpm_floor_mlp": dc.independent_digits_fid_floor(args.ddpm_samples or n),
           "histogram_bpd": histogram_bpd(), "models": {}}
    for name in models:
        entry = {"bounds": {}, "samplers": {}}
        if name != YARDSTICK:
            pre = _pretrained(name)
            entry.update(command=pre.info["command"], prediction=pre.prediction, loss=pre.config["train"]["loss"],
                         schedule=pre.schedule.name, learned_variance=pre.learned_variance,
                         train_steps=pre.info["step"], train_wall_s=pre.info.get("wall_time_s"))
        mine = [r for r in results if r["model"] == name]
        for variance in dict.fromkeys(r["variance"] for r in mine if r["kind"] == "bound"):
            draws = sorted((r for r in mine if r.get("variance") == variance), key=lambda r: r["seed"])
            entry["bounds"][variance] = _bound_summary(draws, args.bound_images)
        for sampler in dict.fromkeys(r["sampler"] for r in mine if r["kind"] == "sample"):
            runs = [r for r in mine if r.get("sampler") == sampler]
            entry["samplers"][sampler] = _sample_summary(runs, (args.ddpm_samples or n) if sampler.startswith("ddpm")
                                                         else n)
        res["models"][name] = entry
        for variance, b in entry["bounds"].items():
            print(f"{name:14s} bound ({variance:10s}) {b['total']:.3f} ± {b['total_ci']:.3f} bits/dim "
                  f"(L0 {b['L0']:.3f}, draws sd {b['draw_sd']:.3f})", flush=True)
        for sampler, r in entry["samplers"].items():
            print(f"{name:14s} {sampler:18s} CNN {r['fid']:6.2f} ± {r['fid_sd']:.2f}  "
                  f"MLP {r['fid_mlp']:6.3f} ± {r['fid_mlp_sd']:.3f}  {r['wall_s']:6.1f} s", flush=True)
    print(f"floors at N = {n}: CNN {res['floor']:.2f}, MLP {res['floor_mlp']:.3f}; "
          f"histogram baseline {res['histogram_bpd']:.3f} bits/dim", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.json}")
    return res


if __name__ == "__main__":
    main()
