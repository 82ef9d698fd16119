"""Issue 11: the package's layers, one function per formula, the names the chapters use, the new helpers."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ddpm_core as dc

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "ddpm_core"
LAYERS = ["_checks", "utils", "diffusion", "model", "data", "weights", "evaluation", "training", "notebook"]
"""Bottom to top: a module may import its own layer and those before it, never one after it."""
MAX_MODULE_LINES = 350
MAX_FUNCTION_LINES = 80


def _modules():
    return sorted(p for p in PKG.rglob("*.py") if p.name != "train.py")  # train.py: the command, on top


def _layer(path: Path) -> int | None:
    part = path.relative_to(PKG).parts[0].removesuffix(".py")
    return LAYERS.index(part) if part in LAYERS else None


def _imported_layers(path: Path):
    """The ddpm_core layers a module imports (relative imports resolved)."""
    rel = path.relative_to(PKG).with_suffix("").parts
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = rel[: len(rel) - node.level] if path.name != "__init__.py" else rel[: len(rel) - node.level + 1]
            target = [*base, *(node.module.split(".") if node.module else [])]
            if target and target[0] in LAYERS:
                yield target[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ddpm_core."):
            yield node.module.split(".")[1], node.lineno


@pytest.mark.parametrize("path", [p for p in _modules() if _layer(p) is not None], ids=lambda p: str(p.relative_to(PKG)))
def test_no_module_imports_a_layer_above_it(path):
    own = _layer(path)
    for name, line in _imported_layers(path):
        assert LAYERS.index(name) <= own, f"{path.relative_to(PKG)}:{line} imports {name}, a layer above it"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_modules_are_short_and_say_their_idea_and_chapter(path):
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_MODULE_LINES
    tree = ast.parse(source)
    doc = ast.get_docstring(tree)
    assert doc and re.search(r"chapters?\b", doc), f"{path.relative_to(PKG)}: no docstring naming its chapter"
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            assert node.end_lineno - node.lineno + 1 <= MAX_FUNCTION_LINES, f"{node.name} is too long"


def test_diffusion_defines_no_module_and_has_no_private_twins():
    for path in (PKG / "diffusion").glob("*.py"):
        tree = ast.parse(path.read_text())
        assert not any(isinstance(n, ast.ClassDef) and any(ast.unparse(b).endswith("Module") for b in n.bases)
                       for n in ast.walk(tree)), path
        public = {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")}
        private = {n.name[1:] for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("_")}
        assert not public & private, f"{path.name}: unchecked twins {public & private}"


def _chapter_names():
    names = set()
    for nb in sorted((ROOT / "chapters").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        names |= set(re.findall(r"\bdc\.([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)", code))
    return sorted(names)


@pytest.mark.parametrize("name", _chapter_names())
def test_every_name_the_chapters_use_exists(name):
    obj = dc
    for part in name.split("."):
        obj = getattr(obj, part)


def test_loading_a_shipped_model_imports_neither_the_trainer_nor_its_command_line():
    code = ("import sys, ddpm_core as dc; dc.load_pretrained('digits', device='cpu'); "
            "bad = [m for m in sys.modules if m.startswith('ddpm_core.training')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    for path in (PKG / "weights").glob("*.py"):  # the loading path itself never imports argparse at module level
        tree = ast.parse(path.read_text())
        assert not any(isinstance(n, ast.Import) and any(a.name == "argparse" for a in n.names) for n in tree.body)


@pytest.mark.parametrize("make", [lambda: dc.NoiseSchedule.linear(50, 2e-4, 0.03), lambda: dc.NoiseSchedule.cosine(40, 0.01),
                                  lambda: dc.NoiseSchedule.from_betas([0.1, 0.2, 0.3])])
def test_schedule_round_trips_through_a_plain_config(make):
    s = make()
    config = json.loads(json.dumps(s.to_config()))
    s2 = dc.NoiseSchedule.from_config(config)
    for field in ("betas", "alpha_bars", "one_minus_alpha_bars", "beta_tildes"):
        assert torch.equal(getattr(s, field), getattr(s2, field))
    assert s2.to_config() == config and s2.name == s.name


# -- what a model returns is checked ------------------------------------------------------------
def test_samplers_name_a_model_of_the_wrong_shape_and_nan_samples():
    s = dc.NoiseSchedule.linear(20)
    with pytest.raises(ValueError, match=r"returned shape \(2, 1, 4\) for xt of shape \(2, 1, 4, 4\)"):
        dc.ddim_sample(lambda xt, t: xt[..., 0], s, (2, 1, 4, 4), 5, progress=False)
    with pytest.raises(ValueError, match="NaN"):
        dc.ddim_sample(lambda xt, t: torch.full_like(xt, float("nan")), s, (2, 1, 4, 4), 5, progress=False)
    with pytest.raises(ValueError, match="returned shape"):
        dc.loss_simple(lambda xt, t: xt.sum(1), s, torch.zeros(2, 3, 4, 4))


def test_the_loop_yields_every_state_and_the_steps_return_x0_hat():
    s = dc.NoiseSchedule.linear(30)
    model = lambda xt, t: 0.2 * xt  # noqa: E731
    pairs = dc.timestep_pairs(dc.ddim_timesteps(30, 5))
    assert pairs == [(30, 24), (24, 18), (18, 12), (12, 6), (6, 0)]
    step = lambda s, eps, xt, t, t_prev: dc.ddim_step(s, eps, xt, t, t_prev, return_x0_hat=True)  # noqa: E731
    states = list(dc.reverse_loop(model, s, (2, 3), pairs, step, generator=torch.Generator().manual_seed(0),
                                  progress=False))
    assert [t for t, _, _ in states] == [30, 24, 18, 12, 6, 0]
    x = dc.ddim_sample(model, s, (2, 3), 5, generator=torch.Generator().manual_seed(0), progress=False)
    assert torch.equal(states[-1][1], x)
    xt, eps = torch.randn(2, 3), torch.randn(2, 3)
    x_prev, x0_hat = dc.ddpm_step(s, eps, xt, 7, generator=torch.Generator().manual_seed(0), return_x0_hat=True)
    assert torch.equal(x0_hat, dc.x0_from_eps(s, xt, 7, eps))
    assert torch.equal(x_prev, dc.ddpm_step(s, eps, xt, 7, generator=torch.Generator().manual_seed(0)))


# -- the shipped models still give the same numbers ----------------------------------------------
PINNED_SHIPPED = {  # dc.ddim_sample(S=10, eta=0) of 4 images from torch.Generator().manual_seed(0)
    "digits": ([-1.015604, -0.93893, -0.55277, 0.920343, 0.910648, -0.911763, 0.534556], -89.6933),
    "digits-vlb": ([-1.131673, -0.862563, -0.83208, 0.850123, 0.881434, -0.459067, -0.015853], -95.5782),
    "digits-cond": ([-1.047782, -0.229631, -0.938461, 0.81425, 0.122014, 0.590166, 0.305443], -91.4803),
}


@pytest.mark.parametrize("name", sorted(PINNED_SHIPPED))
def test_shipped_models_give_their_pinned_samples(name):
    p = dc.load_pretrained(name, device="cpu")
    model = p.model if p.num_classes is None else dc.guided(p.model, torch.arange(4) % 10, 2.0)
    x = dc.ddim_sample(model, p.schedule, (4, *p.image_shape), 10, 0.0,
                       generator=torch.Generator().manual_seed(0), progress=False)
    values, total = PINNED_SHIPPED[name]
    torch.testing.assert_close(x.flatten()[::41][:7], torch.tensor(values), rtol=1e-4, atol=1e-5)
    assert x.sum().item() == pytest.approx(total, abs=1e-3)


# -- the command line is generated from the configs -----------------------------------------------
def test_cli_has_a_flag_for_every_config_field_with_its_docstring():
    from dataclasses import fields

    from ddpm_core.training.cli import FLAG_NAMES, build_parser, field_docs

    help_text = " ".join(build_parser().format_help().split())
    for f in fields(dc.TrainConfig):
        flag = "--" + FLAG_NAMES.get(f.name, f.name.replace("_", "-"))
        assert flag in help_text, flag
        assert " ".join(field_docs(dc.TrainConfig)[f.name].split()[:4]) in help_text, f.name
    assert "--train-steps" in help_text and "--diffusion-steps" in help_text and "--num-steps" not in help_text


def test_cli_names_the_renamed_flags(capsys):
    from ddpm_core.training.cli import parse_configs

    with pytest.raises(SystemExit):
        parse_configs(["--steps", "5", "--out", "x"])
    assert "--steps is now --train-steps" in capsys.readouterr().err
    config, unet, _ = parse_configs(["--diffusion-steps", "50", "--weight-decay", "0.1", "--no-ema-warmup",
                                     "--channel-mults", "1,2,2", "--out", "x"])
    assert config.num_steps == 50 and config.weight_decay == 0.1 and config.ema_warmup is False
    assert unet.channel_mults == (1, 2, 2)


# -- the helpers the chapters will call -----------------------------------------------------------
def test_train_step_is_algorithm_1():
    s = dc.NoiseSchedule.linear(100)
    torch.manual_seed(0)
    model = dc.UNet(dc.UNetConfig(base_channels=8, dropout=0.0))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x0, t, eps = torch.zeros(4, 1, 8, 8), torch.tensor([1, 20, 50, 100]), torch.randn(4, 1, 8, 8)
    expected = dc.loss_simple(model, s, x0, t, eps).item()
    out = dc.train_step(model, opt, s, x0, t, eps, grad_clip=1.0)
    assert out.loss.item() == pytest.approx(expected) and out.per_image.shape == (4,) and out.grad_norm is not None
    assert dc.loss_simple(model, s, x0, t, eps).item() != expected  # the weights moved


def test_sci_notation_and_normal_pdf():
    assert dc.sci_notation(4.04e-05) == "4.0 × 10⁻⁵"
    assert dc.sci_notation(7.83e-05, latex=True) == "7.8\\cdot 10^{-5}"
    assert dc.sci_notation(1e-4, latex=True) == "10^{-4}"
    x = torch.linspace(-3, 3, 7, dtype=torch.float64)
    ref = torch.distributions.Normal(0.5, 2.0 ** 0.5).log_prob(x)
    torch.testing.assert_close(dc.normal_pdf(x, 0.5, 2.0, log=True), ref)
    torch.testing.assert_close(dc.normal_pdf(x, 0.5, 2.0), ref.exp())


def test_digit_rows_and_trajectory_slider():
    rows = [torch.rand(5, 1, 8, 8) * 2 - 1, torch.rand(5, 1, 8, 8) * 2 - 1]
    fig = dc.digit_rows(rows, ["a", "b"], col_labels=list("12345"), title="rows")
    assert len(fig.axes) == 2 and [t.get_text() for t in fig.axes[1].get_xticklabels()] == list("12345")
    assert not fig.axes[0].get_xticks().size  # column labels once, under the last row
    s = dc.NoiseSchedule.linear(20)
    _, traj = dc.ddim_sample(lambda xt, t: 0.1 * xt, s, (4, 1, 8, 8), 5, trajectory=True, progress=False)
    box = dc.trajectory_slider(traj, num_images=4, nrow=2)
    assert box.children[0].options[0][0] == "20" and len(box.children[0].options) == len(traj.t)
