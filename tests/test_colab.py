"""Chapter notebooks follow the book's conventions (book/authoring.md), Colab included.

* `_config.yml` holds the repository URL once; Colab launch buttons are on.
* Every chapter's first code cell is the standard one: imports, seeding, device, book style, a
  device note, and -- only in Colab -- ``%pip install`` of the package from that very URL.
* Every chapter is in `_toc.yml` (only listed files are built), has a "Running this notebook"
  note, carries no stored error, and stores the widget state its sliders need.
* The nbval sanitize patterns remove run-to-run noise and nothing else.

``DDPM_BOOK_ROOT`` points these checks at another book folder (as in test_book_html.py).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ROOT = Path(os.environ.get("DDPM_BOOK_ROOT", REPO))
CONFIG = yaml.safe_load((REPO / "_config.yml").read_text())
REPO_URL = CONFIG["repository"]["url"]
BRANCH = CONFIG["repository"]["branch"]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
COLAB_GUARD = re.compile(r"^if\s+[\"']google\.colab[\"']\s+in\s+sys\.modules\s*:\s*(?:#.*)?$", re.MULTILINE)
PIP_LINE = re.compile(r"^\s+%pip install\b.*$", re.MULTILINE)
GIT_URL = re.compile(r"git\+(?P<url>https://[^\s\"'@]+?)(?:\.git)?(?:@(?P<ref>[\w./-]+))?(?=[\s\"'#]|$)")
FIRST_CELL_LINES = (
    "import sys",
    "import ddpm_core as dc",
    "dc.seed_everything(0)",
    "device = dc.default_device()",
    "dc.apply_book_style()",
    "print(dc.device_note(device))",
)


def first_code_cell(nb) -> str:
    return next(c.source for c in nb.cells if c.cell_type == "code")


def test_repository_url_is_configured_once():
    assert REPO_URL.startswith("https://github.com/") and not REPO_URL.endswith((".git", "/"))
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    # The URL lives in _config.yml only: no other file of ours repeats it (chapters are checked below).
    ours = [REPO / "_toc.yml", REPO / "Makefile", *REPO.glob("book/*.md"), *REPO.glob("scripts/*"),
            *REPO.glob("ddpm_core/*.py")]
    repeats = [p.name for p in ours if p.is_file() and REPO_URL in p.read_text(errors="ignore")]
    assert not repeats, f"{repeats} repeat the repository URL; read it from _config.yml"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_first_cell_is_the_standard_one(path):
    source = first_code_cell(nbformat.read(path, as_version=4))
    missing = [line for line in FIRST_CELL_LINES if line not in source]
    assert not missing, f"{path.name}: the first code cell lacks {missing} (see book/authoring.md)"
    assert source.lstrip().startswith("# NBVAL_IGNORE_OUTPUT"), (
        f"{path.name}: the first cell prints the device, which differs between machines: "
        "start it with `# NBVAL_IGNORE_OUTPUT`"
    )
    order = [source.index(line) for line in ("import ddpm_core as dc", "dc.seed_everything(0)",
                                              "device = dc.default_device()", "dc.apply_book_style()")]
    assert order == sorted(order), f"{path.name}: import, seed, device, style: in that order"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_colab_install_cell_uses_the_repository_url(path):
    source = first_code_cell(nbformat.read(path, as_version=4))
    guard = COLAB_GUARD.search(source)
    assert guard, f'{path.name}: the install must sit under `if "google.colab" in sys.modules:`'
    pips = PIP_LINE.findall(source)
    assert pips, f"{path.name}: no indented `%pip install` under the Colab guard"
    assert all(source.index(p) > guard.start() for p in pips), f"{path.name}: %pip outside the Colab guard"
    assert not re.search(r"^%pip|^!pip", source, re.MULTILINE), f"{path.name}: an unguarded pip install"
    urls = [m for p in pips for m in GIT_URL.finditer(p)]
    assert urls, f"{path.name}: the Colab install does not install from git+{REPO_URL}"
    for m in urls:
        assert m["url"] == REPO_URL, f"{path.name}: installs from {m['url']}, _config.yml says {REPO_URL}"
        assert m["ref"] in (None, BRANCH), f"{path.name}: installs @{m['ref']}, _config.yml says {BRANCH}"


def test_every_chapter_is_in_the_toc():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = set(re.findall(r"chapters/[\w.-]+", yaml.safe_dump(toc)))
    files = {f.removesuffix(".ipynb") for f in files}
    on_disk = {f"chapters/{p.stem}" for p in CHAPTERS}
    assert not on_disk - files, f"not in _toc.yml (so not built): {sorted(on_disk - files)}"
    assert not files - on_disk, f"_toc.yml lists chapters that do not exist: {sorted(files - on_disk)}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_conventions(path):
    nb = nbformat.read(path, as_version=4)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), (
        f"{path.name}: the first cell is the chapter's title (`# Title`)"
    )
    assert "Running this notebook" in markdown, f"{path.name}: no 'Running this notebook' note"
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        tags = cell.metadata.get("tags", [])
        errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
        assert not errors or "raises-exception" in tags, (
            f"{path.name}: code cell {i} has a stored error; re-run `make execute`"
        )
        uses_slider = re.search(r"\b(frame_slider|figure_slider)\(", cell.source)
        if uses_slider and "remove-output" not in tags:
            views = [o for o in cell.get("outputs", [])
                     if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
            assert views, f"{path.name}: code cell {i} makes a slider but has no stored widget output"
    if any(re.search(r"\b(frame_slider|figure_slider)\(", c.source) for c in nb.cells if c.cell_type == "code"):
        state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
        assert state.get("state"), (
            f"{path.name}: sliders but no stored widget state: execute it with "
            "`make execute` (scripts/execute_notebooks.py), not a plain Jupyter save"
        )


def _sanitize(text: str) -> str:
    cfg = (REPO / "tests" / "nbval_sanitize.cfg").read_text()
    for regex, replace in re.findall(r"^regex: (.*)$\n^replace: (.*)$", cfg, flags=re.MULTILINE):
        text = re.sub(regex, replace, text)
    return text


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("loss 0.123456789", "loss 0.123499999"),
        ("alpha_bar_T = 4.0358296246267855e-05", "alpha_bar_T = 4.0358296246261234e-05"),
        ("tensor([0.1234, 2.0000])", "tensor([0.1236, 2.0000])"),
        ("tiny 0.000123456", "tiny 0.000123999"),
        ("mean -0.0000", "mean 0.0000"),
        ("bound terms: 100%|██████████| 1000/1000 [00:05<00:00, 190.31it/s]",
         "bound terms: 100%|██████████| 1000/1000 [01:02<00:00, 16.02it/s]"),
        ("Wall time: 2.51 s", "Wall time: 130 ms"),
        ("<function f at 0x7f3a2c1d0e50>", "<function f at 0x7f99aa000010>"),
        ("model_id 5f1c0a3e9b2d4c6e8f0a1b2c3d4e5f60", "model_id 0123456789abcdef0123456789abcdef"),
    ],
)
def test_sanitize_removes_run_to_run_noise(a, b):
    assert _sanitize(a) == _sanitize(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("loss 0.123", "loss 0.124"),
        ("tensor([0.1234, 2.0000])", "tensor([0.1334, 2.0000])"),
        ("8 steps", "9 steps"),
        ("bits/dim 2.91", "bits/dim 3.91"),
        ("shape (16, 1, 8, 8)", "shape (16, 1, 16, 16)"),
        ("bound terms: 100%|██████████| 1000/1000 [00:05<00:00, 190.31it/s]",
         "bound terms:  50%|█████     | 500/1000 [00:05<00:00, 190.31it/s]"),
    ],
)
def test_sanitize_keeps_real_differences(a, b):
    assert _sanitize(a) != _sanitize(b)
