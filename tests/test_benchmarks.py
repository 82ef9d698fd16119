"""The GPU-path benchmark runs end to end on the CPU (tiny settings) and reports what it claims.

(bench_speed.py needs diffusers, a benchmark-only dependency, so it is not run here.)"""

import importlib.util
import json
from pathlib import Path

import pytest

import ddpm_core as dc

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_gpu_tiny_run(tmp_path):
    bench = load("bench_gpu")
    tiny = ["--size", "8", "--batch", "8", "--warmup", "2", "--repeats", "1", "--out", str(tmp_path)]
    res = bench.main(tiny + ["--steps", "4", "--settings", "fp32", "+ bf16", "--minutes", "0.02"])
    assert [r["setting"] for r in res["rows"]] == ["fp32", "+ bf16"]
    assert res["rows"][0]["speedup"] == 1.0
    for r in res["rows"]:
        assert r["steps_per_s"] > 0 and r["tflops"] == pytest.approx(res["train_step_gflop"] * r["steps_per_s"] / 1e3)
    assert res["train_step_gflop"] == pytest.approx(dc.count_flops(dc.UNet(), (8, 1, 8, 8), backward=True) / 1e9)
    (row,) = res["time_to_samples"]
    assert (tmp_path / row["grid"]).is_file() and 0.0 <= row["confident_fraction"] <= 1.0 and row["steps"] > 0
    assert json.loads((tmp_path / "gpu_cpu.json").read_text())["rows"] == res["rows"]
    with pytest.raises(ValueError, match="multiple"):
        bench.main(tiny + ["--steps", "3", "--settings", "fp32"])


def test_bench_samplers_tiny_run(tmp_path):
    bench = load("bench_samplers")
    out = tmp_path / "samplers.json"
    res = bench.main(["--num-samples", "12", "--seeds", "2", "--nfe", "3", "--solvers", "euler", "heun",
                      "--spacings", "uniform", "--ddpm-samples", "4", "--json", str(out)])
    assert [r["sampler"] for r in res["rows"]] == ["euler/uniform", "heun/uniform", "DDIM-20, η=1 (reference)",
                                                   "DDPM-1000 (reference)"]
    heun = res["rows"][1]
    assert heun["steps"] == 2 and heun["nfe"] == 3  # 2 S - 1 evaluations
    for r in res["rows"]:
        assert len(r["per_seed"]) == 2 and r["fid"] == pytest.approx(sum(x["fid"] for x in r["per_seed"]) / 2)
        assert r["fid_mlp"] > 0 and r["wall_s"] > 0
    assert res["floor"] == pytest.approx(dc.digits_fid_floor(12))
    assert json.loads(out.read_text())["rows"] == res["rows"]
