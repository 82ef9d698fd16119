"""Sample quality against training time and sampling steps, on 8×8 digits (CPU by default).

1. Quality vs training time: one run of ``ddpm_core.train`` on digits, paused after 1, 3 and 10
   minutes of training (resumed from its own checkpoint, which continues bit for bit); after each
   pause the EMA model draws N samples with DDIM-50 and we report digits-FID (a Fréchet
   distance on the project's digit classifier, *not* Inception FID: see ``ddpm_core.evaluation.metrics``)
   next to the real-vs-real floor.
2. Quality vs sampling steps: the shipped ``load_pretrained("digits")`` model with DDIM-S for
   S in {10, 20, 50, 100, 1000} (η = 0), DDIM-S with η = 1 for S in {10, 20}, and DDPM-1000, with
   the wall time of each.

Writes a JSON that ships with the package (``dc.load_benchmark("quality")``: chapter 7 loads it)
and a two-panel PNG (``benchmarks/results/quality.png``). With ``--skip-training`` the training
rows of the previous JSON are kept, marked as such.

    python benchmarks/bench_quality.py [--minutes 1 3 10] [--num-samples 1000] [--skip-training]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import ddpm_core as dc  # noqa: E402


RESULTS = Path(__file__).resolve().parents[1] / "ddpm_core" / "results"  # shipped: chapter 7 loads it
PLOTS = Path(__file__).resolve().parent / "results"


def sample_quality(model, schedule, n, kind, steps, seed=0, batch=500, eta=0.0):
    """digits-FID etc. of n samples, and the sampling wall time in seconds."""
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    out = []
    for i in range(0, n, batch):
        shape = (min(batch, n - i), 1, 8, 8)
        if kind == "ddpm":
            out.append(dc.ddpm_sample(model, schedule, shape, generator=g, progress=False))
        else:
            out.append(dc.ddim_sample(model, schedule, shape, steps, eta, generator=g, progress=False))
    wall = time.perf_counter() - t0
    q = dc.digits_quality(torch.cat(out).cpu())
    return {"fid": q.fid, "confident_fraction": q.confident_fraction, "class_coverage": q.class_coverage,
            "sample_wall_s": wall, "num_samples": n}


def seeds_quality(model, schedule, n, kind, steps, seeds, eta=0.0):
    """:func:`sample_quality` for each seed: the means, with digits-FID's standard deviation over seeds."""
    runs = [sample_quality(model, schedule, n, kind, steps, seed=k, eta=eta) for k in seeds]
    mean = {key: statistics.fmean(r[key] for r in runs) for key in runs[0] if key != "num_samples"}
    sd = statistics.stdev(r["fid"] for r in runs) if len(runs) > 1 else 0.0
    return {**mean, "fid_sd": sd, "fid_per_seed": [r["fid"] for r in runs], "seeds": list(seeds), "num_samples": n}


