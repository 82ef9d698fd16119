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


def test_bench_objectives_tiny_run(tmp_path):
    bench = load("bench_objectives")
    out = tmp_path / "objectives.json"
    res = bench.main(["--models", "digits", "--num-samples", "6", "--ddpm-samples", "2", "--seeds", "2",
                      "--bound-images", "3", "--bound-draws", "2", "--workers", "1", "--json", str(out)])
    assert list(res["models"]) == ["digits", "yardstick"]
    digits = res["models"]["digits"]
    assert digits["command"] == dc.load_pretrained("digits", device="cpu").info["command"]
    assert list(digits["samplers"]) == ["ddpm1000", "dpmpp_2m_20"]
    for name, r in digits["samplers"].items():
        assert len(r["per_seed"]) == 2 and r["fid"] == pytest.approx(sum(x["fid"] for x in r["per_seed"]) / 2)
        assert r["num_samples"] == (2 if name == "ddpm1000" else 6) and r["fid_mlp"] > 0 and r["wall_s"] > 0
    for entry in res["models"].values():
        b = entry["bounds"]["beta_tilde"]
        assert len(b["term_mean"]) == 1001 and b["term_mean"][0] == 0.0 and len(b["per_image_total"]) == 2
        # the total is L_T + the sum of the mean terms, and the mean of the per-image totals
        assert b["total"] == pytest.approx(b["prior"] + sum(b["term_mean"]), rel=1e-4)
        assert b["total"] == pytest.approx(sum(map(sum, b["per_image_total"])) / 6, abs=1e-4)
        assert b["L0"] == pytest.approx(b["term_mean"][1], rel=1e-4)
    assert res["histogram_bpd"] == pytest.approx(2.648, abs=1e-3)  # chapter 4's baseline
    assert res["floor"] == pytest.approx(dc.digits_fid_floor(6)) and res["ddpm_floor"] == pytest.approx(
        dc.digits_fid_floor(2))
    assert json.loads(out.read_text())["models"] == res["models"]


def test_bench_flow_tiny_run(tmp_path):
    bench = load("bench_flow")
    out = tmp_path / "flow.json"
    res = bench.main(["--num-samples", "12", "--seeds", "2", "--nfe", "3", "--churn-nfe", "3",
                      "--check-seeds", "2", "--json", str(out)])
    assert [(r["sampler"], r["nfe"]) for r in res["rows"]] == [
        ("flow euler", 3), ("flow heun", 3), ("diffusion euler, no clip", 3), ("diffusion heun, no clip", 3),
        ("EDM churn/karras", 3)]
    assert [r["steps"] for r in res["rows"]] == [3, 2, 3, 2, 2]  # Heun and churn: 2S - 1 evaluations
    assert [r["model"] for r in res["rows"]] == ["digits-flow"] * 2 + ["digits"] * 3
    check = res["seed_check"]
    assert check["seeds"] == [0, 1] and [(r["solver"], r["nfe"]) for r in check["rows"]] == [
        ("dpmpp_2m", 10), ("dpmpp_2m", 20), ("heun", 19), ("heun", 19), ("ddpm", 1000)]
    for r in res["rows"] + check["rows"]:
        assert len(r["per_seed"]) == 2 and r["fid"] == pytest.approx(sum(x["fid"] for x in r["per_seed"]) / 2)
        assert r["fid_mlp"] > 0 and r["wall_s"] > 0
    assert res["floor"] == pytest.approx(dc.digits_fid_floor(12))
    assert res["floor_mlp"] == pytest.approx(dc.independent_digits_fid_floor(12))
    assert res["models"]["digits-flow"]["command"].endswith("--prediction velocity --out runs/digits-flow")
    saved = json.loads(out.read_text())
    assert saved["rows"] == res["rows"] and saved["seed_check"] == res["seed_check"]
