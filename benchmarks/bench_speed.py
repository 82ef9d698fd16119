"""Speed of ddpm_core against diffusers, side by side in one process.

For each resolution (16×16 digits-size, 28×28 MNIST-size; random data, 1 channel) it builds
``ddpm_core.UNet`` and a diffusers ``UNet2DModel`` of matched shape (widths 32/64, one residual
block per level, GroupNorm(8), attention at the lowest resolution) and measures, alternating the
two libraries repeat by repeat so that machine noise hits both alike:

* training steps/s: our ``loss_simple`` vs ``DDPMScheduler.add_noise`` + MSE, AdamW, same batch;
* sampling time of DDPM-1000 and DDIM-50: ``ddpm_sample``/``ddim_sample`` vs the
  ``DDPMScheduler``/``DDIMScheduler`` step loops.

The headline is the ratio ours/theirs of medians (> 1 means ddpm_core is faster).

    pip install -r benchmarks/requirements.txt
    python benchmarks/bench_speed.py [--repeats 5] [--json benchmarks/results/speed.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import ddpm_core as dc
from ddpm_core.model import UNet, UNetConfig


def build_diffusers_unet(size: int):
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=size, in_channels=1, out_channels=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=1, norm_num_groups=8, attention_head_dim=64, dropout=0.1,
    )


def n_params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def forward_gflop(lib, shape) -> float:
    """GFLOP of one forward pass of ``lib``'s network on a batch of ``shape`` (FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(shape, device=lib.device)
    t = torch.full((shape[0],), 500, device=lib.device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        lib.model(x, t)
    return counter.get_total_flops() / 1e9


def time_it(fn, sync) -> float:
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


class Ours:
    name = "ddpm_core"

    def __init__(self, size, device):
        self.model = UNet(UNetConfig(in_channels=1)).to(device)
        self.s = dc.NoiseSchedule.linear(1000).to(device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.device = device

    def train_steps(self, x0, n):
        self.model.train()
        for _ in range(n):
            loss = dc.loss_simple(self.model, self.s, x0)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()

    def sample(self, shape, kind, g):
        self.model.eval()
        if kind == "ddpm":
            return dc.ddpm_sample(self.model, self.s, shape, generator=g, progress=False)
        return dc.ddim_sample(self.model, self.s, shape, 50, 0.0, generator=g, progress=False)


class Theirs:
    name = "diffusers"

    def __init__(self, size, device):
        from diffusers import DDIMScheduler, DDPMScheduler

        self.model = build_diffusers_unet(size).to(device)
        kw = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
        self.ddpm = DDPMScheduler(**kw, variance_type="fixed_small", clip_sample=False)
        self.ddim = DDIMScheduler(**kw, clip_sample=False, set_alpha_to_one=True)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.device = device

    def train_steps(self, x0, n):
        self.model.train()
        for _ in range(n):
            noise = torch.randn_like(x0)
            k = torch.randint(0, 1000, (x0.shape[0],), device=x0.device)
            xt = self.ddpm.add_noise(x0, noise, k)
            loss = F.mse_loss(self.model(xt, k).sample, noise)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()

    @torch.no_grad()
    def sample(self, shape, kind, g):
        self.model.eval()
        sched = self.ddpm if kind == "ddpm" else self.ddim
        sched.set_timesteps(1000 if kind == "ddpm" else 50)
        x = torch.randn(shape, generator=g).to(self.device)
        for k in sched.timesteps:
            eps = self.model(x, k.to(self.device)).sample
            x = sched.step(eps, k, x, generator=g if kind == "ddpm" else None).prev_sample
        return x


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--train-steps", type=int, default=10, help="steps per timed training repeat")
    p.add_argument("--sample-batch", type=int, default=16)
    p.add_argument("--sizes", type=int, nargs="+", default=[16, 28])
    p.add_argument("--skip-ddpm-1000", action="store_true", help="only DDIM-50 sampling (saves minutes on CPU)")
    p.add_argument("--flops-only", action="store_true", help="only print each network's FLOPs per forward pass")
    p.add_argument("--json", type=Path, default=Path("benchmarks/results/speed.json"))
    args = p.parse_args(argv)

    device = dc.default_device()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    results = {"machine": {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
                           "cpu": platform.processor() or platform.machine(),
                           "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None},
               "repeats": args.repeats, "rows": []}
    for size in args.sizes:
        libs = [Ours(size, device), Theirs(size, device)]
        x0 = torch.rand(args.batch, 1, size, size, device=device) * 2 - 1
        params = {lib.name: n_params(lib.model) for lib in libs}
        shape = (args.sample_batch, 1, size, size)
        gflop = {lib.name: forward_gflop(lib, shape) for lib in libs}
        print(f"{size:>3}x{size:<3} forward pass of {args.sample_batch} images: " + "   ".join(
            f"{k} {v:.2f} GFLOP" for k, v in gflop.items()), flush=True)
        if args.flops_only:
            continue
        tasks = [("train steps/s", lambda lib: lib.train_steps(x0, args.train_steps), args.train_steps)]
        kinds = ["ddim"] + ([] if args.skip_ddpm_1000 else ["ddpm"])
        for kind in kinds:
            tasks.append((f"{'DDIM-50' if kind == 'ddim' else 'DDPM-1000'} s/batch",
                          lambda lib, kind=kind: lib.sample((args.sample_batch, 1, size, size), kind,
                                                            torch.Generator().manual_seed(0)), None))
        for label, fn, n in tasks:
            for lib in libs:  # warm-up
                fn(lib)
            times = {lib.name: [] for lib in libs}
            for r in range(args.repeats):
                for lib in (libs if r % 2 == 0 else libs[::-1]):  # alternate the order
                    times[lib.name].append(time_it(lambda: fn(lib), sync))
            med = {k: statistics.median(v) for k, v in times.items()}
            if n is not None:  # a rate: steps per second
                val = {k: n / m for k, m in med.items()}
                ratio = val["ddpm_core"] / val["diffusers"]
            else:  # a duration: seconds
                val = med
                ratio = med["diffusers"] / med["ddpm_core"]
            row = {"size": size, "task": label, "ddpm_core": val["ddpm_core"], "diffusers": val["diffusers"],
                   "speedup": ratio, "params": params, "forward_gflop": gflop, "all_times_s": times}
            results["rows"].append(row)
            print(f"{size:>3}x{size:<3} {label:<22} ddpm_core {val['ddpm_core']:8.3f}   diffusers "
                  f"{val['diffusers']:8.3f}   ddpm_core speed-up ×{ratio:.2f}   "
                  f"(params {params['ddpm_core']:,} vs {params['diffusers']:,})", flush=True)
    if args.flops_only:
        return results
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