def plot(res: dict, path: Path) -> None:
    """The two-panel figure: digits-FID vs training time, and vs sampling wall time."""
    floor = res["floor"]
    floor_label = f"real vs real (N={res.get('floor_num_samples', 899)})"  # runs before it was stored: all 899
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    if res["vs_training_time"]:
        rows = res["vs_training_time"]
        axes[0].plot([r["train_minutes"] for r in rows], [r["fid"] for r in rows], "o-", label="DDIM-50 samples")
    axes[0].axhline(floor, color="gray", ls="--", label=floor_label)
    axes[0].set(xlabel="training time on this machine (min)", ylabel="digits-FID (lower is better)",
                title="Quality vs training time", xscale="log")
    axes[0].legend()
    rows = res["vs_sampling_steps"]
    n_common = max({r["num_samples"] for r in rows}, key=[r["num_samples"] for r in rows].count)
    labelled = set()
    for r in rows:
        ddpm = r["sampler"].startswith("DDPM")
        eta = r.get("eta", 0.0)
        kind = "DDPM-1000" if ddpm else f"DDIM-S, η = {eta:g}"
        label = ("DDPM-1000" if ddpm else f"S={r['steps']}") + (
            "" if r["num_samples"] == n_common else f" (N={r['num_samples']})")
        color = "C1" if ddpm else ("C0" if eta == 0 else "C2")
        axes[1].errorbar(r["sample_wall_s"], r["fid"], yerr=r.get("fid_sd"), fmt="o", color=color, capsize=3,
                         label=None if kind in labelled else kind)
        labelled.add(kind)
        axes[1].annotate(label, (r["sample_wall_s"], r["fid"]), textcoords="offset points", xytext=(2, 5),
                         fontsize=8.5)
    axes[1].legend(loc="upper right")
    axes[1].margins(x=0.3, y=0.15)
    axes[1].axhline(floor, color="gray", ls="--")
    axes[1].set(xlabel=f"sampling wall time (s) for N={n_common} samples", ylabel="digits-FID",
                title="Quality vs sampling cost (shipped model)", xscale="log")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, nargs="+", default=[1, 3, 10])
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50, 100, 1000])
    p.add_argument("--eta1-steps", type=int, nargs="*", default=[10, 20], help="S of the DDIM runs with η = 1")
    p.add_argument("--seeds", type=int, default=3, help="sampling seeds per sampler (0..SEEDS-1)")
    p.add_argument("--ddpm-samples", type=int, default=None, help="N for DDPM-1000 (default --num-samples)")
    p.add_argument("--skip-training", action="store_true")
    p.add_argument("--json", type=Path, default=RESULTS / "quality.json")
    p.add_argument("--png", type=Path, default=PLOTS / "quality.png")
    p.add_argument("--replot", action="store_true", help="only redraw PNG from JSON")
    args = p.parse_args(argv)
    if args.replot:
        res = json.loads(args.json.read_text())
        plot(res, args.png)
        print(f"redrew {args.png} from {args.json}")
        return res
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.png.parent.mkdir(parents=True, exist_ok=True)
    device = dc.default_device()
    floor_n = min(args.num_samples, len(dc.digits_reference_split()[1]))  # the floor at the samples' N
    floor = dc.digits_fid_floor(floor_n)
    res = {"device": str(device), "threads": torch.get_num_threads(), "floor": floor, "floor_num_samples": floor_n,
           "vs_training_time": [], "vs_sampling_steps": []}
    print(f"real-vs-real floor (N={floor_n}): {floor:.2f}   (device {device}, {torch.get_num_threads()} threads)", flush=True)

    if args.skip_training and args.json.is_file():  # keep the previous run's training rows
        previous = json.loads(args.json.read_text())
        res["vs_training_time"] = previous["vs_training_time"]
        res["vs_training_time_from"] = previous.get("vs_training_time_from", "an earlier run of this script")
    elif not args.skip_training:
        with tempfile.TemporaryDirectory() as tmp:
            ckpt, done = Path(tmp) / "checkpoint.pt", 0.0
            for minutes in sorted(args.minutes):
                cfg = dc.TrainConfig(num_train_steps=10**7, max_minutes=minutes - done, checkpoint_every=0)
                r = dc.train(cfg, out=tmp, resume=ckpt if done else None, device=device, progress=False)
                done = minutes
                r.ema.model.eval()
                q = sample_quality(r.ema.model, r.schedule, args.num_samples, "ddim", 50)
                row = {"train_minutes": minutes, "train_steps": r.step, **q}
                res["vs_training_time"].append(row)
                print(f"after {minutes:>4g} min ({r.step:>5} steps): digits-FID {q['fid']:7.2f}  "
                      f"confident {q['confident_fraction']:.2f}  coverage {q['class_coverage']:.1f}", flush=True)

    pre = dc.load_pretrained("digits", device=device)
    seeds = range(args.seeds)
    for S in args.steps:
        n = args.num_samples
        q = seeds_quality(pre.model, pre.schedule, n, "ddim", S, seeds)
        res["vs_sampling_steps"].append({"sampler": f"DDIM-{S}", "steps": S, **q})
        print(f"DDIM-{S:<5} digits-FID {q['fid']:7.2f} ± {q.get('fid_sd', 0):.2f}  confident {q['confident_fraction']:.2f}  "
              f"{q['sample_wall_s']:7.1f} s for {n} samples (mean over seeds)", flush=True)
    for S in args.eta1_steps:
        n = args.num_samples
        q = seeds_quality(pre.model, pre.schedule, n, "ddim", S, seeds, eta=1.0)
        res["vs_sampling_steps"].append({"sampler": f"DDIM-{S}, η=1", "steps": S, "eta": 1.0, **q})
        print(f"DDIM-{S:<5} η=1 digits-FID {q['fid']:7.2f} ± {q.get('fid_sd', 0):.2f}  confident {q['confident_fraction']:.2f}  "
              f"{q['sample_wall_s']:7.1f} s for {n} samples (mean over seeds)", flush=True)
    n = args.ddpm_samples or args.num_samples
    q = seeds_quality(pre.model, pre.schedule, n, "ddpm", 1000, seeds)
    res["vs_sampling_steps"].append({"sampler": "DDPM-1000", "steps": 1000, **q})
    print(f"DDPM-1000  digits-FID {q['fid']:7.2f} ± {q.get('fid_sd', 0):.2f}  confident {q['confident_fraction']:.2f}  "
          f"{q['sample_wall_s']:7.1f} s for {n} samples (mean over seeds)", flush=True)

    res["command"] = "python benchmarks/bench_quality.py " + " ".join(argv if argv is not None else sys.argv[1:])
    args.json.write_text(json.dumps(res, indent=1) + "\n")
    plot(res, args.png)
    print(f"wrote {args.json} and {args.png}")
    return res


if __name__ == "__main__":
    main()
