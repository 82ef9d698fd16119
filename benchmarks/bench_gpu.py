"""The fast training path of ``ddpm_core.train``: what each option buys, and achieved TFLOP/s.

1. Speed per option. ``ddpm_core.train`` runs on MNIST-size data (digits resized to 28×28,
   offline) under four cumulative settings:

   * fp32: float32, eager;
   * + channels_last: NHWC layout for the model and the data;
   * + bf16: bf16 autocast (fp16 with loss scaling where the GPU lacks bf16);
   * + compile: ``torch.compile`` of the forward pass.

   The settings take turns, repeat by repeat, so machine noise hits them alike. Each repeat is one
   ``train`` call. Its first ``--warmup`` steps (compilation, cuDNN autotuning, allocator growth)
   are left out. The speed is taken between two log rows, each timestamped once the device has
   caught up. FLOPs per step come from ``ddpm_core.count_flops`` (forward + backward, a
   multiply-add as 2). Achieved TFLOP/s is FLOPs per step × steps/s. Fused AdamW is always on
   with CUDA.
2. Time to recognizable samples (``--minutes``). One run with the last setting is paused at each
   listed training time. At each pause the EMA model draws 256 DDIM-50 samples. They are saved as
   a PNG grid and scored with the project's digit classifier: the share classified with ≥ 90 %
   confidence, and digits-FID against the 8×8 digits; the classifier first resizes samples to
   8×8. On MNIST (``--dataset mnist``, which needs the network) this is a proxy across two digit
   styles; the grids are there for the eye.

On a GPU the defaults measure the real thing. On a CPU it runs too, slowly and with smaller
defaults; that is how the test suite checks this script.

    python benchmarks/bench_gpu.py                               # speed table (GPU: batch 128)
    python benchmarks/bench_gpu.py --minutes 0.5 1 2 5 --dataset mnist   # + time to samples
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
from pathlib import Path

import torch

import ddpm_core as dc

SETTINGS = {  # name -> TrainConfig overrides (cumulative)
    "fp32": dict(mixed_precision="no"),
    "+ channels_last": dict(mixed_precision="no", channels_last=True),
    "+ bf16": dict(mixed_precision="bf16", channels_last=True),
    "+ compile": dict(mixed_precision="bf16", channels_last=True, compile=True),
}
CONFIDENT = 0.8
"""A run has "recognizable samples" once this share of them is classified with >= 90 % confidence."""


def speed(data, size, batch, warmup, steps, settings, device) -> dict:
    """steps/s of one ``train`` call under ``settings``, past its first ``warmup`` steps."""
    if steps % warmup:
        raise ValueError(f"--steps ({steps}) must be a multiple of --warmup ({warmup})")
    config = dc.TrainConfig(image_size=size, batch_size=batch, num_train_steps=warmup + steps,
                            log_every=warmup, checkpoint_every=0, **settings)
    r = dc.train(config, data=data, device=device, progress=False)
    h = r.history
    return {"steps_per_s": steps / (h.t_bucket_elapsed_s[-1] - h.t_bucket_elapsed_s[0]),
            "warmup_s": h.t_bucket_elapsed_s[0]}


def time_to_samples(data, size, batch, minutes, settings, device, out_dir: Path) -> list[dict]:
    """Train one run, pausing at each of ``minutes``; score 256 DDIM-50 samples at every pause."""
    rows, done = [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for m in sorted(minutes):
            config = dc.TrainConfig(image_size=size, batch_size=batch, num_train_steps=10**8,
                                    max_minutes=m - done, checkpoint_every=0, **settings)
            r = dc.train(config, data=data, out=tmp, resume=Path(tmp, "checkpoint.pt") if done else None,
                         device=device, progress=False)
            done = m
            g = torch.Generator().manual_seed(0)
            x = dc.ddim_sample(r.ema.model, r.schedule, (256, 1, size, size), 50, 0.0, generator=g,
                               progress=False, device=device).cpu()
            q = dc.digits_quality(x)
            grid = out_dir / f"gpu_samples_{m:g}min.png"
            dc.images_figure(x[:64], nrow=8, title=f"after {m:g} min ({r.step} steps)").savefig(grid, dpi=100)
            rows.append({"train_minutes": m, "train_s": r.history.elapsed_s, "steps": r.step,
                         "confident_fraction": q.confident_fraction, "digits_fid": q.fid, "grid": grid.name})
            print(f"after {m:>5g} min ({r.step:>6} steps): confident {q.confident_fraction:.2f}  "
                  f"digits-FID {q.fid:7.2f}  -> {grid}", flush=True)
    return rows


def main(argv=None) -> dict:
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=["digits", "mnist"], default="digits",
                   help="digits: offline, resized to --size; mnist: torchvision (needs the network)")
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--batch", type=int, default=128 if cuda else 32)
    p.add_argument("--warmup", type=int, default=50 if cuda else 5, help="steps left out of each repeat")
    p.add_argument("--steps", type=int, default=500 if cuda else 15, help="timed steps per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    p.add_argument("--minutes", type=float, nargs="*", default=[],
                   help="training times at which to score samples (time to recognizable samples)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--json", type=Path, default=None, help="default OUT/gpu_<device>.json")
    args = p.parse_args(argv)
    device = dc.default_device()
    args.out.mkdir(parents=True, exist_ok=True)

    if args.dataset == "digits":
        data = dc.load_digits(args.size, split="train")
    else:
        data = dc.load_mnist(split="train", image_size=args.size)
    model = dc.UNet(dc.UNetConfig(in_channels=1)).to(device)
    flops = dc.count_flops(model, (args.batch, 1, args.size, args.size), backward=True)
    res = {"machine": {"device": str(device), "gpu": torch.cuda.get_device_name() if cuda else None,
                       "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                       "torch": torch.__version__},
           "dataset": args.dataset, "size": args.size, "batch": args.batch, "warmup": args.warmup,
           "steps": args.steps, "repeats": args.repeats, "params": sum(q.numel() for q in model.parameters()),
           "train_step_gflop": flops / 1e9, "rows": [], "time_to_samples": []}
    print(f"{device} ({res['machine']['gpu'] or res['machine']['cpu']}, {torch.get_num_threads()} threads): "
          f"UNet {res['params']:,} params, {args.size}×{args.size}, batch {args.batch}: "
          f"{flops / 1e9:.2f} GFLOP per training step", flush=True)

    times = {name: [] for name in args.settings}
    for r in range(args.repeats):
        for name in (args.settings if r % 2 == 0 else args.settings[::-1]):  # alternate the order
            times[name].append(speed(data, args.size, args.batch, args.warmup, args.steps, SETTINGS[name], device))
    base = statistics.median(t["steps_per_s"] for t in times[args.settings[0]])
    print(f"{'setting':<16} {'steps/s':>9} {'× ' + args.settings[0]:>10} {'TFLOP/s':>9} {'warm-up s':>10}")
    for name in args.settings:
        sps = statistics.median(t["steps_per_s"] for t in times[name])
        row = {"setting": name, "steps_per_s": sps, "speedup": sps / base, "tflops": flops * sps / 1e12,
               "warmup_s": statistics.median(t["warmup_s"] for t in times[name]),
               "all_steps_per_s": [t["steps_per_s"] for t in times[name]]}
        res["rows"].append(row)
        print(f"{name:<16} {sps:9.2f} {row['speedup']:10.2f} {row['tflops']:9.4f} {row['warmup_s']:10.1f}", flush=True)

    if args.minutes:
        res["time_to_samples"] = time_to_samples(data, args.size, args.batch, args.minutes,
                                                 SETTINGS[args.settings[-1]], device, args.out)
        hit = next((r for r in res["time_to_samples"] if r["confident_fraction"] >= CONFIDENT), None)
        res["time_to_recognizable_s"] = hit["train_s"] if hit else None
        print(f"time to recognizable samples (≥ {CONFIDENT:.0%} confidently classified): "
              + (f"{hit['train_s']:.0f} s of training" if hit else f"not reached within {max(args.minutes):g} min"))

    path = args.json or args.out / f"gpu_{device.type}.json"
    path.write_text(json.dumps(res, indent=1))
    print(f"wrote {path}")
    return res


if __name__ == "__main__":
    main()
