"""Learning rate and batch size on 8×8 digits, over several seeds (chapter 6 loads the JSON).

For each setting, ``ddpm_core.train`` runs ``--steps`` steps (10 warm-up steps, clipping at 1,
AdamW, the book's defaults otherwise) once per seed. A seed fixes the initial weights, the
batches, the t's and the ε's, so two settings with the same seed differ only in the knob. Two
sweeps:

* learning rate in ``--lrs`` at batch 32;
* batch size in ``--batches`` at learning rate 1e-3.

Each run reports its held-out L_simple at the end (the 300 test digits, 4 draws of t and ε
each, the same draws for every run) and its training-loss curve. The summary per setting is
the mean and standard deviation over seeds. A single short run at a large learning rate is
chaotic (its last digits, and even its first, depend on the CPU's rounding), which is why
the chapter shows these statistics and not one run.

    OMP_NUM_THREADS=1 python benchmarks/bench_lr_batch.py   # 54 min on a busy 2-core CPU (the shipped run)
    python benchmarks/bench_lr_batch.py --steps 20 --seeds 0 --json /tmp/x.json   # smoke test

The JSON goes into ddpm_core/results/ (shipped with the package: chapter 6 loads it with
``dc.load_benchmark("lr_batch")``, in Colab too).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

import ddpm_core as dc

RESULTS = Path(__file__).resolve().parents[1] / "ddpm_core" / "results"  # shipped: chapter 6 loads it
EVAL_DRAWS = 4  # draws of (t, ε) per held-out digit
EVAL_SEED = 6  # the generator of the held-out (t, ε): the chapter's evaluation batch
CURVE_POINTS = 40  # the training-loss curve is stored as this many window means


def held_out_batch(s: dc.NoiseSchedule):
    """The held-out digits, repeated EVAL_DRAWS times, with fixed t and ε: (x0, t, eps)."""
    x_test, _ = dc.load_digits(split="test")
    x0 = x_test.repeat(EVAL_DRAWS, 1, 1, 1)  # (1200, 1, 8, 8)
    g = torch.Generator().manual_seed(EVAL_SEED)
    t = torch.randint(1, s.num_steps + 1, (len(x0),), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    return x0, t, eps


def curve(loss: list[float], points: int = CURVE_POINTS) -> tuple[list[float], list[float]]:
    """The training loss as ``points`` window means: (window centre steps, mean losses)."""
    windows = np.array_split(np.asarray(loss, dtype=np.float64), min(points, len(loss)))
    edges = np.cumsum([0] + [len(w) for w in windows])
    return [float((a + b + 1) / 2) for a, b in zip(edges[:-1], edges[1:])], [float(w.mean()) for w in windows]


def run(lr: float, batch_size: int, seed: int, steps: int, data, evaluation, s) -> dict:
    """One training run; its held-out loss, last-10%-of-steps training loss and curve."""
    config = dc.TrainConfig(num_train_steps=steps, batch_size=batch_size, lr=lr, warmup_steps=10,
                            checkpoint_every=0, seed=seed)
    result = dc.train(config, data=data, device="cpu", progress=False)
    x0, t, eps = evaluation
    with torch.no_grad():
        held_out = dc.loss_simple(result.model.eval(), s, x0, t=t, eps=eps).item()
    loss = result.history.loss
    steps_c, loss_c = curve(loss)
    tail = max(1, len(loss) // 10)
    return {"lr": lr, "batch_size": batch_size, "seed": seed, "held_out_loss": held_out,
            "final_train_loss": float(np.mean(loss[-tail:])), "curve_steps": steps_c, "curve_loss": loss_c,
            "steps_per_s": result.steps_per_s}


def summarize(rows: list[dict]) -> dict:
    """Mean and standard deviation (ddof=1, 0 for one seed) of the held-out loss over seeds."""
    v = np.array([r["held_out_loss"] for r in rows])
    return {"held_out_mean": float(v.mean()), "held_out_std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "num_seeds": len(v)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=400, help="training steps per run (default %(default)s)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3, 3e-3, 1e-2])
    p.add_argument("--batches", type=int, nargs="+", default=[8, 32, 128])
    p.add_argument("--json", type=Path, default=RESULTS / "lr_batch.json")
    args = p.parse_args(argv)
    if args.steps < 20:
        p.error("--steps must be at least 20 (10 warm-up steps, then training)")

    torch.set_num_threads(1)  # one thread: the same sums in every run
    s = dc.NoiseSchedule.linear()
    data = dc.load_digits(split="train")
    evaluation = held_out_batch(s)
    t0 = time.perf_counter()
    sweeps = {"lr": [(lr, 32) for lr in args.lrs], "batch": [(1e-3, b) for b in args.batches]}
    done: dict[tuple, dict] = {}  # (lr, batch, seed) -> row: lr 1e-3 at batch 32 is in both sweeps
    out = {"sweeps": {}}
    for sweep, settings in sweeps.items():
        out["sweeps"][sweep] = []
        for lr, batch in settings:
            rows = []
            for seed in args.seeds:
                key = (lr, batch, seed)
                if key not in done:
                    done[key] = run(lr, batch, seed, args.steps, data, evaluation, s)
                rows.append(done[key])
            summary = {"lr": lr, "batch_size": batch, **summarize(rows), "runs": rows}
            out["sweeps"][sweep].append(summary)
            print(f"{sweep:5s} lr {lr:<7g} batch {batch:4d}: held-out L_simple "
                  f"{summary['held_out_mean']:.4f} ± {summary['held_out_std']:.4f} "
                  f"({len(rows)} seeds)", flush=True)
    out.update({
        "steps": args.steps, "seeds": args.seeds, "warmup_steps": 10, "eval_images": len(evaluation[0]),
        "wall_s": time.perf_counter() - t0,
        "command": "python benchmarks/bench_lr_batch.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}",
    })
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.json} ({out['wall_s']:.0f} s)")
    return out


if __name__ == "__main__":
    main()
